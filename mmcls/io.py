"""Atomic file writes: write to a temporary file in the same folder, then ``os.replace`` it into place.

A reader (or a run killed mid-write) sees either the old file or the complete new one, never a partial file.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide a shared model folder from teammates
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def replace_dir(tmp: str | Path, dest: str | Path) -> None:
    """Move the finished folder ``tmp`` to ``dest``, replacing it; ``dest`` is never missing a complete copy
    for longer than one rename (the old copy is renamed aside first, then removed). The one folder swap of mmcls:
    model folders, ``checkpoints/last`` and caches all go through it."""
    tmp, dest = Path(tmp), Path(dest)
    old = dest.with_name(dest.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    if old.exists():
        shutil.rmtree(old)


@contextlib.contextmanager
def atomic_dir(dest: str | Path) -> Iterator[Path]:
    """Yield an empty ``dest.tmp`` to fill; once the block succeeds it replaces ``dest`` (:func:`replace_dir`).

    Its files get the modes the umask allows (writers such as safetensors create them private, 0600), so a model
    folder on a shared disk can be read by the team."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    yield tmp
    mode = 0o666 & ~_umask()
    for path in tmp.rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(mode)
    replace_dir(tmp, dest)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def _natural_key(path: str) -> list:
    """Sort key that orders numbers by value: ``fold2`` before ``fold10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def expand_globs(patterns: Sequence[str], option: str) -> list[str]:
    """Each pattern with ``*``, ``?`` or ``[`` replaced by its matches in natural order (``fold2`` before
    ``fold10``; an error when it matches nothing); existing paths and other names pass through as given."""
    from mmcls.errors import UserError

    out: list[str] = []
    for pattern in patterns:
        if not any(char in pattern for char in "*?[") or os.path.exists(pattern):
            out.append(pattern)
            continue
        matches = sorted(glob.glob(pattern), key=_natural_key)
        if not matches:
            raise UserError(f"{option} {pattern}: matches nothing")
        out.extend(matches)
    return out
