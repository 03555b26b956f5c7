"""What tools/train.py and tools/test.py share: their common arguments, the config they run and
the end of a distributed run.

The tools take mmdet3d 1.4's arguments; runs without CUDA use gloo and a DDP wrapper without
device ids, so the same commands work on CPU machines and clusters.
"""
import argparse
import logging
import os
import os.path as osp
from typing import Optional

#: ``--amp`` swaps an optimizer wrapper for its mixed-precision sibling
AMP_WRAPPERS = {'OptimWrapper': 'AmpOptimWrapper',
                'FiniteCheckOptimWrapper': 'FiniteCheckAmpOptimWrapper'}


def add_common_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local_rank``."""
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help='where logs, metrics and checkpoints go')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def load_config(config: str, launcher: str = 'none', cfg_options: Optional[dict] = None,
                work_dir: Optional[str] = None, local_rank: int = 0):
    """The config with the command line applied: options merged, work dir set (default
    ``work_dirs/<config name>``), launcher recorded, gloo where there is no CUDA, and the tiny
    sizes of :mod:`.tiny_sizes` when ``IMG2LIDAR_TINY=1`` (smoke runs of the documented
    commands)."""
    from mmengine.config import Config

    from .tiny_sizes import shrink_config, tiny_enabled
    os.environ.setdefault('LOCAL_RANK', str(local_rank))
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])
    use_cpu_backend(cfg)
    if tiny_enabled():
        shrink_config(cfg, log=lambda line: print(line, flush=True))
    return cfg


def amp_settings(bf16_supported: bool) -> dict:
    """The optimizer wrapper's mixed-precision settings (``--amp``), per part of the step:

    - autocast dtype: bfloat16 where the device supports it (no overflow: the teacher, the
      2D head's convolution and the student's dense layers keep float32's range), else float16;
    - a dynamic loss scale in both cases: spconv casts the inputs of its sparse convolutions to
      float16 under any CUDA autocast (``custom_fwd(cast_inputs=torch.float16)``), so the
      student runs in float16 even in a bfloat16 run, and its gradients need the scaler;
    - pixel features, superpixel pooling (every sum and count) and the losses run in float32
      whatever the autocast (see the README's mixed-precision table).

    Args:
        bf16_supported (bool): Whether the training device supports bfloat16.

    Returns:
        dict: ``dtype`` and ``loss_scale`` of an ``AmpOptimWrapper``.
    """
    return dict(dtype='bfloat16' if bf16_supported else 'float16', loss_scale='dynamic')


def enable_amp(cfg, bf16_supported: Optional[bool] = None) -> None:
    """Automatic mixed precision (``--amp``): see :func:`amp_settings`.

    Args:
        cfg (Config): The config, changed in place.
        bf16_supported (bool, optional): Whether the device supports bfloat16; asked of
            torch's CUDA device when None.
    """
    import torch
    from mmengine.logging import print_log
    kind = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if kind in AMP_WRAPPERS.values():
        print_log('AMP is already enabled in the config', logger='current',
                  level=logging.WARNING)
        return
    if bf16_supported is None:
        bf16_supported = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    cfg.optim_wrapper.type = AMP_WRAPPERS.get(kind, 'AmpOptimWrapper')
    cfg.optim_wrapper.update(amp_settings(bf16_supported))
    print_log(f"--amp: autocast to {cfg.optim_wrapper.dtype} with a dynamic loss scale (the "
              'sparse convolutions run in float16)', logger='current')


def use_cpu_backend(cfg) -> None:
    """Distributed runs without CUDA use gloo (configs default to nccl) and a DDP wrapper
    without device ids (mmengine's default passes the local rank as a CUDA device)."""
    import torch
    if cfg.get('launcher', 'none') != 'none' and not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})['backend'] = 'gloo'
        if cfg.get('model_wrapper_cfg') is None:
            cfg.model_wrapper_cfg = dict(
                type='MMDistributedDataParallel', device_ids=None, broadcast_buffers=False,
                find_unused_parameters=cfg.get('find_unused_parameters', False))


def build_runner(cfg):
    """mmengine's Runner from the config (or the config's own runner type)."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    return Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)


def print_rank(tool: str) -> None:
    """One line per process, so that every rank's log shows it took part."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        print(f'[{tool}] process rank {dist.get_rank()} of {dist.get_world_size()} '
              f'({dist.get_backend()})', flush=True)


def close_process_group() -> None:
    """End a finished distributed run: wait for every rank, then destroy the process group.

    Call it only after the run returned normally (after an exception the ranks may be in
    different collectives, and the barrier would wait forever). A process that exits with a
    gloo group still open can abort at interpreter shutdown ('terminate called without an
    active exception', SIGABRT): gloo's threads still hold work objects whose tensors need the
    interpreter that is being torn down (pytorch/pytorch#190489). A 2-process ``dist_train.sh``
    run in CI died that way after it had finished and saved everything. No-op outside a
    distributed run.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
