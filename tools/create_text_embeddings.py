#!/usr/bin/env python
"""Compute CLIP text embeddings of class names, for zero-shot segmentation.

    python tools/create_text_embeddings.py --checkpoint checkpoints/clip-vit-base-patch16 \
        --classes nuscenes --out checkpoints/text_nuscenes_clip-b16.pth [--templates default]

``--checkpoint`` is a local transformers CLIP directory with its tokenizer files
(``config.json``, ``model.safetensors`` or ``pytorch_model.bin``, ``vocab.json``,
``merges.txt``, ``tokenizer_config.json``...; see :class:`CLIPImageTeacher`); nothing is
downloaded. ``--classes`` is ``nuscenes`` (the 16 lidarseg evaluation classes, in their label
order), ``semantickitti`` (the 19 classes) or a comma-separated list of names. Each class is
written into every prompt template with a readable name ('traffic cone', 'driveable
surface'); the per-template embeddings are L2-normalised, averaged and normalised again
(CLIP's prompt ensembling).

The output, saved with ``torch.save``, is ``{'embeddings': (num_classes, E) float32 unit rows,
'classes': [names as given], 'templates': [templates], 'checkpoint': str}``; row i is the
class of label i, as :class:`ZeroShotSegmentor` expects.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import torch
from torch.nn import functional as F

#: nuScenes lidarseg evaluation classes, in label order (label 16 = ignored 'noise')
NUSCENES_CLASSES = ('barrier', 'bicycle', 'bus', 'car', 'construction_vehicle', 'motorcycle',
                    'pedestrian', 'traffic_cone', 'trailer', 'truck', 'driveable_surface',
                    'other_flat', 'sidewalk', 'terrain', 'manmade', 'vegetation')
#: SemanticKITTI's 19 classes, in label order
SEMANTICKITTI_CLASSES = ('car', 'bicycle', 'motorcycle', 'truck', 'other-vehicle', 'person',
                         'bicyclist', 'motorcyclist', 'road', 'parking', 'sidewalk',
                         'other-ground', 'building', 'fence', 'vegetation', 'trunk', 'terrain',
                         'pole', 'traffic-sign')
CLASS_SETS = dict(nuscenes=NUSCENES_CLASSES, semantickitti=SEMANTICKITTI_CLASSES)
#: names that read badly once underscores and hyphens become spaces
READABLE = {
    'construction_vehicle': 'construction vehicle',
    'driveable_surface': 'driveable surface',
    'other_flat': 'flat ground',
    'manmade': 'man-made structure',
    'other-vehicle': 'vehicle',
    'other-ground': 'ground',
    'trunk': 'tree trunk',
    'traffic-sign': 'traffic sign',
}
TEMPLATES = dict(
    default=('a photo of a {}.', 'a photo of the {}.', 'a blurry photo of a {}.',
             'a cropped photo of a {}.', 'a photo of a small {}.', 'a photo of a large {}.',
             'a {} in a driving scene.', 'a photo of a {} on the street.',
             'there is a {} in the scene.', 'a street view with a {}.'),
    single=('a photo of a {}.', ),
)


def readable_name(name: str) -> str:
    """The text written into the templates for a class name."""
    return READABLE.get(name, name.replace('_', ' ').replace('-', ' '))


def parse_classes(spec: str) -> List[str]:
    """``nuscenes``, ``semantickitti`` or comma-separated names -> list of class names."""
    if spec in CLASS_SETS:
        return list(CLASS_SETS[spec])
    names = [c.strip() for c in spec.split(',') if c.strip()]
    if not names:
        raise ValueError(f'no class names in {spec!r}')
    return names


@torch.no_grad()
def text_embeddings(checkpoint: str, classes: Sequence[str], templates: Sequence[str],
                    device: str = 'cpu', progress: bool = True) -> torch.Tensor:
    """Prompt-ensembled CLIP text embeddings.

    Args:
        checkpoint (str): Local transformers CLIP directory with its tokenizer.
        classes (Sequence[str]): Class names (underscores / hyphens are read as spaces).
        templates (Sequence[str]): Prompt templates with one ``{}``.
        device (str): Where the text tower runs. Defaults to 'cpu'.
        progress (bool): Show a progress bar over the classes. Defaults to True.

    Returns:
        Tensor: Unit-norm embeddings, shape (num_classes, E), float32 on the CPU.
    """
    from transformers import AutoTokenizer, CLIPModel

    tokenizer = AutoTokenizer.from_pretrained(checkpoint, local_files_only=True)
    model = CLIPModel.from_pretrained(checkpoint, local_files_only=True).float().to(device)
    model.eval()
    max_len = int(model.config.text_config.max_position_embeddings)
    out = []
    bar = None
    if progress:
        from mmengine.utils import ProgressBar
        bar = ProgressBar(len(classes), file=sys.stderr)
    for name in classes:
        prompts = [t.format(readable_name(name)) for t in templates]
        tokens = tokenizer(prompts, padding=True, truncation=True, max_length=max_len,
                           return_tensors='pt').to(device)
        feats = model.get_text_features(input_ids=tokens['input_ids'],
                                        attention_mask=tokens['attention_mask'])
        # transformers >= 5 returns a model output whose pooler_output is projected
        feats = feats if isinstance(feats, torch.Tensor) else feats.pooler_output
        out.append(F.normalize(F.normalize(feats.float(), dim=-1).mean(0), dim=0))
        if bar is not None:
            bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return torch.stack(out).cpu()


def create_text_embeddings(checkpoint: str, classes: Sequence[str], out: str,
                           templates: str = 'default', device: str = 'cpu',
                           progress: bool = True) -> Dict[str, object]:
    """Compute the embeddings of ``classes`` and save them to ``out`` (see module doc)."""
    if not osp.isdir(checkpoint):
        raise FileNotFoundError(f'{checkpoint}: not a local CLIP directory')
    tmpl = list(TEMPLATES[templates])
    result = dict(embeddings=text_embeddings(checkpoint, classes, tmpl, device, progress),
                  classes=list(classes), templates=tmpl, checkpoint=str(checkpoint))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(result, out)
    return result


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
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
    classes = parse_classes(args.classes)
    res = create_text_embeddings(args.checkpoint, classes, args.out, args.templates,
                                 args.device)
    emb = res['embeddings']
    print(f'{args.out}: {emb.shape[0]} classes x {emb.shape[1]} dims, '
          f'{len(res["templates"])} templates')
    return 0


if __name__ == '__main__':
    sys.exit(main())
