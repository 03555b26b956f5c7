"""Evaluation protocols: what configs/protocols/<name>.py files define, read and checked.

A protocol file is an mmengine config (Python) with these names::

    description = "SLidR's downstream evaluation ..."   # shown in the report's header
    seeds = 3                                # default number of seeds (0, 1, ..., seeds - 1)
    checkpoint_option = 'model.init_cfg.checkpoint'   # the cfg option that takes the checkpoint
    random_init_options = ['model.init_cfg=None']      # the options of the random-init baseline
    runs = [
        dict(name='nuscenes-1pct',           # its folder: <work-dir>/<protocol>/<name>/seed<k>
             title='nuScenes 1%',            # its column in the tables (optional, see below)
             config='configs/finetune/minkunet34_2xb8-100e_nuscenes-lidarseg-1pct.py',
             mode='train',                   # 'train', 'train_test' or 'test' (see MODES)
             cfg_options=[],                 # more 'key=value' options, as tools/train.py takes
             pinned=dict(lr=0.02, head_lr=2.0, epochs=100, batch=16,
                         split=dict(definition='every 100th train scene ...',
                                    config={'train_dataloader.dataset.few_shot': 1}))),
    ]

A run may override ``checkpoint_option`` and ``random_init_options``, and name
``required_files``: config keys whose values are input files that must exist (e.g.
``model.text_embeddings``). Relative config paths are relative to the repository root.
:mod:`.pinned` checks the pinned values against the configs before anything runs.

A run without a ``title`` is titled from its config (with its ``cfg_options``) by
:func:`~.protocol_label.protocol_label`, as tools/results_table.py labels a work directory of
the same config, so that both land in one column: 'linear probe, nuScenes', 'nuScenes 1%',
'SemanticKITTI 1%', 'linear probe, PandaSet', 'zero-shot, nuScenes' ... (the run's name when the
config has no dataset to tell).
"""
import os.path as osp
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

#: the checkout (tools/, configs/)
REPO_ROOT = Path(__file__).resolve().parents[3]
#: where ``--protocol NAME`` is looked for
PROTOCOL_DIR = REPO_ROOT / 'configs' / 'protocols'
#: how a run is evaluated:
#: 'train': tools/train.py; the metrics are its final validation (a run resumed after its last
#: checkpoint, which validates nothing, is tested with tools/test.py instead);
#: 'train_test': tools/train.py, then tools/test.py on its last checkpoint;
#: 'test': tools/test.py on the evaluated checkpoint itself (nothing is trained, so it runs once,
#: as seed 0, whatever the number of seeds)
MODES = ('train', 'train_test', 'test')
#: the hyper-parameters a run can pin (checked by :mod:`.pinned`)
PINNABLE = ('lr', 'head_lr', 'epochs', 'iters', 'batch', 'split')
PROTOCOL_KEYS = {'description', 'seeds', 'checkpoint_option', 'random_init_options', 'runs'}
RUN_KEYS = {'name', 'title', 'config', 'mode', 'cfg_options', 'pinned', 'checkpoint_option',
            'random_init_options', 'required_files'}
NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._-]*$')


class ProtocolError(ValueError):
    """A protocol file, or the configs it names, cannot be evaluated as written."""


@dataclass(frozen=True)
class ProtocolRun:
    """One downstream run of a protocol (see the module docstring for the fields)."""
    name: str
    title: str
    config: str
    mode: str
    cfg_options: Tuple[str, ...] = ()
    pinned: Dict[str, Any] = field(default_factory=dict)
    checkpoint_option: Optional[str] = None
    random_init_options: Tuple[str, ...] = ()
    required_files: Tuple[str, ...] = ()

    @property
    def trains(self) -> bool:
        """bool: Whether the run trains (and so depends on the seed)."""
        return self.mode != 'test'

    def split_definition(self) -> str:
        """str: The pinned split, in words, with the config values it pins."""
        split = self.pinned.get('split')
        if split is None:
            return '-'
        if isinstance(split, str):
            return split
        keys = ', '.join(f'{k}={v!r}' for k, v in split.get('config', {}).items())
        return f"{split['definition']} ({keys})" if keys else split['definition']


@dataclass(frozen=True)
class Protocol:
    """A protocol: its name (the file's stem), file, description, default seeds and runs."""
    name: str
    path: str
    description: str
    seeds: int
    runs: Tuple[ProtocolRun, ...]


def protocol_path(name_or_path: str) -> str:
    """The file of a protocol: ``configs/protocols/<name>.py``, or a path to a ``.py`` file.

    Raises:
        ProtocolError: When there is no such protocol.
    """
    if name_or_path.endswith('.py'):
        path = Path(name_or_path)
    else:
        path = PROTOCOL_DIR / f'{name_or_path}.py'
    if not path.is_file():
        known = sorted(p.stem for p in PROTOCOL_DIR.glob('*.py'))
        raise ProtocolError(f'no protocol {name_or_path!r} ({path} does not exist); the '
                            f'protocols of {PROTOCOL_DIR} are: {", ".join(known)}')
    return str(path)


def resolve_config_path(config: str) -> str:
    """An absolute config path: relative paths are relative to the repository root."""
    return config if osp.isabs(config) else str(REPO_ROOT / config)


def load_protocol(name_or_path: str) -> Protocol:
    """Read and check a protocol file.

    Args:
        name_or_path (str): A protocol name (``configs/protocols/<name>.py``) or file.

    Returns:
        Protocol: The protocol, with absolute config paths.

    Raises:
        ProtocolError: On an unknown or missing key, a bad mode or pinned name, duplicate run
            names or titles, or a config that does not exist.
    """
    from mmengine.config import Config
    path = protocol_path(name_or_path)
    cfg = Config.fromfile(path, import_custom_modules=False).to_dict()
    unknown = set(cfg) - PROTOCOL_KEYS
    if unknown:
        raise ProtocolError(f'{path}: unknown keys {sorted(unknown)}; a protocol has '
                            f'{sorted(PROTOCOL_KEYS)}')
    if not cfg.get('runs'):
        raise ProtocolError(f'{path}: no runs')
    runs = tuple(_run(path, spec, cfg) for spec in cfg['runs'])
    for attr in ('name', 'title'):
        seen = [getattr(r, attr) for r in runs]
        if len(set(seen)) != len(seen):
            raise ProtocolError(f'{path}: run {attr}s must be unique, got {seen}')
    seeds = cfg.get('seeds', 1)
    if not isinstance(seeds, int) or seeds < 1:
        raise ProtocolError(f'{path}: seeds must be a positive integer, got {seeds!r}')
    return Protocol(name=Path(path).stem, path=path, description=cfg.get('description', ''),
                    seeds=seeds, runs=runs)


def config_title(config: str, spec: dict) -> str:
    """The title of a run without one: the protocol label of its config with its options
    (:func:`~.protocol_label.protocol_label`), or its name when the config has no dataset.

    Raises:
        ProtocolError: When the config cannot be read.
    """
    from .pinned import resolved_config
    from .protocol_label import ConfigLabelError, protocol_label
    try:
        cfg = resolved_config(config, spec.get('cfg_options', ()))
    except Exception as e:  # noqa: BLE001 (mmengine raises many kinds on a bad config)
        raise ProtocolError(f"run {spec['name']!r}: cannot read its config {config}: {e}") from e
    try:
        return protocol_label(cfg, config)
    except ConfigLabelError:
        return spec['name']


def _run(path: str, spec: dict, protocol: dict) -> ProtocolRun:
    """One checked :class:`ProtocolRun` of the protocol file ``path``."""
    where = f"{path}: run {spec.get('name')!r}"
    unknown = set(spec) - RUN_KEYS
    missing = {'name', 'config', 'mode'} - set(spec)
    if unknown or missing:
        raise ProtocolError(f'{where}: unknown keys {sorted(unknown)}, missing keys '
                            f'{sorted(missing)} (a run has {sorted(RUN_KEYS)})')
    if not NAME.match(spec['name']):
        raise ProtocolError(f'{where}: the name is a folder name: letters, digits, ._-')
    if spec['mode'] not in MODES:
        raise ProtocolError(f"{where}: mode {spec['mode']!r} is not one of {MODES}")
    pinned = dict(spec.get('pinned') or {})
    bad = set(pinned) - set(PINNABLE)
    if bad:
        raise ProtocolError(f'{where}: cannot pin {sorted(bad)}; pinnable: {PINNABLE}')
    split = pinned.get('split')
    if split is not None and not isinstance(split, str) and 'definition' not in split:
        raise ProtocolError(f"{where}: split is a string or dict(definition=..., config={{}})")
    config = resolve_config_path(spec['config'])
    if not osp.isfile(config):
        raise ProtocolError(f"{where}: its config {spec['config']} does not exist (the "
                            f"protocol: {protocol.get('description', '-')})")
    return ProtocolRun(
        name=spec['name'], title=spec.get('title') or config_title(config, spec), config=config,
        mode=spec['mode'], cfg_options=tuple(spec.get('cfg_options', ())), pinned=pinned,
        checkpoint_option=spec.get('checkpoint_option', protocol.get('checkpoint_option')),
        random_init_options=tuple(spec.get('random_init_options',
                                           protocol.get('random_init_options', ()))),
        required_files=tuple(spec.get('required_files', ())))
