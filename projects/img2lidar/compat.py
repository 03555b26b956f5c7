"""Every fix this project needs for its dependency stack, in one place.

The pinned stack (torch 2.13, mmengine 0.10.7, mmcv 2.1.0, mmdet3d 1.4.0, spconv 2.3.8) breaks on
CPU or on new torch in the ways listed in ``shared/docs/DEPENDENCIES.md``. Each fix below is a
small, idempotent runtime patch applied when :mod:`projects.img2lidar` is imported (configs import
it through ``custom_imports``); nothing in site-packages is edited. Each has a test in
``tests/test_compat.py`` that fails without it.

Fixes:

1. :func:`patch_mmengine_checkpoint_loading` - torch >= 2.6 loads with ``weights_only=True``;
   mmengine 0.10.7 checkpoints hold a few non-tensor objects (``HistoryBuffer``, numpy arrays and
   scalars in the message hub). They are registered as safe globals, so checkpoints load and
   runs resume with torch's safe loader still on.
2. :func:`patch_spconv_cpu` - spconv 2.3.8 computes sparse convolutions on CPU with a
   multi-threaded scatter-add that races (silently wrong rows), asserts in every backward
   (``torch.cuda.current_stream()``) and refuses a bias in eval mode. On CPU tensors the
   gather-GEMM-scatter step is replaced by a pure-torch implementation (``index_add_``) on top of
   spconv's own neighbour tables; autograd provides the backward. CUDA tensors keep spconv's
   kernels.
3. :func:`patch_dynamic_scatter_cpu` - mmcv 2.1.0 has no CPU kernel for
   ``dynamic_point_to_voxel`` (mmcv's ``DynamicScatter``, used by Cylinder3D's ``SegVFE``, and
   mmdet3d's ``dynamic_scatter_3d``). A torch implementation with mmcv's exact semantics (sorted
   unique voxels, points with a negative coordinate dropped, max/sum/mean and their gradients) is
   dispatched for CPU tensors.
4. :func:`patch_cylinder3d_sparse_ops` - mmdet3d's Cylinder3D backbone and head take their sparse
   convolutions from ``mmcv.ops`` (CUDA only). They are rebound to spconv 2 classes that accept
   ``x.features = ...`` and give each submanifold kernel shape its own ``indice_key`` (spconv 2
   requires it; mmcv's GPU path silently reused the first kernel's neighbour table). Weights are
   then in spconv 2 layout on every device, so checkpoints move between CPU and GPU unchanged.
5. :func:`patch_spconv_prefix_loading` - mmdet3d's spconv weight loader transposes weights
   whenever the state dict carries no version metadata, which is always the case when a
   segmentor loads a backbone with ``Pretrained`` and ``prefix``; the version is then inferred
   from the shapes.
6. :func:`patch_mmengine_cpu_launch` - mmengine's pytorch and slurm launchers call
   ``torch.cuda.set_device`` even on CPU-only torch; there it becomes a no-op, so distributed
   runs start with gloo.
"""
from __future__ import annotations

import logging
import pickle
from typing import Any, Optional, Tuple

import torch

logger = logging.getLogger(__name__)

_APPLIED: dict = {}


def _once(name: str) -> bool:
    """Return True the first time ``name`` is seen (makes every patch idempotent)."""
    if _APPLIED.get(name):
        return False
    _APPLIED[name] = True
    return True


# ---------------------------------------------------------------------------------------------
# 1. mmengine checkpoints under torch's weights_only default
# ---------------------------------------------------------------------------------------------
def patch_mmengine_checkpoint_loading() -> None:
    """Register the globals of mmengine checkpoints as safe for ``torch.load(weights_only=True)``.

    An mmengine checkpoint's ``message_hub`` holds :class:`HistoryBuffer` objects whose state
    contains numpy arrays and the buffer's statistics methods, pickled as
    ``getattr(HistoryBuffer, name)``; ``meta`` may hold numpy scalars and, for mmdet3d
    segmentors, the dataset metainfo as a ``ConfigDict``. The arrays and scalars
    are plain data; ``getattr`` is not allowed as such but replaced by a stand-in that only
    returns HistoryBuffer's own methods, so the loader stays safe.
    """
    if not _once('mmengine_checkpoint'):
        return
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:  # torch < 2.4 has no weights_only default to fix
        return
    import numpy as np
    from mmengine.config.config import ConfigDict
    from mmengine.logging.history_buffer import HistoryBuffer

    def history_buffer_getattr(obj: Any, name: str) -> Any:
        """Stands for ``builtins.getattr`` in checkpoints: HistoryBuffer pickles its statistics
        methods as ``getattr(HistoryBuffer, 'mean')``; nothing else may be looked up."""
        if obj is HistoryBuffer and callable(getattr(HistoryBuffer, name, None)):
            return getattr(HistoryBuffer, name)
        raise pickle.UnpicklingError(f'refusing getattr({obj!r}, {name!r}) in a checkpoint')

    # ConfigDict: segmentors' checkpoints keep the dataset metainfo of the config in 'meta'
    safe: list = [HistoryBuffer, ConfigDict, np.ndarray, np.dtype,
                  (history_buffer_getattr, 'builtins.getattr')]
    try:  # numpy >= 1.25 moved the reconstruct helper; both spellings appear in pickles
        from numpy.core.multiarray import _reconstruct, scalar
        safe += [_reconstruct, scalar]
    except ImportError:  # pragma: no cover - numpy 2 layout
        from numpy._core.multiarray import _reconstruct, scalar
        safe += [_reconstruct, scalar]
    # dtype classes (np.dtypes.Float64DType, ...) that numpy >= 1.25 pickles for arrays
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        safe += [
            getattr(dtypes, n) for n in dir(dtypes) if n.endswith('DType')
            and isinstance(getattr(dtypes, n), type)
        ]
    add_safe_globals(safe)


# ---------------------------------------------------------------------------------------------
# 2. spconv 2.3.8 on CPU
# ---------------------------------------------------------------------------------------------
def native_sparse_conv(features: torch.Tensor,
                       weight: torch.Tensor,
                       indice_pairs: torch.Tensor,
                       indice_pair_num: torch.Tensor,
                       num_out: int,
                       inverse: bool = False,
                       subm: bool = False,
                       bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Sparse convolution from spconv's native neighbour tables, in plain torch.

    Args:
        features (Tensor): Input features, shape (N_in, C_in).
        weight (Tensor): spconv 2 weight in KRSC layout, shape (C_out, *kernel, C_in).
        indice_pairs (Tensor): Neighbour table, shape (2, K, P); row 0 holds input indices and
            row 1 output indices of the forward convolution (swapped for an inverse one).
        indice_pair_num (Tensor): Valid pairs per kernel offset, shape (K,).
        num_out (int): Number of output sites.
        inverse (bool): Whether this is the inverse of the convolution that built the table.
        subm (bool): Submanifold convolution (output sites equal input sites).
        bias (Tensor, optional): Bias, shape (C_out,).

    Returns:
        Tensor: Output features, shape (num_out, C_out). Differentiable by autograd.
    """
    c_out = weight.shape[0]
    w = weight.reshape(c_out, -1, weight.shape[-1])  # (C_out, K, C_in)
    kv = w.shape[1]
    center = kv // 2
    counts = indice_pair_num.tolist()
    src_row, dst_row = (1, 0) if inverse else (0, 1)
    if subm:
        # spconv's submanifold tables skip the centre offset (identity pairs) and only count
        # the first half of the offsets; offset k > centre has as many pairs as its mirror.
        out = features @ w[:, center, :].t()
    else:
        out = features.new_zeros((num_out, c_out))
    offsets, srcs, dsts, sizes = [], [], [], []
    for k in range(kv):
        if subm and k == center:
            continue
        n = counts[kv - 1 - k] if subm and k > center else counts[k]
        if n <= 0:
            continue
        offsets.append(k)
        srcs.append(indice_pairs[src_row, k, :n])
        dsts.append(indice_pairs[dst_row, k, :n])
        sizes.append(n)
    if offsets:
        # one gather, one GEMM per kernel offset, one scatter: torch's CPU index_add is
        # correct with any number of threads (spconv's own CPU scatter races)
        gathered = features.index_select(0, torch.cat(srcs).long())
        contrib = torch.cat([
            g @ w[:, k, :].t() for g, k in zip(torch.split(gathered, sizes), offsets)
        ])
        out = out.index_add(0, torch.cat(dsts).long(), contrib)
    if bias is not None:
        out = out + bias
    return out


def patch_spconv_cpu() -> None:
    """Route spconv's native CPU convolutions through :func:`native_sparse_conv`.

    spconv's ``SparseConvolution`` calls ``spconv.pytorch.functional.indice_conv``,
    ``indice_inverse_conv`` and ``indice_subm_conv`` through the module at call time, so
    replacing those three names is enough. CUDA tensors go to the original kernels.
    """
    if not _once('spconv_cpu'):
        return
    try:
        from spconv.pytorch import functional as Fsp
    except ImportError:  # spconv not installed: nothing to fix
        return

    def make(orig, inverse: bool, subm: bool):

        def dispatch(*args, **kwargs):
            # spconv's positional order: features, filters, indice_pairs, indice_pair_num,
            # num_activate_out, algo, timer, bias, act_alpha, act_beta, act_type
            if args[0].is_cuda:
                return orig(*args, **kwargs)
            features, filters, indice_pairs, indice_pair_num, num_out = args[:5]
            bias = args[7] if len(args) > 7 else kwargs.get('bias')
            return native_sparse_conv(features, filters, indice_pairs, indice_pair_num,
                                      int(num_out), inverse=inverse, subm=subm, bias=bias)

        dispatch.__wrapped__ = orig
        return dispatch

    Fsp.indice_conv = make(Fsp.indice_conv, inverse=False, subm=False)
    Fsp.indice_inverse_conv = make(Fsp.indice_inverse_conv, inverse=True, subm=False)
    Fsp.indice_subm_conv = make(Fsp.indice_subm_conv, inverse=False, subm=True)


# ---------------------------------------------------------------------------------------------
# 3. mmcv dynamic scatter on CPU
# ---------------------------------------------------------------------------------------------
def dynamic_point_to_voxel_forward(
        feats: torch.Tensor, coors: torch.Tensor,
        reduce_type: str) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Torch version of mmcv's ``dynamic_point_to_voxel_forward`` kernel.

    Args:
        feats (Tensor): Point features, shape (N, C).
        coors (Tensor): Integer voxel coordinates, shape (N, ndim); a point with any negative
            coordinate belongs to no voxel.
        reduce_type (str): 'max', 'sum' or 'mean'.

    Returns:
        tuple: voxel features (M, C), voxel coordinates (M, ndim) sorted lexicographically
        (as ``torch.unique(dim=0)``), the point-to-voxel map (N,) int32 with -1 for dropped
        points, and the number of points per voxel (M,) int32.
    """
    if reduce_type not in ('max', 'sum', 'mean'):
        raise ValueError(f'reduce_type must be max, sum or mean, got {reduce_type!r}')
    invalid = (coors < 0).any(dim=-1, keepdim=True)
    coors_clean = coors.masked_fill(invalid, -1)
    out_coors, coors_map, counts = torch.unique(
        coors_clean, dim=0, sorted=True, return_inverse=True, return_counts=True)
    if out_coors.shape[0] > 0 and bool(out_coors[0, 0] < 0):
        out_coors, counts, coors_map = out_coors[1:], counts[1:], coors_map - 1
    num_voxels, num_feats = out_coors.shape[0], feats.shape[1]
    valid = coors_map >= 0
    idx = coors_map[valid].long()
    src = feats[valid]
    if reduce_type == 'max':
        reduced = feats.new_full((num_voxels, num_feats), float('-inf'))
        reduced = reduced.scatter_reduce(0, idx[:, None].expand_as(src), src, 'amax',
                                         include_self=True)
    else:
        reduced = feats.new_zeros((num_voxels, num_feats)).index_add(0, idx, src)
        if reduce_type == 'mean':
            reduced = reduced / counts.to(feats.dtype)[:, None]
    return reduced, out_coors.to(coors.dtype), coors_map.int(), counts.int()


def dynamic_point_to_voxel_backward(grad_feats: torch.Tensor, grad_reduced: torch.Tensor,
                                    feats: torch.Tensor, reduced: torch.Tensor,
                                    coors_map: torch.Tensor, counts: torch.Tensor,
                                    reduce_type: str) -> None:
    """Torch version of mmcv's ``dynamic_point_to_voxel_backward``; fills ``grad_feats``.

    For 'max' the gradient of a voxel channel goes to the lowest-index point that attains the
    maximum (mmcv's rule); for 'sum' and 'mean' to every point of the voxel.
    """
    valid = coors_map >= 0
    idx = coors_map.long().clamp(min=0)
    if reduce_type in ('sum', 'mean'):
        g = grad_reduced[idx]
        if reduce_type == 'mean':
            g = g / counts.to(g.dtype)[idx][:, None]
        grad_feats.copy_(torch.where(valid[:, None], g, torch.zeros_like(g)))
        return
    n = feats.shape[0]
    is_max = (feats == reduced[idx]) & valid[:, None]
    point_ids = torch.arange(n, device=feats.device)[:, None].expand_as(feats)
    big = torch.full_like(point_ids, n)
    cand = torch.where(is_max, point_ids, big)
    first = torch.full_like(reduced, n, dtype=torch.long).scatter_reduce(
        0, idx[:, None].expand_as(cand), cand, 'amin', include_self=True)
    winner = (point_ids == first[idx]) & is_max
    grad_feats.copy_(torch.where(winner, grad_reduced[idx], torch.zeros_like(feats)))


def patch_dynamic_scatter_cpu() -> None:
    """Dispatch mmcv's ``dynamic_point_to_voxel`` kernels to torch for CPU tensors.

    Both mmcv's ``DynamicScatter`` and mmdet3d's ``dynamic_scatter_3d`` call these two functions
    of the compiled ``mmcv._ext`` module at run time, so patching the module covers both.
    """
    if not _once('dynamic_scatter'):
        return
    try:
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['dynamic_point_to_voxel_forward',
                                           'dynamic_point_to_voxel_backward'])
    except (ImportError, AssertionError):  # mmcv without ops: nothing to patch
        return
    orig_fwd = ext.dynamic_point_to_voxel_forward
    orig_bwd = ext.dynamic_point_to_voxel_backward

    def forward(feats, coors, reduce_type='max'):
        if feats.is_cuda:
            return orig_fwd(feats, coors, reduce_type)
        return list(dynamic_point_to_voxel_forward(feats, coors, reduce_type))

    def backward(grad_feats, grad_reduced, feats, reduced, coors_map, counts,
                 reduce_type='max'):
        if feats.is_cuda:
            return orig_bwd(grad_feats, grad_reduced, feats, reduced, coors_map, counts,
                            reduce_type)
        dynamic_point_to_voxel_backward(grad_feats, grad_reduced, feats, reduced, coors_map,
                                        counts, reduce_type)

    ext.dynamic_point_to_voxel_forward = forward
    ext.dynamic_point_to_voxel_backward = backward


# ---------------------------------------------------------------------------------------------
# 4. Cylinder3D's mmcv sparse convolutions
# ---------------------------------------------------------------------------------------------
def _mutable_sparse_classes():
    """Build spconv 2 classes that behave like mmcv's for Cylinder3D's code."""
    import spconv.pytorch as spconv

    class MutableSparseConvTensor(spconv.SparseConvTensor):
        """spconv 2 tensor whose ``features`` may be assigned (mmcv style)."""

        @property
        def features(self) -> torch.Tensor:
            return self._features

        @features.setter
        def features(self, value: torch.Tensor) -> None:
            self._features = value

    def as_mutable(x: Any) -> Any:
        if isinstance(x, spconv.SparseConvTensor) and not isinstance(x, MutableSparseConvTensor):
            x.__class__ = MutableSparseConvTensor
        return x

    class SubMConv3d(spconv.SubMConv3d):
        """spconv 2 ``SubMConv3d`` with one neighbour table per kernel shape.

        ``indice_key`` gets the kernel shape appended, so convolutions of different shapes that
        mmcv-era code gives one key no longer share (and silently misuse) a neighbour table.
        """

        def __init__(self, *args, indice_key: Optional[str] = None, **kwargs) -> None:
            super().__init__(*args, indice_key=indice_key, **kwargs)
            if indice_key is not None:
                self.indice_key = f"{indice_key}_k{'x'.join(map(str, self.kernel_size))}"

        def forward(self, input, add_input=None):  # noqa: A002 - spconv's signature
            return as_mutable(super().forward(as_mutable(input), add_input))

    class SparseConv3d(spconv.SparseConv3d):

        def forward(self, input, add_input=None):  # noqa: A002
            return as_mutable(super().forward(as_mutable(input), add_input))

    class SparseInverseConv3d(spconv.SparseInverseConv3d):

        def forward(self, input, add_input=None):  # noqa: A002
            return as_mutable(super().forward(as_mutable(input), add_input))

    return MutableSparseConvTensor, SubMConv3d, SparseConv3d, SparseInverseConv3d


def patch_cylinder3d_sparse_ops() -> None:
    """Rebind the sparse ops of mmdet3d's Cylinder3D backbone and head to spconv 2."""
    if not _once('cylinder3d'):
        return
    try:
        import spconv.pytorch  # noqa: F401
    except ImportError:
        logger.warning('spconv is not installed: Cylinder3D keeps mmcv sparse ops (CUDA only)')
        return
    import mmdet3d.models.layers.spconv  # noqa: F401  registers spconv 2 weight loading
    from mmdet3d.models.backbones import cylinder3d
    from mmdet3d.models.decode_heads import cylinder3d_head
    tensor_cls, subm, conv, inverse = _mutable_sparse_classes()
    for module in (cylinder3d, cylinder3d_head):
        for name, cls in (('SparseConvTensor', tensor_cls), ('SubMConv3d', subm),
                          ('SparseConv3d', conv), ('SparseInverseConv3d', inverse)):
            if hasattr(module, name):
                setattr(module, name, cls)


# ---------------------------------------------------------------------------------------------
# 5. spconv 2 weights loaded with a prefix
# ---------------------------------------------------------------------------------------------
def patch_spconv_prefix_loading() -> None:
    """Do not transpose spconv 2 weights that are already in spconv 2 layout.

    mmdet3d replaces spconv's ``SparseModule._load_from_state_dict`` so that mmcv (spconv 1)
    checkpoints load: it permutes every weight unless the state dict's metadata says version
    2. ``init_cfg=dict(type='Pretrained', prefix='backbone.')`` strips the metadata, so spconv 2
    weights were permuted into the wrong layout. With the version missing, the version is now
    inferred from the shapes: weights whose shapes already match are spconv 2.
    """
    if not _once('spconv_prefix_loading'):
        return
    try:
        import mmdet3d.models.layers.spconv  # noqa: F401  installs mmdet3d's loader
        from spconv.pytorch import SparseModule
    except ImportError:
        return
    orig = SparseModule._load_from_state_dict

    def load(self, state_dict, prefix, local_metadata, *args, **kwargs):
        if local_metadata.get('version') is None:
            own = dict(self.named_parameters(recurse=False))
            given = [(state_dict[prefix + n], p) for n, p in own.items()
                     if prefix + n in state_dict]
            if given and all(v.shape == p.shape for v, p in given):
                local_metadata = dict(local_metadata, version=2)
        return orig(self, state_dict, prefix, local_metadata, *args, **kwargs)

    load.__wrapped__ = orig
    SparseModule._load_from_state_dict = load


# ---------------------------------------------------------------------------------------------
# 6. mmengine's distributed launchers on machines without CUDA
# ---------------------------------------------------------------------------------------------
def patch_mmengine_cpu_launch() -> None:
    """Let ``--launcher pytorch`` / ``slurm`` start gloo processes on CPU-only machines.

    mmengine's ``_init_dist_pytorch`` and ``_init_dist_slurm`` call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which raises AttributeError on CPU
    builds of torch. Without CUDA, ``set_device`` as seen by mmengine's launcher module becomes
    a no-op; with CUDA nothing changes.
    """
    if not _once('mmengine_cpu_launch') or torch.cuda.is_available():
        return
    import types

    from mmengine.dist import utils as dist_utils

    class _CudaWithoutDevices(types.ModuleType):
        """``torch.cuda`` whose ``set_device`` does nothing (no device to select)."""

        def __getattr__(self, name):
            return getattr(torch.cuda, name)

        @staticmethod
        def set_device(device) -> None:  # noqa: D401
            return None

    class _TorchForLaunch(types.ModuleType):

        cuda = _CudaWithoutDevices('torch.cuda')

        def __getattr__(self, name):
            return getattr(torch, name)

    dist_utils.torch = _TorchForLaunch('torch')


def apply_all() -> None:
    """Apply every fix of this module (idempotent)."""
    patch_mmengine_cpu_launch()
    patch_mmengine_checkpoint_loading()
    patch_spconv_cpu()
    patch_dynamic_scatter_cpu()
    patch_cylinder3d_sparse_ops()
    patch_spconv_prefix_loading()
