"""Atomic file writes: write to a temporary file in the same folder, then ``os.replace`` it into place.

A reader (or a run killed mid-write) sees either the old file or the complete new one, never a partial file.

A write that the disk refuses (full, read-only, no permission, over quota, file too large) is one line,
:class:`WriteError`, naming the path and the free space there (:func:`writing`), whichever library did the writing
(Python, safetensors, ``torch.save``); the previous copy of the file or folder is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

from mmcls.errors import UserError, first_line

#: errno values of a write the disk refused: full, read-only, not permitted, over quota, file too large
WRITE_ERRNOS = frozenset(code for code in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM,
                                           getattr(errno, "EDQUOT", None), errno.EFBIG) if code is not None)
# how libraries that do their own I/O report it: safetensors (Rust) "... (os error 28)"; torch.save's zip writer
# names no errno ("file write failed", "unexpected pos 576 vs 534")
_OS_ERROR_CODE = re.compile(r"\(os error (\d+)\)")
_TORCH_WRITER = re.compile(r"PytorchStreamWriter failed writing|inline_container\.cc.*unexpected pos|"
                           r"file write failed")
_UNKNOWN = "the write failed"


class WriteError(UserError):
    """The disk refused a write (:data:`WRITE_ERRNOS`): the message names the path and the free space there."""


def _related(filename: Path, path: Path) -> bool:
    """``filename`` is ``path``, a folder above it or a file inside it."""
    return filename == path or filename in path.parents or path in filename.parents


def _refusal(exc: BaseException) -> tuple[str, str | None] | None:
    """``(reason, filename)`` when ``exc`` (or an exception it came from) is a write the disk refused."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            return os.strerror(error.errno), error.filename if isinstance(error.filename, str) else None
        if not isinstance(error, OSError):
            if (match := _OS_ERROR_CODE.search(str(error))) and int(match.group(1)) in WRITE_ERRNOS:
                return os.strerror(int(match.group(1))), None
            if _TORCH_WRITER.search(str(error)):
                return _UNKNOWN + f" ({first_line(error)[:120]})", None
        error = error.__cause__ or error.__context__
    return None


def _size(free: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            return f"{free:.0f} {unit}" if unit == "B" else f"{free:.1f} {unit}"
        free /= 1000
    raise AssertionError  # unreachable


def free_space(path: str | Path) -> str:
    """``"1.2 GB free on /mount"`` for the file system that holds ``path`` (or the nearest folder above it)."""
    where = Path(os.path.abspath(path))
    while not where.exists() and where != where.parent:
        where = where.parent
    mount = where
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        return f"{_size(shutil.disk_usage(where).free)} free on {mount}"
    except OSError:
        return f"free space on {mount} unknown"


def _probe(path: Path) -> str | None:
    """Why the disk refuses writes next to ``path`` (None when a 1 MB test write succeeds): torch's writer only says
    "unexpected pos"."""
    where = Path(os.path.abspath(path))
    while not where.is_dir() and where != where.parent:
        where = where.parent
    try:
        with tempfile.TemporaryFile(dir=where) as handle:
            for _ in range(16):
                handle.write(bytes(65536))
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno in WRITE_ERRNOS else None
    return None


def write_error(exc: BaseException, path: str | Path, *related: str | Path) -> WriteError | None:
    """The one-line :class:`WriteError` for ``exc`` raised while writing ``path`` (a file or a folder being
    filled), or None when ``exc`` is not a refused write, or is about a file unrelated to ``path`` and
    ``related`` (e.g. one read inside the block)."""
    refusal = _refusal(exc)
    if refusal is None:
        return None
    reason, filename = refusal
    path = Path(path)
    if reason.startswith(_UNKNOWN):  # torch's writer names no cause: ask the disk
        reason = _probe(path) or reason
    shown = path
    if filename is not None:
        named = Path(os.path.abspath(filename))
        if not any(_related(named, Path(os.path.abspath(p))) for p in (path, *related)):
            return None
        if named == Path(os.path.abspath(path)) or Path(os.path.abspath(path)) in named.parents:
            shown = Path(filename)
    return WriteError(f"cannot write {shown}: {reason} ({free_space(shown)})")


@contextlib.contextmanager
def writing(path: str | Path, *related: str | Path) -> Iterator[None]:
    """Turn a refused write inside the block into :func:`write_error`'s :class:`WriteError` (anything else passes
    through as it is). ``path``: what the block writes, named in the message (a file inside it when the error names
    one); ``related``: other paths the block writes (temporary siblings, the folder it creates)."""
    try:
        yield
    except WriteError:
        raise
    except Exception as exc:
        error = write_error(exc, path, *related)
        if error is None:
            raise
        raise error from exc


def _umask() -> int:
    """The process's file-creation mask (read by setting it, then restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; it replaces ``path`` only if the block succeeds (a refused
    write is a :class:`WriteError` naming ``path``)."""
    path = Path(path)
    with writing(path, path.parent):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with writing(path, tmp):
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
    folder on a shared disk can be read by the team. A refused write is a :class:`WriteError`; ``dest`` stays as it
    was and the partial ``dest.tmp`` is removed."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    with writing(tmp, dest.parent):
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    try:
        with writing(tmp):
            yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # a partial copy (a full disk gets its space back)
        raise
    with writing(tmp, dest, dest.with_name(dest.name + ".old")):
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


def read_json_object(path: str | Path, error: type[UserError] = UserError, where: str = "") -> dict:
    """The JSON object in ``path``; ``error`` (``where`` in front) for a file that cannot be read or parsed, or that
    holds anything but an object."""
    import json

    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise error(f"{where}cannot read {path}: {first_line(exc)}") from None
    if not isinstance(value, dict):
        raise error(f"{where}{path} does not hold a JSON object")
    return value


def _natural_key(path: str) -> list:
    """Sort key that orders numbers by value: ``fold2`` before ``fold10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path)]


def expand_globs(patterns: Sequence[str], option: str) -> list[str]:
    """Each pattern with ``*``, ``?`` or ``[`` replaced by its matches in natural order (``fold2`` before
    ``fold10``; an error when it matches nothing); existing paths and other names pass through as given."""
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
