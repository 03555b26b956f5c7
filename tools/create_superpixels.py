#!/usr/bin/env python
"""Compute region maps (SLIC superpixels by default) for every camera image of one or more info
files.

    python tools/create_superpixels.py data/nuscenes/nuscenes_infos_pretrain.pkl \
        data/nuscenes/nuscenes_infos_pretrain_val.pkl \
        --data-root data/nuscenes --out-dir data/nuscenes/superpixels --workers 16

Give every split the config reads (the pretraining infos and the validation infos: a run
checks at its start that the maps of both exist); an image listed by several infos is computed
once.

Writes one integer map per image to ``<out-dir>/<CAM>/<image stem>.npz`` (compressed uint8
when the ids fit, uint16 otherwise, int16 when pixels are unassigned (-1); ``--format png``
for PNG, which reads about 3x slower), the layout :class:`ImageLidarPretrainDataset` reads with
``data_prefix['sp']``, and the sidecar ``<out-dir>/superpixels.json`` (generator, parameters,
library versions, checkpoint hash) that a pretraining run logs and checks against its dataset's
``superpixel_source``. Images whose map exists are skipped, so a killed run resumes; a folder
whose sidecar names another generator or other parameters is refused.

Generators (``--generator``, ``--list-generators``), their options as ``--options KEY=VALUE``:

- ``slic`` (default): SLidR's ``slic(img, n_segments=150, compactness=6, sigma=3.0,
  start_label=0)`` on the RGB image, computed with OpenCV's Lab conversion and blur (the same
  maps, about 2x faster; ``--preprocess skimage`` for skimage's own). ``--downscale F`` runs
  SLIC on the image resized by 1/F (INTER_AREA, sigma / F) and upsamples the labels by nearest
  neighbour: F=2 is about 4x faster (tools/benchmark.py superpixels). One process per worker.
- ``sam``: a SAM, SAM-HQ, SAM2 or EdgeTAM automatic mask generator through transformers, from
  a local checkpoint folder (``--checkpoint DIR``, a ``save_pretrained`` folder; nothing is
  downloaded); options ``points_per_side``, ``points_per_batch``, ``crops_n_layers``,
  ``pred_iou_thresh``, ``stability_score_thresh``, ``max_regions``, ``min_area``,
  ``fill=none|nearest|slic``, ``device``. CUDA when present.
- ``teacher_kmeans``: k-means on the frozen ImageNet MobileNetV2 teacher's features and the
  pixel position; ``mode=per_image`` (default) or ``mode=codebook`` (one codebook fitted over
  ``fit_images`` of the listed images, written to ``codebook=PATH``, by default
  ``<out-dir>/teacher_codebook.npz``, and read back on a rerun: ids shared across images);
  ``clusters``, ``position_weight``, ``input_width``; ``--checkpoint`` for other weights.
- ``precomputed``: maps someone else released, e.g.
  ``--options template=/data/seal/{sample_data_token}.png unassigned=0``: read, checked for the
  uint8 wrap, converted (``unassigned`` -> -1, ids 0..n-1) and written in this layout.

``--map-scale S`` stores each map at 1/S of its image's resolution (the ``.npz`` records S;
the loader reads full-resolution pixel (x, y) at [y // S, x // S] and never resizes a map):
with ``--downscale S`` the map is kept exactly as SLIC computed it, in about a quarter of the
bytes at S=2, which the loader inflates about 4x faster.

Network generators run in one process, ``--batch-size`` images per call, with ``--workers``
threads reading and writing. The code lives in ``projects.img2lidar.preparation.superpixels``
and ``projects.img2lidar.preparation.regions``.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

#: the SLIC options kept as flags (their defaults are SlicRegions')
SLIC_FLAGS = ('n_segments', 'compactness', 'sigma', 'downscale', 'preprocess')


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('info', nargs='*', help='mmdet3d info file(s) (.pkl)')
    parser.add_argument('--data-root')
    parser.add_argument('--img-prefix', default='samples/{cam}',
                        help="image folder under the data root; '{cam}' is the camera name")
    parser.add_argument('--out-dir')
    parser.add_argument('--workers', type=int, default=os.cpu_count(),
                        help='processes (SLIC, precomputed), or reading and writing threads '
                        '(network generators)')
    parser.add_argument('--generator', default='slic', help='a registered region generator')
    parser.add_argument('--checkpoint', help="the generator's weights (a file or a folder)")
    parser.add_argument('--options', nargs='+', action=DictAction, default={},
                        help="the generator's arguments, KEY=VALUE")
    parser.add_argument('--batch-size', type=int, default=1,
                        help='images per call of a network generator')
    parser.add_argument('--n-segments', type=int, help='SLIC (default 150)')
    parser.add_argument('--compactness', type=float, help='SLIC (default 6.0)')
    parser.add_argument('--sigma', type=float, help='SLIC (default 3.0)')
    parser.add_argument('--downscale', type=float, help='SLIC (default 1.0)')
    parser.add_argument('--preprocess', choices=['opencv', 'skimage'], help='SLIC (opencv)')
    parser.add_argument('--format', choices=['npz', 'png'], default='npz')
    parser.add_argument('--map-scale', type=int, default=1,
                        help="store each map at 1/S of its image's resolution, recording S "
                        '(npz only; with --downscale S nothing is lost)')
    parser.add_argument('--list-generators', action='store_true',
                        help='list the registered generators and exit')
    args = parser.parse_args(argv)
    if not args.list_generators and (not args.info or not args.data_root or not args.out_dir):
        parser.error('the info file(s), --data-root and --out-dir are required')
    return args


def generator_params(args: argparse.Namespace) -> dict:
    """The generator's arguments: ``--options``, the SLIC flags (SLIC only) and, for
    ``teacher_kmeans`` with ``mode=codebook``, the codebook's default place in the out dir."""
    params = dict(args.options)
    flags = {k: getattr(args, k) for k in SLIC_FLAGS if getattr(args, k) is not None}
    if flags and args.generator != 'slic':
        raise SystemExit(f'--{", --".join(k.replace("_", "-") for k in flags)}: SLIC options, '
                         f'but the generator is {args.generator!r} (use --options KEY=VALUE)')
    params.update(flags)
    if args.generator == 'teacher_kmeans' and params.get('mode') == 'codebook' and \
            not params.get('codebook'):
        params['codebook'] = osp.join(args.out_dir, 'teacher_codebook.npz')
    return params


def list_generators() -> None:
    from projects.img2lidar.preparation.regions import REGION_GENERATORS
    for name, cls in sorted(REGION_GENERATORS.module_dict.items()):
        print(f'{name:16s} {cls.__doc__.strip().splitlines()[0]}')


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list_generators:
        list_generators()
        return 0
    from projects.img2lidar.preparation.superpixels import create_superpixels
    create_superpixels(args.info, args.data_root, args.out_dir, img_prefix=args.img_prefix,
                       workers=args.workers, fmt=args.format, generator=args.generator,
                       checkpoint=args.checkpoint, batch_size=args.batch_size,
                       map_scale=args.map_scale, **generator_params(args))
    return 0


if __name__ == '__main__':
    sys.exit(main())
