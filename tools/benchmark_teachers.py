#!/usr/bin/env python
"""Forward time and peak memory per image of the frozen teachers at 224x448.

    python tools/benchmark_teachers.py                          # CPU: ViT-S/B/L/14 and ResNet-50
    python tools/benchmark_teachers.py --size 224 416 --teachers mobilenetv2 mobilenetv2-os8
    python tools/benchmark_teachers.py --device cuda --batch 16 --amp bf16

Teachers are built at their real sizes with random weights (the cost does not depend on the
weights): DINOv2 ViT-S/14, ViT-B/14 and ViT-L/14 through :class:`ViTTeacher` (transformers
``Dinov2Model`` saved to a temporary directory), and the dilated ResNet-50 of the SLidR configs
for comparison, and the ImageNet MobileNetV2 teacher (dilated to stride 16, or 8 with
``mobilenetv2-os8``). Each runs ``--repeats`` forwards of a batch after one warm-up; the table gives
the median time per image and the peak memory of a forward (CUDA: the allocator's peak above the
inputs; CPU: the growth of the resident set, as tools/benchmark_losses.py measures it), and
the smallest process CPU time of a forward (all threads together; on a machine shared with
other jobs it is steadier than the wall-clock time).
"""
import argparse
import os
import os.path as osp
import statistics
import sys
import tempfile
import time

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO_ROOT)
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

#: DINOv2 sizes (convert_dinov2_to_hf.py): width, depth, heads
VIT_SIZES = {'vit-s14': (384, 12, 6), 'vit-b14': (768, 12, 12), 'vit-l14': (1024, 24, 16)}
#: teachers built from a config of configs/_base_/models (backbone options overridden)
CONFIG_TEACHERS = {
    'resnet50': ('resnet50_dilated_teacher.py', {}),
    'mobilenetv2': ('mobilenetv2-imagenet-dilated_teacher.py', {}),
    'mobilenetv2-os8': ('mobilenetv2-imagenet-dilated_teacher.py',
                        dict(strides=(1, 2, 2, 1, 1, 1, 1), dilations=(1, 1, 1, 2, 2, 4, 4))),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=1, help='images per forward')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--size', type=int, nargs=2, default=[224, 448])
    parser.add_argument('--amp', choices=['none', 'bf16'], default='none')
    parser.add_argument('--teachers', nargs='+', default=list(VIT_SIZES) + ['resnet50'],
                        choices=list(VIT_SIZES) + list(CONFIG_TEACHERS))
    return parser.parse_args(argv)


def build_teacher(name: str, tmp: str):
    from mmdet3d.registry import MODELS
    if name in CONFIG_TEACHERS:
        from mmengine.config import Config
        config, backbone = CONFIG_TEACHERS[name]
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/_base_/models', config))
        cfg.teacher_model.teacher.backbone.update(backbone)
        return MODELS.build(dict(cfg.teacher_model.teacher, checkpoint=None))
    from transformers import Dinov2Config, Dinov2Model
    width, depth, heads = VIT_SIZES[name]
    path = osp.join(tmp, name)
    Dinov2Model(Dinov2Config(hidden_size=width, num_hidden_layers=depth,
                             num_attention_heads=heads, image_size=518,
                             patch_size=14)).save_pretrained(path)
    return MODELS.build(dict(type='ViTTeacher', checkpoint=path, final_norm=False))


def main(argv=None) -> int:
    args = parse_args(argv)
    from benchmark_losses import MMAP_ENV, MemoryProbe
    if args.device.startswith('cpu') and MMAP_ENV not in os.environ:
        os.environ[MMAP_ENV] = '131072'  # freed tensors leave the resident set (see there)
        os.execv(sys.executable, [sys.executable, osp.abspath(__file__)] + sys.argv[1:])
    import torch

    import projects.img2lidar  # noqa: F401
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    device = torch.device(args.device)
    probe = MemoryProbe(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.teachers:
            print(f'{name} ...', end=' ', file=sys.stderr, flush=True)
            teacher = build_teacher(name, tmp).to(device)
            params = sum(p.numel() for p in teacher.parameters()) / 1e6
            imgs = torch.rand(args.batch, 3, *args.size, device=device) * 255
            autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                      enabled=args.amp == 'bf16')
            times, cpu_times, peaks = [], [], []
            for i in range(args.repeats + 1):
                probe.start()
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                t0, c0 = time.perf_counter(), time.process_time()
                with autocast:
                    out = teacher(imgs)
                if device.type == 'cuda':
                    torch.cuda.synchronize()
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                peak = probe.stop()
                if i:  # the first forward warms up
                    times.append(elapsed)
                    cpu_times.append(cpu)
                    peaks.append(peak)
            rows.append((name, params, tuple(out.shape[1:]), statistics.median(times) / args.batch,
                         min(cpu_times) / args.batch, max(peaks) / args.batch))
            print(f'{rows[-1][3] * 1e3:.0f} ms / image', file=sys.stderr, flush=True)
            del teacher, out
    dev = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        f'CPU, {torch.get_num_threads()} threads'
    print(f'# teachers, forward only, {args.size[0]}x{args.size[1]} images, batch {args.batch}, '
          f'{dev}, autocast {args.amp}, torch {torch.__version__}')
    print(f'# {probe.header()}')
    print('| teacher | parameters (M) | output (E, h, w) | ms / image | CPU ms / image (min) '
          '| peak MiB / image |')
    print('|---|---:|---|---:|---:|---:|')
    for name, params, shape, seconds, cpu, mib in rows:
        print(f'| {name} | {params:.1f} | {shape} | {seconds * 1e3:.0f} | {cpu * 1e3:.0f} '
              f'| {mib:.0f} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
