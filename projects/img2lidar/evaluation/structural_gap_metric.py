"""The 2D/3D structural gap (docs/methods.md section 5): a label-free pretraining signal."""
from typing import Dict, List, Sequence

from mmdet3d.registry import METRICS
from mmengine.evaluator import BaseMetric
from torch import Tensor


def structural_gap(k: Tensor, q: Tensor) -> Dict[str, float]:
    """Distance between the similarity structures of pooled 3D and 2D features.

    Args:
        k (Tensor): Pooled student features of the superpixels of one sample, (M, D).
        q (Tensor): Pooled 2D-head features of the same superpixels, (M, D).

    Returns:
        dict: ``intra`` = mean |K K^T - Q Q^T| and ``cross`` = mean |K Q^T - Q Q^T| over all
        M x M entries; both 0 when K equals Q.
    """
    k, q = k.float(), q.float()
    qq = q @ q.t()
    return dict(intra=float((k @ k.t() - qq).abs().mean()),
                cross=float((k @ q.t() - qq).abs().mean()))


@METRICS.register_module()
class StructuralGapMetric(BaseMetric):
    """Mean structural gap over the samples of a (held-out) split.

    Reads ``pooled_k`` and ``pooled_q`` that :class:`ImageLidarDistiller` attaches to every
    data sample in ``predict`` mode, computes :func:`structural_gap` per sample, and reports
    the means as ``gap_intra`` and ``gap_cross`` (lower is closer to the teacher's structure;
    the relational paper finds it anti-correlated with zero- and few-shot mIoU).
    """

    default_prefix = 'structural_gap'

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(structural_gap(sample['pooled_k'], sample['pooled_q']))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        n = max(len(results), 1)
        return dict(gap_intra=sum(r['intra'] for r in results) / n,
                    gap_cross=sum(r['cross'] for r in results) / n)
