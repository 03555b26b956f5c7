"""SLIC superpixels: speed and agreement with full resolution by downscale, and the
throughput of tools/create_superpixels.py by workers.

    python tools/benchmark.py superpixels tests/data/nuscenes_sample/*.jpg --downscale 1 2
    python tools/benchmark.py superpixels tests/data/nuscenes_sample/*.jpg --no-agreement \\
        --downscale 1 2 --workers 1 2

Agreement (one process, one thread): for every image and downscale F, the seconds per image,
the number of segments, and two agreements with skimage's own full-resolution map (SLidR's
call): achievable segmentation accuracy (ASA: the fraction of pixels that keep the majority
reference label of their segment; 1.0 = the map never merges two reference segments) and
boundary recall (the fraction of reference boundary pixels with a boundary within 2 pixels).
The reference on the image shifted by one pixel shows how much two equally good maps agree.

Generation (``--workers``): ``create_superpixels`` (the code of tools/create_superpixels.py)
over the images, each linked ``--copies`` times under its own name so that every copy is
computed, with each worker count and downscale, into a fresh folder per repeat (OpenCV on one
thread per process). images/s per core divides by the workers; the hours for a dataset
(default: nuScenes' 168,780 keyframe images on 16 cores) assume that rate per core.
"""
import os
import os.path as osp
import pickle
import tempfile
import time

import numpy as np

from .timing import Report, Times, progress, threads

#: nuScenes' 700 train scenes (pretraining and its held-out split): 28,130 keyframes x 6 cameras
NUSCENES_KEYFRAME_IMAGES = 168780


def add_arguments(parser) -> None:
    parser.add_argument('images', nargs='+')
    parser.add_argument('--downscale', type=float, nargs='+', default=[1, 2])
    parser.add_argument('--no-agreement', action='store_true',
                        help='skip the agreement table (its skimage reference is slow)')
    parser.add_argument('--workers', type=int, nargs='+',
                        help='measure create_superpixels with these worker counts')
    parser.add_argument('--copies', type=int, default=4,
                        help='how often generation computes each image (default 4)')
    parser.add_argument('--repeats', type=int, default=2, help='generation runs per setting')
    parser.add_argument('--dataset-images', type=int, default=NUSCENES_KEYFRAME_IMAGES)
    parser.add_argument('--dataset-cores', type=int, default=16)


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
    import cv2
    near = cv2.dilate(boundaries(pred).astype(np.uint8), np.ones((2 * tol + 1, 2 * tol + 1)))
    return float(near[boundaries(ref)].mean())


def agreement(images, downscales) -> list:
    """Rows of the agreement table."""
    import cv2

    from ..preparation.superpixels import slic_superpixels
    # the reference is skimage's own slic at full resolution; 'shifted' is that reference on
    # the image moved by one pixel: the agreement two equally good SLIC maps have
    variants = [('skimage', 1.0, 'reference'), ('skimage', 1.0, 'shifted')]
    variants += [('opencv', float(f), '') for f in downscales]
    rows = {v: [] for v in variants}
    for path in images:
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
            progress(f'{osp.basename(path)} {pre} F={f:g} {kind}: {dt:.3f} s')
    out = []
    for (pre, f, kind), r in rows.items():
        r = np.array(r)
        out.append((pre + (f' ({kind})' if kind else ''), f'{f:g}', Times(r[:, 0]).ms(0),
                    f'{r[:, 1].mean():.0f}', f'{r[:, 2].mean():.4f}', f'{r[:, 3].mean():.4f}'))
    return out


def _generation_root(root: str, images, copies: int) -> str:
    """Links to every image ``copies`` times and an info file listing them (camera 'CAM')."""
    entries = []
    for path in images:
        stem, ext = osp.splitext(osp.basename(path))
        for k in range(copies):
            name = f'{stem}_copy{k}{ext}'
            os.symlink(osp.abspath(path), osp.join(root, name))
            entries.append(dict(images=dict(CAM=dict(img_path=name))))
    info = osp.join(root, 'images.pkl')
    with open(info, 'wb') as f:
        pickle.dump(dict(metainfo={}, data_list=entries), f)
    return info


def generation(images, downscales, workers, copies: int, repeats: int) -> dict:
    """(downscale, workers) -> Times of one create_superpixels run over every copy."""
    from ..preparation.superpixels import create_superpixels
    out = {}
    with tempfile.TemporaryDirectory() as root:
        info = _generation_root(root, images, copies)
        for f in downscales:
            for n in workers:
                values = []
                for r in range(repeats):
                    dst = osp.join(root, f'maps_{f:g}_{n}_{r}')
                    t = time.perf_counter()
                    create_superpixels(info, root, dst, img_prefix='', workers=n,
                                       progress=False, downscale=f)
                    values.append(time.perf_counter() - t)
                out[(f, n)] = Times(values)
                progress(f'downscale {f:g}, {n} workers: {out[(f, n)].ms(0)} ms per run')
    return out


def run(args, report: Report) -> int:
    with threads(1):
        return _run(args, report)


def _run(args, report: Report) -> int:
    import cv2
    if not args.no_agreement:
        rows = agreement(args.images, args.downscale)
        img = cv2.imread(args.images[0])
        report.note(f'{len(args.images)} images of {img.shape[1]}x{img.shape[0]}, one process, '
                    'one thread; seconds per image as ms, min / median over the images; '
                    'agreement with skimage\'s full-resolution map (mean over the images).')
        report.table(['preprocessing', 'downscale', 'ms / image / core', 'segments',
                      'ASA vs reference', 'boundary recall vs reference (2 px)'], rows)
    if args.workers:
        count = len(args.images) * args.copies
        times = generation(args.images, args.downscale, args.workers, args.copies,
                           args.repeats)
        rows = []
        for (f, n), t in times.items():
            per_core = (count / t.min / n, count / t.median / n)
            hours = args.dataset_images / (per_core[1] * args.dataset_cores) / 3600
            rows.append((f'{f:g}', n, t.rate(count, 2),
                         f'{per_core[0]:.2f} / {per_core[1]:.2f}', f'{hours:.1f}'))
        report.note(f'tools/create_superpixels.py\'s code on {count} images ({len(args.images)} '
                    f'x {args.copies} copies), {args.repeats} runs per setting, OpenCV on one '
                    'thread per process; rates best (minimum time) / median; hours for '
                    f'{args.dataset_images:,} images on {args.dataset_cores} cores at the '
                    'median rate per core.')
        report.table(['downscale', 'workers', 'images/s', 'images/s per core',
                      f'hours for {args.dataset_images:,} images on {args.dataset_cores} cores'],
                     rows)
    return 0
