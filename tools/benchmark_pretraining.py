#!/usr/bin/env python
"""Pretraining throughput: samples per second and peak memory of one training step, by stage.

    python tools/benchmark_pretraining.py --device cuda --batch-sizes 8 16 --amp bf16 \
        --out docs/gpu_benchmark.md                 # the GPU benchmark (ST-SLidR + CB, MinkUNet-34)
    python tools/benchmark_pretraining.py --device cpu --batch-sizes 1 --small --iters 2

Steps of a pretraining config (default: ST-SLidR + CB, MinkUNet-34 student, ResNet-50 teacher
with random weights) run by hand on real-size 224x416 crops of the real nuScenes sample
(``../shared/data/nuscenes_sample``; SLIC superpixels are made for it in a temporary folder), so
that every stage can be timed on its own:

- ``data``: the pretraining pipeline for the batch, in this one process (a run's dataloader
  workers do this in parallel with the model);
- ``voxelize``: the data preprocessor (images to the device, voxelization);
- ``student``: the 3D network's forward;
- ``teacher``: the frozen teacher's and the 2D head's forward;
- ``pooling``: point-pixel pairs and superpixel pooling;
- ``loss``: the loss's forward and backward (on the pooled features);
- ``backward``: the backward through pooling, the 2D head and the student;
- ``step``: the optimizer step.

CUDA stages are timed with events after a synchronisation; peak memory is
``torch.cuda.max_memory_allocated`` over the step. ``samples/s`` is the batch size over the
model step (everything but ``data``). ``--out`` writes the table with the device, driver and
package versions.
"""
import argparse
import os
import os.path as osp
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO_ROOT)
STAGES = ('data', 'voxelize', 'student', 'teacher', 'pooling', 'loss', 'backward', 'step')
DEFAULT_CONFIG = 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[8, 16])
    parser.add_argument('--iters', type=int, default=5, help='timed steps per batch size')
    parser.add_argument('--warmup', type=int, default=2, help='untimed steps first')
    parser.add_argument('--amp', choices=['none', 'bf16', 'fp16'], default='bf16')
    parser.add_argument('--crop', type=int, nargs=2, default=[224, 416])
    parser.add_argument('--small', action='store_true',
                        help='small student and teacher (CPU smoke runs of this script)')
    parser.add_argument('--sample-dir', default=osp.join(REPO_ROOT, '..', 'shared', 'data',
                                                         'nuscenes_sample'))
    parser.add_argument('--out', help='write the markdown table here (e.g. docs/gpu_benchmark.md)')
    return parser.parse_args(argv)


def versions() -> Dict[str, str]:
    import importlib.metadata as md

    import torch
    out = {'python': platform.python_version(), 'torch': torch.__version__}
    for name in ('mmcv', 'mmengine', 'mmdet', 'mmdet3d', 'spconv', 'spconv-cu120',
                 'spconv-cu126', 'numpy'):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    if torch.cuda.is_available():
        out['cuda runtime'] = torch.version.cuda
        try:
            out['driver'] = subprocess.run(
                ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            out['driver'] = 'unknown'
    return out


class Timer:
    """Wall time of a stage; on CUDA, synchronised before and after."""

    def __init__(self, device) -> None:
        import torch
        self.torch = torch
        self.cuda = device.type == 'cuda'
        self.times: Dict[str, float] = {}

    def __call__(self, name: str):
        timer = self

        class _Stage:

            def __enter__(self):
                if timer.cuda:
                    timer.torch.cuda.synchronize()
                self.t0 = time.perf_counter()

            def __exit__(self, *exc):
                if timer.cuda:
                    timer.torch.cuda.synchronize()
                timer.times[name] = timer.times.get(name, 0.0) + time.perf_counter() - self.t0

        return _Stage()


def build(args, tmp: str):
    """The model, optimizer and dataset of the benchmarked config."""
    import torch
    from mmdet3d.registry import DATASETS, MODELS
    from mmengine.config import Config

    from projects.img2lidar.preparation.superpixels import create_superpixels
    ann = next(f for f in os.listdir(args.sample_dir) if f.endswith('.pkl'))
    for f in os.listdir(args.sample_dir):
        os.symlink(osp.join(args.sample_dir, f), osp.join(tmp, f))
    create_superpixels(osp.join(tmp, ann), tmp, osp.join(tmp, 'superpixels'), img_prefix='',
                       workers=1, progress=False, downscale=4)
    cfg = Config.fromfile(osp.join(REPO_ROOT, args.config))
    cfg.model.teacher.checkpoint = None  # random teacher weights: the cost is the same
    if args.small:
        cfg.model.student.backbone.update(
            base_channels=16, encoder_channels=[16, 32, 64, 128], encoder_blocks=[1, 1, 1, 1],
            decoder_channels=[128, 64, 48, 48], decoder_blocks=[1, 1, 1, 1])
        cfg.model.teacher.backbone.update(depth=18, base_channels=16, stem_channels=16)
        cfg.model.image_head.in_channels = 128
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root, ds_cfg.ann_file = tmp, osp.join(tmp, ann)
    ds_cfg.data_prefix = dict(pts='', img='', sp='superpixels')  # replaces the camera folders
    for t in ds_cfg.pipeline:
        if t['type'] == 'PairedRandomResizedCrop':
            t['size'] = tuple(args.crop)
    dataset = DATASETS.build(ds_cfg)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model = model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    return cfg, model, optimizer, dataset, device


def step(model, optimizer, dataset, batch_size: int, device, amp: str, timer: Timer) -> float:
    """One timed training step; returns the loss."""
    import torch
    from mmengine.dataset import pseudo_collate

    from projects.img2lidar.models import DistillationFeatures, collate_pairs
    from projects.img2lidar.models.superpixel_pooling import superpixel_pooling
    with timer('data'):
        batch = pseudo_collate([dataset[0] for _ in range(batch_size)])
    dtype = dict(bf16=torch.bfloat16, fp16=torch.float16).get(amp)
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)
    with timer('voxelize'):
        data = model.data_preprocessor(batch, True)
    inputs, samples = data['inputs'], data['data_samples']
    with autocast:
        with timer('student'):
            point_feats = model.extract_point_feat(inputs, samples)
        with timer('teacher'):
            teacher_feats, pixel_feats = model.extract_img_feat(inputs)
        with timer('pooling'):
            pairs = collate_pairs(inputs['points'], samples)
            pooled = superpixel_pooling(point_feats, pixel_feats,
                                        teacher_feats if model.pool_teacher else None, pairs)
    with timer('loss'):
        k = pooled.k.detach().requires_grad_()
        q = pooled.q.detach().requires_grad_()
        leaf = DistillationFeatures(superpixel=type(pooled)(
            k=k, q=q, e=pooled.e, ids=pooled.ids, num_pairs=pooled.num_pairs,
            sample_offsets=pooled.sample_offsets, num_ids=pooled.num_ids))
        loss = sum(v for head in model.losses.values() for v in head.loss(leaf).values())
        loss.backward()
    with timer('backward'):
        torch.autograd.backward([pooled.k, pooled.q], [k.grad, q.grad])
    with timer('step'):
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return float(loss)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import projects.img2lidar  # noqa: F401
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        sys.exit('--device cuda requested but CUDA is not available')
    rows: List[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, optimizer, dataset, device = build(args, tmp)
        for bs in args.batch_sizes:
            for _ in range(args.warmup):
                step(model, optimizer, dataset, bs, device, args.amp, Timer(device))
            stage_times, peaks, losses = [], [], []
            for i in range(args.iters):
                if device.type == 'cuda':
                    torch.cuda.reset_peak_memory_stats()
                timer = Timer(device)
                losses.append(step(model, optimizer, dataset, bs, device, args.amp, timer))
                stage_times.append(timer.times)
                if device.type == 'cuda':
                    peaks.append(torch.cuda.max_memory_allocated() / 2**30)
                print(f'batch {bs} step {i + 1}/{args.iters}: loss {losses[-1]:.4f}, ' +
                      ', '.join(f'{k} {v * 1e3:.0f} ms' for k, v in timer.times.items()),
                      file=sys.stderr, flush=True)
            med = {s: statistics.median(t[s] for t in stage_times) for s in STAGES}
            model_time = sum(v for s, v in med.items() if s != 'data')
            rows.append(dict(batch=bs, **med, model=model_time, rate=bs / model_time,
                             data_rate=bs / med['data'], peak=max(peaks) if peaks else None,
                             finite=all(map(lambda x: x == x and abs(x) < 1e30, losses))))
    dev = (torch.cuda.get_device_name(device) if device.type == 'cuda' else
           f'CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} '
           'threads)')
    lines = [f'# Pretraining throughput: {osp.basename(args.config)}', '',
             f'Device: {dev}. ' + ', '.join(f'{k} {v}' for k, v in versions().items()) + '.',
             f'Crops {args.crop[0]}x{args.crop[1]}, autocast {args.amp}, teacher random, '
             f'median of {args.iters} steps after {args.warmup} warm-up'
             + (', SMALL networks (smoke run)' if args.small else '') + '.',
             f'Command: `python tools/benchmark_pretraining.py {" ".join(sys.argv[1:])}`', '',
             '| batch | ' + ' | '.join(f'{s} ms' for s in STAGES) +
             ' | model step ms | samples/s (model) | samples/s (data, 1 process) | peak GiB |',
             '|---:|' + '---:|' * (len(STAGES) + 4)]
    for r in rows:
        peak = f"{r['peak']:.2f}" if r['peak'] is not None else '-'
        lines.append(f"| {r['batch']} | " + ' | '.join(f'{r[s] * 1e3:.0f}' for s in STAGES) +
                     f" | {r['model'] * 1e3:.0f} | {r['rate']:.1f} | {r['data_rate']:.1f} | "
                     f'{peak} |')
    text = '\n'.join(lines)
    print(text)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return 0 if all(r['finite'] for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
