#!/usr/bin/env python
"""The real-data check: pretrain on real labelled PandaSet frames without their labels, from a
real ImageNet teacher, and probe the frozen student on a held-out sequence.

    .venv/bin/python tools/real_data_check.py                # the sample at $IMG2LIDAR_SHARED_DATA
    .venv/bin/python tools/real_data_check.py --pandaset PATH/pandaset_sample --seeds 3
    .venv/bin/python tools/real_data_check.py --transductive # pretraining on all 10 frames
    .venv/bin/python tools/real_data_check.py --methods slidr st cb stslidr st_cb_nearest \
        --name results_stslidr_ablation                      # ST-SLidR's ablation
    .venv/bin/python tools/real_data_check.py --methods slidr \
        --regions slic teacher_kmeans teacher_codebook --name results_regions  # region sources

By default the pretraining reads sequences 001 and 002 only and sequence 003 is held out from
everything; --transductive pretrains on all frames (003 included, without labels) and reports
apart. ``--methods`` picks the pretraining methods (the four of configs/real_data by default;
the other rows of ST-SLidR's ablation: st, cb, st_cb_nearest, st_cb_adaptive, cb_adaptive);
``--regions`` pretrains every method once per region source (SLIC by default; the ImageNet
teacher's k-means regions per image, or one codebook fitted on the pretraining frames). Writes
work_dirs/real_data/results.{md,json} (results_transductive.{md,json} for --transductive,
``--name`` another stem; what is measured, and how: the module doc of
projects/img2lidar/evaluation/real_data_check.py). Everything it makes is reused by a second
call: converted frames, superpixels, the converted teacher, finished pretraining runs of the same
variant. With IMG2LIDAR_TINY=1 it is a smoke run: one seed, tiny pretraining (tools/train.py
shrinks itself), the smallest probe, its pretraining runs kept apart from the real ones.
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
    parser.add_argument('--transductive', action='store_true',
                        help='pretrain on all 10 frames (the test sequence 003 included, '
                        'without labels) instead of sequences 001 and 002 only; reported apart')
    parser.add_argument('--methods', nargs='+', default=None,
                        help='pretraining methods (default: slidr stslidr relational '
                        'similarity); choices: see projects/img2lidar/evaluation/'
                        'real_data_check.py METHODS')
    parser.add_argument('--regions', nargs='+', default=['slic'],
                        help='region sources (slic, teacher_kmeans, teacher_codebook: '
                        'REGION_SOURCES there); every method pretrains once per source')
    parser.add_argument('--name', help='file stem of the report in the work dir (default: '
                        'results, results_transductive with --transductive)')
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f'--seeds must be at least 1, got {args.seeds}')
    os.environ.setdefault('OMP_NUM_THREADS', str(min(2, os.cpu_count() or 1)))
    import projects.img2lidar  # noqa: F401  compat fixes and registrations
    from mmdet3d.utils import register_all_modules
    from projects.img2lidar.engine.tiny_sizes import TINY_ENV, tiny_enabled
    from projects.img2lidar.evaluation.real_data_check import (DEFAULT_METHODS, METHODS,
                                                               REGION_SOURCES, TINY_PROBE, log,
                                                               run)
    methods = args.methods or list(DEFAULT_METHODS)
    for option, given, known in (('--methods', methods, METHODS),
                                 ('--regions', args.regions, REGION_SOURCES)):
        unknown = [m for m in given if m not in known]
        if unknown:
            parser.error(f'unknown {option} {unknown}; choose from {sorted(known)}')
    register_all_modules(init_default_scope=True)
    smoke = tiny_enabled()
    seeds = 1 if smoke else args.seeds
    if smoke:
        log(f'{TINY_ENV}=1: a smoke run, not a result: one seed (of --seeds {args.seeds}), tiny '
            f'pretraining, a probe of {TINY_PROBE.points_per_frame} points per frame and '
            f'{TINY_PROBE.steps} Adam steps')
    os.makedirs(args.work_dir, exist_ok=True)
    run(osp.abspath(args.pandaset), osp.abspath(args.work_dir), REPO_ROOT, seeds=seeds,
        methods=methods, transductive=args.transductive, smoke=smoke, regions=args.regions,
        name=args.name)
    return 0


if __name__ == '__main__':
    sys.exit(main())
