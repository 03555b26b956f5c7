"""The hyper-parameters a protocol pins, read from the config a run will really use, and checked
before anything runs.

A protocol states them (lr, head lr, epochs or iterations, batch, split), the downstream config
sets them: :func:`check_pinned` refuses a run whose config (with every option it will get)
disagrees, so the header of a report is true of the runs below it. The batch is the total over
processes: :func:`batch_options` sets the per-process batch from the number of processes.
"""
import argparse
import math
from typing import Any, Callable, Dict, List, Optional, Sequence

from .protocol import ProtocolError, ProtocolRun


def parse_options(options: Sequence[str]) -> dict:
    """'key=value' options parsed exactly as tools/train.py parses ``--cfg-options``."""
    from mmengine.config import DictAction
    if not options:
        return {}
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *options]).cfg_options


def resolved_config(config: str, options: Sequence[str]):
    """The config as tools/train.py or tools/test.py will build it with ``options``."""
    from mmengine.config import Config
    cfg = Config.fromfile(config, import_custom_modules=False)
    cfg.merge_from_dict(parse_options(options))
    return cfg


_MISSING = object()


def config_value(cfg, key: str, default: Any = _MISSING) -> Any:
    """The value at a dotted key (list items by index: ``param_scheduler.0.T_max``).

    Raises:
        KeyError: When the key is absent and no default is given.
    """
    node = cfg
    for part in key.split('.'):
        try:
            node = node[int(part)] if isinstance(node, (list, tuple)) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            if default is _MISSING:
                raise KeyError(key) from None
            return default
    return node


def backbone_lr(cfg) -> Optional[float]:
    """The optimizer's base lr."""
    return config_value(cfg, 'optim_wrapper.optimizer.lr', None)


def head_lr(cfg) -> Optional[float]:
    """The classifier's lr: the base lr times the ``decode_head`` lr_mult, if any."""
    lr = backbone_lr(cfg)
    mult = config_value(cfg, 'optim_wrapper.paramwise_cfg.custom_keys.decode_head.lr_mult', 1.0)
    return None if lr is None else lr * mult


#: how each pinned number is read from a resolved config ('batch' is set, not read)
READERS: Dict[str, Callable[[Any], Any]] = {
    'lr': backbone_lr,
    'head_lr': head_lr,
    'epochs': lambda cfg: config_value(cfg, 'train_cfg.max_epochs', None),
    'iters': lambda cfg: config_value(cfg, 'train_cfg.max_iters', None),
}


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        return actual is not None and expected is not None and math.isclose(
            expected, actual, rel_tol=1e-9, abs_tol=1e-12)
    return expected == actual


def pinned_mismatches(run: ProtocolRun, cfg) -> List[str]:
    """What the resolved config ``cfg`` of ``run`` sets differently from what it pins."""
    wrong = []
    for name, read in READERS.items():
        if name in run.pinned and not _same(run.pinned[name], read(cfg)):
            wrong.append(f'{name}: pinned {run.pinned[name]!r}, the config gives {read(cfg)!r}')
    split = run.pinned.get('split')
    for key, value in (split.get('config', {}).items() if isinstance(split, dict) else ()):
        actual = config_value(cfg, key, '<absent>')
        if not _same(value, actual):
            wrong.append(f'split {key}: pinned {value!r}, the config gives {actual!r}')
    return wrong


def check_pinned(run: ProtocolRun, cfg) -> None:
    """Refuse a run whose resolved config disagrees with its pinned hyper-parameters.

    Raises:
        ProtocolError: Naming every disagreement.
    """
    wrong = pinned_mismatches(run, cfg)
    if wrong:
        raise ProtocolError(f"run {run.name!r} ({run.config}) does not use the hyper-parameters "
                            'its protocol pins: ' + '; '.join(wrong))


def batch_options(run: ProtocolRun, processes: int) -> List[str]:
    """The option giving each of ``processes`` processes its share of the pinned total batch.

    Raises:
        ProtocolError: When the pinned batch does not divide among the processes.
    """
    if 'batch' not in run.pinned or not run.trains:
        return []
    total = run.pinned['batch']
    if total % processes:
        raise ProtocolError(f'run {run.name!r} pins a total batch of {total}, which does not '
                            f'divide among {processes} processes')
    return [f'train_dataloader.batch_size={total // processes}']
