#!/usr/bin/env python
"""Train (pretrain or finetune) from a config, with mmdet3d 1.4's ``tools/train.py`` arguments.

    python tools/train.py configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py \
        --work-dir work_dirs/stslidr [--amp] [--resume [CKPT]] [--auto-scale-lr] \
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]

The repository root is put on ``sys.path`` so that ``custom_imports=['projects.img2lidar']``
works from a checkout as well as after ``pip install -e .``.
"""
import argparse
import logging
import os
import os.path as osp
import sys

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)
#: --amp swaps an optimizer wrapper for its mixed-precision sibling
AMP_WRAPPERS = {'OptimWrapper': 'AmpOptimWrapper',
                'FiniteCheckOptimWrapper': 'FiniteCheckAmpOptimWrapper'}


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train an image-to-lidar model or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--sync_bn', choices=['none', 'torch', 'mmcv'], default='none',
                        help='convert BatchNorm layers to SyncBatchNorm')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the real batch size over base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the newest checkpoint of the work dir')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, key=value')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_cfg(args: argparse.Namespace):
    """The config with the command line applied."""
    from mmengine.config import Config
    from mmengine.logging import print_log
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        kind = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if kind in AMP_WRAPPERS.values():
            print_log('AMP is already enabled in the config', logger='current',
                      level=logging.WARNING)
        else:
            cfg.optim_wrapper.type = AMP_WRAPPERS.get(kind, 'AmpOptimWrapper')
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.sync_bn != 'none':
        cfg.sync_bn = args.sync_bn
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError(f'{args.config} has no auto_scale_lr.base_batch_size')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    use_cpu_backend(cfg)
    return cfg


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


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    cfg = build_cfg(args)
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    print_rank('train.py')
    runner.train()


def print_rank(tool: str) -> None:
    """One line per process, so that every rank's log shows it took part."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        print(f'[{tool}] process rank {dist.get_rank()} of {dist.get_world_size()} '
              f'({dist.get_backend()})', flush=True)


if __name__ == '__main__':
    main()
