"""The SQLite backend's runner lock, and the per-process registry of open database files it
needs (``OpenFile`` says why each process keeps one descriptor per file).

The runner lock (one process runs a database's executions) is an exclusive ``flock`` on the
database file itself, so no path to it (a symlink, another spelling) and no deleted side file
lets a second runner in.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import threading
from dataclasses import dataclass

from procstore.errors import StoreError

__all__ = [
    "FileKey",
    "OpenFile",
    "file_descriptor",
    "probe_runner",
    "register_file",
    "release_runner",
    "take_runner",
    "unregister_file",
]


@dataclass(slots=True)
class OpenFile:
    """What this process has open of one database file (one inode), shared by its backends.

    The runner lock is ``flock(LOCK_EX)`` on a descriptor of the database file. On Linux (and
    the BSDs) ``flock`` locks are independent of the POSIX ``fcntl`` byte-range locks SQLite
    takes on the same file, so the two never interfere. But closing *any* descriptor of a file
    drops *all* of the process's POSIX locks on it, SQLite's included: a descriptor of ours
    must stay open until every SQLite connection of this process on the file is closed. So
    the process keeps one entry per file, counted by the backends open on it, and closes its
    descriptors only after the last of them has closed its connections.

    The entry also records which backend holds the runner lock: ``flock`` on the one shared
    descriptor would succeed for every backend of the process. And it is taken before a backend
    opens anything else of the file: the header check reads through the shared descriptor too,
    since opening and closing the file to read it would drop the locks of the process's other
    backends (an idle WAL connection holds a shared lock on the file, which keeps another
    process's last connection from checkpointing and deleting the ``-wal`` under it).

    Attributes:
        fds: Descriptors of the file (the first carries the lock; a second one appears only
            if the file was replaced while a backend opened it).
        backends: Backends of this process open on the file.
        runner: The backend that holds the runner lock, if any.
    """

    fds: list[int]
    backends: int = 0
    runner: object | None = None


FileKey = tuple[int, int]  # (st_dev, st_ino): the file, whatever path leads to it
_OPEN_FILES: dict[FileKey, OpenFile] = {}
_OPEN_FILES_LOCK = threading.Lock()  # backends may be opened from several event loops


def register_file(path: str, *, create: bool) -> FileKey | None:
    """Count one more backend on the database file at ``path``, before it opens anything of it.

    Returns:
        The file's key, or ``None`` when there is no file (and ``create`` is false). With
        ``create``, a missing file is created empty (which opening then initialises).

    Raises:
        OSError: The file cannot be opened (or, ``ENODEV``, is not a regular file).
    """
    with _OPEN_FILES_LOCK:
        try:
            key = _file_key(os.stat(path))
        except FileNotFoundError:
            if not create:
                return None
            key = None
        entry = _OPEN_FILES.get(key) if key is not None else None
        if entry is None:
            # O_NONBLOCK: a FIFO at the path must not hang the open (regular files ignore it).
            flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | (os.O_CREAT if create else 0)
            fd = os.open(path, flags, 0o644)
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)  # no SQLite connection can have this open: it is no database
                raise OSError(errno.ENODEV, "not a regular file")
            key = _file_key(info)  # the file opened, if it was replaced meanwhile
            entry = _OPEN_FILES.get(key)
            if entry is None:
                entry = _OPEN_FILES[key] = OpenFile(fds=[fd])
            else:
                entry.fds.append(fd)  # never close it early: see OpenFile
        entry.backends += 1
        return key


def file_descriptor(key: FileKey) -> int:
    """The descriptor this process keeps of a registered database file."""
    with _OPEN_FILES_LOCK:
        return _OPEN_FILES[key].fds[0]


def unregister_file(key: FileKey, backend: object | None) -> None:
    """``backend`` (or one that failed to open) has closed its connections: release its runner
    lock and its count."""
    with _OPEN_FILES_LOCK:
        entry = _OPEN_FILES[key]
        with contextlib.suppress(OSError):
            _release(entry, backend)
        entry.backends -= 1
        if entry.backends == 0:
            del _OPEN_FILES[key]
            for fd in entry.fds:
                os.close(fd)


def _file_key(stat: os.stat_result) -> FileKey:
    return stat.st_dev, stat.st_ino


def take_runner(key: FileKey, backend: object, path: str) -> str | None:
    """Take the runner lock of the registered file ``key`` for ``backend``.

    Returns:
        ``None`` when it is taken; otherwise who holds it: this process's pid when another
        backend of this process does, ``""`` when another process does (its pid is in the
        database's ``meta`` table, not known here).

    Raises:
        StoreError: ``flock`` failed for another reason than the lock being held.
    """
    with _OPEN_FILES_LOCK:
        entry = _OPEN_FILES[key]
        if entry.runner is not None:
            return str(os.getpid())
        try:
            fcntl.flock(entry.fds[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return ""  # another process: its pid is in the meta table
        except OSError as exc:
            raise StoreError(f"cannot lock {path}: {exc}") from exc
        entry.runner = backend
        return None


def probe_runner(key: FileKey, path: str) -> bool:
    """Whether a backend, in this process or another, holds the runner lock of the registered
    file ``key``. Another process's is found by taking the ``flock`` and releasing it at once
    (``flock`` has no query); a runner that tries to take it in that instant tries again (see
    ``SQLiteBackend.acquire_runner_lock``).

    Raises:
        StoreError: ``flock`` failed for another reason than the lock being held.
    """
    with _OPEN_FILES_LOCK:
        entry = _OPEN_FILES[key]
        if entry.runner is not None:
            return True
        try:
            fcntl.flock(entry.fds[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError as exc:
            raise StoreError(f"cannot lock {path}: {exc}") from exc
        fcntl.flock(entry.fds[0], fcntl.LOCK_UN)
        return False


def release_runner(key: FileKey, backend: object) -> None:
    """Release the runner lock of the registered file ``key`` if ``backend`` holds it."""
    with _OPEN_FILES_LOCK:
        _release(_OPEN_FILES[key], backend)


def _release(entry: OpenFile, backend: object | None) -> None:
    if entry.runner is backend:
        entry.runner = None
        fcntl.flock(entry.fds[0], fcntl.LOCK_UN)
