#!/usr/bin/env python
"""Compute SLIC superpixels for every camera image of an info file.

    python tools/create_superpixels.py data/nuscenes/nuscenes_infos_pretrain.pkl \
        --data-root data/nuscenes --out-dir data/nuscenes/superpixels --workers 16

Writes one integer map per image to ``<out-dir>/<CAM>/<image stem>.npz`` (compressed uint8
when the ids fit, uint16 otherwise; ``--format png`` for PNG, which reads about 3x slower), the
layout :class:`ImageLidarPretrainDataset` reads with ``data_prefix['sp']``. Images whose map
exists are skipped, so a killed run resumes. Maps of another segmenter (SAM, SEEM, ...) can be
used instead: write them with the same layout (or ``.npy`` / PNG) and point
``data_prefix['sp']`` at them.

SLIC defaults are SLidR's: ``slic(img, n_segments=150, compactness=6, sigma=3.0,
start_label=0)`` on the RGB image, computed with OpenCV's Lab conversion and blur (the same
maps, about 2x faster; ``--preprocess skimage`` for skimage's own). ``--downscale F`` runs SLIC
on the image resized by 1/F (INTER_AREA, sigma / F) and upsamples the labels by nearest
neighbour: F=2 is about 4x faster (tools/benchmark_superpixels.py measures speed and agreement
with full resolution).
"""
import argparse
import os
import os.path as osp
import pickle
import sys
from typing import Tuple

import cv2
import numpy as np


def slic_superpixels(img_bgr: np.ndarray, n_segments: int = 150, compactness: float = 6.0,
                     sigma: float = 3.0, downscale: float = 1.0,
                     preprocess: str = 'opencv') -> np.ndarray:
    """SLIC labels of one image, (H, W) int32, ids from 0.

    Args:
        img_bgr (np.ndarray): Image as OpenCV reads it, (H, W, 3) uint8.
        n_segments, compactness, sigma: skimage's SLIC parameters (SLidR's defaults).
        downscale (float): Compute at 1 / downscale resolution (INTER_AREA, sigma / downscale)
            and upsample the labels by nearest neighbour. 1 = full resolution.
        preprocess (str): 'skimage' runs ``skimage.segmentation.slic`` as is; 'opencv' (the
            default) does its two preprocessing steps, RGB -> CIELAB and the Gaussian blur of
            the Lab image (truncated at 4 sigma, reflected borders), with OpenCV in float32,
            then runs skimage's SLIC iterations on the result: the same algorithm, about 2x
            faster at full resolution.
    """
    from skimage.segmentation import slic
    rgb = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    if downscale != 1:
        rgb = cv2.resize(rgb, (int(round(w / downscale)), int(round(h / downscale))),
                         interpolation=cv2.INTER_AREA)
        sigma = sigma / downscale
    if preprocess == 'skimage':
        labels = slic(rgb, n_segments=n_segments, compactness=compactness, sigma=sigma,
                      start_label=0)
    elif preprocess == 'opencv':
        # skimage stretches the RGB values to [0, 1] (one min and max over all channels)
        # before converting to Lab
        rgb = rgb.astype(np.float32)
        lo, hi = float(rgb.min()), float(rgb.max())
        lab = cv2.cvtColor((rgb - lo) / max(hi - lo, 1e-12), cv2.COLOR_RGB2LAB)
        if sigma > 0:
            radius = int(4.0 * sigma + 0.5)  # scipy's truncate=4.0
            lab = cv2.GaussianBlur(lab, (2 * radius + 1, 2 * radius + 1), sigma,
                                   borderType=cv2.BORDER_REFLECT)
        # skimage stretches this input again to [0, 1] (divides it by its range r) and then
        # multiplies colours by 1 / compactness: compactness / r undoes the stretch
        span = float(lab.max() - lab.min())
        labels = slic(lab, n_segments=n_segments, compactness=compactness / span, sigma=0,
                      convert2lab=False, channel_axis=-1, start_label=0)
    else:
        raise ValueError(f"preprocess must be 'opencv' or 'skimage', got {preprocess!r}")
    if downscale != 1:
        labels = cv2.resize(labels.astype(np.int32), (w, h), interpolation=cv2.INTER_NEAREST)
    return labels.astype(np.int32)


def write_labels(path: str, labels: np.ndarray) -> None:
    """Write a label map as uint8/uint16 ``.npz`` (compressed, key ``labels``) or PNG, chosen
    by the suffix; atomically, so a killed run leaves no partial file."""
    if labels.max() > np.iinfo(np.uint16).max:
        raise ValueError(f'{path}: {labels.max() + 1} segments do not fit 16 bits')
    labels = labels.astype(np.uint8 if labels.max() <= 255 else np.uint16)
    os.makedirs(osp.dirname(path), exist_ok=True)
    suffix = osp.splitext(path)[1]
    tmp = path + '.tmp' + suffix
    if suffix == '.npz':
        with open(tmp, 'wb') as f:
            np.savez_compressed(f, labels=labels)
    elif not cv2.imwrite(tmp, labels):
        raise OSError(f'could not write {tmp}')
    os.replace(tmp, path)


def _job(args: Tuple[str, str, dict]) -> str:
    img_path, out_path, params = args
    img = cv2.imread(img_path, cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(f'missing or unreadable image: {img_path}')
    write_labels(out_path, slic_superpixels(img, **params))
    return out_path


def list_jobs(info_file: str, data_root: str, img_prefix: str, out_dir: str,
              suffix: str = '.npz'):
    """(image path, map path) for every camera image of the info file."""
    with open(info_file, 'rb') as f:
        infos = pickle.load(f)
    jobs = []
    for info in infos['data_list']:
        for cam, img in info.get('images', {}).items():
            if 'img_path' not in img:
                continue
            src = osp.join(data_root, img_prefix.format(cam=cam), img['img_path'])
            stem = osp.splitext(osp.basename(img['img_path']))[0]
            jobs.append((src, osp.join(out_dir, cam, stem + suffix)))
    return jobs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('info', help='mmdet3d info file (.pkl)')
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

    from mmengine.utils import track_parallel_progress, track_progress
    params = dict(n_segments=args.n_segments, compactness=args.compactness, sigma=args.sigma,
                  downscale=args.downscale, preprocess=args.preprocess)
    jobs = list_jobs(args.info, args.data_root, args.img_prefix, args.out_dir, '.' + args.format)
    todo = [(src, dst, params) for src, dst in jobs if not osp.isfile(dst)]
    print(f'{len(jobs)} images, {len(jobs) - len(todo)} already done, {len(todo)} to compute '
          f'with {args.workers} workers')
    if todo:
        if args.workers > 1:
            track_parallel_progress(_job, todo, nproc=args.workers, chunksize=4)
        else:
            track_progress(_job, todo)
    return 0


if __name__ == '__main__':
    sys.exit(main())
