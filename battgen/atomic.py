"""Atomic writes: a file or directory is either its previous version or its complete new one.

Datasets, tables, checkpoints and metadata are read by the app (and by resumed builds) while
runs write them, and a run can be killed at any moment (Ctrl-C, out of memory, a pre-empted
job). Every writer therefore writes to a temporary sibling and renames it into place only once
it is complete and flushed to disk: a crash leaves the previous version readable, plus at worst
a hidden ``.NAME.*.tmp`` sibling that nothing reads.

* :func:`atomic_path` — a temporary path for any writer that takes a path (``to_parquet``,
  ``np.save``, ``Image.save``...), renamed over the target when the block succeeds.
* :func:`write_bytes`, :func:`write_text`, :func:`save_npz` — the common cases.
* :func:`atomic_directory` — a temporary directory (e.g. for ``save_pretrained`` plus the files
  saved beside the weights) swapped with the target directory in one step.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _fsync(path: Path) -> None:
    # Without it a power cut after the rename can leave the new name pointing at empty blocks.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary_sibling(path: Path, directory: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix, suffix = f".{path.name}.", ".tmp"
    if directory:
        made = Path(tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=path.parent))
        mode = 0o777
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.close(fd)
        made, mode = Path(name), 0o666
    # mkstemp/mkdtemp make private (0600/0700) entries; the renamed result gets the permissions
    # an ordinary write would have, so other users of a shared server can still read it.
    os.chmod(made, mode & ~_umask())
    return made


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary file path beside ``path``; when the block succeeds it replaces ``path``.

    The writer inside the block must write to the yielded path (and may overwrite it); if the
    block raises, the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    temporary = _temporary_sibling(target, directory=False)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, target)
        _fsync(target.parent)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return Path(path)


def save_npz(path: str | os.PathLike[str], *, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """``np.savez[_compressed](path, **arrays)``, atomically (and without NumPy appending ``.npz``
    to a name that lacks it: it is given an open file, not a name)."""
    with atomic_path(path) as temporary, temporary.open("wb") as handle:
        (np.savez_compressed if compressed else np.savez)(handle, **arrays)
    return Path(path)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux renameat2 RENAME_EXCHANGE); False where unsupported."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    result = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary directory beside ``path``; when the block succeeds, it becomes
    ``path`` and the previous ``path`` (if any) is deleted.

    On Linux the two directories are exchanged in one rename, so a reader sees the old or the new
    directory, never neither; elsewhere the old one is moved aside first, and a crash between the
    two renames leaves it, complete, under its ``.NAME.*.tmp`` name.
    """
    target = Path(path)
    temporary = _temporary_sibling(target, directory=True)
    try:
        yield temporary
        for file in temporary.rglob("*"):
            if file.is_file():
                _fsync(file)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    if target.exists() and _exchange(temporary, target):
        shutil.rmtree(temporary, ignore_errors=True)  # now the previous version
    else:
        aside = None
        if target.exists():
            aside = _temporary_sibling(target, directory=True)
            aside.rmdir()
            os.rename(target, aside)
        os.rename(temporary, target)
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
    _fsync(target.parent)
