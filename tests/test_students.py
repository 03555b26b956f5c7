"""Students build from config, voxelize exactly and train on CPU on the real nuScenes sweep."""

import numpy as np
import pytest
import torch
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.config import Config

from conftest import REPO_ROOT, two_clouds


def _cfg(name):
    return Config.fromfile(str(REPO_ROOT / 'configs' / '_base_' / 'models' / name))


def _preprocess(cfg, points, training=True):
    pre = MODELS.build(cfg.model.data_preprocessor)
    samples = [Det3DDataSample() for _ in points]
    out = pre(dict(inputs=dict(points=points), data_samples=samples), training)
    return out['inputs']['voxels'], out['data_samples']


def _brute_force(coords):
    """Sorted unique voxels and point map with numpy only."""
    keys = [tuple(c) for c in coords.tolist()]
    uniq = sorted(set(keys))
    where = {k: i for i, k in enumerate(uniq)}
    return np.array(uniq), np.array([where[k] for k in keys])


def test_cartesian_voxels_match_numpy(nuscenes_sweep):
    cfg = _cfg('minkunet34_student.py')
    points = two_clouds(nuscenes_sweep)
    voxels, samples = _preprocess(cfg, points)
    start = 0
    for b, (pts, s) in enumerate(zip(points, samples)):
        c = np.round(pts[:, :3].numpy() / np.float32(0.1)).astype(np.int64)
        c -= c.min(0)
        uniq, p2v = _brute_force(c)
        n = len(uniq)
        got = voxels['coors'][start:start + n]
        assert (got[:, 0] == b).all()
        np.testing.assert_array_equal(got[:, 1:].numpy(), uniq)
        np.testing.assert_array_equal(s.point2voxel_map.numpy(), p2v)
        # the voxel's input feature is its first point's
        first = np.array([np.flatnonzero(p2v == v)[0] for v in range(0, n, 997)])
        np.testing.assert_array_equal(voxels['voxels'][start:start + n:997].numpy(),
                                      pts[first].numpy())
        assert int(voxels['num_voxels'][b]) == n
        start += n
    assert start == voxels['coors'].shape[0]


def test_cylindrical_voxels_match_numpy(nuscenes_sweep):
    cfg = _cfg('cylinder3d_student.py')
    points = two_clouds(nuscenes_sweep)
    voxels, samples = _preprocess(cfg, points)
    pcr = np.array(cfg.point_cloud_range, dtype=np.float32)
    size = (pcr[3:] - pcr[:3]) / (np.array(cfg.grid_shape, dtype=np.float32) - 1)
    offset = 0
    for b, (pts, s) in enumerate(zip(points, samples)):
        p = pts.numpy()
        polar = np.stack(
            [np.sqrt(p[:, 0]**2 + p[:, 1]**2), np.arctan2(p[:, 1], p[:, 0]), p[:, 2]], 1)
        cells = (np.clip(polar, pcr[:3], pcr[3:]) - pcr[:3]) / size
        c = np.floor(cells).astype(np.int64)
        got = voxels['coors'][offset:offset + len(p)].numpy()
        mismatch = (got[:, 1:] != c).any(1)
        # torch and numpy round the float32 polar transform differently (their atan2 and sqrt
        # differ by an ulp or two, depending on the CPU's vector unit): a point may change cell
        # only where it lies within that rounding of a cell edge. In cell units the error is
        # below 1e-4 (a few float32 ulps, 6e-8 each, of values up to 480 cells).
        to_edge = np.abs(cells - np.round(cells)).min(1)
        assert (to_edge[mismatch] < 1e-4).all(), (mismatch.sum(), to_edge[mismatch].max())
        assert (np.abs(got[:, 1:] - c) <= 1).all()
        uniq, p2v = _brute_force(got[:, 1:])
        np.testing.assert_array_equal(s.point2voxel_map.numpy(), p2v)
        assert int(voxels['num_voxels'][b]) == len(uniq)
        offset += len(p)


@pytest.mark.parametrize('name,overrides', [
    ('minkunet34_student.py', {}),
    ('cylinder3d_student.py', dict(base_channels=8)),
])
def test_student_forward_backward_on_cpu(nuscenes_sweep, name, overrides):
    torch.manual_seed(0)
    cfg = _cfg(name)
    cfg.model.student.backbone.update(overrides)
    student = MODELS.build(cfg.model.student)
    student.train()
    points = two_clouds(nuscenes_sweep)
    voxels, samples = _preprocess(cfg, points)
    feats = student(voxels, [s.point2voxel_map for s in samples])
    n = sum(len(p) for p in points)
    assert feats.shape == (n, 64)
    assert n == 2 * 34688
    torch.testing.assert_close(feats.norm(dim=1), torch.ones(n), atol=1e-5, rtol=0)
    (feats[:, :8].sum() - feats[:, 8:16].sum()).backward()
    for pname, p in student.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
    assert any(p.grad.abs().sum() > 0 for p in student.backbone.parameters())
