#!/usr/bin/env python
"""Memory and host time of the distillation step's image side, on CPU, at the published sizes.

    # peak memory of one forward + backward (the student is a stand-in; teacher, 2D head,
    # pooling and loss are the config's), ResNet-50 recipe at batch 16 and ScaLR-style ViT-L/14
    python tools/benchmark_step.py memory --recipe resnet50 --batch-size 16
    python tools/benchmark_step.py memory --recipe vitl14 --batch-size 8
    # the step's CPU time without the networks (collate, voxelize, pairs, pooling, losses)
    python tools/benchmark_step.py host --batch-sizes 2 8
    # pooled superpixels left without a teacher feature, or without a pixel, on random crops
    python tools/benchmark_step.py coverage --strides 4 14 16 --batches 20
    # time and peak memory of the superpixel pooling alone, ids as loaded or spread to a
    # 4,096 range (--sparse-ids 0), the batch kept in a file so that two versions pool one batch
    python tools/benchmark_step.py pooling --recipe resnet50 --batch-size 16 --batch-file b.pth
    python tools/benchmark_step.py pooling --recipe vitl14 --crop 448 896 --head-channels 64 \
        --batch-size 8 --sparse-ids 0 --batch-file b448.pth
    # bytes each of 2 gloo processes sends per step, and its host reads, with gather_features
    python tools/benchmark_step.py gather --superpixels 7000 --pairs 240000

Both modes run on batches of the real nuScenes sample (``tests/data/nuscenes_sample``, SLIC
superpixels made in a temporary folder) put through the recipe's own training pipeline, each
sample with its own random crops, flips and rotation (seeded), and the recipe's own model with
random weights. The figures are measured, not estimated:

- ``memory``: the peak of the bytes held by live tensors (parameters, inputs, activations,
  saved tensors, gradients) during ``model.loss`` and ``backward`` of one batch, tracked at the
  tensor level by a dispatch mode (it counts what the step allocates, not the allocator's
  slack, so it is the same on every machine), and the process's peak resident set. The
  student's sparse network is replaced by a linear map of the voxel features (the image side
  is what this measures); the total loss is printed, so that two versions of the code can be
  compared on the same inputs.
- ``host``: wall time of the step with both networks replaced by stand-ins (the student by a
  linear map of the voxel features, the teacher by average pooling to its stride and a fixed
  random projection to its width), so that what remains is the data path: ``collate`` (the
  loader's collate function), ``preprocess`` (the data preprocessor: voxelization),
  ``forward`` (pairs, head, pooling and the losses' forward) and ``backward``. Median over
  ``--iters`` steps after one warm-up.
- ``pooling``: ``superpixel_pooling`` forward (with and without ``e``) and backward on one
  batch of the sample's real maps and pairs (the ST recipe's pipeline, ``--crop`` to resize),
  with random features of the recipe's teacher stride and widths: minimum and median time over
  ``--iters`` and the peak of live tensor bytes (the dispatch mode of ``memory``), above the
  inputs; ``--sparse-ids K`` multiplies every local id by K (the same partition, a K times
  larger id range).
- ``gather``: two gloo processes on one machine build random features of the given sizes and
  run one step of each loss with ``gather_features=True`` (gather, loss, backward); torch's
  collectives are wrapped to count, per rank, the calls and the bytes sent (a ring's share of
  each input: (W - 1) x the input for an all-gather, 2 (W - 1) / W for an all-reduce,
  (W - 1) / W for a reduce-scatter or an all-to-all), the loopback interface's counter gives
  the bytes gloo actually moved, and the host reads (``tolist``, ``item``) are listed by
  caller.
- ``coverage``: on random 224x448 crops (and flips) of the sample, the share of the pooled
  superpixels (those that hold a pair) whose teacher feature ``e`` is empty because no teacher
  cell was pooled into them, for a teacher of stride 4, 14 and 16 (a stand-in whose features
  are all positive, so an all-zero ``e`` means "nothing pooled"), and the share whose pixels the
  crop removed (their ``q`` would be a mean over no pixel).
"""
import argparse
import copy
import json
import os
import os.path as osp
import resource
import statistics
import sys
import tempfile
import time
import weakref
from collections import Counter
from typing import Dict, List

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO_ROOT)
SAMPLE_DIR = osp.join(REPO_ROOT, 'tests', 'data', 'nuscenes_sample')

#: the losses of the gather mode: (level, loss config)
GATHER_LOSSES = {
    'st_cb': ('superpixel', dict(type='SemanticallyTolerantLoss', tau=0.07, tolerance='quantile',
                                 min_quantile=0.01, masked_negatives='zero_logit',
                                 balancing=dict(type='ClassAgnosticBalancing', threshold=0.5))),
    'infonce': ('superpixel', dict(type='SuperpixelInfoNCELoss', tau=0.07)),
    'ppkt': ('pair', dict(type='PPKTLoss', num_pairs=4096, tau=0.07)),
}
#: recipe -> (config, its published per-process batch size)
RECIPES = {
    'resnet50': ('configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py', 16),
    'vitl14': ('configs/similarity/similarity_minkunet34-cyl_dinov2-vitl14_1xb8-25e_nuscenes.py',
               8),
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='mode', required=True)
    mem = sub.add_parser('memory', help='peak memory of one forward and backward')
    mem.add_argument('--recipe', choices=sorted(RECIPES), default='resnet50')
    mem.add_argument('--batch-size', type=int, help="default: the recipe's published one")
    host = sub.add_parser('host', help="the step's CPU time without the networks")
    host.add_argument('--recipe', choices=sorted(RECIPES), default='resnet50')
    host.add_argument('--batch-sizes', type=int, nargs='+', default=[2, 8])
    host.add_argument('--iters', type=int, default=5)
    host.add_argument('--teacher-pooling', choices=['area', 'nearest'],
                      help="the distiller's teacher pooling (default: the config's)")
    cov = sub.add_parser('coverage', help='pooled superpixels without e or without pixels')
    cov.add_argument('--recipe', choices=sorted(RECIPES), default='resnet50')
    cov.add_argument('--strides', type=int, nargs='+', default=[4, 14, 16])
    cov.add_argument('--batches', type=int, default=20)
    cov.add_argument('--batch-size', type=int, default=2)
    cov.add_argument('--teacher-pooling', choices=['area', 'nearest'],
                     help="the distiller's teacher pooling (default: the config's)")
    pool = sub.add_parser('pooling', help='time and peak memory of the superpixel pooling')
    pool.add_argument('--recipe', choices=sorted(RECIPES), default='resnet50',
                      help="the teacher's stride and width and the 2D head's from this config")
    pool.add_argument('--batch-size', type=int, help="default: the recipe's published one")
    pool.add_argument('--crop', type=int, nargs=2, metavar=('H', 'W'),
                      help="image size (default: the ST recipe's crop, 224x416)")
    pool.add_argument('--stride', type=int, help="the teacher's stride (default: the recipe's)")
    pool.add_argument('--head-channels', type=int,
                      help="the 2D head's width D (default: the recipe's)")
    pool.add_argument('--sparse-ids', type=int, default=1, metavar='K',
                      help='multiply every local id by K (the same partition, a K times '
                           'larger id range); 0: the largest K that keeps ids below 4096')
    pool.add_argument('--teacher-pooling', choices=['area', 'nearest'], default='area')
    pool.add_argument('--iters', type=int, default=3)
    pool.add_argument('--batch-file', help='keep the batch in this file: made when missing, '
                      'read when present (so that two versions of the code pool one batch)')
    pool.add_argument('--out-file', help='save the pooled features and their gradients here')
    gat = sub.add_parser('gather', help='bytes sent and host reads per step and rank, in a '
                         '2-process gloo run')
    gat.add_argument('--superpixels', type=int, default=7000,
                     help='pooled superpixels of rank 0 (rank 1: 5%% fewer)')
    gat.add_argument('--pairs', type=int, default=240000,
                     help='point-pixel pairs of rank 0 (rank 1: 5%% fewer)')
    gat.add_argument('--dim', type=int, default=64)
    gat.add_argument('--teacher-dim', type=int, default=2048)
    gat.add_argument('--losses', nargs='+', choices=sorted(GATHER_LOSSES),
                     default=sorted(GATHER_LOSSES))
    for p in (mem, host, cov, pool, gat):
        p.add_argument('--threads', type=int, default=2)
        p.add_argument('--seed', type=int, default=0)
        p.add_argument('--json', help='also write the figures to this JSON file')
    return parser.parse_args(argv)


class LiveTensorBytes:
    """Counts the bytes of the tensor storages alive while it is active, and their peak.

    Every tensor an operator returns (forward and backward) and every tensor registered with
    :meth:`track` is counted once per storage until that storage is freed.
    """

    def __init__(self) -> None:
        from torch.utils._python_dispatch import TorchDispatchMode
        tracker = self
        self.current = self.peak = 0
        self._alive: Dict[int, int] = {}

        class _Mode(TorchDispatchMode):

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                tracker._track_tree(out)
                return out

        self.mode = _Mode()

    def _track_tree(self, obj) -> None:
        import torch
        from torch.utils._pytree import tree_flatten
        for t in tree_flatten(obj)[0]:
            if isinstance(t, torch.Tensor):
                self.track(t)

    def track(self, t) -> None:
        """Count ``t``'s storage if it is not counted yet."""
        try:
            st = t.untyped_storage()
        except (RuntimeError, NotImplementedError):
            return
        key = st._cdata
        if key in self._alive:
            return
        n = st.nbytes()
        self._alive[key] = n
        self.current += n
        self.peak = max(self.peak, self.current)
        weakref.finalize(st, self._free, key)

    def _free(self, key: int) -> None:
        self.current -= self._alive.pop(key, 0)

    def __enter__(self) -> 'LiveTensorBytes':
        self.mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.mode.__exit__(*exc)


def setup_registry():
    import projects.img2lidar  # noqa: F401  compat fixes and registrations
    from mmdet3d.registry import MODELS
    from mmdet3d.utils import register_all_modules
    from mmengine.model import BaseModule
    from torch import nn
    from torch.nn import functional as F
    register_all_modules(init_default_scope=True)

    if 'BenchmarkLinearStudent' not in MODELS.module_dict:

        @MODELS.register_module()
        class BenchmarkLinearStudent(BaseModule):
            """Stand-in student: a linear map of each point's voxel feature, unit norm."""

            def __init__(self, in_channels: int, out_channels: int) -> None:
                super().__init__()
                self.projection = nn.Linear(in_channels, out_channels)

            def forward(self, voxel_dict, point2voxel_maps=None):
                from projects.img2lidar.models.students.voxel_to_point import voxel_to_point
                if 'point2voxel' in voxel_dict:
                    feats = voxel_dict['voxels'].index_select(0, voxel_dict['point2voxel'])
                else:  # the code before the batch-wide voxelization
                    feats = voxel_to_point(voxel_dict['voxels'], point2voxel_maps,
                                           voxel_dict['num_voxels'])
                return F.normalize(self.projection(feats), dim=1)

        @MODELS.register_module()
        class BenchmarkPoolingTeacher(BaseModule):
            """Stand-in teacher: average pooling to ``stride`` and a fixed random projection to
            ``channels`` (no gradient), the teacher's output shape at almost no cost."""

            def __init__(self, stride: int, channels: int) -> None:
                super().__init__()
                self.stride = stride
                self.register_buffer('weight', nn.init.normal_(nn.Parameter(
                    __import__('torch').empty(channels, 3, 1, 1))).detach())

            def forward(self, imgs):
                import torch
                with torch.no_grad():
                    x = F.avg_pool2d(imgs.float(), self.stride)
                    return F.relu(F.conv2d(x, self.weight))

        @MODELS.register_module()
        class BenchmarkPositiveTeacher(BaseModule):
            """Stand-in teacher whose features are all positive: average pooling to
            ``stride`` plus one (3 channels)."""

            def __init__(self, stride: int) -> None:
                super().__init__()
                self.stride = stride

            def forward(self, imgs):
                import torch
                with torch.no_grad():
                    return F.avg_pool2d(imgs.float(), self.stride) + 1


def make_superpixels(sp_root: str) -> None:
    from projects.img2lidar.preparation.superpixels import create_superpixels
    ann = next(f for f in os.listdir(SAMPLE_DIR) if f.endswith('.pkl'))
    create_superpixels(osp.join(SAMPLE_DIR, ann), SAMPLE_DIR, sp_root, img_prefix='', workers=1,
                       progress=False, downscale=2)


def build(recipe: str, sp_root: str, stand_in_teacher: bool):
    """The recipe's config with random weights, the stand-in student, the real sample."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, RECIPES[recipe][0]))
    student = cfg.model.student
    in_channels = len(cfg.model.data_preprocessor.get('feature_columns') or [0, 1, 2, 3])
    cfg.model.student = dict(type='BenchmarkLinearStudent', in_channels=in_channels,
                             out_channels=student.get('out_channels', 64))
    teacher = cfg.model.teacher
    if stand_in_teacher:
        stride = cfg.model.image_head.get('scale_factor') or 4
        cfg.model.teacher = dict(type='BenchmarkPoolingTeacher', stride=stride,
                                 channels=cfg.model.image_head.in_channels)
    elif teacher.type == 'ViTTeacher':  # DINOv2 ViT-L/14's shape, random weights
        import torch
        import transformers
        vit_dir = osp.join(sp_root, 'dinov2-vitl14-random')
        torch.manual_seed(0)
        transformers.Dinov2Model(transformers.Dinov2Config(
            hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, mlp_ratio=4,
            image_size=518, patch_size=14)).save_pretrained(vit_dir)
        teacher.checkpoint = vit_dir
    else:
        teacher.checkpoint = None
    ds = copy.deepcopy(cfg.train_dataloader.dataset.to_dict())
    ann = next(f for f in os.listdir(SAMPLE_DIR) if f.endswith('.pkl'))
    ds.update(data_root=SAMPLE_DIR, ann_file=osp.join(SAMPLE_DIR, ann),
              data_prefix=dict(pts='', img='', sp=sp_root), skip_bad_samples=False)
    return cfg, ds


def make_batches(cfg, ds_cfg, batch_size: int, count: int, seed: int) -> List[list]:
    """``count`` batches of ``batch_size`` samples of the real sample, each its own draw."""
    import numpy as np
    import random

    from mmdet3d.registry import DATASETS
    dataset = DATASETS.build(ds_cfg)
    np.random.seed(seed)
    random.seed(seed)
    return [[dataset[0] for _ in range(batch_size)] for _ in range(count)]


def collate(cfg, samples):
    from mmengine.registry import FUNCTIONS
    fn_cfg = cfg.train_dataloader.get('collate_fn', dict(type='pseudo_collate'))
    fn_cfg = dict(fn_cfg)
    fn = FUNCTIONS.get(fn_cfg.pop('type'))
    return fn(samples, **fn_cfg) if fn_cfg else fn(samples)


def total_loss(losses: dict):
    return sum(v for k, v in losses.items() if 'loss' in k)


def run_memory(args) -> dict:
    import torch
    from mmdet3d.registry import MODELS
    torch.set_num_threads(args.threads)
    batch = args.batch_size or RECIPES[args.recipe][1]
    with tempfile.TemporaryDirectory() as sp_root:
        make_superpixels(sp_root)
        cfg, ds_cfg = build(args.recipe, sp_root, stand_in_teacher=False)
        samples = make_batches(cfg, ds_cfg, batch, 1, args.seed)[0]
        torch.manual_seed(args.seed)
        model = MODELS.build(cfg.model)
        model.init_weights()
    model.train()
    data = model.data_preprocessor(collate(cfg, samples), training=True)
    imgs = data['inputs']['imgs']
    print(f'{args.recipe}: batch {batch}, {imgs.shape[0] * imgs.shape[1]} images of '
          f'{imgs.shape[-2]}x{imgs.shape[-1]}, {sum(p.shape[0] for p in data["inputs"]["points"])} '
          'points', flush=True)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracker = LiveTensorBytes()
    for t in list(model.parameters()) + list(model.buffers()):
        tracker.track(t)
    for v in data['inputs'].values():
        for t in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(t, torch.Tensor):
                tracker.track(t)
    t0 = time.perf_counter()
    with tracker:
        losses = model.loss(data['inputs'], data['data_samples'])
        loss = total_loss(losses)
        forward_peak = tracker.peak
        loss.backward()
    seconds = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = dict(recipe=args.recipe, batch_size=batch, loss=float(loss),
               terms={k: float(v) for k, v in losses.items()},
               peak_live_gib=tracker.peak / 2**30, forward_peak_live_gib=forward_peak / 2**30,
               peak_rss_gib=rss / 2**20, rss_before_step_gib=rss0 / 2**20, seconds=seconds)
    print(f'peak live tensors {out["peak_live_gib"]:.2f} GiB (forward {out["forward_peak_live_gib"]:.2f}); '
          f'peak RSS {out["peak_rss_gib"]:.2f} GiB; loss {out["loss"]:.7f}; {seconds:.0f} s')
    return out


def run_host(args) -> dict:
    import torch
    from mmdet3d.registry import MODELS
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as sp_root:
        make_superpixels(sp_root)
        cfg, ds_cfg = build(args.recipe, sp_root, stand_in_teacher=True)
        if args.teacher_pooling:
            cfg.model.teacher_pooling = args.teacher_pooling
        for batch in args.batch_sizes:
            batches = make_batches(cfg, ds_cfg, batch, args.iters + 1, args.seed)
            torch.manual_seed(args.seed)
            model = MODELS.build(cfg.model)
            model.train()
            times: Dict[str, List[float]] = {k: [] for k in
                                             ('collate', 'preprocess', 'forward', 'backward')}
            for i, samples in enumerate(batches):
                t0 = time.perf_counter()
                collated = collate(cfg, samples)
                t1 = time.perf_counter()
                data = model.data_preprocessor(collated, training=True)
                t2 = time.perf_counter()
                loss = total_loss(model.loss(data['inputs'], data['data_samples']))
                t3 = time.perf_counter()
                loss.backward()
                t4 = time.perf_counter()
                if i:  # the first step warms up
                    for k, a, b in (('collate', t0, t1), ('preprocess', t1, t2),
                                    ('forward', t2, t3), ('backward', t3, t4)):
                        times[k].append(b - a)
            med = {k: statistics.median(v) for k, v in times.items()}
            med['total'] = sum(med.values())
            results[batch] = med
            print(f'batch {batch}: ' + ', '.join(f'{k} {v * 1e3:.0f} ms' for k, v in med.items()),
                  flush=True)
    return dict(recipe=args.recipe, threads=args.threads, seconds=results)


def run_coverage(args) -> dict:
    import torch
    from mmdet3d.registry import MODELS
    torch.set_num_threads(args.threads)
    out = {}
    with tempfile.TemporaryDirectory() as sp_root:
        make_superpixels(sp_root)
        cfg, ds_cfg = build(args.recipe, sp_root, stand_in_teacher=True)
        for t in ds_cfg['pipeline']:
            if t['type'] == 'PairedRandomResizedCrop':
                t['size'] = (224, 448)
        batches = make_batches(cfg, ds_cfg, args.batch_size, args.batches, args.seed)
    for stride in args.strides:
        cfg.model.teacher = dict(type='BenchmarkPositiveTeacher', stride=stride)
        cfg.model.image_head = dict(type='ImageProjectionHead', in_channels=3, out_channels=8)
        if args.teacher_pooling:
            cfg.model.teacher_pooling = args.teacher_pooling
        torch.manual_seed(args.seed)
        model = MODELS.build(cfg.model).eval()
        pooled = no_e = no_pixels = 0
        worst = 0.0
        with torch.no_grad():
            for samples in batches:
                data = model.data_preprocessor(collate(cfg, samples), training=True)
                point_feats = model.extract_point_feat(data['inputs'], data['data_samples'])
                sp = model.build_features(point_feats, data['inputs'], data['data_samples'],
                                          levels=('superpixel', ), pool_teacher=True).superpixel
                missing = sp.e.abs().sum(1) == 0
                maps = superpixel_maps(model, data)
                present = torch.zeros(max(sp.num_ids, 1), dtype=torch.bool)
                present[maps[maps >= 0].long()] = True
                pooled += sp.k.shape[0]
                no_e += int(missing.sum())
                no_pixels += int((~present[sp.ids]).sum())
                worst = max(worst, float(missing.float().mean()))
        out[stride] = dict(pooled=pooled, without_e=no_e, without_pixels=no_pixels,
                           fraction_without_e=no_e / pooled, worst_batch_fraction=worst,
                           fraction_without_pixels=no_pixels / pooled)
        print(f'stride {stride}: {pooled} pooled superpixels, {no_e} without e '
              f'({100 * no_e / pooled:.2f}%, worst batch {100 * worst:.1f}%), {no_pixels} '
              f'without pixels ({100 * no_pixels / pooled:.2f}%)', flush=True)
    return dict(recipe=args.recipe, batches=args.batches, batch_size=args.batch_size,
                strides=out)


def _spread_ids(pairs: dict, factor: int) -> dict:
    """The same partition with every local id multiplied by ``factor`` (0: the largest factor
    that keeps every id below 4096), the id ranges and first ids to match."""
    import torch
    maps = pairs['superpixels']
    first = pairs['image_id_offsets']
    ranges = (first[1:] - first[:-1]).tolist()
    if factor == 0:
        factor = max(1, 4095 // max(max(ranges) - 1, 1))
    if factor == 1:
        return dict(pairs)
    ranges = [(n - 1) * factor + 1 if n else 0 for n in ranges]
    out = dict(pairs)
    out['superpixels'] = torch.where(maps >= 0, maps.int() * factor, -1).to(
        torch.int16 if max(ranges) <= 32767 else torch.int32)
    out['image_id_offsets'] = torch.tensor([0] + ranges).cumsum(0)
    out['num_ids'] = int(out['image_id_offsets'][-1])
    out['max_image_ids'] = max(ranges)
    return out


def pooling_batch(args) -> dict:
    """The pairs and maps of one batch of the real sample through the ST recipe's pipeline
    (its crop replaced by ``--crop``), kept in ``--batch-file`` when given."""
    import torch
    if args.batch_file and osp.exists(args.batch_file):
        return torch.load(args.batch_file)
    batch = args.batch_size or RECIPES[args.recipe][1]
    with tempfile.TemporaryDirectory() as sp_root:
        make_superpixels(sp_root)
        cfg, ds_cfg = build('resnet50', sp_root, stand_in_teacher=True)
        if args.crop:
            for t in ds_cfg['pipeline']:
                if t['type'] == 'PairedRandomResizedCrop':
                    t['size'] = tuple(args.crop)
        samples = make_batches(cfg, ds_cfg, batch, 1, args.seed)[0]
        collated = collate(cfg, samples)
    out = dict(pairs=collated['inputs']['pairs'], size=tuple(collated['inputs']['img'].shape[-2:]),
               batch_size=batch)
    if args.batch_file:
        torch.save(out, args.batch_file)
    return out


def run_pooling(args) -> dict:
    """Time and peak live bytes of ``superpixel_pooling`` forward and backward on one batch of
    the real sample: the recipe's teacher stride and width and 2D-head width, random features
    (the teacher's output a random tensor), the real maps and pairs, optionally with a K times
    larger id range (``--sparse-ids``)."""
    import torch
    from mmengine.config import Config

    from projects.img2lidar.models import BatchPairs, PixelFeatures
    from projects.img2lidar.models.superpixel_pooling import superpixel_pooling
    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(osp.join(REPO_ROOT, RECIPES[args.recipe][0]))
    head = cfg.model.image_head
    stride = args.stride or head.get('scale_factor') or 4
    e_dim = head.in_channels
    d_dim = args.head_channels or (e_dim if head.get('project', True) is False else
                                   head.get('out_channels', 64))
    data = pooling_batch(args)
    pairs = BatchPairs(**_spread_ids(data['pairs'], args.sparse_ids))
    size = data['size']
    grid = (-(-size[0] // stride), -(-size[1] // stride))
    g = torch.Generator().manual_seed(args.seed)
    n_img = pairs.num_images
    teacher = torch.rand((n_img, e_dim) + grid, generator=g)
    low = torch.randn((n_img, d_dim) + grid, generator=g).requires_grad_()
    point_feats = torch.randn(pairs.num_points, d_dim, generator=g).requires_grad_()
    chunk = cfg.model.get('pooling_chunk_elements', 1 << 24)
    ranges = (pairs.image_id_offsets[1:] - pairs.image_id_offsets[:-1])
    present = [int(torch.unique(m[m >= 0]).numel()) for m in pairs.superpixels]
    print(f'{args.recipe}: {n_img} images of {size[0]}x{size[1]}, teacher {e_dim} x {grid[0]}x'
          f'{grid[1]} (stride {stride}), head {d_dim}; id range per image {int(ranges.min())}-'
          f'{int(ranges.max())} (sum {pairs.num_ids}), regions present {min(present)}-'
          f'{max(present)}; {args.teacher_pooling}; {args.threads} thread(s)', flush=True)

    def step(with_teacher: bool, tracker=None):
        pix = PixelFeatures(low, size, scale_factor=stride, align_corners=head.get(
            'align_corners', False), chunk_elements=head.get('chunk_elements', 1 << 24))
        t0 = time.perf_counter()
        pooled = superpixel_pooling(point_feats, pix, teacher if with_teacher else None, pairs,
                                    args.teacher_pooling, chunk)
        t1 = time.perf_counter()
        forward_peak = tracker.peak if tracker else 0
        (pooled.k.square().sum() + pooled.q.square().sum()).backward()
        t2 = time.perf_counter()
        return pooled, t1 - t0, t2 - t1, forward_peak

    times: Dict[str, List[float]] = {k: [] for k in ('forward', 'backward', 'forward_no_e')}
    for _ in range(args.iters):
        low.grad = point_feats.grad = None
        _, fwd, bwd, _ = step(True)
        times['forward'].append(fwd)
        times['backward'].append(bwd)
        low.grad = point_feats.grad = None
        times['forward_no_e'].append(step(False)[1])
    tracker = LiveTensorBytes()
    for t in (teacher, low, point_feats) + tuple(v for v in vars(pairs).values()
                                                if isinstance(v, torch.Tensor)):
        tracker.track(t)
    inputs = tracker.current
    low.grad = point_feats.grad = None
    with tracker:
        pooled, _, _, forward_peak = step(True, tracker)
    out = dict(recipe=args.recipe, images=n_img, size=list(size), stride=stride, teacher_dim=e_dim,
               head_dim=d_dim, id_range_sum=pairs.num_ids, max_image_ids=pairs.max_image_ids,
               regions_present=[min(present), max(present)], rows=int(pooled.k.shape[0]),
               teacher_pooling=args.teacher_pooling, threads=args.threads,
               seconds={k: dict(min=min(v), median=statistics.median(v)) for k, v in times.items()},
               e_seconds_min=min(times['forward']) - min(times['forward_no_e']),
               peak_live_gib=tracker.peak / 2**30, inputs_gib=inputs / 2**30,
               peak_above_inputs_gib=(tracker.peak - inputs) / 2**30,
               forward_peak_above_inputs_gib=(forward_peak - inputs) / 2**30,
               checksum=dict(k=float(pooled.k.double().sum()), q=float(pooled.q.double().sum()),
                             e=float(pooled.e.double().sum())))
    if args.out_file:
        torch.save(dict(k=pooled.k.detach(), q=pooled.q.detach(), e=pooled.e, ids=pooled.ids,
                        grad_low=low.grad, grad_points=point_feats.grad), args.out_file)
    s = out['seconds']
    print(f"{out['rows']} pooled rows; forward {s['forward']['min']:.3f} s (median "
          f"{s['forward']['median']:.3f}; without e {s['forward_no_e']['min']:.3f}, so e "
          f"{out['e_seconds_min']:.3f}), backward {s['backward']['min']:.3f} s; peak live "
          f"{out['peak_live_gib']:.3f} GiB, {out['peak_above_inputs_gib']:.3f} GiB above the "
          f"inputs' {out['inputs_gib']:.3f} (forward {out['forward_peak_above_inputs_gib']:.3f})",
          flush=True)
    return out


# -- gather: bytes moved per step and rank -------------------------------------------------------
#: per collective, the bytes one rank sends for ``nbytes`` of input in a ring (or direct)
#: implementation with W processes (gloo's reduce-scatter of CPU tensors sends what its
#: all-reduce sends; the gather's backward uses ``all_to_all_single`` on gloo)
SENT = {
    'all_gather': lambda nbytes, w: (w - 1) * nbytes,
    'all_gather_into_tensor': lambda nbytes, w: (w - 1) * nbytes,
    'all_gather_single': lambda nbytes, w: (w - 1) * nbytes,
    'all_reduce': lambda nbytes, w: 2 * (w - 1) * nbytes // w,
    'reduce_scatter': lambda nbytes, w: (w - 1) * nbytes // w,
    'reduce_scatter_tensor': lambda nbytes, w: (w - 1) * nbytes // w,
    'reduce_scatter_single': lambda nbytes, w: (w - 1) * nbytes // w,
    'all_to_all_single': lambda nbytes, w: (w - 1) * nbytes // w,
    'all_to_all': lambda nbytes, w: (w - 1) * nbytes // w,
    'broadcast': lambda nbytes, w: nbytes,
    'reduce': lambda nbytes, w: nbytes,
}


def _tensor_bytes(obj) -> int:
    import torch
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(o) for o in obj)
    return 0


class CollectiveBytes:
    """Counts, per phase, the calls of torch.distributed's collectives and the bytes this rank
    sends in them (:data:`SENT`: the input's bytes times the share a ring sends)."""

    def __init__(self) -> None:
        self.phase = None
        self.calls: Dict[str, List[tuple]] = {}

    def install(self) -> None:
        import torch.distributed as dist
        for name in SENT:
            original = getattr(dist, name, None)
            if original is None:
                continue

            def wrapped(*args, _original=original, _name=name, **kwargs):
                if self.phase is not None:
                    # the input: the second argument of the gathers and scatters, else the first
                    data = args[1] if _name.startswith(('all_gather', 'reduce_scatter',
                                                        'all_to_all')) else args[0]
                    nbytes = _tensor_bytes(data)
                    self.calls.setdefault(self.phase, []).append(
                        (_name, nbytes, SENT[_name](nbytes, dist.get_world_size())))
                return _original(*args, **kwargs)

            setattr(dist, name, wrapped)


class HostReads:
    """Counts the host reads of tensor values (``tolist`` and every operator that returns a
    Python number: ``item``, ``int``, ``float``), by the innermost caller in this project."""

    def __init__(self) -> None:
        import torch
        from torch.utils._python_dispatch import TorchDispatchMode
        reads = self
        self.calls: List[str] = []

        class _Mode(TorchDispatchMode):

            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                if func.overloadpacket.__name__ == '_local_scalar_dense':
                    reads.record('item')
                return func(*args, **(kwargs or {}))

        self.mode = _Mode()
        original = torch.Tensor.tolist

        def tolist(t, *a, **k):
            reads.record('tolist')
            return original(t, *a, **k)

        torch.Tensor.tolist = tolist
        self.active = False

    def record(self, what: str) -> None:
        import traceback
        if not self.active:
            return
        where = 'unknown'
        for frame in reversed(traceback.extract_stack()[:-2]):
            if '/projects/img2lidar/' in frame.filename:
                where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.name}"
                break
        self.calls.append(f'{where} ({what})')

    def __enter__(self):
        self.active = True
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)
        self.active = False


def _loopback_bytes():
    """Bytes received on the loopback interface so far (gloo's TCP traffic between processes
    of one machine, both directions), after a barrier; None where /proc/net/dev is missing."""
    import torch.distributed as dist
    dist.barrier()
    try:
        with open('/proc/net/dev') as f:
            for line in f:
                if line.strip().startswith('lo:'):
                    return int(line.split(':', 1)[1].split()[0])
    except OSError:
        pass
    return None


def _gather_features(rank: int, args, level: str):
    """This rank's features of one level, random, at the sizes of ``args`` (rank 1 has 5%
    fewer rows)."""
    import torch
    from torch.nn.functional import normalize

    from projects.img2lidar.models.distillation_features import (DistillationFeatures,
                                                                 PairFeatures, PooledFeatures)
    g = torch.Generator().manual_seed(rank)
    scale = 1.0 - 0.05 * rank
    d = args.dim
    if level == 'superpixel':
        m = int(args.superpixels * scale)
        sp = PooledFeatures(
            k=normalize(torch.randn(m, d, generator=g), dim=1).requires_grad_(),
            q=normalize(torch.randn(m, d, generator=g), dim=1).requires_grad_(),
            e=torch.rand(m, args.teacher_dim, generator=g), ids=torch.arange(m),
            num_pairs=torch.ones(m, dtype=torch.long),
            sample_offsets=torch.linspace(0, m, 9).long(), num_ids=m)
        return DistillationFeatures(superpixel=sp), (sp.k, sp.q)
    p = int(args.pairs * scale)
    pairs = PairFeatures(
        k=normalize(torch.randn(p, d, generator=g), dim=1).requires_grad_(),
        q=normalize(torch.randn(p, d, generator=g), dim=1).requires_grad_(),
        point=torch.arange(p), image=torch.zeros(p, dtype=torch.long),
        pixel=torch.zeros(p, 2, dtype=torch.long), superpixel=torch.arange(p),
        sample_offsets=torch.linspace(0, p, 9).long(), num_points=p, num_images=48, num_ids=p)
    return DistillationFeatures(pair=pairs), (pairs.k, pairs.q)


def _gather_rank(rank: int, init_file: str, args, out_dir: str) -> None:
    import inspect

    import torch
    import torch.distributed as dist
    from mmdet3d.registry import MODELS
    from mmengine.logging import MessageHub
    torch.set_num_threads(1)
    setup_registry()
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=2)
    counter = CollectiveBytes()
    counter.install()
    reads = HostReads()
    MessageHub.get_current_instance().update_info('iter', 0)
    out = {}
    for name in args.losses:
        level, loss_cfg = GATHER_LOSSES[name]
        head = MODELS.build(loss_cfg)
        feats, leaves = _gather_features(rank, args, level)
        local_levels = (level, ) if getattr(head, 'draws_rows', False) else ()
        counter.calls, reads.calls = {}, []
        wire = [_loopback_bytes()]
        with reads:
            counter.phase = 'forward'
            if 'local_levels' in inspect.signature(feats.gather).parameters:
                gathered = feats.gather(local_levels=local_levels)
            else:  # the code before the drawn rows
                gathered = feats.gather()
            loss = head.loss(gathered)['loss']
            counter.phase = None
            wire.append(_loopback_bytes())
            counter.phase = 'backward'
            loss.backward()
            counter.phase = None
            wire.append(_loopback_bytes())
        out[name] = dict(
            loss=float(loss), grad_norm=float(sum(t.grad.double().norm()**2 for t in leaves)**0.5),
            calls=counter.calls, reads=list(reads.calls),
            loopback=None if None in wire else dict(forward=wire[1] - wire[0],
                                                    backward=wire[2] - wire[1]))
    torch.save(out, osp.join(out_dir, f'{rank}.pth'))
    dist.barrier()
    dist.destroy_process_group()


def run_gather(args) -> dict:
    """Bytes that each of 2 gloo processes sends, and its host reads, in one step of each loss
    with ``gather_features=True`` (gather, loss, backward), on random features of the given
    sizes."""
    import torch
    import torch.multiprocessing as mp
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(_gather_rank, args=(osp.join(tmp, 'init'), args, tmp), nprocs=2, join=True)
        ranks = [torch.load(osp.join(tmp, f'{r}.pth')) for r in (0, 1)]
    result = {}
    for name in args.losses:
        per_rank = []
        for rank, out in enumerate(ranks):
            o = out[name]
            phases = {ph: dict(calls=len(c), tensor_bytes=sum(b for _, b, _ in c),
                               sent_bytes=sum(s for _, _, s in c),
                               by_collective={n: sum(s for m, _, s in c if m == n)
                                              for n in sorted({m for m, _, _ in c})})
                      for ph, c in o['calls'].items()}
            sent = sum(p['sent_bytes'] for p in phases.values())
            per_rank.append(dict(phases=phases, sent_bytes=sent, reads=o['reads'], loss=o['loss'],
                                 grad_norm=o['grad_norm']))
            print(f'{name} rank {rank}: sent {sent / 2**20:.2f} MiB (' + ', '.join(
                f"{ph} {p['sent_bytes'] / 2**20:.2f} MiB in {p['calls']} collectives "
                f"{p['by_collective']}" for ph, p in phases.items()) +
                f"); {len(o['reads'])} host reads {dict(Counter(o['reads']))}; loss "
                f"{o['loss']:.7f}, |grad| {o['grad_norm']:.7f}", flush=True)
        wire = ranks[0][name]['loopback']
        if wire is not None:  # both ranks' traffic: half of it is one rank's
            print(f"{name}: loopback, per rank: forward {wire['forward'] / 2**21:.2f} MiB, "
                  f"backward {wire['backward'] / 2**21:.2f} MiB", flush=True)
        result[name] = dict(ranks=per_rank, loopback_per_rank=None if wire is None else
                            {k: v / 2 for k, v in wire.items()})
    return dict(superpixels=args.superpixels, pairs=args.pairs, dim=args.dim,
                teacher_dim=args.teacher_dim, losses=result)


def superpixel_maps(model, data):
    """The batch's superpixel maps with batch-unique ids, (I, H, W)."""
    from projects.img2lidar.models import point_pixel_pairs as ppp
    if hasattr(ppp, 'collate_pairs'):  # the code before the batch was collated in the loader
        return ppp.collate_pairs(data['inputs']['points'], data['data_samples']).superpixels
    return ppp.BatchPairs(**data['inputs']['pairs']).id_map()


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault('OMP_NUM_THREADS', str(args.threads))
    setup_registry()
    out = dict(memory=run_memory, host=run_host, coverage=run_coverage, pooling=run_pooling,
               gather=run_gather)[args.mode](args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
