#!/usr/bin/env python
"""The real-data check: pretrain on real labelled PandaSet frames without their labels, from a
real ImageNet teacher, and probe the frozen student on a held-out sequence.

    .venv/bin/python tools/real_data_check.py                  # the sample at $IMG2LIDAR_SHARED_DATA
    .venv/bin/python tools/real_data_check.py --pandaset PATH/pandaset_sample --seeds 3

Writes work_dirs/real_data/results.{md,json} (what is measured, and how: the module doc of
projects/img2lidar/evaluation/real_data_check.py). Everything it makes is reused by a second
call: converted frames, superpixels, the converted teacher, finished pretraining runs.
"""
import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO_ROOT)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--pandaset', default=osp.join(
        os.environ.get('IMG2LIDAR_SHARED_DATA', ''), 'pandaset_sample'),
        help='the PandaSet sample (default: $IMG2LIDAR_SHARED_DATA/pandaset_sample)')
    parser.add_argument('--work-dir', default=osp.join(REPO_ROOT, 'work_dirs', 'real_data'))
    parser.add_argument('--seeds', type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', str(min(2, os.cpu_count() or 1)))
    import projects.img2lidar  # noqa: F401  compat fixes and registrations
    from mmdet3d.utils import register_all_modules
    from projects.img2lidar.evaluation.real_data_check import run
    register_all_modules(init_default_scope=True)
    os.makedirs(args.work_dir, exist_ok=True)
    run(osp.abspath(args.pandaset), osp.abspath(args.work_dir), REPO_ROOT, seeds=args.seeds)
    return 0


if __name__ == '__main__':
    sys.exit(main())
