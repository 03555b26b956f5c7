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
from typing import Dict, List

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO_ROOT)
SAMPLE_DIR = osp.join(REPO_ROOT, 'tests', 'data', 'nuscenes_sample')

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
    for p in (mem, host, cov):
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
    out = dict(memory=run_memory, host=run_host, coverage=run_coverage)[args.mode](args)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == '__main__':
    sys.exit(main())
