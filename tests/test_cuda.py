"""The CUDA path: spconv's own CUDA kernels against a dense conv3d, the students on CUDA
against the CPU path (this project's native sparse convolution), forward and backward, and
mmcv's dynamic scatter on CUDA (mmcv's CUDA kernel, or the project's torch kernel where mmcv is
built with CPU ops only) against the CPU path and, where both exist, against each other.
(The whole distiller step on CUDA against the CPU: ``tools/gpu_step_check.py``.)

These run wherever CUDA is present and are skipped, with that reason, elsewhere. TF32 is turned
off so that float32 products are float32 on both sides.
"""
import copy

import pytest
import torch
import torch.nn.functional as F
from mmdet3d.registry import MODELS
from mmdet3d.structures import Det3DDataSample
from mmengine.config import Config

from conftest import (REPO_ROOT, assert_same_vjp, at_sites, dense_weight, random_sparse,
                      to_dense, two_clouds)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
spconv = pytest.importorskip('spconv.pytorch')


@pytest.fixture(autouse=True)
def no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _sparse_input(shape=(24, 24, 16)):
    return random_sparse(shape=shape, sites=1500, channels=8, dtype=torch.float32,
                         device='cuda')


@pytest.mark.parametrize('kernel', [(3, 3, 3), (1, 3, 3), (3, 1, 3)])
def test_cuda_submanifold_conv_matches_dense(kernel):
    indices, feats, shape = _sparse_input()
    pad = tuple(k // 2 for k in kernel)
    conv = spconv.SubMConv3d(8, 16, kernel, padding=pad, bias=True, indice_key='k').cuda()
    feats.requires_grad_(True)
    out = conv(spconv.SparseConvTensor(feats, indices, shape, 2))
    w = conv.weight.detach().clone().requires_grad_(True)
    b = conv.bias.detach().clone().requires_grad_(True)
    dense = to_dense(indices, feats, shape)
    ref = at_sites(F.conv3d(dense, dense_weight(w), b, padding=pad), indices)
    torch.testing.assert_close(out.features, ref, atol=1e-4, rtol=1e-4)
    assert_same_vjp(out.features, ref, [feats, conv.weight, conv.bias], [feats, w, b],
                    atol=1e-4, rtol=1e-4)


def test_cuda_strided_and_inverse_conv_match_dense():
    indices, feats, shape = _sparse_input(shape=(24, 24, 16))
    down = spconv.SparseConv3d(8, 12, 2, stride=2, bias=False, indice_key='d').cuda()
    up = spconv.SparseInverseConv3d(12, 6, 2, indice_key='d', bias=False).cuda()
    feats.requires_grad_(True)
    y = down(spconv.SparseConvTensor(feats, indices, shape, 2))
    z = up(y)
    wd = down.weight.detach().clone().requires_grad_(True)
    wu = up.weight.detach().clone().requires_grad_(True)
    dense_y = F.conv3d(to_dense(indices, feats, shape), dense_weight(wd), stride=2)
    torch.testing.assert_close(y.dense(), dense_y, atol=1e-4, rtol=1e-4)
    ref = at_sites(F.conv_transpose3d(dense_y, wu.permute(4, 0, 1, 2, 3), stride=2), indices)
    torch.testing.assert_close(z.features, ref, atol=1e-4, rtol=1e-4)
    assert_same_vjp(z.features, ref, [feats, down.weight, up.weight], [feats, wd, wu],
                    atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('name,overrides', [('minkunet34_student.py', {}),
                                            ('cylinder3d_student.py', dict(base_channels=8))])
def test_students_on_cuda_equal_the_cpu_path(nuscenes_sweep, name, overrides):
    """The same weights and clouds: spconv's CUDA kernels give the features and gradients of
    the CPU path (native sparse convolution on spconv's neighbour tables) to 1e-4."""
    cfg = Config.fromfile(str(REPO_ROOT / 'configs' / '_base_' / 'models' / name))
    cfg.model.student.backbone.update(overrides)
    torch.manual_seed(0)
    cpu = MODELS.build(cfg.model.student).eval()
    gpu = copy.deepcopy(cpu).cuda().eval()
    results = []
    for student, device in ((cpu, 'cpu'), (gpu, 'cuda')):
        pre = MODELS.build(cfg.model.data_preprocessor).to(device)
        points = [p.to(device) for p in two_clouds(nuscenes_sweep)]
        samples = [Det3DDataSample() for _ in points]
        data = pre(dict(inputs=dict(points=points), data_samples=samples), False)
        feats = student(data['inputs']['voxels'], [s.point2voxel_map for s in
                                                   data['data_samples']])
        probe = torch.linspace(-1, 1, feats.numel(), device=device).view_as(feats)
        (feats * probe).sum().backward()
        grads = {n: p.grad.detach().cpu() for n, p in student.named_parameters()}
        results.append((feats.detach().cpu(), grads))
    (f_cpu, g_cpu), (f_gpu, g_gpu) = results
    torch.testing.assert_close(f_gpu, f_cpu, atol=1e-4, rtol=1e-4)
    for n in g_cpu:  # 1e-4 relative to each gradient's largest entry
        scale = float(g_cpu[n].abs().max())
        torch.testing.assert_close(g_gpu[n], g_cpu[n], rtol=1e-4, atol=1e-4 * max(scale, 1e-6),
                                   msg=n)


# --- mmcv kernels on CUDA: routed to the project's torch kernels where mmcv has none ---------
def _scatter_input(seed: int = 0, n: int = 3000):
    g = torch.Generator().manual_seed(seed)
    coors = torch.randint(0, 12, (n, 3), generator=g).int()
    coors[::29, 0] = -1  # points outside the grid belong to no voxel
    feats = torch.randn(n, 16, generator=g)
    return feats, coors


def _mmcv_has_cuda_ops() -> bool:
    from mmcv.utils import ext_loader
    ext = ext_loader.load_ext('_ext', ['get_compiling_cuda_version'])
    return ext.get_compiling_cuda_version() != 'not available'


def test_routing_on_cuda_matches_the_mmcv_build():
    """The capability probe finds mmcv's CUDA kernel exactly when mmcv was built with CUDA."""
    from projects.img2lidar import compat
    compat.mmcv_kernel_available.cache_clear()
    assert compat.mmcv_kernel_available('dynamic_point_to_voxel_forward', 'cuda') == \
        _mmcv_has_cuda_ops()


@pytest.mark.parametrize('reduce', ['max', 'sum', 'mean'])
def test_dynamic_scatter_on_cuda_equals_the_cpu_path(reduce):
    """mmcv.ops.dynamic_scatter (as Cylinder3D's SegVFE calls it) on CUDA, with whichever kernel
    serves CUDA here, gives the CPU result (the project's torch kernel), forward and backward."""
    from mmcv.ops import dynamic_scatter
    feats, coors = _scatter_input()
    probe = None
    results = []
    for device in ('cpu', 'cuda'):
        f = feats.to(device).requires_grad_(True)
        out, out_coors = dynamic_scatter(f, coors.to(device), reduce)
        if probe is None:
            probe = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        grad, = torch.autograd.grad((out * probe.to(device)).sum(), f)
        results.append((out.detach().cpu(), out_coors.cpu(), grad.cpu()))
    (o_cpu, c_cpu, g_cpu), (o_gpu, c_gpu, g_gpu) = results
    assert torch.equal(c_gpu, c_cpu)
    torch.testing.assert_close(o_gpu, o_cpu, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_gpu, g_cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('reduce', ['max', 'sum', 'mean'])
def test_torch_scatter_kernel_equals_mmcv_cuda_kernel(reduce):
    """Where mmcv has its CUDA kernel, the project's torch kernel on CUDA gives the same voxels,
    point map, counts, values and gradients."""
    if not _mmcv_has_cuda_ops():
        pytest.skip('mmcv is built with CPU ops only: its CUDA kernel does not exist here')
    from projects.img2lidar import compat, ops
    feats, coors = _scatter_input(seed=2)
    feats, coors = feats.cuda(), coors.cuda()
    fwd = compat.MMCV_ORIGINALS['dynamic_point_to_voxel_forward']
    bwd = compat.MMCV_ORIGINALS['dynamic_point_to_voxel_backward']
    ref = fwd(feats, coors, reduce)
    got = ops.dynamic_point_to_voxel_forward(feats, coors, reduce)
    for name, a, b in zip(('voxel feats', 'voxel coors', 'point map', 'counts'), got, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5, msg=name)
    grad_reduced = torch.randn_like(ref[0])
    grad_ref, grad_got = torch.zeros_like(feats), torch.zeros_like(feats)
    bwd(grad_ref, grad_reduced.contiguous(), feats, ref[0], ref[2], ref[3], reduce)
    ops.dynamic_point_to_voxel_backward(grad_got, grad_reduced, feats, got[0], got[2], got[3],
                                        reduce)
    torch.testing.assert_close(grad_got, grad_ref, atol=1e-5, rtol=1e-5)
