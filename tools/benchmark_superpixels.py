#!/usr/bin/env python
"""Time SLIC per image on one core and measure what computing at reduced resolution gives up.

    python tools/benchmark_superpixels.py tests/data/nuscenes_sample/*.jpg --downscale 1 2 3 4

For every image and downscale factor F it prints the seconds per image (one process, one
thread), the number of segments, and two agreements with the full-resolution map:
achievable segmentation accuracy (ASA: the fraction of pixels that keep the majority
full-resolution label of their segment; 1.0 = the reduced map never merges two full-res
segments) and boundary recall (fraction of full-resolution boundary pixels with a reduced
boundary within 2 pixels).
"""
import argparse
import os
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..'))
from projects.img2lidar.preparation.superpixels import slic_superpixels  # noqa: E402


def asa(pred: np.ndarray, ref: np.ndarray) -> float:
    """Achievable segmentation accuracy of ``pred`` w.r.t. ``ref``."""
    pairs = pred.astype(np.int64) * (int(ref.max()) + 1) + ref
    counts = np.bincount(pairs.ravel())
    table = np.zeros((int(pred.max()) + 1, int(ref.max()) + 1), dtype=np.int64)
    nz = np.flatnonzero(counts)
    table[nz // (ref.max() + 1), nz % (ref.max() + 1)] = counts[nz]
    return float(table.max(1).sum() / pred.size)


def boundaries(labels: np.ndarray) -> np.ndarray:
    b = np.zeros(labels.shape, dtype=bool)
    b[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    b[1:, :] |= labels[1:, :] != labels[:-1, :]
    return b


def boundary_recall(pred: np.ndarray, ref: np.ndarray, tol: int = 2) -> float:
    near = cv2.dilate(boundaries(pred).astype(np.uint8), np.ones((2 * tol + 1, 2 * tol + 1)))
    ref_b = boundaries(ref)
    return float(near[ref_b].mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('images', nargs='+')
    parser.add_argument('--downscale', type=float, nargs='+', default=[1, 2, 3, 4])
    args = parser.parse_args(argv)
    # the reference is skimage's own slic at full resolution; 'shifted' is that reference on
    # the image moved by one pixel: the agreement two equally good SLIC maps have
    variants = [('skimage', 1.0, 'reference'), ('skimage', 1.0, 'shifted')]
    variants += [('opencv', float(f), '') for f in args.downscale]
    rows = {v: [] for v in variants}
    for path in args.images:
        img = cv2.imread(path)
        ref = None
        for v in variants:
            pre, f, kind = v
            src = np.ascontiguousarray(np.pad(img, ((0, 0), (1, 0), (0, 0)), mode='edge')[:, :-1]
                                       if kind == 'shifted' else img)
            t = time.perf_counter()
            labels = slic_superpixels(src, downscale=f, preprocess=pre)
            dt = time.perf_counter() - t
            if kind == 'reference':
                ref = labels
            rows[v].append((dt, len(np.unique(labels)), asa(labels, ref),
                            boundary_recall(labels, ref)))
            print(f'{os.path.basename(path)} {pre} F={f:g} {kind}: {dt:.3f} s, '
                  f'{rows[v][-1][1]} segments', flush=True)
    print(f'\n{len(args.images)} images of {img.shape[1]}x{img.shape[0]}, one core')
    print('| preprocessing | downscale | s / image / core | segments | ASA vs reference '
          '| boundary recall vs reference (2 px) |')
    print('|---|---|---|---|---|---|')
    for (pre, f, kind), r in rows.items():
        r = np.array(r)
        name = pre + (f' ({kind})' if kind else '')
        print(f'| {name} | {f:g} | {r[:, 0].mean():.3f} | {r[:, 1].mean():.0f} '
              f'| {r[:, 2].mean():.4f} | {r[:, 3].mean():.4f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
