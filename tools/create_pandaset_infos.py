#!/usr/bin/env python
"""Write mmdet3d v1.1 info files, ego-frame point files and label files of a PandaSet root.

    python tools/create_pandaset_infos.py --root data/pandaset --out-dir data/pandaset_converted \
        --lidar pandar64 --split train=001,002,005 --split val=@val_sequences.txt

Every sequence folder of the root is found; ``--split NAME=SEQ[,SEQ...]`` (or ``NAME=@FILE``,
one sequence per line) lists the sequences of a split and writes
``<out-dir>/pandaset_infos_<NAME>.pkl``; without ``--split`` one split ``all`` holds every
sequence. What the files hold (the point columns, the labels, the image links) is documented in
``projects.img2lidar.preparation.pandaset_infos``, where the code lives.
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))


def parse_splits(specs: Optional[Sequence[str]]) -> Optional[Dict[str, List[str]]]:
    """``['train=001,002', 'val=@val.txt']`` -> ``{'train': ['001', '002'], 'val': [...]}``."""
    if not specs:
        return None
    from projects.img2lidar.splits import read_name_list
    splits = {}
    for spec in specs:
        name, sep, value = spec.partition('=')
        if not sep or not name or not value:
            raise ValueError(f'--split expects NAME=SEQ[,SEQ...] or NAME=@FILE, got {spec!r}')
        if name in splits:
            raise ValueError(f'--split {name} is given twice')
        splits[name] = (read_name_list(value[1:]) if value.startswith('@') else
                        [s.strip() for s in value.split(',') if s.strip()])
    return splits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', required=True, help='PandaSet root (holds the sequence folders)')
    parser.add_argument('--out-dir', required=True,
                        help='where points/, labels/, camera/ and the info files go (one per '
                        'lidar choice)')
    parser.add_argument('--lidar', choices=['pandar64', 'pandargt', 'both'], default='pandar64')
    parser.add_argument('--split', action='append', metavar='NAME=SEQS',
                        help='sequences of one split, comma-separated, or @FILE with one per '
                        'line; repeat for each split (default: one split "all")')
    parser.add_argument('--prefix', default='pandaset_infos')
    parser.add_argument('--images', choices=['link', 'copy'], default='link',
                        help='camera images under the out dir as relative symbolic links '
                        '(default) or copies')
    args = parser.parse_args(argv)

    from projects.img2lidar.preparation.pandaset_infos import create_pandaset_infos
    create_pandaset_infos(args.root, args.out_dir, parse_splits(args.split), args.lidar,
                          args.prefix, args.images)
    return 0


if __name__ == '__main__':
    sys.exit(main())
