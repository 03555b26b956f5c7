"""CLIP text embeddings of class names, for zero-shot segmentation.

The class names come from the datasets' ``METAINFO`` (the one class table of each dataset):
``nuscenes`` reads :class:`NuScenesLidarSegDataset`, ``semantickitti`` reads
:class:`SemanticKittiFewShotDataset`. Each class is written into every prompt template with
its prompt wording (:data:`PROMPT_NAMES` where a class name reads badly in a sentence, else the
name with underscores and hyphens as spaces); the per-template embeddings are L2-normalised,
averaged and normalised again (CLIP's prompt ensembling). Row i of the result is the class of
label i, as :class:`ZeroShotSegmentor` expects. The command line is
``tools/create_text_embeddings.py``.
"""
import os
import os.path as osp
import sys
from typing import Dict, List, Sequence

import torch
from torch.nn import functional as F

#: prompt wording of the class names that read badly once underscores and hyphens become
#: spaces; every other class is written as its name (the label set stays the dataset's)
PROMPT_NAMES = {
    'construction_vehicle': 'construction vehicle',
    'driveable_surface': 'driveable surface',
    'other_flat': 'flat ground',
    'manmade': 'man-made structure',
    'other-vehicle': 'vehicle',  # SemanticKITTI: buses, trams, trailers... (mmdet3d: 'bus')
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


def class_names(dataset: str) -> List[str]:
    """The class names of a dataset, in label order, from its ``METAINFO``.

    Args:
        dataset (str): ``'nuscenes'`` (the 16 lidarseg evaluation classes) or
            ``'semantickitti'`` (the 19 classes).
    """
    from ..datasets import NuScenesLidarSegDataset, SemanticKittiFewShotDataset
    datasets = dict(nuscenes=NuScenesLidarSegDataset, semantickitti=SemanticKittiFewShotDataset)
    if dataset not in datasets:
        raise KeyError(f'unknown dataset {dataset!r}; known: {sorted(datasets)}')
    return list(datasets[dataset].METAINFO['classes'])


def parse_classes(spec: str) -> List[str]:
    """``nuscenes``, ``semantickitti`` or comma-separated names -> list of class names."""
    if spec in ('nuscenes', 'semantickitti'):
        return class_names(spec)
    names = [c.strip() for c in spec.split(',') if c.strip()]
    if not names:
        raise ValueError(f'no class names in {spec!r}')
    return names


def readable_name(name: str) -> str:
    """The text written into the templates for a class name."""
    return PROMPT_NAMES.get(name, name.replace('_', ' ').replace('-', ' '))


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
    """Compute the embeddings of ``classes`` and save them to ``out``.

    The file, saved with ``torch.save``, is ``{'embeddings': (num_classes, E) float32 unit rows,
    'classes': [names as given], 'templates': [templates], 'checkpoint': str}``.
    """
    if not osp.isdir(checkpoint):
        raise FileNotFoundError(f'{checkpoint}: not a local CLIP directory')
    tmpl = list(TEMPLATES[templates])
    result = dict(embeddings=text_embeddings(checkpoint, classes, tmpl, device, progress),
                  classes=list(classes), templates=tmpl, checkpoint=str(checkpoint))
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    torch.save(result, out)
    return result
