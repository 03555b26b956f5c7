"""The per-sample training pipeline against decoding its images at the same scale, with a
profile of its parts (one process, one thread).

    python tools/benchmark.py pipeline --decode-scales 1 2 --repeats 50

The pipeline is the config's ``train_dataloader.dataset.pipeline`` (default: the nuScenes
pretraining data, ``configs/_base_/datasets/nuscenes_pretrain.py``: load, pair, 224x416 crop,
flip, cloud augmentation, pack) run by its dataset on the real nuScenes sample, with
``LoadMultiViewImagesAndSuperpixels.decode_scale`` set to each ``--decode-scales`` in turn. Its
baseline decodes the sample's six JPEGs with the loader's own call
(``LoadMultiViewImagesAndSuperpixels.read_image``) at that scale. The superpixel maps are made
first by ``tools/create_superpixels.py``'s code with ``--downscale`` and ``--map-scale`` (or
read from ``--sp-root``). Decode and pipeline are timed in turn (interleaved, the random
generators seeded alike); the profile times every transform and, inside the loader, the image
decoding and the map reading, each exclusive of the parts nested in it (``dataset``: the
dataset's own work around the pipeline).
"""
import os.path as osp
import statistics
import tempfile

import numpy as np

from .sample_data import REPO_ROOT, SAMPLE_DIR, make_sample_root, on_sample
from .timing import PartTimer, Report, Times, interleaved, progress, threads

DEFAULT_CONFIG = osp.join('configs', '_base_', 'datasets', 'nuscenes_pretrain.py')


def add_arguments(parser) -> None:
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='a config with a train_dataloader (default: %(default)s)')
    parser.add_argument('--sample-dir', default=SAMPLE_DIR)
    parser.add_argument('--decode-scales', type=int, nargs='+', default=[1, 2])
    parser.add_argument('--downscale', type=float, default=2.0,
                        help="the maps' create_superpixels --downscale (default 2)")
    parser.add_argument('--map-scale', type=int, default=2,
                        help="the maps' create_superpixels --map-scale (default 2)")
    parser.add_argument('--sp-root', help='read these maps instead of making them')
    parser.add_argument('--repeats', type=int, default=50)
    parser.add_argument('--warmup', type=int, default=3)


def _config(path: str):
    from mmengine.config import Config
    return Config.fromfile(path if osp.isabs(path) or osp.exists(path) else
                           osp.join(REPO_ROOT, path))


def build_dataset(cfg, root: str, ann_file: str, decode_scale: int):
    """The config's training dataset on the sample, decoding at ``decode_scale``."""
    from mmdet3d.registry import DATASETS
    pipeline = [dict(t, decode_scale=decode_scale)
                if t['type'] == 'LoadMultiViewImagesAndSuperpixels' else dict(t)
                for t in cfg.train_dataloader.dataset.pipeline]
    ds_cfg = on_sample(dict(cfg.train_dataloader.dataset), root, ann_file)
    return DATASETS.build(dict(ds_cfg, pipeline=pipeline))


def _loader(dataset):
    from ..datasets.transforms import LoadMultiViewImagesAndSuperpixels
    return next(t for t in dataset.pipeline.transforms
                if isinstance(t, LoadMultiViewImagesAndSuperpixels))


def profile(dataset, repeats: int) -> dict:
    """Exclusive seconds per part of ``dataset[0]`` over ``repeats`` runs: part -> Times."""
    timer = PartTimer()
    timer.instrument(dataset, 'prepare_data', 'dataset')
    for t in dataset.pipeline.transforms:
        timer.instrument(t, 'transform', type(t).__name__)
    loader = _loader(dataset)
    timer.instrument(loader, 'read_image', 'decode')
    if loader.with_superpixels:
        timer.instrument(loader, 'read_map', 'maps')
    runs = []
    try:
        for i in range(repeats):
            np.random.seed(i)
            timer.reset()
            dataset[0]
            runs.append(dict(timer.times))
    finally:
        timer.undo()
    parts = list(runs[0])
    return {p: Times([r.get(p, 0.0) for r in runs]) for p in parts}


def measure(dataset, repeats: int, warmup: int) -> dict:
    """Decode (the loader's call, same scale) and the whole pipeline, interleaved."""
    loader = _loader(dataset)
    paths = dataset.get_data_info(0)['img_paths']
    return interleaved(dict(decode=lambda: [loader.read_image(p) for p in paths],
                            pipeline=lambda: dataset[0]),
                       repeats, warmup, before_each=np.random.seed)


def run(args, report: Report) -> int:
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    with threads(1):
        return _run(args, report)


def _run(args, report: Report) -> int:
    cfg = _config(args.config)
    rows, parts = [], {}
    with tempfile.TemporaryDirectory() as root:
        ann = make_sample_root(root, args.sample_dir, downscale=args.downscale,
                               map_scale=args.map_scale, sp_root=args.sp_root)
        for scale in args.decode_scales:
            progress(f'decode_scale={scale} ...')
            dataset = build_dataset(cfg, root, ann, scale)
            times = measure(dataset, args.repeats, args.warmup)
            parts[scale] = profile(dataset, args.repeats)
            dec, full = times['decode'], times['pipeline']
            paired = statistics.median(f / d for f, d in zip(full.values, dec.values))
            rows.append((scale, dec.ms(), full.ms(), f'{full.median / dec.median:.2f}',
                         f'{full.min / dec.min:.2f}', f'{paired:.2f}'))
    maps = ('the maps of --sp-root' if args.sp_root else
            f'maps made with --downscale {args.downscale:g} --map-scale {args.map_scale}')
    report.note(f'`{args.config}` train pipeline on the nuScenes sample (six 1600x900 JPEGs), '
                f'{maps}; one process, one thread (OpenCV and torch); {args.repeats} repeats '
                f'after {args.warmup} warm-up, decode and pipeline interleaved; ms per sample, '
                'min / median.')
    report.note('Ratio (rounds): the median over the rounds of each round\'s pipeline time '
                'over its decode time (a round times one of each, in turn), which a slow '
                'spell of the machine moves least.')
    report.table(['decode_scale', 'decode six images (ms)', 'pipeline (ms)',
                  'ratio (medians)', 'ratio (minima)', 'ratio (rounds)'], rows)
    names = []
    for p in parts.values():
        names += [n for n in p if n not in names]
    report.note('Where the pipeline goes: exclusive ms per sample of each part, min / median '
                '(`decode` and `maps` are inside the loader, `dataset` is the dataset around '
                'the pipeline).')
    report.table(['part'] + [f'decode_scale={s}' for s in parts],
                 [[n] + [parts[s][n].ms() if n in parts[s] else '-' for s in parts]
                  for n in names])
    return 0
