"""Pretraining throughput: the real training step of a config, samples per second, peak memory
and the time of each part of the step.

    python tools/benchmark.py pretraining --device cuda --batch-sizes 8 16 --amp \
        --out docs/gpu_benchmark.md
    python tools/benchmark.py pretraining --device cpu --small --batch-sizes 1 --iters 2

The model, its optimizer wrapper and the training dataloader are built from the config through
mmengine (default: ST-SLidR + class-agnostic balancing, MinkUNet-34 student, ResNet-50 teacher
with random weights), on 224x416 crops of the real nuScenes sample (``tests/data/nuscenes_sample``;
SLIC superpixels are made for it in a temporary folder, and an infinite sampler draws every batch
from it). Each step is the model's own ``model.train_step(data, optim_wrapper)``; ``--amp``
switches the optimizer wrapper as ``tools/train.py --amp`` does.

Two passes per batch size, after ``--warmup`` steps:

- throughput: ``--iters`` plain steps, synchronised only at their end. ``samples/s`` is the
  batch size over the step (at the fastest / the median step); ``end to end`` adds the wait
  for the dataloader (its workers prepare batches while the model runs, as in a run). Peak
  memory is taken over these steps: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the
  process's peak resident set size (``VmHWM`` of ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` before each batch size; the dataloader's worker processes are not
  included).
- parts: ``--iters`` steps with timers around the parts of ``train_step``, each timer wrapping,
  on the built objects, a method that the step itself calls (nothing of the step is
  re-implemented; every timer synchronises on CUDA, and the time of a part excludes the parts
  nested in it):

  ==================  =========================================================================
  part                timed method
  ==================  =========================================================================
  data                ``next()`` on the dataloader (waiting for its workers)
  data_preprocessor   ``model.data_preprocessor.forward``: batch to the device, voxelization
  student             ``model.extract_point_feat``: the 3D student
  teacher             the frozen teacher's own methods (``model.teacher.forward``, ...)
  head                the 2D head's own methods (``model.image_head.forward``,
                      ``.pixel_features``, ...)
  loss                every loss head's own methods (``model.losses[name].loss``, ``.forward``)
  pooling             the rest of ``model.loss``: point-pixel pairs, superpixel pooling, pair
                      features and the model's own glue
  backward            ``optim_wrapper.backward``
  step                ``optim_wrapper.step`` and ``.zero_grad``
  other               the rest of ``train_step`` (loss parsing, the finite checks, ...)
  ==================  =========================================================================

The report gives the device, driver and package versions; ``--trace DIR`` also writes a
torch.profiler trace of one step (the parts appear as ``record_function`` ranges).
"""
import inspect
import os
import os.path as osp
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

from .memory import PeakMemory
from .sample_data import REPO_ROOT, SAMPLE_DIR
from .sample_data import make_sample_root as _make_sample_root
from .timing import PartTimer, Report, Times, progress

PARTS = ('data', 'data_preprocessor', 'student', 'teacher', 'head', 'pooling', 'loss',
         'backward', 'step', 'other')
DEFAULT_CONFIG = 'configs/st-slidr/stslidr_minkunet34_resnet50-mocov2_2xb8-50e_nuscenes.py'
#: --small: a MinkUNet of width 16 with one block per stage and a ResNet-18 of width 16
SMALL_STUDENT = dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                     encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                     decoder_blocks=[1, 1, 1, 1])
SMALL_TEACHER = dict(depth=18, base_channels=16, stem_channels=16)
SMALL_TEACHER_CHANNELS = 128


def add_arguments(parser) -> None:
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--batch-sizes', type=int, nargs='+', default=[8, 16])
    parser.add_argument('--iters', type=int, default=5, help='measured steps per pass')
    parser.add_argument('--warmup', type=int, default=2, help='unmeasured steps first')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision, as tools/train.py --amp')
    parser.add_argument('--crop', type=int, nargs=2, default=[224, 416])
    parser.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1),
                        help='dataloader workers (0: load in this process)')
    parser.add_argument('--small', action='store_true',
                        help='small student and teacher (CPU smoke runs of this benchmark)')
    parser.add_argument('--sample-dir', default=SAMPLE_DIR)
    parser.add_argument('--trace', help='write a torch.profiler trace of one step into DIR')


# ---------------------------------------------------------------------------------------------
# timing the parts of a step
# ---------------------------------------------------------------------------------------------
def own_methods(obj) -> List[str]:
    """Public methods that the project's classes in ``type(obj)``'s MRO define, and
    ``forward``: what a caller of this part can reach."""
    names = {'forward'} if callable(getattr(obj, 'forward', None)) else set()
    skip = {'train', 'eval', 'init_weights', 'extra_repr'}
    for cls in type(obj).__mro__:
        if not cls.__module__.startswith('projects.'):
            continue
        for name, attr in vars(cls).items():
            if inspect.isfunction(attr) and not name.startswith('_') and name not in skip:
                names.add(name)
    return sorted(names)


def instrument(model, optim_wrapper, timer: PartTimer) -> None:
    """Wrap the methods that ``train_step`` reaches with timers (``timer.undo()`` removes
    them).

    Depends on these names: ``model.data_preprocessor``, ``model.extract_point_feat``,
    ``model.teacher``, ``model.image_head``, ``model.losses`` (name -> loss head),
    ``model.loss`` and ``model.train_step`` (mmengine's BaseModel), and the optimizer
    wrapper's ``backward``, ``step`` and ``zero_grad``.
    """
    timer.instrument(model, 'train_step', 'other')
    timer.instrument(model, 'loss', 'pooling')
    timer.instrument(model.data_preprocessor, 'forward', 'data_preprocessor')
    timer.instrument(model, 'extract_point_feat', 'student')
    for part, modules in (('teacher', [model.teacher]), ('head', [model.image_head]),
                          ('loss', list(model.losses.values()))):
        for module in modules:
            for method in own_methods(module):
                timer.instrument(module, method, part)
    for method in ('backward', 'step', 'zero_grad'):
        timer.instrument(optim_wrapper, method, 'backward' if method == 'backward' else 'step')


# ---------------------------------------------------------------------------------------------
# building the config's model, optimizer wrapper and dataloader
# ---------------------------------------------------------------------------------------------
def make_sample_root(sample_dir: str, tmp: str) -> str:
    """A data root with the sample (links) and SLIC superpixels made for it (at 1/4
    resolution, for speed); the info file."""
    return _make_sample_root(tmp, sample_dir, downscale=4)


def load_config(args, root: str, ann_file: str):
    """The config with the sample as its data, random teacher weights and --small/--amp."""
    from mmengine.config import Config

    from ..engine.launch import enable_amp
    cfg = Config.fromfile(osp.join(REPO_ROOT, args.config))
    cfg.model.teacher.checkpoint = None  # random teacher weights: the cost is the same
    if args.small:
        cfg.model.student.backbone.update(SMALL_STUDENT)
        cfg.model.teacher.backbone.update(SMALL_TEACHER)
        cfg.model.image_head.in_channels = SMALL_TEACHER_CHANNELS
    if args.amp:
        enable_amp(cfg)
    loader = cfg.train_dataloader
    loader.dataset.data_root, loader.dataset.ann_file = root, ann_file
    # replaces the camera folders: the sample's files sit side by side
    loader.dataset.data_prefix = dict(pts='', img='', sp='superpixels')
    for t in loader.dataset.pipeline:
        if t['type'] == 'PairedRandomResizedCrop':
            t['size'] = tuple(args.crop)
    loader.update(num_workers=args.workers, persistent_workers=args.workers > 0,
                  sampler=dict(type='InfiniteSampler', shuffle=True))
    return cfg


def build_model(cfg, device):
    """The model (on ``device``, train mode) and its optimizer wrapper, built by mmengine."""
    import torch
    from mmdet3d.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model = model.to(device).train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def build_loader(cfg, batch_size: int):
    from mmengine.runner import Runner
    return Runner.build_dataloader(dict(cfg.train_dataloader, batch_size=batch_size), seed=0)


# ---------------------------------------------------------------------------------------------
# measuring
# ---------------------------------------------------------------------------------------------
def finite(x: float) -> bool:
    return x == x and abs(x) < float('inf')


def run_steps(model, optim_wrapper, batches, n: int, sync: Callable,
              timer: PartTimer = None) -> List[dict]:
    """``n`` training steps on batches from ``batches``; per step: data wait, step time, loss
    (and the part times when ``timer`` is given)."""
    import torch
    rows = []
    for _ in range(n):
        t0 = time.perf_counter()
        if timer is not None:
            timer.reset()
            with timer.part('data'):
                data = next(batches)
        else:
            data = next(batches)
        t1 = time.perf_counter()
        log_vars = model.train_step(data, optim_wrapper)
        sync()
        t2 = time.perf_counter()
        loss = float(torch.as_tensor(log_vars['loss']).detach())
        rows.append(dict(data=t1 - t0, step=t2 - t1, loss=loss,
                         parts=dict(timer.times) if timer is not None else None))
    return rows


def benchmark_batch_size(args, cfg, model, optim_wrapper, device, batch_size: int) -> dict:
    """Both passes for one batch size."""
    import torch
    cuda = device.type == 'cuda'
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    batches = iter(build_loader(cfg, batch_size))
    memory = PeakMemory(device)
    run_steps(model, optim_wrapper, batches, args.warmup, sync)
    memory.reset()
    plain = run_steps(model, optim_wrapper, batches, args.iters, sync)
    peak = memory.read_gib()
    timer = PartTimer(sync=sync if cuda else None,
                      record=lambda name: torch.profiler.record_function(f'step/{name}'))
    instrument(model, optim_wrapper, timer)
    try:
        timed = run_steps(model, optim_wrapper, batches, args.iters, sync, timer)
        if args.trace:
            os.makedirs(args.trace, exist_ok=True)
            acts = [torch.profiler.ProfilerActivity.CPU] + (
                [torch.profiler.ProfilerActivity.CUDA] if cuda else [])
            with torch.profiler.profile(activities=acts) as prof:
                run_steps(model, optim_wrapper, batches, 1, sync, timer)
            prof.export_chrome_trace(osp.join(args.trace, f'step_batch{batch_size}.json'))
    finally:
        timer.undo()
    step = Times([r['step'] for r in plain])
    data = Times([r['data'] for r in plain])
    parts = {p: Times([r['parts'].get(p, 0.0) for r in timed]) for p in PARTS}
    losses = [r['loss'] for r in plain + timed]
    return dict(batch=batch_size, step=step, data_wait=data, peak_gib=peak,
                memory=memory.method, parts=parts,
                parts_total=Times([sum(v for k, v in r['parts'].items() if k != 'data')
                                   for r in timed]),
                losses=losses, finite=all(map(finite, losses)))


# ---------------------------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------------------------
def versions(device) -> Dict[str, str]:
    """Device, driver and package versions."""
    import importlib.metadata as md

    import torch
    out = {'python': platform.python_version(), 'torch': torch.__version__}
    for name in ('mmcv', 'mmengine', 'mmdet', 'mmdet3d', 'spconv', 'spconv-cu120',
                 'spconv-cu126', 'cumm-cu126', 'numpy'):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    try:
        from mmcv.utils import ext_loader
        ext = ext_loader.load_ext('_ext', ['get_compiling_cuda_version'])
        cuda_ops = ext.get_compiling_cuda_version()
        out['mmcv ops'] = 'CPU only' if cuda_ops == 'not available' else f'CUDA {cuda_ops}'
    except (ImportError, AssertionError):
        pass
    if device.type == 'cuda':
        out['device'] = torch.cuda.get_device_name(device)
        out['CUDA runtime (torch)'] = str(torch.version.cuda)
        out['cuDNN'] = str(torch.backends.cudnn.version())
        try:
            out['driver'] = subprocess.run(
                ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
                capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            out['driver'] = 'unknown'
    else:
        out['device'] = (f'CPU ({platform.processor() or platform.machine()}, '
                         f'{torch.get_num_threads()} threads)')
    return out


def write_report(args, rows: List[dict], device, report: Report) -> None:
    ver = versions(device)
    report.note(f'Device: {ver.pop("device")}. ' +
                ', '.join(f'{k} {v}' for k, v in ver.items()) + '.')
    report.note(f'`{args.config}`\'s own `train_step` on {args.crop[0]}x{args.crop[1]} crops '
                'of `tests/data/nuscenes_sample`, teacher with random weights, '
                f'{"mixed precision (tools/train.py --amp)" if args.amp else "float32"}, '
                f'{args.workers} dataloader workers; {args.iters} steps after {args.warmup} '
                'warm-up steps, min / median' +
                ('; SMALL networks (a smoke run, not a benchmark)' if args.small else '') +
                f'. Peak memory: {rows[0]["memory"] if rows else "-"}.')
    report.table(['batch', 'step ms', 'samples/s', 'samples/s end to end', 'data wait ms',
                  'peak GiB', 'losses finite'],
                 [(r['batch'], r['step'].ms(0), r['step'].rate(r['batch'], 2),
                   Times([s + d for s, d in zip(r['step'].values, r['data_wait'].values)])
                   .rate(r['batch'], 2), r['data_wait'].ms(0), f"{r['peak_gib']:.2f}",
                   'yes' if r['finite'] else 'NO') for r in rows], align='rrrrrrl')
    report.note('Parts of the step (ms, min / median; each part excludes the parts nested in '
                'it; timers synchronise on CUDA, so their sum exceeds the plain step a little):')
    report.table(['part'] + [f"batch {r['batch']}" for r in rows],
                 [[p] + [r['parts'][p].ms(0) for r in rows] for p in PARTS] +
                 [['sum without data'] + [r['parts_total'].ms(0) for r in rows]])


def run(args, report: Report) -> int:
    import torch
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda requested but CUDA is not available')
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = make_sample_root(args.sample_dir, tmp)
        cfg = load_config(args, tmp, ann_file)
        model, optim_wrapper = build_model(cfg, device)
        for batch_size in args.batch_sizes:
            row = benchmark_batch_size(args, cfg, model, optim_wrapper, device, batch_size)
            rows.append(row)
            progress(f"batch {batch_size}: {row['step'].rate(batch_size, 2)} samples/s, "
                     f"step {row['step'].ms(0)} ms, peak {row['peak_gib']:.2f} GiB, losses " +
                     ' '.join(f'{v:.4f}' for v in row['losses']))
    write_report(args, rows, device, report)
    return 0 if all(r['finite'] for r in rows) else 1
