#!/usr/bin/env python
"""Measure region sources against real lidar labels: purity, size and time per image.

    python tools/benchmark_regions.py --pandaset-root $IMG2LIDAR_SHARED_DATA/pandaset_sample

On the labelled PandaSet frames of the sample (10 frames of sequences 001, 002, 003; both
lidars; the front camera), every point projected into the image (depth > 1 m, the pairing rule
of the pretraining) carries PandaSet's semantic label, mapped to the evaluation classes of
``PandaSetSegDataset``. For each region source:

- **purity**: the share of the labelled, paired points whose region's majority label (among
  that image's labelled points in the region) is their own; over all 10 frames, and over the
  2 frames of sequence 003 alone;
- **size**: regions per image (distinct ids of the map) and labelled points per region (of
  the regions that hold any);
- **unassigned**: the share of the labelled paired points on pixels of no region;
- **time**: seconds per image on one core (one process, one thread; the mean over the
  frames, after one untimed call; map only, without reading the image).

Purity grows as regions shrink (one point per region is pure), so compare sources at similar
sizes; two reference rows bracket it: a regular grid of about SLIC's region count, and one
region per image (the share of the majority class). For the shared codebook, ``id purity``
pools each id's points over all frames: how well one id means one class everywhere.

Sources: ``slic`` (SLidR's defaults), ``slic-ds2`` (``--downscale 2``), ``teacher`` (per-image
k-means on the ImageNet MobileNetV2 teacher's features), ``codebook`` (one codebook fitted over
the 8 frames of sequences 001-002, applied to all 10), ``grid`` and ``whole`` (references).
SAM needs weights this machine lacks and is not measured. The converted frames, maps, codebook
and the table (``regions.md``, ``regions.json``) go to ``--work-dir``.

This script is standalone (not part of tools/benchmark.py).
"""
import argparse
import json
import os
import os.path as osp
import sys
import time

os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MKL_NUM_THREADS', '1')
sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

CAMERA = 'front_camera'
TRAIN, TEST = ('001', '002'), ('003', )
SOURCES = ('slic', 'slic-ds2', 'teacher', 'codebook', 'grid', 'whole')
LABELS = {'slic': 'SLIC (n_segments=150)', 'slic-ds2': 'SLIC --downscale 2',
          'teacher': 'teacher k-means, per image', 'codebook': 'teacher codebook (fit 001-002)',
          'grid': 'grid 16x9 (reference)', 'whole': 'one region per image (reference)'}


def convert(pandaset_root: str, out: str) -> None:
    """The sample's frames in the project's layout (once): splits all, train, val."""
    from projects.img2lidar.preparation.pandaset_infos import create_pandaset_infos
    if not osp.isfile(osp.join(out, 'pandaset_infos_all.pkl')):
        create_pandaset_infos(pandaset_root, out, lidar='both', progress=False, splits=dict(
            all=TRAIN + TEST, train=TRAIN, val=TEST))


def load_frames(data_root: str):
    """Each frame's image, sequence, and its labelled points' pixels and labels."""
    import pickle

    from projects.img2lidar.datasets import PandaSetSegDataset
    from projects.img2lidar.datasets.transforms.point_pixel_pairing import project_to_cameras
    meta = PandaSetSegDataset.METAINFO
    ignore = len(meta['classes'])
    lut = np.full(meta['max_label'] + 1, ignore, dtype=np.int64)
    for raw, label in meta['seg_label_mapping'].items():
        lut[raw] = label
    with open(osp.join(data_root, 'pandaset_infos_all.pkl'), 'rb') as f:
        infos = pickle.load(f)['data_list']
    frames = []
    for info in infos:
        lidar = info['lidar_points']
        pts = np.fromfile(osp.join(data_root, 'points', lidar['lidar_path']), dtype=np.float32)
        pts = pts.reshape(-1, lidar['num_pts_feats'])[:, :3]
        raw = np.fromfile(osp.join(data_root, 'labels', info['pts_semantic_mask_path']),
                          dtype=np.uint8)
        cam = info['images'][CAMERA]
        image = osp.join(data_root, 'camera', CAMERA, cam['img_path'])
        hw = cv2.imread(image).shape[:2]
        _, idx, pixels = project_to_cameras(pts, [cam['cam2img']], [cam['lidar2cam']], [hw])
        frames.append(dict(token=info['token'], sequence=info['sequence'], image=image,
                           pixels=pixels, labels=lut[raw[idx]]))
    return frames, ignore


def reference_map(kind: str, hw: tuple) -> np.ndarray:
    """A 16x9 grid, or one region."""
    h, w = hw
    if kind == 'whole':
        return np.zeros(hw, dtype=np.int32)
    ys = np.minimum(np.arange(h) * 9 // h, 8)
    xs = np.minimum(np.arange(w) * 16 // w, 15)
    return (ys[:, None] * 16 + xs[None, :]).astype(np.int32)


def build(source: str, work_dir: str, checkpoint: str, train_images):
    """The generator of a source (the codebook fitted over the train images), its fit time."""
    from projects.img2lidar.preparation.regions import build_region_generator
    cfg = {'slic': dict(type='slic'), 'slic-ds2': dict(type='slic', downscale=2),
           'teacher': dict(type='teacher_kmeans', checkpoint=checkpoint),
           'codebook': dict(type='teacher_kmeans', checkpoint=checkpoint, mode='codebook',
                            codebook=osp.join(work_dir, 'teacher_codebook.npz'))}[source]
    gen = build_region_generator(cfg)
    start = time.perf_counter()
    if source == 'codebook' and osp.isfile(cfg['codebook']):
        os.remove(cfg['codebook'])  # fit afresh, to time it
    gen.prepare(train_images)
    return gen, time.perf_counter() - start


def measure(source: str, frames, ignore: int, work_dir: str, checkpoint: str) -> dict:
    """Purity, size and time of one source over the frames."""
    from projects.img2lidar.preparation.regions.label_purity import RegionPurity, region_purity
    images = {f['token']: cv2.cvtColor(cv2.imread(f['image']), cv2.COLOR_BGR2RGB)
              for f in frames}
    gen, fit_s = None, 0.0
    if source not in ('grid', 'whole'):
        train = [f['image'] for f in frames if f['sequence'] in TRAIN]
        gen, fit_s = build(source, work_dir, checkpoint, train)
        gen.generate(images[frames[0]['token']])  # untimed warm-up
    total, test, seconds, regions = RegionPurity(), RegionPurity(), [], []
    pooled = {}
    for f in frames:
        start = time.perf_counter()
        img = images[f['token']]
        labels = reference_map(source, img.shape[:2]) if gen is None else gen.generate(img)
        seconds.append(time.perf_counter() - start)
        regions.append(len(np.unique(labels[labels >= 0])))
        at = labels[f['pixels'][:, 1], f['pixels'][:, 0]]
        counts = region_purity(at, f['labels'], ignore)
        total = total + counts
        if f['sequence'] in TEST:
            test = test + counts
        keep = (at >= 0) & (f['labels'] != ignore)
        for rid, lab in zip(at[keep], f['labels'][keep]):
            pooled.setdefault(int(rid), np.zeros(ignore, dtype=np.int64))[lab] += 1
    id_purity = (sum(int(v.max()) for v in pooled.values()) / max(total.counted, 1)
                 if source == 'codebook' else None)
    return dict(source=source, label=LABELS[source], purity=total.purity,
                purity_test=test.purity, id_purity=id_purity,
                regions_per_image=float(np.mean(regions)),
                points_per_region=total.points_per_region,
                unassigned=total.unassigned / max(total.unassigned + total.counted, 1),
                seconds_per_image=float(np.mean(seconds)), fit_seconds=fit_s,
                points=total.counted, spec=None if gen is None else gen.spec())


def table(rows) -> str:
    lines = ['| source | purity (10 frames) | purity (003) | id purity | regions / image | '
             'points / region | unassigned | s / image (1 core) |',
             '|---|---|---|---|---|---|---|---|']
    for r in rows:
        idp = '-' if r['id_purity'] is None else f"{r['id_purity']:.3f}"
        lines.append(f"| {r['label']} | {r['purity']:.3f} | {r['purity_test']:.3f} | {idp} | "
                     f"{r['regions_per_image']:.0f} | {r['points_per_region']:.0f} | "
                     f"{100 * r['unassigned']:.1f}% | {r['seconds_per_image']:.2f} |")
    return '\n'.join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    shared = os.environ.get('IMG2LIDAR_SHARED_DATA', 'shared/data')
    parser.add_argument('--pandaset-root', default=osp.join(shared, 'pandaset_sample'))
    parser.add_argument('--work-dir', default='work_dirs/benchmark_regions')
    parser.add_argument('--sources', nargs='+', choices=SOURCES, default=list(SOURCES))
    parser.add_argument('--checkpoint', default='checkpoints/mobilenetv2-imagenet.pth',
                        help="the teacher's weights (tools/convert_teacher_checkpoint.py "
                        'package:mobilenetv2-imagenet makes them)')
    args = parser.parse_args(argv)

    import torch
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    data_root = osp.join(args.work_dir, 'pandaset')
    convert(args.pandaset_root, data_root)
    frames, ignore = load_frames(data_root)
    rows = []
    for source in args.sources:
        rows.append(measure(source, frames, ignore, args.work_dir, args.checkpoint))
        print(f"{source}: purity {rows[-1]['purity']:.3f}, {rows[-1]['regions_per_image']:.0f} "
              f"regions/image, {rows[-1]['seconds_per_image']:.2f} s/image", flush=True)
    text = table(rows)
    fits = [f"{r['label']}: fitted in {r['fit_seconds']:.1f} s" for r in rows
            if r['source'] == 'codebook']
    print(f"\n{sum(len(f['labels']) for f in frames)} paired points in {len(frames)} frames, "
          f"{rows[0]['points']} labelled")
    print(text)
    for line in fits:
        print(line)
    with open(osp.join(args.work_dir, 'regions.md'), 'w') as f:
        f.write(text + '\n' + '\n'.join(fits) + '\n')
    with open(osp.join(args.work_dir, 'regions.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
