#!/usr/bin/env python
"""Summarise a folder of region maps, yours or downloaded, and catch what breaks them.

    python tools/check_superpixels.py data/nuscenes/superpixels --images data/nuscenes/samples
    python tools/check_superpixels.py /data/seal/superpixels_sam --limit 500

Reads every map under the folder (``.npz``, ``.npy``, ``.png``; ``--limit N`` reads N of them,
evenly spaced) and prints: how many, their sizes and stored types, regions per map, the share
of unassigned (negative) pixels, the id range, pieces per id, the folder's sidecar if it has
one, and, with ``--images DIR``, whether each map has its image's size (the image with the
same relative path and stem under DIR, else the same stem anywhere under it). Then the
findings:

- **uint8 wrap**: maps that use all 256 ids of uint8, which only a generator that wrote more
  than 255 masks as uint8 (wrapping around, unrelated masks sharing ids) makes;
- **0 as unassigned**: maps whose id 0 falls into far more separate pieces than any other id:
  the pixels no mask covers were given id 0, the first mask's id;
- maps of another size than their image, unreadable or damaged maps.

Exits 1 when there is a finding, 0 otherwise. The code lives in
``projects.img2lidar.preparation.regions.map_check``.
"""
import argparse
import os
import os.path as osp
import sys
from collections import Counter
from typing import Dict, List, Optional

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

MAP_SUFFIXES = ('.npz', '.npy', '.png')
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')
EXAMPLES = 3


def list_maps(folder: str) -> List[str]:
    """Every map file under the folder, sorted."""
    found = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        found += [osp.join(root, f) for f in sorted(files) if f.endswith(MAP_SUFFIXES)
                  and '.tmp' not in f and f != 'teacher_codebook.npz']
    return found


def index_images(folder: str) -> Dict[str, str]:
    """Image paths by relative path without suffix, and by bare stem."""
    index: Dict[str, str] = {}
    for root, dirs, files in os.walk(folder, followlinks=True):
        for f in files:
            if f.lower().endswith(IMAGE_SUFFIXES):
                full = osp.join(root, f)
                index.setdefault(osp.splitext(osp.relpath(full, folder))[0], full)
                index.setdefault(osp.splitext(f)[0], full)
    return index


def image_shape(map_path: str, folder: str, images: Dict[str, str]) -> Optional[tuple]:
    """(H, W) of the map's image, read from its header; None when none is found."""
    from PIL import Image
    rel = osp.splitext(osp.relpath(map_path, folder))[0]
    path = images.get(rel) or images.get(osp.basename(rel))
    if path is None:
        return None
    with Image.open(path) as img:
        return img.size[1], img.size[0]


def spread(values: List[float], fmt: str = '{:.0f}') -> str:
    import numpy as np
    if not values:
        return '-'
    v = np.asarray(values, dtype=float)
    return (f'min {fmt.format(v.min())}, median {fmt.format(np.median(v))}, '
            f'max {fmt.format(v.max())}')


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('folder', help='folder of maps (searched recursively)')
    parser.add_argument('--images', help='image folder, to compare the sizes')
    parser.add_argument('--limit', type=int, help='read at most this many maps, evenly spaced')
    args = parser.parse_args(argv)

    import numpy as np

    from projects.img2lidar.datasets.transforms.superpixel_map import read_superpixels
    from projects.img2lidar.preparation.regions.map_check import summarize_map
    from projects.img2lidar.preparation.regions.sidecar import describe, read_sidecar
    paths = list_maps(args.folder)
    if not paths:
        print(f'{args.folder}: no map (.npz, .npy, .png) found')
        return 1
    if args.limit and len(paths) > args.limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, args.limit).round().astype(int)]
    images = index_images(args.images) if args.images else {}
    summaries, unreadable, no_image = [], [], []
    for path in paths:
        try:
            labels = read_superpixels(path)
        except (OSError, ValueError) as e:
            unreadable.append(f'{path}: {e}')
            continue
        shape = image_shape(path, args.folder, images) if args.images else None
        if args.images and shape is None:
            no_image.append(path)
        summaries.append(summarize_map(labels, path, shape))

    try:
        sidecar = read_sidecar(args.folder)
        made_by = describe(sidecar) if sidecar else 'no sidecar (superpixels.json)'
    except ValueError as e:
        made_by = f'unreadable sidecar: {e}'
    s = summaries
    print(f'{args.folder}: {len(paths)} maps read'
          + (f' ({len(list_maps(args.folder))} in the folder)' if args.limit else ''))
    print(f'  made by       {made_by}')
    if s:
        shapes = Counter(f'{m.shape[1]}x{m.shape[0]}' for m in s)
        print('  size (WxH)    ' + ', '.join(f'{k} ({v})' for k, v in shapes.most_common(4)))
        print('  stored as     ' + ', '.join(f'{k} ({v})' for k, v in
                                              Counter(m.dtype for m in s).most_common()))
        print(f'  regions/map   {spread([m.regions for m in s])}')
        print(f'  unassigned    {spread([100 * m.unassigned for m in s], "{:.1f}%")}')
        print(f'  ids           {min(m.id_min for m in s)}..{max(m.id_max for m in s)}')
        print(f'  pieces per id median over maps {spread([m.median_pieces for m in s], "{:.1f}")}')
        print(f'  id 0          {spread([100 * m.zero_share for m in s], "{:.1f}%")} of the '
              f'pixels, in {spread([m.zero_pieces for m in s])} pieces')
        if args.images:
            matched = [m for m in s if m.size_ok is not None]
            print(f'  image sizes   {sum(m.size_ok for m in matched)} of {len(matched)} maps '
                  f'match their image ({len(no_image)} without an image found)')

    findings = []
    wrapped = [m.path for m in s if m.saturated]
    if wrapped:
        findings.append(
            (f'uint8 wrap: {len(wrapped)} maps use all 256 ids of uint8: more than 255 masks '
             'were written as uint8 and wrapped around, so unrelated masks share ids. '
             'Regenerate them with 16-bit ids (tools/create_superpixels.py writes uint16 when '
             'needed)', wrapped))
    zero = [m.path for m in s if m.zero_unassigned]
    if zero:
        findings.append(
            (f'0 as unassigned: in {len(zero)} maps id 0 falls into far more pieces than any '
             'other id (the pixels no mask covers were given id 0, the same id as a mask). '
             'Convert them with tools/create_superpixels.py --generator precomputed --options '
             "template=... unassigned=0 (0 -> -1), then pretrain with "
             "negative_superpixels='ignore'", zero))
    wrong = [f'{m.path}: {m.shape[1]}x{m.shape[0]}, image {m.image_shape[1]}x'
             f'{m.image_shape[0]}' for m in s if m.size_ok is False]
    if wrong:
        findings.append((f'size: {len(wrong)} maps differ from their image\'s size', wrong))
    if unreadable:
        findings.append((f'unreadable: {len(unreadable)} maps', unreadable))
    if not findings:
        print('OK: no problem found')
        return 0
    print('Findings:')
    for text, examples in findings:
        print(f'  - {text}')
        for e in examples[:EXAMPLES]:
            print(f'      {e}')
        if len(examples) > EXAMPLES:
            print(f'      ... and {len(examples) - EXAMPLES} more')
    return 1


if __name__ == '__main__':
    sys.exit(main())
