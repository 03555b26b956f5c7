"""Metrics."""
from .structural_gap_metric import StructuralGapMetric, structural_gap

__all__ = ['StructuralGapMetric', 'structural_gap']
