"""Writing and reading info files (mmdet3d v1.1 pickles) so that damage is an error naming them.

A pickle has no checksum: a truncated one fails to unpickle (``EOFError`` or "pickle data was
truncated"), but a flipped bit often unpickles to different values without a word (about a
third of the single-bit flips of the nuScenes sample's info did; the others raised any of ten
exception types, some after trying to allocate gigabytes). The project's info tools therefore
write a checksum sidecar next to each info file (``<info>.pkl.sha256``, see
:mod:`projects.img2lidar.file_integrity`; the pickle itself is unchanged, as mmdet3d reads it),
and the datasets compare it before unpickling. Info files without a sidecar (mmdet3d's, older
ones) are read as before, but their truncation is an error naming the file; a flipped bit in
them cannot be told.
"""
import os
import os.path as osp
import pickle
from contextlib import contextmanager
from typing import Any, Iterator

from ..file_integrity import DamagedFileError, check_checksum, remove_checksum, write_checksum


def write_info_file(path: str, infos: Any) -> str:
    """Pickle ``infos`` to ``path`` (atomically) and write its checksum sidecar.

    The old sidecar is removed first: a run killed in between leaves an unchecked info file,
    never one that its stale checksum calls damaged.

    Returns:
        str: The sidecar's path.
    """
    remove_checksum(path)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        pickle.dump(infos, f)
    os.replace(tmp, path)
    return write_checksum(path)


@contextmanager
def checked_info_file(path: str) -> Iterator[bool]:
    """Check an info file against its sidecar (if it is a local file that has one), then let
    the body unpickle it; an unpickling error that only a damaged pickle gives becomes an error
    naming the file.

    Yields:
        bool: Whether a sidecar was checked.

    Raises:
        DamagedFileError: The file does not match its sidecar, or it is truncated or damaged.
    """
    checked = check_checksum(path) if osp.isfile(path) else False
    try:
        yield checked
    except (EOFError, pickle.UnpicklingError) as e:
        raise DamagedFileError(f'{path}: truncated or damaged info file ({type(e).__name__}: '
                               f'{e})') from e


def load_info_file(path: str) -> Any:
    """Unpickle an info file, checked as :func:`checked_info_file` does.

    Raises:
        FileNotFoundError: The file does not exist.
        DamagedFileError: It does not match its sidecar, or it is truncated or damaged.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'info file not found: {path}')
    with checked_info_file(path), open(path, 'rb') as f:
        return pickle.load(f)
