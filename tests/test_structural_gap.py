"""The structural gap metric."""
import torch
from mmdet3d.registry import METRICS
from torch.nn import functional as F

from projects.img2lidar.evaluation import structural_gap


def test_gap_is_zero_for_equal_features_and_grows_with_noise():
    g = torch.Generator().manual_seed(0)
    q = F.normalize(torch.randn(50, 16, generator=g), dim=1)
    assert structural_gap(q, q) == dict(intra=0.0, cross=0.0)
    noise = torch.randn(50, 16, generator=g)
    gaps = [structural_gap(F.normalize(q + s * noise, dim=1), q) for s in (0.05, 0.2, 0.5, 2.0)]
    for a, b in zip(gaps, gaps[1:]):
        assert b['intra'] > a['intra'] > 0 and b['cross'] > a['cross'] > 0


def test_gap_by_hand():
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    q = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # KK^T = I, QQ^T = all ones -> |I - 1| = [[0, 1], [1, 0]] -> mean 0.5
    # KQ^T = [[1, 1], [0, 0]] -> |KQ^T - 1| = [[0, 0], [1, 1]] -> mean 0.5
    assert structural_gap(k, q) == dict(intra=0.5, cross=0.5)


def test_metric_averages_samples():
    metric = METRICS.build(dict(type='StructuralGapMetric'))
    q = torch.eye(3)
    metric.process({}, [dict(pooled_k=q, pooled_q=q), dict(pooled_k=torch.tensor([[1.0, 0.0], [
        0.0, 1.0]]), pooled_q=torch.tensor([[1.0, 0.0], [1.0, 0.0]]))])
    out = metric.evaluate(2)
    assert out == {'structural_gap/gap_intra': 0.25, 'structural_gap/gap_cross': 0.25}
