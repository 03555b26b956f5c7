"""Tiny sizes for smoke runs of the documented commands: ``IMG2LIDAR_TINY=1``.

The test suite runs every command block of the user docs exactly as written
(``tests/test_doc_commands.py``). The documented commands train MinkUNet-34 students for 50 or
100 epochs on nuScenes-sized batches; on a 2-core CPU that would take days. With
``IMG2LIDAR_TINY=1`` in the environment, ``tools/train.py``, ``tools/test.py`` and
``tools/evaluate_pretraining.py`` run every config at its smallest size and change nothing
else:

- every data loader: batch 1, no worker processes, the first sample of each dataset only
  (``indices=1``: an epoch is one iteration);
- an epoch-based schedule (``ResumableEpochBasedTrainLoop``) runs its last epoch only
  (``start_epoch=max_epochs - 1``), so that its validation runs and its checkpoint has the
  name the config gives it (``epoch_50.pth``), which the next documented command reads;
- every paired crop a quarter of its size on each side (rounded down to a multiple of 8 and of
  the image head's fixed upsampling factor, when it has one), with one pair per image enough;
- every MinkUNet backbone at width 16 with one block per stage (and the heads that read its
  width), every Cylinder3D backbone at base width 8;
- a log line every iteration; the evaluation harness runs one seed.

Teachers keep their architecture, since their weights come from a checkpoint file. A run in
this mode says so in its log. Its numbers mean nothing: it checks that the commands, paths,
files and configs work together, not what they compute.
"""
import math
import os
from typing import Any, Callable, Iterator, Tuple

#: the environment variable that turns the mode on ('1')
TINY_ENV = 'IMG2LIDAR_TINY'
#: a MinkUNet of width 16 with one block per stage (decoder output 48 channels)
TINY_MINKUNET = dict(base_channels=16, encoder_channels=[16, 32, 64, 128],
                     encoder_blocks=[1, 1, 1, 1], decoder_channels=[128, 64, 48, 48],
                     decoder_blocks=[1, 1, 1, 1])
#: Cylinder3D's Asymm3DSpconv base width (its head reads 4 x this)
TINY_CYLINDER3D_BASE = 8
#: crops shrink by this factor on each side
CROP_DIVISOR = 4
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
WRAPPERS = ('ConcatDataset', 'RepeatDataset', 'ClassBalancedDataset')


def tiny_enabled() -> bool:
    """Whether ``IMG2LIDAR_TINY=1`` is set."""
    return os.environ.get(TINY_ENV, '') == '1'


def _dicts(node: Any) -> Iterator[dict]:
    """Every dict in a nested structure of dicts and lists (the node itself first)."""
    if isinstance(node, dict):
        yield node
        for value in list(node.values()):
            yield from _dicts(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _dicts(value)


def _leaf_datasets(dataset: dict) -> Iterator[dict]:
    """The datasets inside mmengine's wrappers (ConcatDataset, RepeatDataset, ...)."""
    if dataset.get('type') in WRAPPERS:
        children = dataset.get('datasets') or [dataset.get('dataset')]
        for child in children:
            yield from _leaf_datasets(child)
    else:
        yield dataset


def _shrink_loaders(cfg) -> None:
    for name in DATALOADERS:
        loader = cfg.get(name)
        if not loader:
            continue
        loader.update(batch_size=1, num_workers=0, persistent_workers=False)
        for dataset in _leaf_datasets(loader.dataset):
            dataset['indices'] = 1


def _quarter(size: Tuple[int, int], multiple: int = 8) -> Tuple[int, int]:
    return tuple(max(multiple, int(s) // CROP_DIVISOR // multiple * multiple) for s in size)


def _crop_multiple(cfg) -> int:
    """Crops stay a multiple of 8 and of the image head's fixed upsampling factor (the
    teacher's stride, e.g. 16 for MobileNetV2), which must give the crop size back."""
    head = cfg.get('model', {}).get('image_head')
    factor = head.get('scale_factor') if isinstance(head, dict) else None
    return math.lcm(8, int(factor)) if factor else 8


def _last_epoch_only(cfg) -> None:
    train_cfg = cfg.get('train_cfg')
    if train_cfg and train_cfg.get('type') == 'ResumableEpochBasedTrainLoop':
        train_cfg['start_epoch'] = train_cfg['max_epochs'] - 1


def _shrink_crops(cfg) -> None:
    multiple = _crop_multiple(cfg)
    for d in _dicts(cfg._cfg_dict):
        if d.get('type') == 'PairedRandomResizedCrop':
            d['size'] = _quarter(d['size'], multiple)
            d['min_pairs_per_image'] = 1
            d['min_pairs'] = 1


def _shrink_networks(cfg) -> None:
    def head_width_follows(parent: dict, old: int, new: int) -> None:
        head = parent.get('decode_head')
        if isinstance(head, dict) and head.get('channels') == old:
            head['channels'] = new

    for d in _dicts(cfg.get('model', {})):
        backbone = d.get('backbone')
        if not isinstance(backbone, dict):
            continue
        if backbone.get('type') == 'MinkUNetBackbone':
            old = backbone['decoder_channels'][-1]
            backbone.update(TINY_MINKUNET)
            head_width_follows(d, old, TINY_MINKUNET['decoder_channels'][-1])
        elif backbone.get('type') == 'Asymm3DSpconv':
            old = 4 * backbone['base_channels']
            backbone['base_channels'] = TINY_CYLINDER3D_BASE
            head_width_follows(d, old, 4 * TINY_CYLINDER3D_BASE)


def shrink_config(cfg, log: Callable[[str], None] = print) -> None:
    """Bring a train, test or pretraining config to the tiny sizes above, in place.

    Args:
        cfg (mmengine.Config): The config as the tools load it.
        log (Callable[[str], None]): Where the one line that says so goes.
    """
    _shrink_loaders(cfg)
    _last_epoch_only(cfg)
    _shrink_crops(cfg)
    _shrink_networks(cfg)
    if cfg.get('default_hooks', {}).get('logger'):
        cfg.default_hooks.logger['interval'] = 1
    log(f'{TINY_ENV}=1: tiny sizes (the last epoch only, batch 1, one sample per dataset, '
        'small students and crops); a smoke run of the commands, not a result')
