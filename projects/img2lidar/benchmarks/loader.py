"""The config's train dataloader as a loader: samples/s by number of worker processes.

    python tools/benchmark.py loader --workers 1 2 --batches 12 --repeats 3

The dataloader is the config's ``train_dataloader`` (default: the ST-SLidR nuScenes config,
whose data are ``configs/_base_/datasets/nuscenes_pretrain.py``: batch size 8, its
``collate_fn`` and ``pin_memory``, the real pipeline at 224x416), built by mmengine as a run
builds it (``Runner.build_dataloader``, after the run's multi-processing set-up from the
config's ``env_cfg``), with ``num_workers`` set to each ``--workers`` in turn and an infinite
shuffled sampler. Its data are the real nuScenes sample listed ``--copies`` times (its files
stay in the page cache: this measures decoding and the pipeline, not the disk), with maps made
first by ``tools/create_superpixels.py``'s code (``--downscale``, ``--map-scale``). After the
workers start and ``2 x workers`` batches, ``--repeats`` windows of ``--batches`` batches are
timed; samples/s per core divides by the workers (each worker is one process on one thread).
"""
import math
import os
import os.path as osp
import tempfile

from .sample_data import REPO_ROOT, SAMPLE_DIR, make_sample_root, on_sample
from .timing import Report, Times, progress, threads

DEFAULT_CONFIG = osp.join('configs', 'st-slidr',
                          'stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py')


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else \
        (os.cpu_count() or 1)


def add_arguments(parser) -> None:
    parser.add_argument('--config', default=DEFAULT_CONFIG,
                        help='a config with a train_dataloader (default: %(default)s)')
    parser.add_argument('--workers', type=int, nargs='+',
                        help="num_workers to measure (default: 1 to this machine's cores)")
    parser.add_argument('--batch-size', type=int, help="default: the config's")
    parser.add_argument('--batches', type=int, default=12, help='batches per timed window')
    parser.add_argument('--repeats', type=int, default=3, help='timed windows per count')
    parser.add_argument('--copies', type=int, default=64,
                        help='how often the info file lists the sample')
    parser.add_argument('--sample-dir', default=SAMPLE_DIR)
    parser.add_argument('--downscale', type=float, default=2.0,
                        help="the maps' create_superpixels --downscale (default 2)")
    parser.add_argument('--map-scale', type=int, default=2,
                        help="the maps' create_superpixels --map-scale (default 2)")
    parser.add_argument('--sp-root', help='read these maps instead of making them')
    parser.add_argument('--target', type=float, default=60.0,
                        help='samples/s one GPU consumes (default 60): the cores it needs')


def loader_config(cfg, root: str, ann_file: str, workers: int,
                  batch_size: int = None) -> dict:
    """The config's train dataloader on the sample, with ``workers`` processes and an
    infinite shuffled sampler."""
    loader = dict(cfg.train_dataloader)
    loader.update(dataset=on_sample(dict(loader['dataset']), root, ann_file),
                  num_workers=workers, persistent_workers=workers > 0,
                  sampler=dict(type='InfiniteSampler', shuffle=True))
    if batch_size:
        loader['batch_size'] = batch_size
    return loader


def measure(loader_cfg: dict, batches: int, repeats: int) -> Times:
    """Seconds per timed window of ``batches`` batches."""
    import time

    from mmengine.runner import Runner
    loader = Runner.build_dataloader(loader_cfg, seed=0)
    it = iter(loader)
    for _ in range(2 * max(loader_cfg['num_workers'], 1)):  # start-up and the first batches
        next(it)
    values = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batches):
            next(it)
        values.append(time.perf_counter() - start)
    del it, loader  # stops the persistent workers
    return Times(values)


def run(args, report: Report) -> int:
    from mmdet3d.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.utils.dl_utils import set_multi_processing
    register_all_modules(init_default_scope=True)
    path = args.config if osp.exists(args.config) else osp.join(REPO_ROOT, args.config)
    cfg = Config.fromfile(path)
    cores = _cores()
    counts = args.workers or list(range(1, cores + 1))
    mp_cfg = dict(cfg.get('env_cfg', {}).get('mp_cfg', {}))
    with threads(mp_cfg.get('opencv_num_threads', 0)):
        set_multi_processing(**mp_cfg, distributed=False)  # as a run does
        return _run(args, report, cfg, counts, cores)


def _run(args, report: Report, cfg, counts, cores: int) -> int:
    import torch
    rows, per_core = [], {}
    with tempfile.TemporaryDirectory() as root:
        ann = make_sample_root(root, args.sample_dir, copies=args.copies,
                               downscale=args.downscale, map_scale=args.map_scale,
                               sp_root=args.sp_root)
        for n in counts:
            loader_cfg = loader_config(cfg, root, ann, n, args.batch_size)
            batch = loader_cfg['batch_size']
            progress(f'{n} workers ...')
            times = measure(loader_cfg, args.batches, args.repeats)
            samples = batch * args.batches
            best, median = samples / times.min, samples / times.median
            per_core[n] = (best / max(n, 1), median / max(n, 1))
            rows.append((n, f'{best:.1f} / {median:.1f}',
                         f'{per_core[n][0]:.1f} / {per_core[n][1]:.1f}',
                         f'{times.scaled(1 / args.batches).ms(0)}'))
    pin = loader_cfg.get('pin_memory', False)
    skipped = ' (no accelerator here: pinning is skipped)' if pin and \
        not torch.cuda.is_available() else ''
    report.note(
        f'`{args.config}` train_dataloader: batch size {batch}, collate '
        f"`{loader_cfg.get('collate_fn', {}).get('type', 'default')}`, pin_memory={pin}"
        f'{skipped}; the nuScenes sample listed {args.copies} times, '
        + ('the maps of --sp-root' if args.sp_root else
           f'maps made with --downscale {args.downscale:g} --map-scale {args.map_scale}')
        + f'; {args.repeats} windows of '
        f'{args.batches} batches after 2 x workers batches; this machine has {cores} usable '
        'cores, shared with whatever else runs on it. Rates: best (minimum time) / median.')
    report.table(['workers', 'samples/s', 'samples/s per core', 'ms per batch'], rows)
    base = min(counts)
    best_core, median_core = per_core[base]
    configured = cfg.train_dataloader.get('num_workers')
    report.note(
        f'With {base} worker(s), each worker process delivers {median_core:.1f} samples/s '
        f'(median; best {best_core:.1f}). At that rate {args.target:g} samples/s need '
        f'{math.ceil(args.target / median_core)} loader cores '
        f'({math.ceil(args.target / best_core)} at the best rate), and the configured '
        f'num_workers={configured} gives about {configured * median_core:.0f} samples/s, if '
        'each worker has a core of its own and the rate scales linearly with the workers.')
    return 0
