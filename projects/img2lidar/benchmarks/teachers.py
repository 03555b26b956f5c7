"""Forward time and peak memory per image of the frozen teachers.

    python tools/benchmark.py teachers                          # CPU: ViT-S/B/L/14, ResNet-50
    python tools/benchmark.py teachers --size 224 416 --teachers mobilenetv2 mobilenetv2-os8
    python tools/benchmark.py teachers --device cuda --batch 16 --amp bf16

Teachers are built at their real sizes with random weights (the cost does not depend on the
weights): DINOv2 ViT-S/14, ViT-B/14 and ViT-L/14 through :class:`ViTTeacher` (transformers
``Dinov2Model`` saved to a temporary directory), the dilated ResNet-50 of the SLidR configs,
and the ImageNet MobileNetV2 teacher (dilated to stride 16, or 8 with ``mobilenetv2-os8``).
Each runs ``--repeats`` forwards of a batch after one warm-up; the report gives the time per
image (min / median), the smallest process CPU time of a forward per image (all threads
together; on a machine shared with other jobs it is steadier than the wall-clock time) and the
peak memory of a forward (:mod:`.memory`: CUDA: the allocator's peak above the inputs; CPU: the
growth of the resident set).
"""
import os.path as osp
import sys
import tempfile
import time

from .memory import MemoryProbe, reexec_with_mmap_threshold
from .sample_data import REPO_ROOT
from .timing import Report, Times, progress

#: DINOv2 sizes (convert_dinov2_to_hf.py): width, depth, heads
VIT_SIZES = {'vit-s14': (384, 12, 6), 'vit-b14': (768, 12, 12), 'vit-l14': (1024, 24, 16)}
#: teachers built from a config of configs/_base_/models (backbone options overridden)
CONFIG_TEACHERS = {
    'resnet50': ('resnet50_dilated_teacher.py', {}),
    'mobilenetv2': ('mobilenetv2-imagenet-dilated_teacher.py', {}),
    'mobilenetv2-os8': ('mobilenetv2-imagenet-dilated_teacher.py',
                        dict(strides=(1, 2, 2, 1, 1, 1, 1), dilations=(1, 1, 1, 2, 2, 4, 4))),
}


def add_arguments(parser) -> None:
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--batch', type=int, default=1, help='images per forward')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--size', type=int, nargs=2, default=[224, 448])
    parser.add_argument('--amp', choices=['none', 'bf16'], default='none')
    parser.add_argument('--teachers', nargs='+', default=list(VIT_SIZES) + ['resnet50'],
                        choices=list(VIT_SIZES) + list(CONFIG_TEACHERS))


def reexec_for_memory(args) -> None:
    """On CPU, freed tensors must leave the resident set (see :mod:`.memory`)."""
    if args.device.startswith('cpu'):
        reexec_with_mmap_threshold()


def build_teacher(name: str, tmp: str):
    """A teacher with random weights, by name."""
    from mmdet3d.registry import MODELS
    if name in CONFIG_TEACHERS:
        from mmengine.config import Config
        config, backbone = CONFIG_TEACHERS[name]
        cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs', '_base_', 'models', config))
        cfg.teacher_model.teacher.backbone.update(backbone)
        return MODELS.build(dict(cfg.teacher_model.teacher, checkpoint=None))
    from transformers import Dinov2Config, Dinov2Model
    width, depth, heads = VIT_SIZES[name]
    path = osp.join(tmp, name)
    Dinov2Model(Dinov2Config(hidden_size=width, num_hidden_layers=depth,
                             num_attention_heads=heads, image_size=518,
                             patch_size=14)).save_pretrained(path)
    return MODELS.build(dict(type='ViTTeacher', checkpoint=path, final_norm=False))


def run(args, report: Report) -> int:
    import torch
    from mmdet3d.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda requested but CUDA is not available')
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    probe = MemoryProbe(device)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.teachers:
            teacher = build_teacher(name, tmp).to(device)
            params = sum(p.numel() for p in teacher.parameters()) / 1e6
            imgs = torch.rand(args.batch, 3, *args.size, device=device) * 255
            autocast = torch.autocast(device.type, dtype=torch.bfloat16,
                                      enabled=args.amp == 'bf16')
            times, cpu_times, peaks = [], [], []
            for i in range(args.repeats + 1):
                probe.start()
                sync()
                t0, c0 = time.perf_counter(), time.process_time()
                with autocast:
                    out = teacher(imgs)
                sync()
                elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
                peak = probe.stop()
                if i:  # the first forward warms up
                    times.append(elapsed)
                    cpu_times.append(cpu)
                    peaks.append(peak)
            per_image = Times(times).scaled(1 / args.batch)
            rows.append((name, f'{params:.1f}', tuple(out.shape[1:]), per_image.ms(0),
                         f'{min(cpu_times) / args.batch * 1e3:.0f}',
                         f'{max(peaks) / args.batch:.0f}'))
            progress(f'{name}: {per_image.ms(0)} ms / image')
            del teacher, out
    dev = torch.cuda.get_device_name(device) if device.type == 'cuda' else \
        f'CPU, {torch.get_num_threads()} threads'
    report.note(f'Forward only, {args.size[0]}x{args.size[1]} images, batch {args.batch}, '
                f'{dev}, autocast {args.amp}, {args.repeats} repeats after one warm-up, torch '
                f'{torch.__version__}. {probe.header()}.')
    report.table(['teacher', 'parameters (M)', 'output (E, h, w)', 'ms / image (min / median)',
                  'CPU ms / image (min)', 'peak MiB / image'], rows, align='lrlrrr')
    return 0
