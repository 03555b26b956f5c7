"""The SHA-256 that identifies a checkpoint: a file's own, or a folder's over all its files."""
import hashlib
import os
import os.path as osp

from ...file_integrity import file_sha256


def checkpoint_sha256(path: str) -> str:
    """SHA-256 of a checkpoint file, or of a checkpoint folder (``save_pretrained``'s): the
    hash of the lines ``<file sha256>  <relative path>`` of every file under it, sorted by
    path (the ``sha256sum`` listing of the folder), so that any changed, added or removed
    file changes it.

    Raises:
        FileNotFoundError: Nothing is at ``path``.
    """
    if osp.isfile(path):
        return file_sha256(path)
    if not osp.isdir(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    lines = []
    for folder, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = osp.join(folder, name)
            lines.append(f'{file_sha256(full)}  {osp.relpath(full, path)}\n')
    return hashlib.sha256(''.join(sorted(lines, key=lambda s: s[66:])).encode()).hexdigest()
