"""What a downstream config evaluates, in words: its protocol label ('linear probe, nuScenes',
'nuScenes 1%', 'SemanticKITTI 1%', 'PandaSet 100%', 'zero-shot, nuScenes', 'demo world 25%'),
the pretraining checkpoint it starts from and its seed, read from the config itself (the file
mmengine dumps into a work directory, or a protocol run's config with its options).

The label is ``<dataset> <fraction>`` for a finetune, ``linear probe, <dataset>`` for a linear
probe (the fraction added when it is not 100%) and ``zero-shot, <dataset>`` for a zero-shot
test, where

- ``<dataset>`` is :data:`DATASET_NAMES` of the dataset's type, the one table of display
  names (a config may name its data otherwise with a top-level ``dataset_name``: the demo
  world, which is read by the nuScenes dataset class, is named so);
- ``<fraction>`` is the share of the training labels the dataset options keep: ``few_shot=k``
  (nuScenes, SLidR's k% rule) gives ``k%``, ``every_nth=n`` (SemanticKITTI) ``100/n %``, and
  mmengine's ``indices`` adds ``, N samples`` (the first N, or the N listed); none of them
  gives ``100%``.

The dataset is the training one; a run validated on another dataset adds ``(val: <name>)``. A
config that trains nothing (``train_dataloader=None``) is labelled by its test dataset.
"""
from typing import List, Optional

#: a dataset type (as registered) -> its display name in tables. Kept here, not in the
#: classes' METAINFO: mmengine's ``BaseDataset._load_metainfo`` reads every string of a
#: ``metainfo`` argument as a file name and warns when it is none, and PandaSetSegDataset and
#: SemanticKittiFewShotDataset pass their whole METAINFO as that argument.
DATASET_NAMES = {
    'NuScenesLidarSegDataset': 'nuScenes',
    'PandaSetSegDataset': 'PandaSet',
    'SemanticKittiFewShotDataset': 'SemanticKITTI',
    'SemanticKittiDataset': 'SemanticKITTI',
}
#: the top-level config key that names the data instead of :data:`DATASET_NAMES`
DATASET_NAME_KEY = 'dataset_name'
LINEAR_PROBE = 'linear probe'
ZERO_SHOT = 'zero-shot'
FULL = '100%'


class ConfigLabelError(ValueError):
    """A config whose data cannot be labelled (no dataset type)."""


def _get(node, key: str, default=None):
    """``node[key]`` for a dict or mmengine ConfigDict, ``default`` when absent or None."""
    if node is None or not hasattr(node, 'get'):
        return default
    value = node.get(key, default)
    return default if value is None else value


def leaf_datasets(dataset_cfg) -> List[dict]:
    """The datasets a dataset config reads, through mmengine's wrappers (``dataset`` of
    RepeatDataset / ClassBalancedDataset, ``datasets`` of ConcatDataset)."""
    if _get(dataset_cfg, 'datasets') is not None:
        return [leaf for d in dataset_cfg['datasets'] for leaf in leaf_datasets(d)]
    if _get(dataset_cfg, 'dataset') is not None:
        return leaf_datasets(dataset_cfg['dataset'])
    return [dataset_cfg] if dataset_cfg is not None else []


def dataset_name(dataset_cfg, cfg=None) -> str:
    """The display name of one dataset config: ``cfg.dataset_name`` when the config sets it,
    else :data:`DATASET_NAMES` of its type, else the type without its ``Dataset`` suffix.

    Raises:
        ConfigLabelError: When the dataset config has no type.
    """
    override = _get(cfg, DATASET_NAME_KEY)
    if override:
        return str(override)
    kind = _get(dataset_cfg, 'type')
    if not kind:
        raise ConfigLabelError(f'a dataset config without a type: {dict(dataset_cfg or {})}')
    kind = kind if isinstance(kind, str) else kind.__name__
    kind = kind.split('.')[-1]  # 'mmdet3d.SemanticKittiDataset'
    if kind in DATASET_NAMES:
        return DATASET_NAMES[kind]
    return kind[:-len('Dataset')] if kind.endswith('Dataset') and kind != 'Dataset' else kind


def _percent(value: float) -> str:
    return f'{value:.3g}%'


def label_fraction(dataset_cfg) -> str:
    """The share of the training data a dataset config keeps: '1%', '100%', '1%, 10 samples'.

    ``few_shot`` (percent of the scenes, SLidR's rule), ``every_nth`` (one scan in n) and
    mmengine's ``indices`` (the first N samples, or the listed ones) are read.
    """
    few_shot = _get(dataset_cfg, 'few_shot')
    every_nth = _get(dataset_cfg, 'every_nth')
    if few_shot is not None:
        share = _percent(float(few_shot))
    elif every_nth is not None:
        share = _percent(100.0 / every_nth)
    else:
        share = FULL
    indices = _get(dataset_cfg, 'indices')
    if indices is None:
        return share
    count = indices if isinstance(indices, int) else len(indices)
    return f"{share}, {count} sample{'' if count == 1 else 's'}"


def _data_label(dataset_cfg, cfg, with_full: bool) -> str:
    """'<name> <fraction>' for each dataset read (joined by ' + '); a 100% fraction is left
    out unless ``with_full``."""
    parts = []
    for leaf in leaf_datasets(dataset_cfg):
        share = label_fraction(leaf)
        name = dataset_name(leaf, cfg)
        parts.append(name if share == FULL and not with_full else f'{name} {share}')
    if not parts:
        raise ConfigLabelError('no dataset')
    return ' + '.join(parts)


def _names(dataset_cfg, cfg) -> str:
    return ' + '.join(dict.fromkeys(dataset_name(d, cfg) for d in leaf_datasets(dataset_cfg)))


def _model_class(model_cfg):
    """The registered class of the model config, or None when it is not registered."""
    from mmdet3d.registry import MODELS
    kind = _get(model_cfg, 'type')
    if kind is None:
        return None
    if not isinstance(kind, str):
        return kind
    try:
        return MODELS.get(kind)
    except KeyError:
        return None


def model_role(cfg) -> str:
    """'linear probe' (a segmentor with frozen features), 'zero-shot' or 'finetune'."""
    from ..models.segmentors.linear_probe_segmentors import FrozenFeaturesMixin
    from ..models.segmentors.zero_shot_segmentor import ZeroShotSegmentor
    cls = _model_class(_get(cfg, 'model'))
    if isinstance(cls, type) and issubclass(cls, FrozenFeaturesMixin):
        return LINEAR_PROBE
    if isinstance(cls, type) and issubclass(cls, ZeroShotSegmentor):
        return ZERO_SHOT
    return 'finetune'


def _dataset_of(cfg, loader: str):
    return _get(_get(cfg, loader), 'dataset')


def protocol_label(cfg, source: str = 'the config') -> str:
    """The protocol a downstream config evaluates, in words (see the module docstring).

    Args:
        cfg (Config | dict): The config, as mmengine dumps it or as a tool builds it.
        source (str): Where it comes from, for the error message.

    Returns:
        str: E.g. 'linear probe, nuScenes', 'PandaSet 100%', 'zero-shot, nuScenes'.

    Raises:
        ConfigLabelError: When the config has no dataloader with a typed dataset.
    """
    role = model_role(cfg)
    train = _dataset_of(cfg, 'train_dataloader')
    evaluated = _dataset_of(cfg, 'val_dataloader') or _dataset_of(cfg, 'test_dataloader')
    try:
        if train is None or role == ZERO_SHOT:
            data = _dataset_of(cfg, 'test_dataloader') or evaluated
            if data is None:
                raise ConfigLabelError('no train, val or test dataloader')
            return f'{ZERO_SHOT if role == ZERO_SHOT else "test"}, {_names(data, cfg)}'
        if role == LINEAR_PROBE:
            label = f'{LINEAR_PROBE}, {_data_label(train, cfg, with_full=False)}'
        else:
            label = _data_label(train, cfg, with_full=True)
        if evaluated is not None and _names(evaluated, cfg) != _names(train, cfg):
            label += f' (val: {_names(evaluated, cfg)})'
        return label
    except ConfigLabelError as e:
        raise ConfigLabelError(f'{source}: cannot tell which data it evaluates ({e})') from None


def _init_checkpoints(node) -> List[str]:
    """Every ``init_cfg.checkpoint`` in a model config, outer modules first."""
    found, queue = [], [node]
    while queue:
        item = queue.pop(0)
        if isinstance(item, (list, tuple)):
            queue += list(item)
            continue
        if not hasattr(item, 'items'):
            continue
        init = item.get('init_cfg')
        inits = init if isinstance(init, (list, tuple)) else [init]
        found += [i['checkpoint'] for i in inits
                  if hasattr(i, 'get') and isinstance(i.get('checkpoint'), str)]
        queue += [v for k, v in item.items() if k != 'init_cfg']
    return found


def pretraining_checkpoint(cfg) -> Optional[str]:
    """The pretraining checkpoint a downstream config starts from: the first ``init_cfg``
    checkpoint of its model (model, then backbone ...); for a config that trains nothing (a
    zero-shot test) the checkpoint tools/test.py loads (``load_from``). None: random init."""
    found = _init_checkpoints(_get(cfg, 'model'))
    if found:
        return found[0]
    if _dataset_of(cfg, 'train_dataloader') is None:
        return _get(cfg, 'load_from')
    return None


def config_seed(cfg) -> Optional[int]:
    """``randomness.seed`` of a config, if it sets one."""
    seed = _get(_get(cfg, 'randomness'), 'seed')
    return None if seed is None else int(seed)
