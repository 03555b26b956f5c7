"""Host synchronisations of one pretraining step: no more than the design needs.

On a GPU every read of a device value on the host (``item``, ``tolist``, ``cpu``, ``bool`` of a
tensor...) and every operator whose output size depends on the values (``nonzero``, ``unique``,
boolean indexing, ``bincount``...) waits for the device. This test counts them in one
``model.train_step`` on CPU (operators through a dispatch mode, host reads through patched
tensor methods), with the student network replaced by a linear layer (spconv's own indexing is
not this project's; the GPU check counts everything with ``torch.cuda.set_sync_debug_mode``).
The design needs four, listed in ``EXPECTED`` and in the README.
"""
import traceback
from collections import Counter

import numpy as np
import pytest
import torch
from mmdet3d.registry import DATASETS, MODELS
from mmengine.optim import build_optim_wrapper
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from conftest import small_pretrain_cfg
from projects.img2lidar.datasets import collate_image_lidar
from projects.img2lidar.models.students.base_point_student import BasePointStudent

ST = 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'
#: operators that wait for the device on CUDA (their output size, or their result on the host,
#: depends on the values)
SYNCING_OPS = {'_local_scalar_dense', 'nonzero', 'nonzero_static', '_unique2', 'unique_dim',
               'unique_consecutive', 'masked_select', 'bincount', 'equal', 'is_nonzero'}
#: the synchronisations the design needs, by where they happen
EXPECTED = Counter({
    'unique: the batch voxelization (one for the whole batch)': 1,
    'unique: the superpixels that hold a pair (the number of pooled rows)': 1,
    'read: whether a superpixel lacks a teacher feature (the tolerant loss drops those)': 1,
    "read: the optimizer wrapper's finite checks (loss and gradients, one vector)": 1,
})
#: (file, function) -> the EXPECTED entry it stands for
WHERE = {
    ('point_voxel_data_preprocessor.py', 'unique_voxels'):
        'unique: the batch voxelization (one for the whole batch)',
    ('superpixel_pooling.py', '_pool'):
        'unique: the superpixels that hold a pair (the number of pooled rows)',
    ('infonce_core.py', 'drop_rows_without_teacher'):
        'read: whether a superpixel lacks a teacher feature (the tolerant loss drops those)',
    ('finite_check_optim_wrapper.py', '_decide'):
        "read: the optimizer wrapper's finite checks (loss and gradients, one vector)",
}


@MODELS.register_module(force=True)
class LinearPointStudent(BasePointStudent):
    """A stand-in student: a linear layer on each voxel's input feature."""

    def __init__(self, in_channels: int = 4, out_channels: int = 64) -> None:
        super().__init__(16, out_channels)
        self.linear = nn.Linear(in_channels, 16)

    def extract_feat(self, voxel_dict: dict):
        return self.linear(voxel_dict['voxels'])


def _caller() -> str:
    """The innermost frame of this project (or of the library that synchronised)."""
    frames = traceback.extract_stack()[:-2]
    for frame in reversed(frames):
        if '/projects/img2lidar/' in frame.filename:
            return f"{frame.filename.rsplit('/', 1)[-1]}:{frame.name}:{frame.lineno}"
    for frame in reversed(frames):
        if 'site-packages' in frame.filename and '/torch/' not in frame.filename:
            return f"{frame.filename.split('site-packages/')[-1]}:{frame.name}:{frame.lineno}"
    return f'{frames[-1].filename}:{frames[-1].name}'


class SyncCounter(TorchDispatchMode):
    """Records every synchronising operator and host read inside it, with where it came
    from."""

    #: the counter that is recording (host reads are patched once, for the whole test)
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

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        syncs = name in SYNCING_OPS
        if name == 'repeat_interleave' and isinstance(args[0], torch.Tensor) and \
                args[0].dim() > 0 and kwargs.get('output_size') is None and \
                isinstance(args[1] if len(args) > 1 else None, torch.Tensor):
            syncs = True
        if name in ('index', 'index_put', 'index_put_'):
            indices = args[1] if len(args) > 1 else []
            syncs = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)
        if syncs:
            self.calls.append((name, _caller()))
        return func(*args, **kwargs)


@pytest.fixture
def count_host_reads(monkeypatch):
    """Host reads that do not dispatch an operator on CPU (``tolist``, ``numpy``, ``cpu``),
    recorded by the active :class:`SyncCounter`."""
    for method in ('tolist', 'numpy', 'cpu'):
        original = getattr(torch.Tensor, method)

        def patched(self, *args, _original=original, _method=method, **kwargs):
            if SyncCounter.active is not None:
                SyncCounter.active.calls.append((_method, _caller()))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, patched)


def test_one_pretraining_step_synchronises_only_where_the_design_needs(
        nuscenes_root, tmp_path, count_host_reads):
    cfg = small_pretrain_cfg(ST, nuscenes_root, tmp_path, 1)
    cfg.model.student = dict(type='LinearPointStudent')
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
    where = [loc for _, loc in counter.calls]
    found = Counter()
    unexplained = []
    for loc in where:
        file, function, _ = loc.split(':')
        if (file, function) in WHERE:
            found[WHERE[(file, function)]] += 1
        else:
            unexplained.append(loc)
    assert not unexplained, f'synchronisations the design does not need: {unexplained}'
    assert found == EXPECTED, (found, where)
