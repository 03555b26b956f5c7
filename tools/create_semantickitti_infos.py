#!/usr/bin/env python
"""Write mmdet3d 1.4's SemanticKITTI info files (train, val, test) of a SemanticKITTI root.

    python tools/create_semantickitti_infos.py --root data/semantickitti \
        [--out-dir data/semantickitti] [--prefix semantickitti] [--splits train val test]

Reads the standard layout (``sequences/XX/velodyne/*.bin``, ``sequences/XX/labels/*.label``)
and writes ``<out-dir>/<prefix>_infos_{train,val,test}.pkl`` (sequences 00-07, 09, 10 / 08 /
11-21), the files of mmdet3d 1.4's ``tools/create_data.py semantickitti``, which the
SemanticKITTI configs (``configs/_base_/datasets/semantickitti_lidarseg.py``) read from their
``data_root``. A missing folder or label file is an error naming it. What the files hold is
documented in ``projects.img2lidar.preparation.semantickitti_infos``, where the code lives.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))


def main(argv=None) -> int:
    """Parse the command line and write the info files.

    Args:
        argv (list[str], optional): Arguments; ``sys.argv[1:]`` when None.

    Returns:
        int: 0 on success.
    """
    from projects.img2lidar.preparation.semantickitti_infos import (SPLIT_SEQUENCES,
                                                                    create_semantickitti_infos)
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', required=True,
                        help='SemanticKITTI root (holds sequences/XX/velodyne and labels)')
    parser.add_argument('--out-dir', default=None,
                        help="where the info files go (default: the root, the configs' "
                        'data_root)')
    parser.add_argument('--prefix', default='semantickitti',
                        help="file name prefix (mmdet3d's --extra-tag): <prefix>_infos_<split>.pkl")
    parser.add_argument('--splits', nargs='+', choices=list(SPLIT_SEQUENCES),
                        default=list(SPLIT_SEQUENCES), help='splits to write (default: all)')
    args = parser.parse_args(argv)
    create_semantickitti_infos(args.root, args.out_dir, args.prefix, args.splits)
    return 0


if __name__ == '__main__':
    sys.exit(main())
