"""``superpixels.json``: what made a folder of region maps, written beside them.

The tool writes it when it starts a folder (tools/create_superpixels.py); a later run of the
tool into the same folder must make the same maps, and a pretraining run reads it, logs it and
refuses maps whose source disagrees with its config (:func:`check_superpixel_source`). Maps
made before sidecars existed, or by another tool, have none: they are accepted with a warning.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Optional

from ...file_integrity import DamagedFileError

SIDECAR = 'superpixels.json'
FORMAT_VERSION = 1
#: what a config states when it states nothing: the project's own SLIC maps
DEFAULT_SOURCE = dict(generator='slic')


class SuperpixelSourceError(ValueError):
    """Region maps were made by another source than the one asked for."""


def sidecar_path(folder: str) -> str:
    """str: The sidecar of a folder of maps."""
    return osp.join(folder, SIDECAR)


def sidecar_content(spec: dict, map_format: str) -> dict:
    """The sidecar of maps made by a generator of this :meth:`~.RegionGenerator.spec`."""
    return dict(format_version=FORMAT_VERSION, generator=spec['name'],
                parameters=spec['parameters'], checkpoint_sha256=spec['checkpoint_sha256'],
                unassigned=spec['unassigned'], map_format=map_format,
                versions=spec['versions'])


def write_sidecar(folder: str, content: dict) -> str:
    """Write a folder's sidecar atomically; returns its path."""
    os.makedirs(folder, exist_ok=True)
    path = sidecar_path(folder)
    with open(path + '.tmp', 'w') as f:
        json.dump(content, f, indent=2, sort_keys=True)
        f.write('\n')
    os.replace(path + '.tmp', path)
    return path


def read_sidecar(folder: str) -> Optional[dict]:
    """A folder's sidecar, None when it has none.

    Raises:
        DamagedFileError: The file is not a sidecar (unreadable JSON, no ``generator``).
    """
    path = sidecar_path(folder)
    if not osp.isfile(path):
        return None
    try:
        with open(path) as f:
            content = json.load(f)
    except (OSError, ValueError) as e:
        raise DamagedFileError(f'{path}: unreadable superpixel sidecar ({e})') from e
    if not isinstance(content, dict) or 'generator' not in content or \
            not isinstance(content.get('parameters'), dict):
        raise DamagedFileError(f'{path}: not a superpixel sidecar (no generator and '
                               'parameters)')
    return content


def describe(content: dict) -> str:
    """One line: generator, parameters, checkpoint hash, library versions."""
    params = ', '.join(f'{k}={v}' for k, v in sorted(content.get('parameters', {}).items()))
    text = f"{content['generator']} ({params})"
    if content.get('checkpoint_sha256'):
        text += f", checkpoint sha256 {content['checkpoint_sha256'][:12]}"
    versions = content.get('versions') or {}
    if versions:
        text += '; made with ' + ', '.join(f'{k} {v}' for k, v in sorted(versions.items()))
    return text


def _json(value):
    """A value as the sidecar stores it (tuples as lists, ...)."""
    return json.loads(json.dumps(value))


def spec_differences(content: dict, spec: dict) -> List[str]:
    """How maps of a generator ``spec`` would differ from a folder's (its sidecar
    ``content``): generator, parameters, checkpoint; library versions are not compared."""
    if content['generator'] != spec['name']:
        return [f"generator: {content['generator']!r} in the folder, {spec['name']!r} now"]
    diffs = []
    ours, theirs = _json(spec['parameters']), content['parameters']
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) != theirs.get(key):
            diffs.append(f'{key}: {theirs.get(key)!r} in the folder, {ours.get(key)!r} now')
    if content.get('checkpoint_sha256') != spec.get('checkpoint_sha256'):
        diffs.append(f"checkpoint sha256: {content.get('checkpoint_sha256')} in the folder, "
                     f"{spec.get('checkpoint_sha256')} now")
    return diffs


def expectation_differences(content: dict, expected: Dict[str, object]) -> List[str]:
    """How a folder's maps (its sidecar ``content``) differ from what a config expects:
    ``generator``, and any other key, a parameter (or ``checkpoint_sha256``) that must have
    that value. Keys the config does not give are not compared."""
    expected = dict(expected)
    generator = expected.pop('generator', None)
    if generator is None:
        raise ValueError(f'superpixel_source must name a generator, got {expected}')
    if content['generator'] != generator:
        return [f"generator: {content['generator']!r} made them, {generator!r} expected"]
    diffs = []
    for key, value in sorted(expected.items()):
        have = content.get(key) if key == 'checkpoint_sha256' else \
            content['parameters'].get(key, '<absent>')
        if have != _json(value):
            diffs.append(f'{key}: {have!r} in the maps, {value!r} expected')
    return diffs


_WARNED: set = set()


def check_superpixel_source(folder: str, expected: Optional[dict], logger) -> Optional[dict]:
    """Log what made a folder's maps and refuse them when it is not what ``expected`` says.

    Args:
        folder (str): The maps' folder (``data_prefix['sp']``).
        expected (dict, optional): ``generator`` and the parameters to check (see
            :func:`expectation_differences`); None: :data:`DEFAULT_SOURCE` (SLIC).
        logger: Where the description (or the warning about a missing sidecar) goes.

    Returns:
        dict | None: The sidecar, None when there is none.

    Raises:
        SuperpixelSourceError: The sidecar disagrees with ``expected``.
    """
    expected = DEFAULT_SOURCE if expected is None else expected
    content = read_sidecar(folder)
    if content is None:
        if osp.isdir(folder) and folder not in _WARNED:
            _WARNED.add(folder)
            logger.warning(f'{folder}: no {SIDECAR}, so what made these superpixel maps is '
                           f'unknown and not checked against superpixel_source={expected} '
                           '(maps made before sidecars existed, or by another tool)')
        return None
    logger.info(f'superpixels of {folder}: {describe(content)}')
    diffs = expectation_differences(content, expected)
    if diffs:
        raise SuperpixelSourceError(
            f'{sidecar_path(folder)}: these maps are not what the dataset expects '
            f'(superpixel_source={expected}): {"; ".join(diffs)}. Point data_prefix[\'sp\'] '
            'at maps of the expected source, or set the dataset\'s superpixel_source to what '
            f"made them, e.g. superpixel_source=dict(generator='{content['generator']}')")
    return content
