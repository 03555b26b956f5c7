#!/usr/bin/env python
"""One table of mIoU per protocol for a list of evaluations or work directories, plus the
per-class IoU, and optionally each method's difference from a reference method paired by seed.

    python tools/results_table.py work_dirs/evaluation/stslidr/slidr work_dirs/probe_random \
        [--labels ...] [--paired-with LABEL] [--out table.md] [--json t.json] [--png chart.png]

A path is an evaluation of tools/evaluate_pretraining.py (``<work-dir>/<protocol>``: every
pretraining and evaluation seed of its runs) or the work directory of one tools/train.py /
tools/test.py run, whose protocol, method and seed are read from the config mmengine dumped
there. ``--paired-with LABEL`` adds, per method and protocol, the mean difference from LABEL
over the results that share a pretraining seed and an evaluation seed, with its Student-t 95%
interval. How everything is read is documented in
``projects.img2lidar.evaluation.results_table``, where the code lives.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+', help='evaluations or work directories')
    parser.add_argument('--labels', nargs='+', help='method label of each work dir')
    parser.add_argument('--paired-with', metavar='LABEL',
                        help='also give each method\'s difference from this method, paired by '
                        '(pretraining seed, evaluation seed), with its 95%% interval')
    parser.add_argument('--out', help='also write the tables to this markdown file')
    parser.add_argument('--json', help='also write the tables (mean, std, CI, n, seeds, failed '
                        'runs per method and protocol; the paired differences) to this file')
    parser.add_argument('--png', help='also draw a bar chart (error bars: 95%% CI over seeds)')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.work_dirs):
        parser.error('give one label per work dir')
    from projects.img2lidar.evaluation.results_table import collect, write_results
    try:
        rows = collect(args.work_dirs, args.labels)
        if not rows:
            print('no results found', file=sys.stderr)
            return 1
        print(write_results(rows, args.out, args.json, args.png, args.paired_with))
    except ValueError as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
