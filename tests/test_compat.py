"""Tests of projects/img2lidar/compat.py and its kernels (projects/img2lidar/ops): each patch's
tests fail without it (shown by ``test_each_patch_is_needed``)."""
import copy
import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import (REPO_ROOT, assert_same_vjp, at_sites, dense_weight, free_port,
                      random_sparse, to_dense)
from projects.img2lidar import compat

spconv = pytest.importorskip('spconv.pytorch')


@pytest.fixture
def many_threads():
    """spconv's CPU scatter raced with more than one thread: test with several."""
    old = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize('kernel', [(3, 3, 3), (1, 3, 3), (3, 1, 3)])
def test_submanifold_conv_matches_dense(many_threads, kernel):
    indices, feats, shape = random_sparse()
    conv = spconv.SubMConv3d(5, 7, kernel, padding=tuple(k // 2 for k in kernel), bias=True,
                             indice_key='k').double()
    feats.requires_grad_(True)
    x = spconv.SparseConvTensor(feats, indices, shape, 2)
    out = conv(x)
    assert torch.equal(out.indices, indices)
    w = conv.weight.detach().clone().requires_grad_(True)
    b = conv.bias.detach().clone().requires_grad_(True)
    dense_in = to_dense(indices, feats, shape, 2)
    ref = at_sites(F.conv3d(dense_in, dense_weight(w), b, padding=tuple(k // 2 for k in kernel)),
              indices)
    torch.testing.assert_close(out.features, ref, atol=1e-4, rtol=0)
    # backward: same gradients for input features and weights
    assert_same_vjp(out.features, ref, [feats, conv.weight, conv.bias], [feats, w, b],
                    atol=1e-4, rtol=0)


def test_strided_and_inverse_conv_match_dense(many_threads):
    indices, feats, shape = random_sparse(shape=(10, 12, 8))
    down = spconv.SparseConv3d(5, 6, 2, stride=2, bias=False, indice_key='d').double()
    up = spconv.SparseInverseConv3d(6, 4, 2, indice_key='d', bias=False).double()
    feats.requires_grad_(True)
    x = spconv.SparseConvTensor(feats, indices, shape, 2)
    y = down(x)
    z = up(y)
    wd = down.weight.detach().clone().requires_grad_(True)
    wu = up.weight.detach().clone().requires_grad_(True)
    dense_in = to_dense(indices, feats, shape, 2)
    dense_y = F.conv3d(dense_in, dense_weight(wd), stride=2)
    torch.testing.assert_close(y.dense(), dense_y, atol=1e-4, rtol=0)
    # inverse conv = transposed conv read at the input sites of the strided conv
    dense_z = F.conv_transpose3d(dense_y, wu.permute(4, 0, 1, 2, 3), stride=2)
    assert torch.equal(z.indices, indices)
    ref = at_sites(dense_z, indices)
    torch.testing.assert_close(z.features, ref, atol=1e-4, rtol=0)
    assert_same_vjp(z.features, ref, [feats, down.weight, up.weight], [feats, wd, wu],
                    atol=1e-4, rtol=0)


def test_eval_mode_conv_with_bias_runs_on_cpu():
    indices, feats, shape = random_sparse(channels=3)
    conv = spconv.SubMConv3d(3, 4, 3, padding=1, bias=True, indice_key='e').double().eval()
    out = conv(spconv.SparseConvTensor(feats, indices, shape, 2))
    dense = to_dense(indices, feats, shape, 2)
    ref = at_sites(F.conv3d(dense, dense_weight(conv.weight), conv.bias, padding=1), indices)
    torch.testing.assert_close(out.features, ref.detach(), atol=1e-4, rtol=0)


def _scatter_loop(feats, coors, reduce):
    """Reference: a Python loop over the voxels, mmcv's semantics."""
    keep = (coors >= 0).all(1)
    uniq = sorted({tuple(c) for c in coors[keep].tolist()})
    rows = []
    for c in uniq:
        m = keep & (coors == torch.tensor(c, dtype=coors.dtype)).all(1)
        f = feats[m]
        rows.append({'max': f.max(0).values, 'sum': f.sum(0), 'mean': f.mean(0)}[reduce])
    return torch.stack(rows), torch.tensor(uniq, dtype=coors.dtype)


@pytest.mark.parametrize('reduce', ['max', 'sum', 'mean'])
def test_dynamic_scatter_matches_loop(reduce):
    from mmcv.ops import dynamic_scatter
    g = torch.Generator().manual_seed(1)
    coors = torch.randint(0, 4, (300, 3), generator=g).int()
    coors[::17, 1] = -1  # points outside the grid belong to no voxel
    feats = torch.randn(300, 6, generator=g, dtype=torch.float64, requires_grad=True)
    out, out_coors = dynamic_scatter(feats, coors, reduce)
    ref, ref_coors = _scatter_loop(feats, coors, reduce)
    assert torch.equal(out_coors, ref_coors)
    torch.testing.assert_close(out, ref)
    assert_same_vjp(out, ref, [feats], [feats])


def test_mmdet3d_dynamic_scatter_3d_returns_point_map():
    from mmdet3d.models.data_preprocessors.voxelize import dynamic_scatter_3d
    coors = torch.tensor([[2, 0, 1], [0, 0, 0], [2, 0, 1], [1, 1, 1]], dtype=torch.int32)
    feats = torch.tensor([[1.], [2.], [3.], [4.]])
    out, out_coors, p2v = dynamic_scatter_3d(feats, coors, 'mean', True)
    assert out_coors.tolist() == [[0, 0, 0], [1, 1, 1], [2, 0, 1]]
    assert out.flatten().tolist() == [2., 4., 2.]
    assert p2v.tolist() == [2, 0, 2, 1]


def test_cylinder3d_uses_spconv2_with_distinct_subm_keys():
    from mmdet3d.models.backbones import cylinder3d
    block = cylinder3d.AsymmResBlock(4, 4, norm_cfg=dict(type='BN1d'), indice_key='r')
    keys = {block.conv0_0.indice_key, block.conv0_1.indice_key}
    assert keys == {'rbef_k1x3x3', 'rbef_k3x1x3'}
    assert isinstance(block.conv0_0, spconv.SubMConv3d)


def test_submanifold_forward_has_no_thread_race(many_threads):
    """Without the fix, spconv's CPU scatter returned wrong rows (errors ~0.4-0.7) in about
    half of these runs with 4 threads."""
    errors = []
    for seed in range(5):
        indices, feats, shape = random_sparse(sites=2000, shape=(20, 20, 20), channels=32,
                                               seed=seed)
        feats = feats.float()
        conv = spconv.SubMConv3d(32, 32, 3, padding=1, bias=False, indice_key='k')
        with torch.no_grad():
            out = conv(spconv.SparseConvTensor(feats, indices, shape, 2))
            ref = at_sites(F.conv3d(to_dense(indices, feats, shape, 2), dense_weight(conv.weight),
                               padding=1), indices)
        errors.append((out.features - ref).abs().max().item())
    assert max(errors) < 1e-4, errors


def test_spconv2_weights_load_with_a_prefix(tmp_path):
    """``Pretrained`` with ``prefix`` drops the version metadata; weights must not be
    transposed into mmcv's layout (they were, before the fix: 'size mismatch')."""
    from mmdet3d.registry import MODELS
    from mmengine.runner.checkpoint import _load_checkpoint_with_prefix, load_state_dict
    cfg = dict(type='MinkUNetBackbone', in_channels=4, base_channels=8, num_stages=2,
               encoder_channels=[8, 16], encoder_blocks=[1, 1], decoder_channels=[16, 8],
               decoder_blocks=[1, 1], sparseconv_backend='spconv')
    src = MODELS.build(copy.deepcopy(cfg))  # the backbone edits its list arguments
    torch.save({'state_dict': {'backbone.' + k: v for k, v in src.state_dict().items()}},
               tmp_path / 'ckpt.pth')
    dst = MODELS.build(copy.deepcopy(cfg))
    load_state_dict(dst, _load_checkpoint_with_prefix('backbone.', str(tmp_path / 'ckpt.pth')),
                    strict=True)
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k


def test_segmentor_checkpoint_meta_loads_with_weights_only(tmp_path):
    """mmdet3d segmentors keep the dataset metainfo (a ConfigDict) in the checkpoint meta."""
    from mmengine.config import ConfigDict
    meta = dict(dataset_meta=ConfigDict(classes=('car', 'road'), seg_label_mapping={0: 1}))
    torch.save({'meta': meta, 'state_dict': {'w': torch.ones(2)}}, tmp_path / 'seg.pth')
    loaded = torch.load(tmp_path / 'seg.pth')  # torch's default: weights_only=True
    assert loaded['meta']['dataset_meta']['classes'] == ('car', 'road')
    assert isinstance(loaded['meta']['dataset_meta'], ConfigDict)


def test_mmengine_launcher_starts_without_cuda(tmp_path):
    """mmengine's pytorch launcher (what tools/dist_train.sh uses) starts a gloo process on a
    machine without CUDA."""
    if torch.cuda.is_available():
        pytest.skip('the breakage only exists without CUDA')
    code = ('import projects.img2lidar\n'
            'from mmengine.dist import init_dist, get_world_size\n'
            "init_dist('pytorch', backend='gloo')\n"
            'print("world", get_world_size())\n')
    env = dict(os.environ, RANK='0', LOCAL_RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
               MASTER_PORT=str(free_port()), PYTHONPATH=str(REPO_ROOT))
    res = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and 'world 1' in res.stdout, res.stderr[-2000:]


def test_only_rank_0_writes_the_test_metrics_json(tmp_path, monkeypatch):
    """mmengine's LoggerHook writes ``<log_dir>/<timestamp>.json`` after a test epoch; the
    ranks share the folder, so a rank other than 0 must leave the file alone (two ranks writing
    it left ``{...}}`` in a dist_test.sh run) and still log the metrics line."""
    from types import SimpleNamespace

    import mmengine.dist.utils as dist_utils
    from mmengine.hooks import LoggerHook

    lines = []
    runner = SimpleNamespace(
        log_dir=str(tmp_path), test_dataloader=[0, 1],
        log_processor=SimpleNamespace(get_log_after_epoch=lambda *a, **k: (
            {'structural_gap/gap_intra': 0.05}, 'test line')),
        logger=SimpleNamespace(info=lines.append))
    hook = LoggerHook()
    hook.json_log_path = 'metrics.json'
    monkeypatch.setattr(dist_utils, 'get_rank', lambda group=None: 1)
    hook.after_test_epoch(runner, metrics={'structural_gap/gap_intra': 0.05})
    assert lines == ['test line'] and not (tmp_path / 'metrics.json').exists()
    monkeypatch.setattr(dist_utils, 'get_rank', lambda group=None: 0)
    hook.after_test_epoch(runner, metrics={'structural_gap/gap_intra': 0.05})
    with open(tmp_path / 'metrics.json') as f:
        assert json.load(f) == {'structural_gap/gap_intra': 0.05}


#: the tests that show each patch is needed
PATCH_TESTS = {
    'mmengine_checkpoint': ['tests/test_compat.py::test_segmentor_checkpoint_meta_loads_with_'
                            'weights_only', 'tests/test_runner_resume.py'],
    'spconv_cpu': ['tests/test_compat.py::test_strided_and_inverse_conv_match_dense',
                   'tests/test_compat.py::test_eval_mode_conv_with_bias_runs_on_cpu'],
    'dynamic_scatter_cpu': ['tests/test_compat.py::test_dynamic_scatter_matches_loop'],
    'cylinder3d_sparse_ops': ['tests/test_compat.py::test_cylinder3d_uses_spconv2_with_distinct_'
                              'subm_keys'],
    'spconv_prefix_loading': ['tests/test_compat.py::test_spconv2_weights_load_with_a_prefix'],
    'mmengine_cpu_launch': ['tests/test_compat.py::test_mmengine_launcher_starts_without_cuda'],
    'mmengine_test_json_rank0': ['tests/test_compat.py::test_only_rank_0_writes_the_test_'
                                 'metrics_json'],
}


def test_every_patch_has_tests():
    assert sorted(PATCH_TESTS) == sorted(p.name for p in compat.PATCHES)
    assert compat.APPLIED == [p.name for p in compat.PATCHES]  # the pinned stack needs all


@pytest.mark.skipif(os.environ.get(compat.DISABLE_ENV), reason='already inside a check')
@pytest.mark.parametrize('name', sorted(PATCH_TESTS))
def test_each_patch_is_needed(name):
    """With the patch disabled, its tests fail (and they pass with it: the rest of the suite);
    a failure to even collect them would not count."""
    if name == 'mmengine_cpu_launch' and torch.cuda.is_available():
        pytest.skip('the breakage only exists without CUDA')
    res = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
                          *PATCH_TESTS[name]], cwd=REPO_ROOT, capture_output=True, text=True,
                         env=dict(os.environ, **{compat.DISABLE_ENV: name}), timeout=600)
    summary = res.stdout.strip().splitlines()[-1]
    assert res.returncode == 1 and ' failed' in summary and 'error' not in summary, \
        res.stdout[-3000:]
