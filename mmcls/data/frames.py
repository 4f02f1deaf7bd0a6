"""Frame sources: read the sampled frames of one video, and a guarded loader that never lets a bad video crash a run.

A :class:`FrameSource` maps a video id to uint8 ``[T, 3, H, W]`` frames (shorter side = ``resize_size``) or, for
``feats``, float16 ``[T, D]`` frame features, with ``T <= max_frames`` chosen by
:func:`~mmcls.data.sampling.sample_frame_indices`. It RAISES :class:`VideoError` for every data problem (missing,
empty, truncated, non-JPEG, undecodable). :class:`FrameLoader` wraps a source for the Dataset: it runs each read
under a timeout, catches :class:`VideoError`, counts failures per kind, logs each failing id once, and returns
``(frames, None)`` or ``(None, reason)`` — never another video.

Handles are opened lazily inside the process that reads: one zip / reader per video, opened and closed per read
(never shared across forked DataLoader workers); the big per-split ``feats`` zip is opened once per process and
reopened after a fork.

Decode speed (measured on this project's 2-core CPU, one thread, 8 frames per video) chose the paths:
``torchvision.io.decode_jpeg`` + torch resize is 1.2-1.6x faster than PIL for frames smaller than twice the target
size; for larger frames PIL's ``draft`` (libjpeg downscales by 1/2, 1/4, 1/8 inside the DCT) is fastest, so both
are used. For mp4, decord at the native size + torch resize was as fast as decord's resize-on-decode (which needs a
size probe first): decoding dominates.
"""

from __future__ import annotations

import io
import logging
import os
import queue
import threading
import warnings
import zipfile
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F

from mmcls.config import DataConfig
from mmcls.data.sampling import SamplingMode, sample_frame_indices
from mmcls.data.transforms import resolve_resize_size, shorter_side_size

logger = logging.getLogger("mmcls.data")

try:  # deprecated since torchvision 0.29 (in favour of torchcodec) but still the fastest JPEG decoder here
    from torchvision.io import ImageReadMode, decode_jpeg

    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                            category=DeprecationWarning)
except ImportError:  # removed in a later torchvision: PIL decodes everything
    decode_jpeg = None  # type: ignore[assignment]

T = TypeVar("T")
FailureKind = Literal["missing", "empty", "corrupt", "decode", "timeout"]
JPEG_SUFFIXES = (".jpg", ".jpeg")


class VideoError(Exception):
    """A video that cannot be read; ``kind`` is one of missing, empty, corrupt, decode, timeout."""

    def __init__(self, video_id: str, reason: str, kind: FailureKind = "decode") -> None:
        self.video_id, self.reason, self.kind = video_id, reason, kind
        super().__init__(f"video {video_id}: {kind}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.video_id, self.reason, self.kind)


# ----------------------------------------------------------------------------------------------------------------
# JPEG decoding


_SOF_MARKERS = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from a JPEG's frame header without decoding; ``None`` if ``data`` is not a JPEG."""
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker == 0xDA:  # start of scan before any frame header
            return None
        if marker in _SOF_MARKERS:
            if i + 9 > n:
                return None
            return int.from_bytes(data[i + 7:i + 9], "big"), int.from_bytes(data[i + 5:i + 7], "big")
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


class NotJPEGError(ValueError):
    """Bytes that do not start like a JPEG."""


def decode_jpeg_frame(data: bytes, short_side: int | None = None) -> torch.Tensor:
    """JPEG bytes -> uint8 ``[3, H, W]`` RGB, resized so the shorter side is ``short_side`` (``None``: native).

    Frames at least twice the target size are decoded by PIL with ``draft`` (libjpeg scales by 1/2, 1/4, 1/8 in the
    DCT, much cheaper than decoding in full); the rest by ``torchvision.io.decode_jpeg`` (PIL when torchvision no
    longer has it). Both finish with an antialiased bilinear resize to the exact size.
    """
    size = jpeg_size(data)
    if size is None:
        raise NotJPEGError("not a JPEG")
    width, height = size
    downscale = short_side is not None and min(width, height) >= 2 * short_side
    if decode_jpeg is not None and not downscale:
        frame = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    else:
        image = Image.open(io.BytesIO(data))
        if downscale:
            target_h, target_w = shorter_side_size(height, width, short_side)  # type: ignore[arg-type]
            image.draft("RGB", (target_w, target_h))
        frame = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1)
    return _resize(frame, short_side)


def _resize(frames: torch.Tensor, short_side: int | None, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Resize ``[..., H, W]`` to ``size`` or to a shorter side of ``short_side``; contiguous output."""
    height, width = frames.shape[-2:]
    if size is None:
        size = (height, width) if short_side is None else shorter_side_size(height, width, short_side)
    if size != (height, width):
        frames = F.resize(frames, list(size), antialias=True)
    return frames.contiguous()


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """Stack ``[3, H, W]`` frames; a frame whose size differs from the first is resized to it."""
    height, width = frames[0].shape[-2:]
    return torch.stack([_resize(f, None, (height, width)) for f in frames])


# ----------------------------------------------------------------------------------------------------------------
# frame sources


class FrameSource(ABC):
    """Reads the sampled frames of one video; raises :class:`VideoError` for any data problem.

    Subclasses implement :meth:`_read`; :meth:`read` turns any exception escaping it (PIL, decord, zipfile, numpy
    ...) into a ``decode`` :class:`VideoError`.
    """

    name: ClassVar[str]
    default_dir: ClassVar[str]

    def __init__(self, root: str | Path, split: str, max_frames: int, resize_size: int | None = None,
                 frame_dir: str | None = None) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.root, self.split, self.max_frames, self.resize_size = Path(root), split, max_frames, resize_size
        self.base = self.root / (frame_dir or self.default_dir)

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> FrameSource:
        """Build from the data config for annotation split ``split`` (e.g. ``"labeled"``)."""
        return cls(cfg.root, split, cfg.max_frames, resolve_resize_size(cfg), cfg.frame_dir)

    @abstractmethod
    def path(self, video_id: str) -> Path:
        """Where the frames of ``video_id`` live."""

    @abstractmethod
    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        """Read the sampled frames; may raise anything."""

    def read(self, video_id: str, mode: SamplingMode = "uniform", rng: np.random.Generator | None = None,
             offset: int = 0) -> torch.Tensor:
        """Sampled frames of ``video_id`` (see :func:`sample_frame_indices`); raises :class:`VideoError`."""
        try:
            return self._read(video_id, mode, rng, offset)
        except VideoError:
            raise
        except Exception as exc:
            raise VideoError(video_id, _describe(exc), "decode") from exc

    @abstractmethod
    def _count(self, video_id: str) -> int:
        """Number of frames of the video; may raise anything."""

    def count_frames(self, video_id: str) -> int:
        """How many frames the video has (the ``n`` that sampling draws from); raises :class:`VideoError`."""
        try:
            return self._count(video_id)
        except VideoError:
            raise
        except Exception as exc:
            raise VideoError(video_id, _describe(exc), "decode") from exc

    def reset(self) -> None:
        """Forget cached handles (called after a read was abandoned on timeout); nothing is cached by default."""
        return None

    @property
    def location(self) -> Path:
        """The folder (or file) holding this split's frames."""
        return self.base / self.split

    def available(self) -> bool:
        """Whether :attr:`location` exists at all (a cheap configuration check)."""
        return self.location.exists()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base={str(self.base)!r}, split={self.split!r}, max_frames={self.max_frames})"

    def _indices(self, num_frames: int, mode: SamplingMode, rng: np.random.Generator | None,
                 offset: int) -> list[int]:
        return sample_frame_indices(num_frames, self.max_frames, mode, rng, offset)

    def _check_file(self, video_id: str, path: Path) -> None:
        """Missing and zero-byte files are their own failure kinds."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise VideoError(video_id, f"{path} not found", "missing") from None
        if not path.is_file():
            raise VideoError(video_id, f"{path} is not a file", "missing")
        if size == 0:
            raise VideoError(video_id, f"{path} is empty (0 bytes)", "empty")

    def _decode_jpegs(self, video_id: str, names: list[str], blobs: list[bytes]) -> torch.Tensor:
        """Decode JPEG frames (named for error messages) into uint8 ``[T, 3, H, W]``."""
        frames = []
        for name, blob in zip(names, blobs, strict=True):
            try:
                frames.append(decode_jpeg_frame(blob, self.resize_size))
            except NotJPEGError:
                raise VideoError(video_id, f"frame {name} is not a JPEG", "corrupt") from None
        return stack_frames(frames)


def _is_jpeg_name(name: str) -> bool:
    return name.lower().endswith(JPEG_SUFFIXES)


class ZipFrameSource(FrameSource):
    """``<root>/zip_frames/<split>/<id[-3:]>/<id>.zip``: JPEG members in sorted-name order; decodes only the sample."""

    name = "zip"
    default_dir = "zip_frames"

    def path(self, video_id: str) -> Path:
        return self.base / self.split / video_id[-3:] / f"{video_id}.zip"

    def _open(self, video_id: str) -> zipfile.ZipFile:
        path = self.path(video_id)
        self._check_file(video_id, path)
        try:
            return zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise VideoError(video_id, f"{path}: bad zip: {exc}", "corrupt") from None

    def _frame_names(self, video_id: str, zf: zipfile.ZipFile) -> list[str]:
        """Sorted JPEG member names (other members are ignored); VideoError when there are none."""
        members = [m.filename for m in zf.infolist() if not m.is_dir()]
        if not members:
            raise VideoError(video_id, f"{zf.filename} has no members", "empty")
        names = sorted(m for m in members if _is_jpeg_name(m))
        if not names:
            shown = ", ".join(members[:3]) + (" ..." if len(members) > 3 else "")
            raise VideoError(video_id, f"{zf.filename} has no JPEG members ({len(members)} members: {shown})",
                             "corrupt")
        return names

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        try:
            with self._open(video_id) as zf:
                names = self._frame_names(video_id, zf)
                picked = [names[i] for i in self._indices(len(names), mode, rng, offset)]
                blobs = [zf.read(name) for name in picked]
        except zipfile.BadZipFile as exc:  # e.g. a CRC error in a member
            raise VideoError(video_id, f"{self.path(video_id)}: bad zip: {exc}", "corrupt") from None
        return self._decode_jpegs(video_id, picked, blobs)

    def _count(self, video_id: str) -> int:
        with self._open(video_id) as zf:
            return len(self._frame_names(video_id, zf))


class JpegDirFrameSource(FrameSource):
    """``<root>/jpeg_frames/<split>/<id>/*.jpg``: one folder of JPEG frames per video, sorted names."""

    name = "jpeg"
    default_dir = "jpeg_frames"

    def path(self, video_id: str) -> Path:
        return self.base / self.split / video_id

    def _frame_names(self, video_id: str) -> list[str]:
        folder = self.path(video_id)
        if not folder.is_dir():
            raise VideoError(video_id, f"{folder} not found", "missing")
        names = sorted(p.name for p in folder.iterdir() if _is_jpeg_name(p.name))
        if not names:
            raise VideoError(video_id, f"{folder} has no JPEG frames", "empty")
        return names

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        names = self._frame_names(video_id)
        picked = [names[i] for i in self._indices(len(names), mode, rng, offset)]
        folder = self.path(video_id)
        return self._decode_jpegs(video_id, picked, [(folder / name).read_bytes() for name in picked])

    def _count(self, video_id: str) -> int:
        return len(self._frame_names(video_id))


class Mp4FrameSource(FrameSource):
    """``<root>/videos/<split>/<id>.mp4`` decoded with decord; one reader per read, created in the reading process.

    Frames larger than needed are resized while decoding (see :meth:`decode_size`).

    decord is imported on first use (never at import time, never before a DataLoader forks). A container that
    over-reports its frame count (e.g. a file cut inside its last packet) fails on its last few frames (the
    decoder's reorder delay): when the sample touched them, the read retries with the last ``TAIL_MARGINS[k]``
    frames excluded before giving up.
    """

    name = "mp4"
    default_dir = "videos"
    TAIL_MARGINS: ClassVar[tuple[int, ...]] = (4, 16)

    def __init__(self, root: str | Path, split: str, max_frames: int, resize_size: int | None = None,
                 frame_dir: str | None = None, decode_threads: int = 1) -> None:
        super().__init__(root, split, max_frames, resize_size, frame_dir)
        self.decode_threads = decode_threads

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> FrameSource:
        return cls(cfg.root, split, cfg.max_frames, resolve_resize_size(cfg), cfg.frame_dir, cfg.decode_threads)

    def path(self, video_id: str) -> Path:
        return self.base / self.split / f"{video_id}.mp4"

    def decode_size(self, path: Path) -> tuple[int, int]:
        """``(width, height)`` for decord to resize to while decoding (``(-1, -1)``: native size).

        The native size comes from the container header (PyAV, ~2 ms); frames are resized on decode only when that
        shrinks them, which keeps memory flat for large videos. Any probe problem falls back to the native size
        (the decord open that follows then reports the real error).
        """
        if self.resize_size is None:
            return -1, -1
        try:
            import av

            with av.open(str(path)) as container:
                context = container.streams.video[0].codec_context
                height, width = context.height, context.width
        except Exception:
            return -1, -1
        if not height or not width or min(height, width) <= self.resize_size:
            return -1, -1
        target_h, target_w = shorter_side_size(height, width, self.resize_size)
        return target_w, target_h

    def _open(self, video_id: str, path: Path, size: tuple[int, int] = (-1, -1)) -> Any:
        """A decord reader decoding to ``size`` = ``(width, height)`` (``(-1, -1)``: native size)."""
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own messages; failures are reported by us

        width, height = size
        try:
            return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=self.decode_threads, width=width,
                                      height=height)
        except Exception as exc:  # RuntimeError, DECORDError, AssertionError (zero frames) ...
            raise VideoError(video_id, f"{path}: cannot open: {_describe(exc)}", "corrupt") from None

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        path = self.path(video_id)
        self._check_file(video_id, path)
        size = self.decode_size(path)
        reader = self._open(video_id, path, size)
        count = len(reader)
        indices = self._indices(count, mode, rng, offset)
        try:
            return self._decode(reader, indices)
        except Exception as exc:
            error = exc
        del reader
        if size != (-1, -1):  # decord's resize-on-decode rejects some target sizes: retry at the native size
            try:
                return self._decode(self._open(video_id, path), indices)
            except Exception as exc:
                error = exc
        for margin in self.TAIL_MARGINS:
            if count <= margin or indices[-1] < count - margin:
                break  # the failed sample did not touch the frames this margin drops: no reason to retry
            indices = self._indices(count - margin, mode, rng, offset)
            try:
                frames = self._decode(self._open(video_id, path), indices)  # a fresh reader for a clean state
            except Exception as exc:
                error = exc
                continue
            logger.debug("video %s: read without the last %d of %d frames", video_id, margin, count)
            return frames
        raise VideoError(video_id, f"{path}: {_describe(error)}", "decode")

    def _count(self, video_id: str) -> int:
        path = self.path(video_id)
        self._check_file(video_id, path)
        return len(self._open(video_id, path))

    def _decode(self, reader: Any, indices: list[int]) -> torch.Tensor:
        array = reader.get_batch(indices).asnumpy()  # [T, H, W, 3] at the decode size
        return _resize(torch.from_numpy(array).permute(0, 3, 1, 2), self.resize_size)


def _describe(exc: BaseException) -> str:
    """``Type: first line of the message`` (decord messages carry whole C++ stack traces)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


class FeatsFrameSource(FrameSource):
    """``<root>/feats/<split>.zip`` of ``<id>.npy`` float16 ``[n_frames, dim]``; the zip is opened once per process."""

    name = "feats"
    default_dir = "feats"

    def __init__(self, root: str | Path, split: str, max_frames: int, resize_size: int | None = None,
                 frame_dir: str | None = None) -> None:
        super().__init__(root, split, max_frames, resize_size, frame_dir)
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None

    @property
    def zip_path(self) -> Path:
        return self.base / f"{self.split}.zip"

    @property
    def location(self) -> Path:
        return self.zip_path

    def path(self, video_id: str) -> Path:
        return self.zip_path

    def _handle(self, video_id: str) -> zipfile.ZipFile:
        """This process's handle on the split zip, opened on first use and reopened after a fork.

        No lock guards it (a lock held by another thread at fork time would deadlock the child); two threads racing
        on the first read at worst open the zip twice. ``ZipFile.read`` itself is thread-safe.
        """
        if self._zip is None or self._pid != os.getpid():
            self._check_file(video_id, self.zip_path)
            try:
                handle = zipfile.ZipFile(self.zip_path)
            except zipfile.BadZipFile as exc:
                raise VideoError(video_id, f"{self.zip_path}: bad zip: {exc}", "corrupt") from None
            self._zip, self._pid = handle, os.getpid()
        return self._zip

    def _load(self, video_id: str) -> np.ndarray:
        """The whole ``[n_frames, dim]`` array of ``video_id``."""
        member = f"{video_id}.npy"
        try:
            data = self._handle(video_id).read(member)
        except KeyError:
            raise VideoError(video_id, f"{member} not in {self.zip_path}", "missing") from None
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if array.ndim != 2:
            raise VideoError(video_id, f"{member}: expected [n_frames, dim], got shape {array.shape}", "corrupt")
        if array.shape[0] == 0:
            raise VideoError(video_id, f"{member} has no frames", "empty")
        return array

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        array = self._load(video_id)
        rows = self._indices(array.shape[0], mode, rng, offset)
        return torch.from_numpy(np.ascontiguousarray(array[rows], dtype=np.float16))

    def _count(self, video_id: str) -> int:
        return int(self._load(video_id).shape[0])  # members are small (<= 32 x 768 float16 in WBDC)

    def reset(self) -> None:
        self._zip = None  # a hung reader may still use the old handle: drop it, do not close it

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zip"], state["_pid"] = None, None  # handles never travel to another process
        return state


FRAME_SOURCES: dict[str, type[FrameSource]] = {
    "zip": ZipFrameSource,
    "mp4": Mp4FrameSource,
    "jpeg": JpegDirFrameSource,
    "feats": FeatsFrameSource,
}


def build_frame_source(cfg: DataConfig, split: str) -> FrameSource:
    """The frame source named by ``cfg.frame_source`` for annotation split ``split`` (e.g. ``"labeled"``)."""
    if cfg.frame_source not in FRAME_SOURCES:
        raise ValueError(f"unknown frame source {cfg.frame_source!r} (choose from {sorted(FRAME_SOURCES)})")
    source = FRAME_SOURCES[cfg.frame_source].from_config(cfg, split)
    if not source.available():
        logger.warning("frame source %s: %s does not exist; every video of split %r will fail to load",
                       source.name, source.location, split)
    return source


# ----------------------------------------------------------------------------------------------------------------
# timeout: one long-lived daemon thread per (process, calling thread)


class _DecodeThread:
    """A daemon thread that runs submitted calls one at a time; abandoned (never joined) when a call hangs."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.tasks: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="mmcls-decode", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while (task := self.tasks.get()) is not None:
            fn, future = task
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:  # delivered to the waiting caller
                future.set_exception(exc)

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        future: Future[T] = Future()
        self.tasks.put((fn, future))
        return future

    def abandon(self) -> None:
        """Let the thread exit once its hung call returns (if ever); it is a daemon, so it never blocks exit."""
        self.tasks.put(None)


_local = threading.local()
_abandoned: list[threading.Thread] = []


def _decode_thread() -> _DecodeThread:
    """This (process, thread)'s decode thread, created on first use and again after a fork or an abandon."""
    runner: _DecodeThread | None = getattr(_local, "runner", None)
    if runner is None or runner.pid != os.getpid() or not runner.thread.is_alive():
        runner = _local.runner = _DecodeThread()
    return runner


def abandoned_decode_threads() -> int:
    """How many abandoned decode threads of this process are still running (stuck in a hung call)."""
    return sum(t.is_alive() for t in _abandoned)


def call_with_timeout(fn: Callable[[], T], timeout: float) -> T:
    """``fn()`` on this thread's decode thread, raising :class:`TimeoutError` after ``timeout`` seconds.

    On timeout the thread is abandoned (it keeps running the hung call as a daemon) and replaced for the next call.
    ``timeout <= 0`` calls ``fn`` directly. This works for hangs inside C code that releases the GIL (decord and
    zlib via ctypes/C, libjpeg via PIL and torchvision); a hang that holds the GIL can only be caught by the
    DataLoader's own ``timeout``.
    """
    if timeout <= 0:
        return fn()
    runner = _decode_thread()
    future = runner.submit(fn)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        runner.abandon()
        _local.runner = None
        _abandoned.append(runner.thread)
        _abandoned[:] = [t for t in _abandoned if t.is_alive()]
        logger.warning("abandoned a decode thread that hung for %.1fs (%d abandoned threads still running)",
                       timeout, len(_abandoned))
        raise TimeoutError(f"decode did not finish within {timeout:g}s") from None


# ----------------------------------------------------------------------------------------------------------------
# guarded loading


class FrameResult(NamedTuple):
    """What :meth:`FrameLoader.load` returns: frames, or ``None`` and the reason (``"<kind>: <detail>"``)."""

    frames: torch.Tensor | None
    error: str | None


class FrameLoader:
    """Reads frames through a :class:`FrameSource` and turns every data problem into ``(None, reason)``.

    Each read runs under ``timeout`` seconds (0 = no limit). Failures are counted per kind in ``failures`` (per
    process: DataLoader workers count their own, so the Dataset should pass the reason on with the sample) and each
    failing id is logged once per process as a warning on the ``mmcls.data`` logger.
    """

    def __init__(self, source: FrameSource, timeout: float = 0.0) -> None:
        self.source, self.timeout = source, timeout
        self.failures: Counter[str] = Counter()
        self._logged: set[str] = set()

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> FrameLoader:
        return cls(build_frame_source(cfg, split), cfg.decode_timeout)

    def load(self, video_id: str, mode: SamplingMode = "uniform", rng: np.random.Generator | None = None,
             offset: int = 0) -> FrameResult:
        """``(frames, None)`` on success, ``(None, "<kind>: <detail>")`` on any data problem; never raises for data."""
        try:
            frames = call_with_timeout(lambda: self.source.read(video_id, mode, rng, offset), self.timeout)
        except VideoError as exc:
            return self._fail(video_id, exc.kind, exc.reason)
        except TimeoutError as exc:
            self.source.reset()
            return self._fail(video_id, "timeout", str(exc))
        return FrameResult(frames, None)

    __call__ = load

    def _fail(self, video_id: str, kind: FailureKind, reason: str) -> FrameResult:
        self.failures[kind] += 1
        if video_id not in self._logged:
            self._logged.add(video_id)
            logger.warning("video %s: %s: %s (the sample keeps its text; its frames are masked)", video_id, kind,
                           reason)
        return FrameResult(None, f"{kind}: {reason}")

    @property
    def num_failures(self) -> int:
        return sum(self.failures.values())
