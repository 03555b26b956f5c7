"""The registry of region generators (``tools/create_superpixels.py --generator NAME``)."""
from typing import Union

from mmengine.registry import Registry

#: region generators by name: ``'slic'``, ``'sam'``, ``'teacher_kmeans'``, ``'precomputed'``
REGION_GENERATORS = Registry('region generator')


def build_region_generator(cfg: Union[str, dict]):
    """Build a generator from its name or a config dict (``type`` = its name).

    Raises:
        KeyError: No generator has that name (the message lists the registered ones).
    """
    cfg = dict(type=cfg) if isinstance(cfg, str) else dict(cfg)
    name = cfg.get('type')
    if name not in REGION_GENERATORS.module_dict:
        raise KeyError(f'unknown region generator {name!r}; registered: '
                       f'{", ".join(sorted(REGION_GENERATORS.module_dict))}')
    # the class itself, not Registry.build: a build under mmdet3d's default scope warns that
    # this registry is not in mmdet3d's tree
    return REGION_GENERATORS.module_dict[name](**{k: v for k, v in cfg.items() if k != 'type'})
