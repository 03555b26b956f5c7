#!/usr/bin/env python
"""Time reading superpixel maps: the loader's reader against np.load / cv2.imread.

    python tools/benchmark_superpixel_reading.py --data-root tests/data/nuscenes_sample \
        --ann-file tests/data/nuscenes_sample/n015-2018-07-24-11-22-45+0800.pkl \
        --img-prefix '' --sp-root /tmp/sp_full --repeats 200

Maps are made first (tools/create_superpixels.py's code, full resolution unless
``--downscale``) where ``--sp-root`` has none. Prints, per map, the min and median over the
repeats (one process, one thread; the two readers interleaved, every map of the info file read
once per repeat) of ``read_superpixels`` (which checks an ``.npz`` map against its CRC-32) and
of the plain library read (``np.load(path)['labels']`` for ``.npz``, ``cv2.imread`` for PNG).
"""
import argparse
import os
import os.path as osp
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402


def _library_read(path: str) -> np.ndarray:
    if path.endswith('.npz'):
        return np.load(path)['labels']
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--ann-file', required=True)
    parser.add_argument('--img-prefix', default='samples/{cam}')
    parser.add_argument('--sp-root', required=True)
    parser.add_argument('--format', choices=['npz', 'png'], default='npz')
    parser.add_argument('--downscale', type=float, default=1.0)
    parser.add_argument('--repeats', type=int, default=200)
    args = parser.parse_args(argv)

    from projects.img2lidar.datasets.transforms import read_superpixels
    from projects.img2lidar.preparation.superpixels import create_superpixels, list_jobs
    cv2.setNumThreads(1)
    create_superpixels(args.ann_file, args.data_root, args.sp_root, img_prefix=args.img_prefix,
                       fmt=args.format, progress=False, downscale=args.downscale)
    paths = [dst for _, dst in list_jobs(args.ann_file, args.data_root, args.img_prefix,
                                         args.sp_root, '.' + args.format)]
    for p in paths:  # the same maps, and warm caches
        assert np.array_equal(read_superpixels(p), _library_read(p)), p
    readers = dict(read_superpixels=read_superpixels, library=_library_read)
    times = {k: [] for k in readers}
    for _ in range(args.repeats):
        for name, read in readers.items():
            t = time.perf_counter()
            for p in paths:
                read(p)
            times[name].append((time.perf_counter() - t) / len(paths))
    shape = read_superpixels(paths[0]).shape
    lib = 'np.load' if args.format == 'npz' else 'cv2.imread'
    print(f'{len(paths)} .{args.format} maps of {shape[1]}x{shape[0]}, {args.repeats} repeats, '
          'ms per map (min / median):')
    for name, label in (('read_superpixels', 'read_superpixels'), ('library', lib)):
        t = np.array(times[name]) * 1e3
        print(f'  {label:17s} {t.min():.3f} / {np.median(t):.3f}')
    ratio = np.median(times['library']) / np.median(times['read_superpixels'])
    print(f'  {lib} / read_superpixels (medians): {ratio:.2f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
