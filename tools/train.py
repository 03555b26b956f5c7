#!/usr/bin/env python
"""Train (pretrain or finetune) from a config, with mmdet3d 1.4's ``tools/train.py`` arguments.

    python tools/train.py configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py \
        --work-dir work_dirs/stslidr [--amp] [--resume [CKPT]] [--auto-scale-lr] \
        [--cfg-options key=value ...] [--launcher none|pytorch|slurm|mpi]

The repository root is put on ``sys.path`` so that ``custom_imports=['projects.img2lidar']``
works from a checkout as well as after ``pip install -e .``. The shared launch code lives in
``projects.img2lidar.engine.launch``.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    from projects.img2lidar.engine.launch import add_common_arguments
    parser = argparse.ArgumentParser(description='Train an image-to-lidar model or segmentor')
    parser.add_argument('config', help='config file')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--sync_bn', choices=['none', 'torch', 'mmcv'], default='none',
                        help='convert BatchNorm layers to SyncBatchNorm')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the real batch size over base_batch_size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or from the newest checkpoint of the work dir')
    return add_common_arguments(parser).parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    from projects.img2lidar.engine.launch import (build_runner, close_process_group,
                                                  enable_amp, load_config, print_rank)
    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir,
                      args.local_rank)
    if args.amp:
        enable_amp(cfg)
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
    runner = build_runner(cfg)
    print_rank('train.py')
    runner.train()
    close_process_group()


if __name__ == '__main__':
    main()
