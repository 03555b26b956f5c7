"""The fixes this project needs for its dependency stack: version-targeted runtime patches.

The pinned stack (torch 2.13, mmengine 0.10.7, mmcv 2.1.0, mmdet3d 1.4.0, spconv 2.3.8) breaks on
CPU or on new torch in the ways listed in ``docs/dependencies.md`` (section 3). Each fix is a
:class:`Patch` in :data:`PATCHES`: it names the installed versions it fixes, and
:func:`apply_all` (run when :mod:`projects.img2lidar` is imported, e.g. by a config's
``custom_imports``) applies it only when those versions are installed; otherwise it logs one
line saying so. Nothing in site-packages is edited. The kernels some patches route to live in
:mod:`projects.img2lidar.ops`.

``IMG2LIDAR_DISABLE_PATCHES=name1,name2`` (or ``all``) leaves patches out, so that the suite can
show every patch's tests fail without it (``tests/test_compat.py``).

=========================  =====================================================================
patch                      fixes
=========================  =====================================================================
mmengine_checkpoint        torch >= 2.6 loads with ``weights_only=True``; mmengine <= 0.10.7
                           checkpoints hold ``HistoryBuffer``, numpy arrays/scalars, a
                           ``ConfigDict`` and ``getattr``: registered as safe globals (``getattr``
                           by a stand-in that only returns HistoryBuffer's methods).
spconv_cpu                 spconv 2.3.x on CPU: racing multi-thread scatter (silently wrong
                           rows), asserting backward and eval-mode bias: CPU tensors go to
                           :func:`ops.native_sparse_conv` on spconv's own neighbour tables.
dynamic_scatter_cpu        mmcv < 2.2 has no CPU ``dynamic_point_to_voxel``, and an mmcv built
                           with CPU ops only has no CUDA one: tensors on a device that mmcv has
                           no kernel for (probed once per device type) go to
                           :mod:`ops.dynamic_scatter` (mmcv's exact semantics, any device).
cylinder3d_sparse_ops      mmdet3d's Cylinder3D takes CUDA-only ``mmcv.ops`` sparse convolutions:
                           rebound to spconv 2 classes that accept ``x.features = ...`` and give
                           each submanifold kernel shape its own ``indice_key``.
spconv_prefix_loading      mmdet3d's spconv weight loader transposes spconv 2 weights loaded with
                           ``Pretrained(prefix=...)`` (no version metadata): the layout is inferred
                           from the shapes.
mmengine_cpu_launch        mmengine's pytorch / slurm launchers call ``torch.cuda.set_device`` on
                           CPU-only machines: a no-op there, so gloo runs start.
mmengine_test_json_rank0   mmengine <= 0.10.7's ``LoggerHook.after_test_epoch`` writes the test
                           metrics JSON from every rank into the one shared log folder, so a
                           distributed test can leave a corrupted file: only rank 0 writes it.
=========================  =====================================================================
"""
from __future__ import annotations

import functools
import logging
import os
import pickle
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from . import ops

logger = logging.getLogger(__name__)

#: names of the patches applied in this process
APPLIED: List[str] = []
DISABLE_ENV = 'IMG2LIDAR_DISABLE_PATCHES'


@dataclass(frozen=True)
class Patch:
    """A runtime fix of one dependency breakage.

    Attributes:
        name (str): Short name (used by ``IMG2LIDAR_DISABLE_PATCHES``).
        requires (dict[str, str]): Installed package -> version specifier that the breakage
            is known for (PEP 440, e.g. ``'>=2.3,<2.4'``); the patch is applied only when every
            one matches.
        apply (Callable[[], None]): Applies the fix.
    """
    name: str
    requires: Dict[str, str]
    apply: Callable[[], None]


def installed_version(package: str) -> Optional[str]:
    """The installed version of ``package``, or None.

    ``spconv`` matches any of its builds (``spconv``, ``spconv-cu120``, ``spconv-cu126``...).
    """
    import importlib.metadata as md
    names = [package]
    if package == 'spconv':
        names += sorted({d.metadata['Name'] for d in md.distributions()
                         if (d.metadata['Name'] or '').lower().startswith('spconv-cu')})
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            continue
    return None


def mismatches(patch: Patch) -> List[str]:
    """The requirements of ``patch`` that the installed versions do not meet."""
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version
    bad = []
    for package, spec in patch.requires.items():
        version = installed_version(package)
        if version is None:
            bad.append(f'{package} is not installed')
        elif Version(version.split('+')[0]) not in SpecifierSet(spec):
            bad.append(f'{package} {version} is not {spec}')
    return bad


# ---------------------------------------------------------------------------------------------
# the patches
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
    add_safe_globals = torch.serialization.add_safe_globals
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


def patch_spconv_cpu() -> None:
    """Route spconv's native CPU convolutions through :func:`ops.native_sparse_conv`.

    spconv's ``SparseConvolution`` calls ``spconv.pytorch.functional.indice_conv``,
    ``indice_inverse_conv`` and ``indice_subm_conv`` through the module at call time, so
    replacing those three names is enough. CUDA tensors go to the original kernels.
    """
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
            return ops.native_sparse_conv(features, filters, indice_pairs, indice_pair_num,
                                          int(num_out), inverse=inverse, subm=subm, bias=bias)

        dispatch.__wrapped__ = orig
        return dispatch

    Fsp.indice_conv = make(Fsp.indice_conv, inverse=False, subm=False)
    Fsp.indice_inverse_conv = make(Fsp.indice_inverse_conv, inverse=True, subm=False)
    Fsp.indice_subm_conv = make(Fsp.indice_subm_conv, inverse=False, subm=True)


#: the compiled ``mmcv._ext`` kernels that the project's models call at run time (the students,
#: their data preprocessor, the segmentors; Cylinder3D's sparse convolutions are spconv's, see
#: ``cylinder3d_sparse_ops``). Each is routed to the project's torch kernel on a device that
#: mmcv has no kernel for; ``tests/test_setup_plan.py`` records the kernels the models call.
MMCV_ROUTED_KERNELS = ('dynamic_point_to_voxel_forward', 'dynamic_point_to_voxel_backward')
#: the compiled originals of the routed kernels (filled when the patch is applied)
MMCV_ORIGINALS: Dict[str, Callable] = {}


def _probe_dynamic_point_to_voxel(device: torch.device) -> None:
    """Run mmcv's compiled ``dynamic_point_to_voxel_forward`` on a two-point input."""
    feats = torch.zeros(2, 1, device=device)
    coors = torch.zeros(2, 3, dtype=torch.int32, device=device)
    MMCV_ORIGINALS['dynamic_point_to_voxel_forward'](feats, coors, 'max')


@functools.lru_cache(maxsize=None)
def mmcv_kernel_available(kernel: str, device_type: str) -> bool:
    """Whether the installed mmcv has a working ``kernel`` for ``device_type`` tensors.

    Detected, not assumed from versions: mmcv's kernel runs once on a tiny input on that device
    (once per process and device type). It fails with ``implementation for device ... not
    found`` where mmcv has no kernel (CPU in mmcv < 2.2; CUDA in a build with CPU ops only), or
    when its CUDA code was compiled for other GPUs.

    Args:
        kernel (str): A name of :data:`MMCV_ROUTED_KERNELS`. The dispatchers ask for the
            forward kernel for both passes, so that forward and backward use one implementation.
        device_type (str): 'cpu', 'cuda', ...

    Returns:
        bool: True when mmcv's kernel serves that device.
    """
    if kernel not in MMCV_ROUTED_KERNELS:
        raise KeyError(f'{kernel} is not routed; routed kernels: {MMCV_ROUTED_KERNELS}')
    try:
        with torch.no_grad():
            _probe_dynamic_point_to_voxel(torch.device(device_type))
    except RuntimeError as exc:
        report = logger.info if device_type == 'cpu' else logger.warning
        report('img2lidar: mmcv has no working %s kernel for %s tensors (%s): the project\'s '
               'torch kernel is used', kernel, device_type,
               str(exc).strip().splitlines()[-1][:200])
        return False
    return True


def patch_dynamic_scatter_cpu() -> None:
    """Dispatch mmcv's ``dynamic_point_to_voxel`` kernels to torch where mmcv has none.

    Both mmcv's ``DynamicScatter`` and mmdet3d's ``dynamic_scatter_3d`` call these two functions
    of the compiled ``mmcv._ext`` module at run time, so patching the module covers both.
    Tensors on a device that mmcv has a kernel for (:func:`mmcv_kernel_available`) keep it; the
    others (CPU tensors with mmcv 2.1, CUDA tensors with an mmcv built with CPU ops only) go to
    :mod:`ops.dynamic_scatter`, which runs on any device.
    """
    try:
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', list(MMCV_ROUTED_KERNELS))
    except (ImportError, AssertionError):  # mmcv without ops: nothing to patch
        return
    MMCV_ORIGINALS.update({name: getattr(ext, name) for name in MMCV_ROUTED_KERNELS})
    orig_fwd = MMCV_ORIGINALS['dynamic_point_to_voxel_forward']
    orig_bwd = MMCV_ORIGINALS['dynamic_point_to_voxel_backward']

    def use_mmcv(feats: torch.Tensor) -> bool:
        # looked up at call time, so that tests can stand in for the probe
        return mmcv_kernel_available('dynamic_point_to_voxel_forward', feats.device.type)

    def forward(feats, coors, reduce_type='max'):
        if use_mmcv(feats):
            return orig_fwd(feats, coors, reduce_type)
        return list(ops.dynamic_point_to_voxel_forward(feats, coors, reduce_type))

    def backward(grad_feats, grad_reduced, feats, reduced, coors_map, counts,
                 reduce_type='max'):
        if use_mmcv(feats):
            return orig_bwd(grad_feats, grad_reduced, feats, reduced, coors_map, counts,
                            reduce_type)
        ops.dynamic_point_to_voxel_backward(grad_feats, grad_reduced, feats, reduced,
                                            coors_map, counts, reduce_type)

    forward.__wrapped__, backward.__wrapped__ = orig_fwd, orig_bwd
    ext.dynamic_point_to_voxel_forward = forward
    ext.dynamic_point_to_voxel_backward = backward


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


def patch_spconv_prefix_loading() -> None:
    """Do not transpose spconv 2 weights that are already in spconv 2 layout.

    mmdet3d replaces spconv's ``SparseModule._load_from_state_dict`` so that mmcv (spconv 1)
    checkpoints load: it permutes every weight unless the state dict's metadata says version
    2. ``init_cfg=dict(type='Pretrained', prefix='backbone.')`` strips the metadata, so spconv 2
    weights were permuted into the wrong layout. With the version missing, the version is now
    inferred from the shapes: weights whose shapes already match are spconv 2.
    """
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


def patch_mmengine_cpu_launch() -> None:
    """Let ``--launcher pytorch`` / ``slurm`` start gloo processes on CPU-only machines.

    mmengine's ``_init_dist_pytorch`` and ``_init_dist_slurm`` call
    ``torch.cuda.set_device(local_rank)`` unconditionally, which raises AttributeError on CPU
    builds of torch. Without CUDA, ``set_device`` as seen by mmengine's launcher module becomes
    a no-op; with CUDA nothing changes.
    """
    if torch.cuda.is_available():  # nothing to fix where CUDA exists
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



def patch_mmengine_test_json_rank0() -> None:
    """Write the test metrics JSON (``<log_dir>/<timestamp>.json``) from rank 0 only.

    mmengine's ``LoggerHook.after_test_epoch`` dumps the metrics on every rank, and every rank
    shares the log folder (the timestamp is broadcast), so ``dist_test.sh`` runs race on one file:
    two writes of different lengths (the ranks' timings differ) leave ``{...}}``. The other ranks
    still log the metrics line; only the file is left to rank 0, as mmengine does for scalars.
    """
    from mmengine.dist import is_main_process
    from mmengine.hooks import LoggerHook

    orig = LoggerHook.after_test_epoch

    def after_test_epoch(self, runner, metrics: Optional[Dict[str, float]] = None) -> None:
        if is_main_process():
            return orig(self, runner, metrics)
        _, log_str = runner.log_processor.get_log_after_epoch(
            runner, len(runner.test_dataloader), 'test', with_non_scalar=True)
        runner.logger.info(log_str)

    after_test_epoch.__wrapped__ = orig
    LoggerHook.after_test_epoch = after_test_epoch


PATCHES: Tuple[Patch, ...] = (
    Patch('mmengine_checkpoint', {'torch': '>=2.6', 'mmengine': '>=0.10,<=0.10.7'},
          patch_mmengine_checkpoint_loading),
    Patch('spconv_cpu', {'spconv': '>=2.3,<2.4'}, patch_spconv_cpu),
    Patch('dynamic_scatter_cpu', {'mmcv': '>=2.0,<2.2'}, patch_dynamic_scatter_cpu),
    Patch('cylinder3d_sparse_ops', {'mmdet3d': '>=1.1,<1.5', 'spconv': '>=2.0'},
          patch_cylinder3d_sparse_ops),
    Patch('spconv_prefix_loading', {'mmdet3d': '>=1.1,<1.5', 'spconv': '>=2.0'},
          patch_spconv_prefix_loading),
    Patch('mmengine_cpu_launch', {'mmengine': '>=0.10,<=0.10.7'}, patch_mmengine_cpu_launch),
    Patch('mmengine_test_json_rank0', {'mmengine': '>=0.10,<=0.10.7'},
          patch_mmengine_test_json_rank0),
)


def disabled_patches() -> Tuple[str, ...]:
    """Patch names listed in ``IMG2LIDAR_DISABLE_PATCHES`` (``all`` for every one)."""
    value = os.environ.get(DISABLE_ENV, '').strip()
    if value == 'all':
        return tuple(p.name for p in PATCHES)
    names = tuple(n.strip() for n in value.split(',') if n.strip())
    unknown = sorted(set(names) - {p.name for p in PATCHES})
    if unknown:
        raise ValueError(f'{DISABLE_ENV} names unknown patches {unknown}; patches: '
                         f'{[p.name for p in PATCHES]}')
    return names


def apply_all() -> None:
    """Apply every patch whose target versions are installed, once per process."""
    disabled = disabled_patches()
    for patch in PATCHES:
        if patch.name in APPLIED:
            continue
        if patch.name in disabled:
            logger.warning('img2lidar: patch %s disabled by %s', patch.name, DISABLE_ENV)
            continue
        bad = mismatches(patch)
        if bad:
            logger.warning('img2lidar: patch %s not applied: %s (it fixes %s)', patch.name,
                           '; '.join(bad), ', '.join(f'{k}{v}' for k, v in
                                                     patch.requires.items()))
            continue
        patch.apply()
        APPLIED.append(patch.name)
