#!/usr/bin/env python
"""The distiller's training step on CUDA against the CPU path, and the sample run's config.

    python tools/gpu_step_check.py step --out gpu_check_out            # CUDA vs CPU, fp32 and AMP
    python tools/gpu_step_check.py step --device cpu --small --out X   # the same code, on CPU only
    python tools/gpu_step_check.py train-config --work-dir W --out W/config.py [--small]
    python tools/gpu_step_check.py check-log W --iters 50              # losses finite, falling

``step`` builds the config's model through mmengine (default: ST-SLidR + class-agnostic
balancing, MinkUNet-34, ResNet-50 teacher with random weights), one batch of 224x416 crops of
the real nuScenes sample, and runs the model's own ``train_step`` on that batch: on the CPU in
float32 (the reference), then with the same weights on ``--device`` in float32 (TF32 off) and
with mixed precision (``tools/train.py --amp``'s optimizer wrapper). It captures, by wrapping
the built objects' methods, the student's point features (``model.extract_point_feat``), the
features every loss head receives (``features.superpixel.k/q/e``, ``features.pair.k/q``), every
loss term (``model.losses[name].loss``) and the gradients of the student and the 2D head as
the backward leaves them (``optim_wrapper.backward``, unscaled by the AMP loss scale), and
compares them:

- float32: the largest difference relative to the reference's largest entry, at most 1e-3
  (features, losses, gradients of every tensor);
- AMP: relative L2 error at most 5e-2 for features and losses, cosine similarity of the student's
  and the head's whole gradients at least 0.99 (an AMP step whose gradients overflow the loss
  scale is repeated, as the loss scaler does in a run, and counted).

A second step per variant runs with ``torch.cuda.set_sync_debug_mode('warn')``; its host syncs
are counted, with their places in the code. The results go to ``--out`` as ``step_check.json``
and ``step_check.md``; the exit code is 1 when a check fails.
"""
import argparse
import collections
import copy
import json
import math
import os
import os.path as osp
import random
import sys
import tempfile
import warnings
from typing import Dict, List

TOOLS = osp.dirname(osp.abspath(__file__))
REPO_ROOT = osp.dirname(TOOLS)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

# the config, sample and model building of `tools/benchmark.py pretraining`, shared
from projects.img2lidar.benchmarks import pretraining as bench  # noqa: E402

FP32_TOL = 1e-3
AMP_REL_L2 = 5e-2
AMP_GRAD_COSINE = 0.99
MAX_AMP_TRIES = 20


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    step = sub.add_parser('step', help='the training step on --device against the CPU')
    step.add_argument('--config', default=bench.DEFAULT_CONFIG)
    step.add_argument('--device', default='cuda')
    step.add_argument('--batch', type=int, default=2)
    step.add_argument('--crop', type=int, nargs=2, default=[224, 416])
    step.add_argument('--small', action='store_true', help='small student and teacher')
    step.add_argument('--sample-dir', default=bench.SAMPLE_DIR)
    step.add_argument('--out', default='gpu_check_out')
    cfg = sub.add_parser('train-config', help='write a config for tools/train.py on the sample')
    cfg.add_argument('--config', default=bench.DEFAULT_CONFIG)
    cfg.add_argument('--work-dir', required=True, help='holds the data root it makes')
    cfg.add_argument('--out', required=True, help='the config file to write')
    cfg.add_argument('--iters', type=int, default=50)
    cfg.add_argument('--batch', type=int, default=8)
    cfg.add_argument('--workers', type=int, default=min(8, os.cpu_count() or 1))
    cfg.add_argument('--small', action='store_true', help='small student and teacher')
    cfg.add_argument('--sample-dir', default=bench.SAMPLE_DIR)
    log = sub.add_parser('check-log', help='a run\'s losses are finite and fall')
    log.add_argument('work_dir')
    log.add_argument('--iters', type=int, default=50)
    log.add_argument('--window', type=int, default=10,
                     help='compare the mean of the first and the last WINDOW losses')
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------
# capturing what one training step computes
# ---------------------------------------------------------------------------------------------
class StepCapture:
    """Wraps the built model's and optimizer wrapper's methods to keep what a step computes.

    Nothing is copied to the host during the step (no extra syncs); :meth:`to_cpu` does that
    afterwards. Depends on ``model.extract_point_feat``, ``model.losses`` (name -> head with a
    ``loss(features)`` method), ``model.student``, ``model.image_head`` and
    ``optim_wrapper.backward``.
    """

    def __init__(self, model, optim_wrapper) -> None:
        self.model, self.optim_wrapper = model, optim_wrapper
        self.values: Dict[str, object] = {}
        self._undo = []
        self._wrap(model, 'extract_point_feat', self._point_feats)
        for name, head in model.losses.items():
            self._wrap(head, 'loss', self._loss_of(name))
        self._wrap(optim_wrapper, 'backward', self._backward)

    def _wrap(self, obj, method: str, make) -> None:
        orig = getattr(obj, method)
        setattr(obj, method, make(orig))
        self._undo.append((obj, method))

    def undo(self) -> None:
        for obj, method in reversed(self._undo):
            delattr(obj, method)

    def _point_feats(self, orig):
        def wrapper(*args, **kwargs):
            out = orig(*args, **kwargs)
            self.values['point_feats'] = out.detach()
            return out
        return wrapper

    def _loss_of(self, name: str):
        def make(orig):
            def wrapper(features, *args, **kwargs):
                terms = orig(features, *args, **kwargs)
                for level in ('superpixel', 'pair'):
                    feats = getattr(features, level, None)
                    for field in ('k', 'q', 'e'):
                        value = getattr(feats, field, None) if feats is not None else None
                        if value is not None:
                            self.values[f'{level}.{field}'] = value.detach()
                for term, value in terms.items():
                    self.values[f'loss/{name}.{term}'] = value.detach()
                return terms
            return wrapper
        return make

    def _backward(self, orig):
        def wrapper(loss, *args, **kwargs):
            out = orig(loss, *args, **kwargs)
            scaler = getattr(self.optim_wrapper, 'loss_scaler', None)
            scale = scaler.get_scale() if scaler is not None else 1.0
            for prefix, module in (('student', self.model.student),
                                   ('head', self.model.image_head)):
                for pname, p in module.named_parameters():
                    if p.grad is not None:
                        self.values[f'grad/{prefix}.{pname}'] = p.grad.detach() / scale
            return out
        return wrapper

    def to_cpu(self) -> Dict[str, 'object']:
        """The captured tensors in float32 on the host."""
        return {k: v.float().cpu() for k, v in self.values.items()}


def gradients_finite(values: Dict[str, object]) -> bool:
    import torch
    grads = [v for k, v in values.items() if k.startswith('grad/')]
    return bool(grads) and all(bool(torch.isfinite(g).all()) for g in grads)


def count_syncs(fn) -> collections.Counter:
    """Host syncs while ``fn()`` runs, by place in the code (sync debug mode 'warn')."""
    import torch
    counts: collections.Counter = collections.Counter()
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    for w in caught:
        if 'synchroniz' in str(w.message):
            counts[f'{osp.relpath(w.filename, REPO_ROOT) if w.filename.startswith(REPO_ROOT) else w.filename}:{w.lineno}'] += 1
    return counts


# ---------------------------------------------------------------------------------------------
# the step on a device
# ---------------------------------------------------------------------------------------------
def make_batch(cfg, size: int, seed: int = 0):
    """One batch of the config's training pipeline (fixed random crops), made by the config's
    own collate function, as its data loader makes it."""
    import numpy as np
    import torch
    from mmdet3d.registry import DATASETS
    from mmengine.registry import FUNCTIONS
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    collate = dict(cfg.train_dataloader.get('collate_fn', dict(type='pseudo_collate')))
    collate_fn = FUNCTIONS.get(collate.pop('type'))
    return collate_fn([dataset[i % len(dataset)] for i in range(size)], **collate)


def run_variant(cfg, state, batch, device, amp: bool) -> dict:
    """The captured step on ``device`` (and, on CUDA, the host syncs of a second step)."""
    import torch
    model, optim_wrapper = bench.build_model(cfg, device)
    model.load_state_dict(state)
    capture = StepCapture(model, optim_wrapper)
    tries = 0
    try:
        while True:
            tries += 1
            capture.values.clear()
            torch.manual_seed(0)
            log_vars = model.train_step(copy.deepcopy(batch), optim_wrapper)
            if not amp or gradients_finite(capture.values) or tries >= MAX_AMP_TRIES:
                break  # an AMP step that overflowed is skipped by the scaler: take another
        values = capture.to_cpu()
    finally:
        capture.undo()
    result = dict(values=values, tries=tries,
                  log_vars={k: float(torch.as_tensor(v).detach()) for k, v in log_vars.items()})
    if device.type == 'cuda':
        syncs = count_syncs(lambda: model.train_step(copy.deepcopy(batch), optim_wrapper))
        result['syncs'] = dict(total=sum(syncs.values()), places=syncs.most_common(20))
    return result


# ---------------------------------------------------------------------------------------------
# comparing
# ---------------------------------------------------------------------------------------------
def compare_fp32(ref: Dict[str, object], got: Dict[str, object]) -> List[dict]:
    """Per captured tensor: max |got - ref| / max |ref| (at most FP32_TOL)."""
    rows = []
    for key in sorted(ref):
        a, b = got.get(key), ref[key]
        if a is None or a.shape != b.shape:
            rows.append(dict(key=key, ok=False, error='missing or another shape'))
            continue
        scale = max(float(b.abs().max()), 1e-12)
        err = float((a - b).abs().max()) / scale if b.numel() else 0.0
        rows.append(dict(key=key, ok=err <= FP32_TOL and math.isfinite(err), rel_max=err))
    return rows


def compare_amp(ref: Dict[str, object], got: Dict[str, object]) -> List[dict]:
    """Features and losses: relative L2 error; gradients: cosine of each module's whole
    gradient (and the relative L2 error of each tensor, reported)."""
    import torch
    rows = []
    for key in sorted(k for k in ref if not k.startswith('grad/')):
        a, b = got.get(key), ref[key]
        if a is None or a.shape != b.shape:
            rows.append(dict(key=key, ok=False, error='missing or another shape'))
            continue
        err = float((a - b).norm() / b.norm().clamp_min(1e-12))
        rows.append(dict(key=key, ok=err <= AMP_REL_L2 and math.isfinite(err), rel_l2=err))
    for prefix in ('grad/student.', 'grad/head.'):
        keys = sorted(k for k in ref if k.startswith(prefix))
        if not keys or any(got.get(k) is None for k in keys):
            rows.append(dict(key=prefix + '*', ok=False, error='missing gradients'))
            continue
        a = torch.cat([got[k].flatten() for k in keys])
        b = torch.cat([ref[k].flatten() for k in keys])
        cos = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        worst = max(float((got[k] - ref[k]).norm() / ref[k].norm().clamp_min(1e-12))
                    for k in keys)
        rows.append(dict(key=prefix + '*', ok=cos >= AMP_GRAD_COSINE, cosine=cos,
                         worst_tensor_rel_l2=worst))
    return rows


def summarize(rows: List[dict]) -> dict:
    bad = [r for r in rows if not r['ok']]
    return dict(ok=not bad, checked=len(rows), failed=bad[:20])


def report_markdown(result: dict) -> str:
    lines = ['# Training step on the GPU against the CPU', '',
             f"Config `{result['config']}`, batch {result['batch']}, crops "
             f"{result['crop'][0]}x{result['crop'][1]}, device {result['device']}.", '']
    for name, part in result['variants'].items():
        s = part['summary']
        lines.append(f"## {name}: {'PASS' if s['ok'] else 'FAIL'} ({s['checked']} checks"
                     f"{', ' + str(part['tries']) + ' tries' if part['tries'] > 1 else ''})")
        lines.append('')
        worst = sorted(part['rows'], key=lambda r: -r.get('rel_max', r.get('rel_l2', 0.0)))[:8]
        for r in worst + [r for r in part['rows'] if r['key'].endswith('*')]:
            lines.append(f"- `{r['key']}`: " + ', '.join(
                f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}'
                for k, v in r.items() if k not in ('key', )))
        if 'syncs' in part:
            lines += ['', f"Host syncs in one step: {part['syncs']['total']}", '']
            lines += [f'- {place}: {n}' for place, n in part['syncs']['places']]
        lines.append('')
    return '\n'.join(lines)


def step_main(args) -> int:
    import torch

    import projects.img2lidar  # noqa: F401  applies the compatibility patches
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    device = torch.device(args.device)
    if device.type == 'cuda':
        if not torch.cuda.is_available():
            sys.exit('--device cuda requested but CUDA is not available')
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    os.makedirs(args.out, exist_ok=True)
    opts = argparse.Namespace(config=args.config, small=args.small, amp=False, crop=args.crop,
                              workers=0)
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = bench.make_sample_root(args.sample_dir, tmp)
        cfg = bench.load_config(opts, tmp, ann_file)
        cfg_amp = bench.load_config(argparse.Namespace(**{**vars(opts), 'amp': True}), tmp,
                                    ann_file)
        batch = make_batch(cfg, args.batch)
        reference_model, _ = bench.build_model(cfg, torch.device('cpu'))
        state = copy.deepcopy(reference_model.state_dict())
        del reference_model
        ref = run_variant(cfg, state, batch, torch.device('cpu'), amp=False)
        variants = {f'{device.type} float32': run_variant(cfg, state, batch, device, False)}
        if device.type == 'cuda':
            variants[f'{device.type} amp'] = run_variant(cfg_amp, state, batch, device, True)
    result = dict(config=args.config, batch=args.batch, crop=args.crop, device=str(device),
                  reference_losses=ref['log_vars'], variants={})
    ok = True
    for name, part in variants.items():
        rows = (compare_amp if name.endswith('amp') else compare_fp32)(ref['values'],
                                                                       part['values'])
        summary = summarize(rows)
        ok &= summary['ok']
        result['variants'][name] = dict(rows=rows, summary=summary, tries=part['tries'],
                                        log_vars=part['log_vars'],
                                        **({'syncs': part['syncs']} if 'syncs' in part else {}))
        print(f"{name}: {'PASS' if summary['ok'] else 'FAIL'} ({summary['checked']} checks)"
              + (f", {part['syncs']['total']} host syncs per step" if 'syncs' in part else ''),
              flush=True)
        for bad in summary['failed']:
            print(f'  FAILED {bad}', flush=True)
    with open(osp.join(args.out, 'step_check.json'), 'w') as f:
        json.dump(result, f, indent=1)
    with open(osp.join(args.out, 'step_check.md'), 'w') as f:
        f.write(report_markdown(result))
    return 0 if ok else 1


# ---------------------------------------------------------------------------------------------
# the sample run of tools/train.py
# ---------------------------------------------------------------------------------------------
def train_config_main(args) -> int:
    """Write a config inheriting ``--config`` that trains ``--iters`` iterations on the sample
    (superpixels made under ``--work-dir``), random teacher weights, no validation."""
    import projects.img2lidar  # noqa: F401
    root = osp.join(osp.abspath(args.work_dir), 'data')
    os.makedirs(root, exist_ok=True)
    ann = osp.join(root, next(f for f in sorted(os.listdir(args.sample_dir))
                              if f.endswith('.pkl')))
    if not osp.exists(ann):
        ann = bench.make_sample_root(args.sample_dir, root)
    small = ''
    if args.small:
        small = (f'model = dict(student=dict(backbone={bench.SMALL_STUDENT!r}), '
                 f'teacher=dict(checkpoint=None, backbone={bench.SMALL_TEACHER!r}), '
                 f'image_head=dict(in_channels={bench.SMALL_TEACHER_CHANNELS}))\n')
    text = f'''# written by tools/gpu_step_check.py train-config: {args.iters} iterations on the
# real nuScenes sample, batch {args.batch}, random teacher weights, no validation
_base_ = [{osp.join(REPO_ROOT, args.config)!r}]
model = dict(teacher=dict(checkpoint=None))
{small}data = dict(data_root={root!r}, ann_file={ann!r},
            data_prefix=dict(_delete_=True, pts='', img='', sp='superpixels'))
train_dataloader = dict(batch_size={args.batch}, num_workers={args.workers},
                        persistent_workers={args.workers > 0},
                        sampler=dict(_delete_=True, type='InfiniteSampler', shuffle=True),
                        dataset=data)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters={args.iters})
val_dataloader = None
val_cfg = None
val_evaluator = None
test_dataloader = None
test_cfg = None
test_evaluator = None
param_scheduler = []
custom_hooks = []
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval={args.iters}, by_epoch=False))
log_processor = dict(window_size=1, by_epoch=False)
randomness = dict(seed=0)
'''
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    with open(args.out, 'w') as f:
        f.write(text)
    print(args.out)
    return 0


def read_losses(work_dir: str) -> List[float]:
    """The total loss per logged iteration of the newest run in ``work_dir``."""
    logs = sorted(p for p in (osp.join(work_dir, d, 'vis_data', 'scalars.json')
                              for d in os.listdir(work_dir)) if osp.exists(p))
    if not logs:
        raise FileNotFoundError(f'no */vis_data/scalars.json in {work_dir}')
    with open(logs[-1]) as f:
        rows = [json.loads(line) for line in f]
    return [float(r['loss']) for r in rows if 'loss' in r]


def check_log_main(args) -> int:
    losses = read_losses(args.work_dir)
    first = losses[:args.window]
    last = losses[-args.window:]
    checks = {
        f'{args.iters} iterations logged': len(losses) >= args.iters,
        'every loss finite': all(math.isfinite(v) for v in losses),
        f'mean of the last {args.window} below the first {args.window}':
        bool(first) and sum(last) / len(last) < sum(first) / len(first),
    }
    print(f'losses ({len(losses)}): first {[round(v, 4) for v in first]}, last '
          f'{[round(v, 4) for v in last]}')
    for name, ok in checks.items():
        print(f"  {'ok ' if ok else 'FAIL'} {name}")
    return 0 if all(checks.values()) else 1


def main(argv=None) -> int:
    args = parse_args(argv)
    return {'step': step_main, 'train-config': train_config_main,
            'check-log': check_log_main}[args.command](args)


if __name__ == '__main__':
    sys.exit(main())
