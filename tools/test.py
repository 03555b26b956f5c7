#!/usr/bin/env python
"""Test (evaluate) a checkpoint, with mmdet3d 1.4's ``tools/test.py`` arguments.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...] \
        [--launcher none|pytorch|slurm|mpi] [--task lidar_seg]

Runs the config's ``test_dataloader`` / ``test_evaluator`` (e.g. SegMetric for segmentors,
StructuralGapMetric for pretraining). Distributed runs without CUDA use gloo.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    from projects.img2lidar.engine.launch import add_common_arguments
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--task', default=None, help='kept for mmdet3d compatibility')
    return add_common_arguments(parser).parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    from projects.img2lidar.engine.launch import (build_runner, close_process_group,
                                                  load_config, print_rank)
    cfg = load_config(args.config, args.launcher, args.cfg_options, args.work_dir,
                      args.local_rank)
    cfg.load_from = args.checkpoint
    runner = build_runner(cfg)
    print_rank('test.py')
    metrics = runner.test()
    close_process_group()
    return metrics


if __name__ == '__main__':
    main()
