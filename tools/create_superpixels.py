#!/usr/bin/env python
"""Compute SLIC superpixels for every camera image of one or more info files.

    python tools/create_superpixels.py data/nuscenes/nuscenes_infos_pretrain.pkl \
        data/nuscenes/nuscenes_infos_pretrain_val.pkl \
        --data-root data/nuscenes --out-dir data/nuscenes/superpixels --workers 16

Give every split the config reads (the pretraining infos and the validation infos: a run
checks at its start that the maps of both exist); an image listed by several infos is computed
once.

Writes one integer map per image to ``<out-dir>/<CAM>/<image stem>.npz`` (compressed uint8
when the ids fit, uint16 otherwise; ``--format png`` for PNG, which reads about 3x slower), the
layout :class:`ImageLidarPretrainDataset` reads with ``data_prefix['sp']``. Images whose map
exists are skipped, so a killed run resumes. Maps of another segmenter (SAM, SEEM, ...) can be
used instead: write them with the same layout (or ``.npy`` / PNG) and point
``data_prefix['sp']`` at them; the loader relabels any integer ids to 0..n-1.

SLIC defaults are SLidR's: ``slic(img, n_segments=150, compactness=6, sigma=3.0,
start_label=0)`` on the RGB image, computed with OpenCV's Lab conversion and blur (the same
maps, about 2x faster; ``--preprocess skimage`` for skimage's own). ``--downscale F`` runs SLIC
on the image resized by 1/F (INTER_AREA, sigma / F) and upsamples the labels by nearest
neighbour: F=2 is about 4x faster (tools/benchmark_superpixels.py measures speed and agreement
with full resolution). The code lives in ``projects.img2lidar.preparation.superpixels``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('info', nargs='+', help='mmdet3d info file(s) (.pkl)')
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--img-prefix', default='samples/{cam}',
                        help="image folder under the data root; '{cam}' is the camera name")
    parser.add_argument('--out-dir', required=True)
    parser.add_argument('--workers', type=int, default=os.cpu_count())
    parser.add_argument('--n-segments', type=int, default=150)
    parser.add_argument('--compactness', type=float, default=6.0)
    parser.add_argument('--sigma', type=float, default=3.0)
    parser.add_argument('--downscale', type=float, default=1.0)
    parser.add_argument('--preprocess', choices=['opencv', 'skimage'], default='opencv')
    parser.add_argument('--format', choices=['npz', 'png'], default='npz')
    args = parser.parse_args(argv)

    from projects.img2lidar.preparation.superpixels import create_superpixels
    create_superpixels(args.info, args.data_root, args.out_dir, img_prefix=args.img_prefix,
                       workers=args.workers, fmt=args.format, n_segments=args.n_segments,
                       compactness=args.compactness, sigma=args.sigma,
                       downscale=args.downscale, preprocess=args.preprocess)
    return 0


if __name__ == '__main__':
    sys.exit(main())
