"""Metrics, and the evaluation of pretrained checkpoints: protocols (configs/protocols), the
harness that runs them over seeds (tools/evaluate_pretraining.py), their statistics and reports,
and the results table (tools/results_table.py)."""
from .structural_gap_metric import StructuralGapMetric, structural_gap

__all__ = ['StructuralGapMetric', 'structural_gap']
