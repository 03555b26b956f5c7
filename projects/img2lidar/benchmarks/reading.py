"""Reading superpixel maps: the loader's checked reader against the plain library read.

    python tools/benchmark.py reading --repeats 200
    python tools/benchmark.py reading --downscale 2 --map-scale 2

The maps of the nuScenes sample's six images are made first (tools/create_superpixels.py's
code, ``--downscale``, ``--map-scale``, ``--format``), or read from ``--sp-root``. Per map,
the min and median over the repeats (one process, one thread; the two readers interleaved,
every map read once per repeat) of ``read_scaled_superpixels`` (which checks an ``.npz`` map
against its CRC-32s) and of the plain library read (``np.load(path)['labels']`` for ``.npz``,
``cv2.imread`` for PNG).
"""
import os.path as osp
import tempfile

import numpy as np

from .sample_data import SAMPLE_DIR, sample_info_file
from .timing import Report, interleaved, threads


def add_arguments(parser) -> None:
    parser.add_argument('--sample-dir', default=SAMPLE_DIR)
    parser.add_argument('--sp-root', help='read these maps instead of making them')
    parser.add_argument('--format', choices=['npz', 'png'], default='npz')
    parser.add_argument('--downscale', type=float, default=1.0)
    parser.add_argument('--map-scale', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=200)


def _library_read(path: str) -> np.ndarray:
    import cv2
    if path.endswith('.npz'):
        return np.load(path)['labels']
    return cv2.imread(path, cv2.IMREAD_UNCHANGED)


def run(args, report: Report) -> int:
    with threads(1):
        return _run(args, report)


def _run(args, report: Report) -> int:
    from ..datasets.transforms.superpixel_map import read_scaled_superpixels
    from ..preparation.superpixels import create_superpixels, list_jobs
    ann = sample_info_file(args.sample_dir)
    with tempfile.TemporaryDirectory() as tmp:
        sp_root = args.sp_root or osp.join(tmp, 'superpixels')
        if not args.sp_root:
            extra = {} if args.map_scale == 1 else dict(map_scale=args.map_scale)
            create_superpixels(ann, args.sample_dir, sp_root, img_prefix='', fmt=args.format,
                               progress=False, downscale=args.downscale, **extra)
        paths = [dst for _, dst in list_jobs(ann, args.sample_dir, '', sp_root,
                                             '.' + args.format)]
        for p in paths:  # the same maps, and warm caches
            assert np.array_equal(read_scaled_superpixels(p)[0], _library_read(p)), p
        readers = dict(checked=lambda: [read_scaled_superpixels(p) for p in paths],
                       library=lambda: [_library_read(p) for p in paths])
        times = {k: t.scaled(1 / len(paths))
                 for k, t in interleaved(readers, args.repeats).items()}
        sp, scale = read_scaled_superpixels(paths[0])
    lib = 'np.load' if args.format == 'npz' else 'cv2.imread'
    report.note(f'{len(paths)} .{args.format} maps of {sp.shape[1]}x{sp.shape[0]} (scale '
                f'{scale}), {args.repeats} repeats, one thread; ms per map, min / median.')
    report.table(['reader', 'ms per map'],
                 [('read_scaled_superpixels (checked)', times['checked'].ms(3)),
                  (lib, times['library'].ms(3))])
    report.note(f"{lib} / read_scaled_superpixels (medians): "
                f"{times['library'].median / times['checked'].median:.2f}x")
    return 0
