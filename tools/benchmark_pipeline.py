#!/usr/bin/env python
"""Time the pretraining pipeline per sample against only decoding the sample's images.

    python tools/benchmark_pipeline.py --data-root tests/data/nuscenes_sample \
        --ann-file tests/data/nuscenes_sample/n015-2018-07-24-11-22-45+0800.pkl \
        --sp-root /tmp/sp --repeats 20

Superpixel maps are made with tools/create_superpixels.py first if ``--sp-root`` is empty.
Prints median seconds per sample (one process, one thread) for: decoding the JPEGs with
OpenCV, the full training pipeline of configs/_base_/datasets (load, pair, crop, flip, cloud
augmentation, pack), and their ratio.
"""
import argparse
import os
import os.path as osp
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
sys.path.insert(0, osp.join(osp.dirname(__file__), '..'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--ann-file', required=True)
    parser.add_argument('--sp-root', required=True)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--decode-scale', type=int, default=2)
    args = parser.parse_args(argv)

    import projects.img2lidar  # noqa: F401
    from mmdet3d.registry import DATASETS
    from mmdet3d.utils import register_all_modules
    from projects.img2lidar.preparation.superpixels import create_superpixels
    register_all_modules(init_default_scope=True)
    cv2.setNumThreads(1)
    create_superpixels(args.ann_file, args.data_root, args.sp_root, img_prefix='', workers=1,
                       downscale=2)
    pipeline = [
        dict(type='LoadLidarPoints', load_dim=5),
        dict(type='LoadMultiViewImagesAndSuperpixels', decode_scale=args.decode_scale),
        dict(type='PointPixelPairing', min_depth=1.0),
        dict(type='PairedRandomResizedCrop', size=(224, 416)),
        dict(type='PairedRandomFlip', prob=0.5),
        dict(type='PairedCloudAugmentation'),
        dict(type='PackImageLidarInputs'),
    ]
    ds = DATASETS.build(dict(type='ImageLidarPretrainDataset', ann_file=osp.abspath(args.ann_file),
                             data_root=osp.abspath(args.data_root),
                             data_prefix=dict(pts='', img='', sp=osp.abspath(args.sp_root)),
                             pipeline=pipeline))
    paths = ds.get_data_info(0)['img_paths']
    ds[0]
    decode, full = [], []
    for i in range(args.repeats):  # interleaved, medians: robust to a busy machine
        t = time.perf_counter()
        for p in paths:
            cv2.imread(p)
        decode.append(time.perf_counter() - t)
        np.random.seed(i)
        t = time.perf_counter()
        ds[0]
        full.append(time.perf_counter() - t)
    decode, full = float(np.median(decode)), float(np.median(full))
    print(f'decode {len(paths)} JPEGs: {decode:.3f} s/sample; full pipeline: {full:.3f} '
          f's/sample; ratio {full / decode:.2f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
