#!/usr/bin/env python
"""One table of mIoU per protocol for a list of work directories, plus the per-class IoU.

    python tools/results_table.py work_dirs/probe_stslidr work_dirs/ft1_stslidr \
        work_dirs/probe_random work_dirs/ft1_random [--labels ...] [--out table.md] [--json t.json]

How protocols, method labels and metrics are read from the work directories is documented in
``projects.img2lidar.evaluation.results_table``, where the code lives.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('work_dirs', nargs='+')
    parser.add_argument('--labels', nargs='+', help='method label of each work dir')
    parser.add_argument('--out', help='also write the tables to this markdown file')
    parser.add_argument('--json', help='also write {method: {protocol: mIoU %}} to this file')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.work_dirs):
        parser.error('give one label per work dir')
    from projects.img2lidar.evaluation.results_table import collect, write_results
    rows = collect(args.work_dirs, args.labels)
    if not rows:
        print('no results found', file=sys.stderr)
        return 1
    print(write_results(rows, args.out, args.json))
    return 0


if __name__ == '__main__':
    sys.exit(main())
