"""One evaluation at a time in a work folder: an exclusive ``fcntl.flock`` on a lock file in
it, held while the harness plans, runs and reports its jobs.

The operating system releases the lock when its holder ends, however it ends (a crash, a
kill -9, a node going away with a local disk), so no lock is ever stale. A second evaluation
of the same folder fails at once, naming the folder and the holder's process id (which the
holder writes into the lock file). Within one process the lock is re-entrant, so that a tool
and the library function it calls may both take it. flock needs a local or NFSv4 file system
(Linux emulates it with POSIX locks on NFS).

This module uses the standard library only.
"""
import errno
import fcntl
import os
import os.path as osp
import socket
from contextlib import contextmanager
from typing import Dict, Iterator, Tuple

LOCK_NAME = '.evaluate.lock'

#: the locks this process holds: lock file -> (its descriptor, how many times taken)
_HELD: Dict[str, Tuple[int, int]] = {}


class WorkFolderLocked(RuntimeError):
    """Another process is evaluating into the folder."""


def lock_file(folder: str) -> str:
    """str: The lock file of a work folder."""
    return osp.join(osp.abspath(folder), LOCK_NAME)


def _holder(fd: int) -> str:
    """The holder written in the lock file ('pid 123 on host'), or 'unknown'."""
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 256).decode(errors='replace').strip()
    return text or 'unknown (it has not written its pid yet)'


def acquire(folder: str) -> None:
    """Take the lock of ``folder`` (made if needed), or fail at once.

    Raises:
        WorkFolderLocked: When another process holds it.
    """
    path = lock_file(folder)
    if path in _HELD:
        fd, count = _HELD[path]
        _HELD[path] = (fd, count + 1)
        return
    os.makedirs(osp.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
            os.close(fd)
            raise
        holder = _holder(fd)
        os.close(fd)
        raise WorkFolderLocked(
            f'{osp.dirname(path)} is in use by another evaluation (holder: {holder}; lock '
            f'file {path}). Wait for it to end, or evaluate into another --work-dir.') from None
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode())
    _HELD[path] = (fd, 1)


def release(folder: str) -> None:
    """Give back one hold of the lock of ``folder``; the last one unlocks it."""
    path = lock_file(folder)
    fd, count = _HELD[path]
    if count > 1:
        _HELD[path] = (fd, count - 1)
        return
    del _HELD[path]
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


@contextmanager
def work_folder_lock(folder: str) -> Iterator[str]:
    """Hold the lock of ``folder`` for the duration of the block.

    Yields:
        str: The lock file.

    Raises:
        WorkFolderLocked: When another process holds it.
    """
    acquire(folder)
    try:
        yield lock_file(folder)
    finally:
        release(folder)
