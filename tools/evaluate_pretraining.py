#!/usr/bin/env python
"""Evaluate pretraining under a downstream protocol, over several seeds: one checkpoint, or
several pretraining runs of one method (its pretraining seeds).

    python tools/evaluate_pretraining.py CHECKPOINT [CHECKPOINT ...] --protocol NAME \
        [--seeds N] [--launcher none|pytorch|slurm] [--gpus N] [--partition P] \
        [--work-dir DIR] [--label LABEL] [--cfg-options key=value ...]

CHECKPOINT ``none`` (or ``random``) evaluates the random-initialisation baseline. NAME is a
protocol of configs/protocols (slidr, zero-shot, demo, pandaset) or a protocol file. Every run
of the protocol, for evaluation seeds 0..N-1, is one tools/train.py (then tools/test.py where
needed) job in ``<work-dir>/<protocol>/<run>/seed<k>``; with several checkpoints (pretraining
seeds 0..P-1 of one method, in the order given; --label is then required) checkpoint p's jobs
are ``<run>/pretrain<p>_seed<k>``, and the statistics are over all P x N results. Finished jobs
are kept, so a second call only runs what is missing. One evaluation at a time may work in
``<work-dir>/<protocol>``: a second one fails at once, naming the folder and the first one's
pid. The results (mIoU and per-class IoU per run: mean, sample std, 95% CI over the seeds,
failed runs counted apart, with the protocol's pinned hyper-parameters) go to
``<work-dir>/<protocol>/evaluation.{md,json,png}``. The harness is
``projects.img2lidar.evaluation.harness``.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoints', nargs='+', metavar='CHECKPOINT',
                        help="pretraining checkpoint, or 'none' for random init; several: the "
                        'pretraining seeds of one method (then --label is required)')
    parser.add_argument('--protocol', required=True, help='protocol name or file')
    parser.add_argument('--seeds', type=int,
                        help="number of evaluation seeds (default: the protocol's)")
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--gpus', type=int, default=1, help='processes (GPUs) per job')
    parser.add_argument('--partition', help='Slurm partition (--launcher slurm)')
    parser.add_argument('--work-dir', help='default: work_dirs/evaluation/<label>')
    parser.add_argument('--label', help='method label (default: the checkpoint folder name)')
    parser.add_argument('--cfg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='more options for every run (data roots, text embeddings ...)')
    args = parser.parse_args(argv)
    if len(args.checkpoints) > 1 and not args.label:
        parser.error('several checkpoints (pretraining seeds of one method) need --label')
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    from projects.img2lidar.evaluation.commands import Launcher
    from projects.img2lidar.evaluation.harness import (JobFailed, checkpoint_argument,
                                                       default_work_dir, evaluate,
                                                       evaluation_folder, say)
    from projects.img2lidar.evaluation.protocol import ProtocolError, load_protocol
    from projects.img2lidar.evaluation.report import evaluation_markdown, write_evaluation
    from projects.img2lidar.evaluation.results import checkpoint_label
    from projects.img2lidar.evaluation.run_folder import RunFolderConflict
    from projects.img2lidar.engine.tiny_sizes import TINY_ENV, tiny_enabled
    from projects.img2lidar.evaluation.work_lock import WorkFolderLocked, work_folder_lock
    checkpoints = [checkpoint_argument(c) for c in args.checkpoints]
    label = args.label or checkpoint_label(checkpoints[0])
    work_dir = args.work_dir or default_work_dir(label)
    try:
        launcher = Launcher(args.launcher, args.gpus, args.partition)
        protocol = load_protocol(args.protocol)
        seeds = range(args.seeds or protocol.seeds)
        if tiny_enabled():  # smoke runs of the documented commands: one evaluation seed
            seeds = range(1)
            say(f'{TINY_ENV}=1: one evaluation seed at tiny sizes; a smoke run, not a result')
        folder = evaluation_folder(work_dir, protocol)
        with work_folder_lock(folder):  # evaluate() takes it too; held here until written
            evaluation = evaluate(protocol, checkpoints, list(seeds), work_dir, label, launcher,
                                  args.cfg_options)
            paths = write_evaluation(evaluation, folder)
    except (ValueError, ProtocolError, RunFolderConflict, JobFailed, WorkFolderLocked) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(evaluation_markdown(evaluation))
    say('results: ' + ', '.join(paths.values()))
    return 0


if __name__ == '__main__':
    sys.exit(main())
