#!/usr/bin/env python
"""Write mmdet3d v1.1 info files of a nuScenes root for image-to-lidar pretraining.

    python tools/create_pretrain_infos.py --root data/nuscenes --version v1.0-trainval \
        --out-dir data/nuscenes/infos

Writes nuscenes_infos_{pretrain (600 scenes), pretrain_val (100), train, val}.pkl; what they
hold is documented in ``projects.img2lidar.preparation.pretrain_infos``, where the code lives.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--root', required=True, help='nuScenes root (holds the version folder)')
    parser.add_argument('--version', default='v1.0-trainval', help='v1.0-trainval or v1.0-mini')
    parser.add_argument('--out-dir', default=None, help='defaults to the root')
    parser.add_argument(
        '--pretrain-val-scenes', default=None,
        help='file of the train scene names held out for pretraining validation, one per line '
        "(default: the project's list of SLidR's 100 scenes, projects/img2lidar/splits/"
        "nuscenes_pretrain_val_scenes.txt); 'none' holds out no scene. A missing file is an "
        'error')
    parser.add_argument('--splits', nargs='+', default=['pretrain', 'pretrain_val', 'train', 'val'])
    parser.add_argument('--prefix', default='nuscenes_infos')
    args = parser.parse_args(argv)

    from projects.img2lidar.preparation.pretrain_infos import create_pretrain_infos
    from projects.img2lidar.splits import NUSCENES_PRETRAIN_VAL_SCENES
    held = args.pretrain_val_scenes
    held = (str(NUSCENES_PRETRAIN_VAL_SCENES) if held is None else
            None if held.lower() == 'none' else held)
    create_pretrain_infos(args.root, args.version, args.out_dir, held, args.splits, args.prefix)
    return 0


if __name__ == '__main__':
    sys.exit(main())
