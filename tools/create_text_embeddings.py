#!/usr/bin/env python
"""Compute CLIP text embeddings of class names, for zero-shot segmentation.

    python tools/create_text_embeddings.py --checkpoint checkpoints/clip-vit-base-patch16 \
        --classes nuscenes --out checkpoints/text_nuscenes_clip-b16.pth [--templates default]

``--checkpoint`` is a local transformers CLIP directory with its tokenizer files
(``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, ``vocab.json``,
``merges.txt``, ``tokenizer_config.json``...; see :class:`CLIPImageTeacher`); nothing is
downloaded. ``--classes`` is ``nuscenes`` or ``semantickitti`` (the class table of the
dataset's ``METAINFO``, in label order) or a comma-separated list of names. The code and the
prompt wording of the class names live in ``projects.img2lidar.preparation.text_embeddings``.
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from projects.img2lidar.preparation.text_embeddings import TEMPLATES
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True,
                        help='local transformers CLIP directory (model and tokenizer)')
    parser.add_argument('--classes', required=True,
                        help='nuscenes | semantickitti | comma-separated class names')
    parser.add_argument('--out', required=True, help='output .pth file')
    parser.add_argument('--templates', choices=sorted(TEMPLATES), default='default',
                        help='prompt templates: default (10, averaged) or single')
    parser.add_argument('--device', default='cpu', help='device of the text tower')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from projects.img2lidar.preparation.text_embeddings import (create_text_embeddings,
                                                                parse_classes)
    res = create_text_embeddings(args.checkpoint, parse_classes(args.classes), args.out,
                                 args.templates, args.device)
    emb = res['embeddings']
    print(f'{args.out}: {emb.shape[0]} classes x {emb.shape[1]} dims, '
          f'{len(res["templates"])} templates')
    return 0


if __name__ == '__main__':
    sys.exit(main())
