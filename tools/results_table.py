#!/usr/bin/env python
"""One table of mIoU per protocol for a list of evaluations or work directories, plus the
per-class IoU.

    python tools/results_table.py work_dirs/evaluation/stslidr/slidr work_dirs/probe_random \
        [--labels ...] [--out table.md] [--json t.json] [--png chart.png]

A path is an evaluation of tools/evaluate_pretraining.py (``<work-dir>/<protocol>``: every
seed of its runs) or the work directory of one tools/train.py / tools/test.py run. How
protocols, method labels, seeds and metrics are read is documented in
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
    parser.add_argument('--out', help='also write the tables to this markdown file')
    parser.add_argument('--json', help='also write {method: {protocol: mIoU %%}} to this file')
    parser.add_argument('--png', help='also draw a bar chart (error bars: 95%% CI over seeds)')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.work_dirs):
        parser.error('give one label per work dir')
    from projects.img2lidar.evaluation.results_table import collect, write_results
    rows = collect(args.work_dirs, args.labels)
    if not rows:
        print('no results found', file=sys.stderr)
        return 1
    print(write_results(rows, args.out, args.json, args.png))
    return 0


if __name__ == '__main__':
    sys.exit(main())
