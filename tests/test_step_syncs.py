"""Host synchronisations of one pretraining step, counted as CUDA would count them.

On a GPU the host waits for the device at

- every read of a device value on the host: ``item`` (and ``float``/``int``/``bool`` of a
  tensor), ``tolist``, ``numpy``, ``cpu``, ``equal``... (kind ``'read'``);
- every operator whose output size depends on the values: ``nonzero``, ``unique``, boolean-mask
  indexing, ``masked_select``, ``bincount``, ``repeat_interleave`` without ``output_size``
  (kind ``'shape'``);
- every blocking copy between host and device (kind ``'copy'``): ``torch.tensor(...,
  device=...)``, ``new_tensor``, ``.to(device)`` or ``.cuda()`` without ``non_blocking=True``,
  indexing with a Python list or a numpy array (the index is copied to the device).

These tests run on CPU, where a copy to "the device" copies nothing, so copies are inferred
from the calls: a tensor made from host data with a ``device`` given, ``new_tensor`` (its data
is the host's, its device its owner's), and every ``.to(device)``/``.cuda()`` without
``non_blocking=True`` (on CUDA that is either a blocking copy or, on a tensor already there, a
call with nothing to do; neither belongs in the step). Operators are seen through a
``TorchDispatchMode``; host reads and copies through patched ``torch``/``Tensor`` functions.
The student network is a linear layer (spconv's own indexing is not this project's; on a GPU
``tools/gpu_step_check.py`` counts everything with ``torch.cuda.set_sync_debug_mode``).

Not seen here: CUDA-only paths of libraries (mmengine's ``LogProcessor`` reads
``torch.cuda.max_memory_allocated``, an allocator counter that does not wait for the device)
and ``copy_`` from a host tensor into a device one (the step has none).

The tables below list every synchronisation, where it happens and why the design needs it:
``STEP`` for ``model.train_step`` through the optimizer wrapper, ``LOGGING`` for mmengine's
handling of the step's outputs in the runner, ``AMP`` for what ``--amp`` adds.
"""
import traceback
from collections import Counter

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import small_pretrain_cfg
from projects.img2lidar.datasets import collate_image_lidar
from projects.img2lidar.engine.launch import enable_amp
from projects.img2lidar.models.students.base_point_student import BasePointStudent

CONFIGS = {
    'st': 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py',
    'ppkt': 'configs/ppkt/ppkt_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py',
}
#: operators that read a value back (kind 'read') or whose output size depends on the values
#: (kind 'shape')
READING_OPS = {'_local_scalar_dense', 'equal', 'is_nonzero'}
SHAPE_OPS = {'nonzero', 'nonzero_static', '_unique2', 'unique_dim', 'unique_consecutive',
             'masked_select', 'bincount'}

#: every synchronisation of one ``model.train_step`` (preprocessing, forward, losses, backward,
#: the optimizer wrapper): (file:function, kind) -> (count, why the design needs it)
STEP = {
    'st': {
        ('point_voxel_data_preprocessor.py:unique_voxels', 'shape'):
            (1, 'unique: the batch voxelization, one for the whole batch (the voxel count; the '
                'range check of the coordinates is read with it)'),
        ('superpixel_pooling.py:pooled_rows', 'read'):
            (1, 'the superpixels that hold a pair: the number of pooled rows M and each '
                "image's first row, in one read (a sort of the pairs' ids, where "
                'torch.unique read M alone)'),
        ('infonce_core.py:drop_rows_without_teacher', 'read'):
            (1, 'whether a superpixel lacks a teacher feature (the tolerant loss drops those)'),
        ('finite_check_optim_wrapper.py:_decide', 'read'):
            (1, "the optimizer wrapper's finite checks (loss and gradients, one vector)"),
    },
    'ppkt': {
        ('point_voxel_data_preprocessor.py:unique_voxels', 'shape'):
            (1, 'unique: the batch voxelization, one for the whole batch (the voxel count; the '
                'range check of the coordinates is read with it)'),
        ('finite_check_optim_wrapper.py:_decide', 'read'):
            (1, "the optimizer wrapper's finite checks (loss and gradients, one vector)"),
    },
}
#: mmengine's RuntimeInfoHook puts each value the step returns (``log_vars``) into the message
#: hub, which reads it with ``.item()`` (MessageHub._get_valid_value): one read per value, every
#: iteration; the ST step returns these
LOGGED = ('loss', 'loss_st', 'num_superpixels', 'pos_sim')
LOGGING = ('message_hub.py:_get_valid_value', 'read')
#: what the ST + CB loss adds on the steps that log its diagnostics (``diagnostics_interval``
#: N > 0: every N-th step; off in the shipped configs): one read per figure in the message
#: hub, and nothing in the step itself (the figures are computed on the device)
DIAGNOSTICS_LOGGED = tuple(f'diag/st/{f}' for f in (
    'cos_mean', 'cos_q10', 'cos_q50', 'cos_q90', 'st_masked_mean', 'st_masked_min',
    'st_masked_max', 'cb_w_mean', 'cb_ess', 'cb_w_max_min', 'pos_sim', 'neg_sim', 'nce',
    'nce_st', 'nce_cb'))
#: what ``--amp`` adds: torch's GradScaler.step reads whether a gradient overflowed
#: (``found_inf.item()``, one per device) before it lets the optimizer step
AMP = {('amp_optimizer_wrapper.py:step', 'read'):
       (1, "the loss scaler's overflow check (GradScaler.step reads found_inf)")}


@MODELS.register_module(force=True)
class LinearPointStudent(BasePointStudent):
    """A stand-in student: a linear layer on each voxel's input feature."""

    def __init__(self, in_channels: int = 4, out_channels: int = 64) -> None:
        super().__init__(16, out_channels)
        self.linear = nn.Linear(in_channels, 16)

    def extract_feat(self, voxel_dict: dict):
        return self.linear(voxel_dict['voxels'])


def _caller() -> str:
    """``file:function`` of the innermost frame of this project or of a library other than
    torch (torch's own frames, the standard library's and this file's are passed over)."""
    for frame in reversed(traceback.extract_stack()[:-2]):
        name = frame.filename
        if name == __file__ or '/site-packages/torch/' in name or (
                'site-packages' not in name and '/projects/img2lidar/' not in name):
            continue
        return f"{name.rsplit('/', 1)[-1]}:{frame.name}"
    return 'unknown'


class SyncCounter(TorchDispatchMode):
    """Records every synchronisation inside it as (file:function, kind, what)."""

    #: the counter that is recording (the host functions are patched once, for the test)
    active = None

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def __enter__(self):
        SyncCounter.active = self
        return super().__enter__()

    def __exit__(self, *exc):
        SyncCounter.active = None
        return super().__exit__(*exc)

    @classmethod
    def record(cls, kind: str, what: str) -> None:
        if cls.active is not None:
            cls.active.calls.append((_caller(), kind, what))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        kind = 'read' if name in READING_OPS else 'shape' if name in SHAPE_OPS else None
        if name == 'repeat_interleave' and isinstance(args[0], torch.Tensor) and \
                args[0].dim() > 0 and kwargs.get('output_size') is None and \
                isinstance(args[1] if len(args) > 1 else None, torch.Tensor):
            kind = 'shape'
        if name in ('index', 'index_put', 'index_put_'):
            indices = args[1] if len(args) > 1 else []
            if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8)
                   for i in indices):
                kind = 'shape'
        if kind:
            self.calls.append((_caller(), kind, name))
        return func(*args, **kwargs)

    def table(self) -> Counter:
        return Counter((where, kind) for where, kind, _ in self.calls)


def _to_target(args, kwargs):
    """The device a ``Tensor.to`` call moves to (None: a dtype change only) and whether it
    is non-blocking."""
    device, non_blocking = kwargs.get('device'), kwargs.get('non_blocking', False)
    if args:
        first = args[0]
        if isinstance(first, torch.Tensor):
            device, non_blocking = first.device, args[1] if len(args) > 1 else non_blocking
        elif isinstance(first, (torch.device, str, int)):
            device, non_blocking = first, args[2] if len(args) > 2 else non_blocking
        elif len(args) > 1:  # to(dtype, non_blocking, ...)
            non_blocking = args[1]
    return device, bool(non_blocking)


def _host_index(index) -> bool:
    """Whether an index holds host data (a list or an array) that must go to the device."""
    parts = index if isinstance(index, tuple) else (index, )
    return any(isinstance(p, (list, np.ndarray)) for p in parts)


@pytest.fixture
def count_host_calls(monkeypatch):
    """Host reads and blocking copies that dispatch no operator on CPU, recorded by the
    active :class:`SyncCounter`."""
    for method in ('tolist', 'numpy', 'cpu'):
        original = getattr(torch.Tensor, method)

        def read(self, *args, _original=original, _method=method, **kwargs):
            SyncCounter.record('read', _method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, read)

    original_to, original_cuda = torch.Tensor.to, torch.Tensor.cuda
    original_new_tensor = torch.Tensor.new_tensor
    original_getitem, original_setitem = torch.Tensor.__getitem__, torch.Tensor.__setitem__
    original_tensor, original_as_tensor = torch.tensor, torch.as_tensor

    def to(self, *args, **kwargs):
        device, non_blocking = _to_target(args, kwargs)
        if device is not None and not non_blocking:
            SyncCounter.record('copy', '.to(device)')
        return original_to(self, *args, **kwargs)

    def cuda(self, *args, **kwargs):
        if not kwargs.get('non_blocking', args[1] if len(args) > 1 else False):
            SyncCounter.record('copy', '.cuda()')
        return original_cuda(self, *args, **kwargs)

    def new_tensor(self, *args, **kwargs):
        SyncCounter.record('copy', 'new_tensor')
        return original_new_tensor(self, *args, **kwargs)

    def getitem(self, index):
        if _host_index(index):
            SyncCounter.record('copy', 'index from host data')
        return original_getitem(self, index)

    def setitem(self, index, value):
        if _host_index(index):
            SyncCounter.record('copy', 'index from host data')
        return original_setitem(self, index, value)

    def tensor(data, *args, **kwargs):
        if kwargs.get('device') is not None:
            SyncCounter.record('copy', 'torch.tensor(device=...)')
        return original_tensor(data, *args, **kwargs)

    def as_tensor(data, *args, **kwargs):
        device = kwargs.get('device', args[1] if len(args) > 1 else None)
        if device is not None and not isinstance(data, torch.Tensor):
            SyncCounter.record('copy', 'torch.as_tensor(device=...)')
        return original_as_tensor(data, *args, **kwargs)

    for name, fn in (('to', to), ('cuda', cuda), ('new_tensor', new_tensor),
                     ('__getitem__', getitem), ('__setitem__', setitem)):
        monkeypatch.setattr(torch.Tensor, name, fn)
    monkeypatch.setattr(torch, 'tensor', tensor)
    monkeypatch.setattr(torch, 'as_tensor', as_tensor)


def _expected(table: dict) -> Counter:
    return Counter({key: count for key, (count, _) in table.items()})


def _cfg(name: str, root, tmp_path, iters: int = 1):
    """A small config whose loops run several times: the ST loss in row chunks of 64, the
    2D head's pooling in pixel blocks through ``PixelFeatures.at`` (one image's map is over
    the block bound), PPKT drawing 256 of the pairs."""
    cfg = small_pretrain_cfg(CONFIGS[name], root, tmp_path, iters)
    cfg.model.student = dict(type='LinearPointStudent')
    cfg.model.image_head.chunk_elements = 64 * 4096
    for loss in cfg.model.losses.values():
        loss.chunk_size = 64
        if loss.type == 'PPKTLoss':
            loss.num_pairs = 256
    return cfg


def _report(counter: SyncCounter) -> str:
    return '\n'.join(f'  {where} {kind} ({what})' for where, kind, what in counter.calls)


@pytest.mark.parametrize('name', list(STEP))
def test_one_pretraining_step_synchronises_only_where_the_design_needs(
        name, nuscenes_root, tmp_path, count_host_calls):
    cfg = _cfg(name, nuscenes_root, tmp_path)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(0)
    batch = collate_image_lidar([dataset[0], dataset[0]])  # in the loader's workers
    with SyncCounter() as counter:
        log_vars = model.train_step(batch, optim_wrapper)
    assert np.isfinite(float(log_vars['loss']))
    assert counter.table() == _expected(STEP[name]), '\n' + _report(counter)


class StartCounting(Hook):
    """Starts a :class:`SyncCounter` before every other ``before_train_iter`` hook."""

    priority = 'HIGHEST'

    def __init__(self) -> None:
        self.counters = []

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        self.counters.append(SyncCounter())
        self.counters[-1].__enter__()


class StopCounting(Hook):
    """Stops it after every other ``after_train_iter`` hook (so the step and each hook's
    handling of its outputs are counted), and keeps the names of the logged values."""

    priority = 'LOWEST'

    def __init__(self, start: StartCounting) -> None:
        self.start = start
        self.logged = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.start.counters[-1].__exit__(None, None, None)
        self.logged.append(tuple(outputs))


class _CpuLossScaler(Hook):
    """mmengine builds CUDA's GradScaler, which disables itself on CPU: give the wrapper
    torch's CPU one (as tests/test_mixed_precision.py does)."""

    def before_train(self, runner) -> None:
        runner.optim_wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=2.0**10)


@pytest.mark.parametrize('amp', [False, True], ids=['plain', 'amp'])
def test_training_iterations_synchronise_only_where_expected(amp, nuscenes_root, tmp_path,
                                                             count_host_calls, monkeypatch):
    """Two iterations of ``Runner.train``: each one's synchronisations are the step's plus one
    read per logged value (mmengine's message hub), plus, with ``--amp``, the loss scaler's
    overflow check. The checkpoint hook (not every iteration) is left out."""
    from mmengine.runner import Runner
    cfg = _cfg('st', nuscenes_root, tmp_path, iters=2)
    cfg.default_hooks.checkpoint.update(interval=1000, save_last=False)
    if amp:
        import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_wrapper
        monkeypatch.setattr(amp_wrapper, 'is_cuda_available', lambda: True)
        enable_amp(cfg, bf16_supported=True)  # bfloat16 autocast on the CPU
    runner = Runner.from_cfg(cfg)
    start = StartCounting()
    stop = StopCounting(start)
    for hook in (start, stop) + ((_CpuLossScaler(), ) if amp else ()):
        runner.register_hook(hook)
    try:
        runner.train()
    finally:  # a failed iteration leaves no counter behind
        if SyncCounter.active is not None:
            SyncCounter.active.__exit__(None, None, None)
    expected = _expected(STEP['st']) + Counter({LOGGING: len(LOGGED)})
    if amp:
        expected += _expected(AMP)
    assert len(start.counters) == 2
    for counter, logged in zip(start.counters, stop.logged):
        assert logged == LOGGED
        assert counter.table() == expected, '\n' + _report(counter)


def test_diagnostics_cost_one_read_per_figure_on_the_steps_that_log_them(
        nuscenes_root, tmp_path, count_host_calls):
    """With ``diagnostics_interval=2`` the first of two iterations logs the ST + CB figures:
    it synchronises as a plain step plus one message-hub read per figure; the second is a
    plain step. The figures add no synchronisation to the step itself."""
    from mmengine.runner import Runner
    cfg = _cfg('st', nuscenes_root, tmp_path, iters=2)
    cfg.default_hooks.checkpoint.update(interval=1000, save_last=False)
    cfg.model.losses.loss_st.diagnostics_interval = 2
    runner = Runner.from_cfg(cfg)
    start = StartCounting()
    stop = StopCounting(start)
    for hook in (start, stop):
        runner.register_hook(hook)
    try:
        runner.train()
    finally:
        if SyncCounter.active is not None:
            SyncCounter.active.__exit__(None, None, None)
    assert stop.logged == [LOGGED[:2] + DIAGNOSTICS_LOGGED + LOGGED[2:], LOGGED]
    for counter, logged in zip(start.counters, stop.logged):
        expected = _expected(STEP['st']) + Counter({LOGGING: len(logged)})
        assert counter.table() == expected, '\n' + _report(counter)


# -- the voxelization's range check and the image channel swap, without a copy or read -------
def _preprocessor():
    return MODELS.build(dict(type='PointVoxelDataPreprocessor', voxel=True, voxel_type='minkunet',
                             batch_first=True, max_voxels=None,
                             voxel_layer=dict(max_num_points=-1, voxel_size=[0.1, 0.1, 0.1],
                                              point_cloud_range=[-100, -100, -20, 100, 100, 20],
                                              max_voxels=(-1, -1))))


def _voxelize(pre, clouds, files=('a.bin', 'b.bin', 'c.bin')):
    from mmdet3d.structures import Det3DDataSample
    samples = [Det3DDataSample(metainfo=dict(lidar_path=f)) for f in files[:len(clouds)]]
    return pre.voxelize([torch.as_tensor(c, dtype=torch.float32) for c in clouds], samples)


def test_valid_clouds_give_every_distinct_cell_once():
    """The voxels are the distinct (cloud, round(xyz / 0.1) - its smallest cell) tuples."""
    g = np.random.default_rng(0)
    clouds = [g.uniform(-5, 5, (300, 4)).round(1), g.uniform(-5, 5, (200, 4)).round(1)]
    clouds[1][:50] = clouds[1][50:100]  # repeated points share their voxel
    out = _voxelize(_preprocessor(), clouds)
    cells = []
    for b, c in enumerate(clouds):
        cell = np.round(c[:, :3].astype(np.float32) / np.float32(0.1)).astype(np.int64)
        cells.append(np.concatenate([np.full((len(c), 1), b), cell - cell.min(0)], 1))
    expected = np.unique(np.concatenate(cells), axis=0)
    np.testing.assert_array_equal(out['coors'].numpy(), expected)
    assert out['num_voxels'].tolist() == [int((expected[:, 0] == b).sum()) for b in (0, 1)]


@pytest.mark.parametrize('bad,cloud', [('far', 1), ('nan', 0)])
def test_out_of_range_coordinates_raise_naming_the_cloud(bad, cloud, count_host_calls):
    """A point 20 km from the rest of its cloud (2e5 cells of 0.1 m, over the 2**17 the voxel
    key holds per axis), or a NaN point, is an error naming the first such cloud's file. The
    check reads nothing itself: the only synchronisation of the voxelization stays the
    unique's."""
    g = np.random.default_rng(0)
    clouds = [g.uniform(-5, 5, (100, 4)) for _ in range(3)]
    clouds[cloud][7, 0] = 20_000.0 if bad == 'far' else np.nan
    clouds[2][5, 1] = -20_000.0  # a later cloud is not the one named
    pre = _preprocessor()
    named = rf"cloud {cloud} \({'abc'[cloud]}\.bin\) has a voxel coordinate 131072 or more"
    with SyncCounter() as counter, pytest.raises(ValueError, match=named):
        _voxelize(pre, clouds)
    assert [(where, kind) for where, kind, _ in counter.calls] == [
        ('point_voxel_data_preprocessor.py:unique_voxels', 'shape')]
    clouds[cloud][7, 0] = clouds[2][5, 1] = 0.0
    _voxelize(pre, clouds)  # the same batch, in range


@pytest.mark.parametrize('normalize', [False, True])
def test_the_bgr_to_rgb_swap_equals_mmdet3ds(normalize):
    """The preprocessor swaps the channels with ``flip`` (no index copied to the device);
    the images equal mmdet3d's ``[2, 1, 0]`` indexing, before a normalisation or without."""
    from mmdet3d.models.data_preprocessors import Det3DDataPreprocessor
    from mmdet3d.structures import Det3DDataSample
    norm = dict(mean=[10.0, 20.0, 30.0], std=[2.0, 3.0, 4.0]) if normalize else {}
    ours = MODELS.build(dict(type='PointVoxelDataPreprocessor', bgr_to_rgb=True, **norm))
    theirs = Det3DDataPreprocessor(bgr_to_rgb=True, **norm)
    img = torch.randint(0, 256, (2, 3, 6, 10), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(0))
    for batch in (img, list(img)):  # collated, and per sample
        got, want = (p.simple_process(dict(inputs=dict(img=batch),
                                           data_samples=[Det3DDataSample() for _ in img]))
                     for p in (ours, theirs))
        assert torch.equal(got['inputs']['imgs'], want['inputs']['imgs'])
        assert not torch.equal(got['inputs']['imgs'], img.float())  # the channels did move
