"""Frame sources: read the sampled frames of one video, and a guarded loader that never lets a bad video crash a run.

A :class:`FrameSource` maps a video id to uint8 ``[T, 3, H, W]`` frames (shorter side = ``resize_size``, at most
4:1) or, for ``feats``, float16 ``[T, D]`` frame features, with ``T <= max_frames`` chosen by
:func:`~mmcls.data.sampling.sample_frame_indices`. It RAISES :class:`~mmcls.data.video_error.VideoError` for every
data problem (missing, empty, truncated zip, non-JPEG, undecodable, wrong feature width, over the per-video caps
``data.max_video_bytes`` / ``data.max_video_frames``, checked from file sizes and zip headers before anything is
read; an mp4 that decodes only in part gives its decodable head). :class:`FrameLoader` wraps a source for the
Dataset: it runs each read under a timeout (:func:`~mmcls.data.timeout.call_with_timeout`), catches
:class:`~mmcls.data.video_error.VideoError`, counts failures per kind, logs each failing id once, and returns
``(frames, None)`` or ``(None, reason)`` — never another video.

Handles are opened lazily inside the process that reads: one zip / reader per video, opened and closed per read
(never shared across forked DataLoader workers); the big per-split ``feats`` zip is opened once per process and
reopened after a fork.

Decoding lives in :mod:`mmcls.data.jpeg` (JPEG frames) and :mod:`mmcls.data.mp4` (mp4 header, PyAV fallback). For
mp4, decord at the native size + torch resize was as fast as decord's resize-on-decode (measured on this project's
2-core CPU, one thread, 8 frames per video); the decode size comes from the mp4 header. Every resize goes through
:func:`~mmcls.data.transforms.resize_shorter_side`, which caps frames at 4:1 (centre crop) so a very thin frame
cannot blow up in memory.

A truncated or partly undecodable mp4 is read deterministically: when its sample table points past the end of the
file, or decord fails on it, PyAV decodes it sequentially up to the first error and the sample is drawn from the
frames actually obtained (see :class:`Mp4FrameSource`).
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from mmcls.config import DataConfig
from mmcls.data.feature_source import FeatsFrameSource
from mmcls.data.frame_source import FrameSource, _read_member, frame_names, video_limits
from mmcls.data.jpeg import stack_frames
from mmcls.data.mp4 import Mp4Info, _probe_size, decode_sequentially, mp4_info
from mmcls.data.sampling import SamplingMode
from mmcls.data.timeout import call_with_timeout
from mmcls.data.transforms import resize_shorter_side, resolve_resize_size, shorter_side_size
from mmcls.data.video_error import FailureKind, VideoError, VideoOverLimit, _describe

logger = logging.getLogger("mmcls.data")


class ZipFrameSource(FrameSource):
    """``<root>/zip_frames/<split>/<id[-3:]>/<id>.zip``: JPEG members in sorted-name order; decodes only the sample."""

    name = "zip"
    default_dir = "zip_frames"

    def path(self, video_id: str) -> Path:
        return self.base / self.split / video_id[-3:] / f"{video_id}.zip"

    def _open(self, video_id: str) -> zipfile.ZipFile:
        path = self.path(video_id)
        self._check_bytes(video_id, self._check_file(video_id, path), str(path))  # before parsing its directory
        try:
            return zipfile.ZipFile(path)
        except zipfile.BadZipFile as exc:
            raise VideoError(video_id, f"{path}: bad zip: {exc}", "corrupt") from None

    def _frame_names(self, video_id: str, zf: zipfile.ZipFile) -> list[str]:
        """Sorted JPEG member names (other members are ignored); VideoError when there are none, or more than
        ``data.max_video_frames``."""
        names = frame_names(video_id, str(zf.filename), (m.filename for m in zf.infolist() if not m.is_dir()))
        self._check_frames(video_id, len(names), str(zf.filename))
        return names

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        try:
            with self._open(video_id) as zf:
                names = self._frame_names(video_id, zf)
                picked = [names[i] for i in self._indices(len(names), mode, rng, offset)]
                size = sum(zf.getinfo(name).file_size for name in picked)  # uncompressed, from the zip's directory
                self._check_bytes(video_id, size, f"{zf.filename}: the {len(picked)} sampled frames")
                blobs = [_read_member(video_id, zf, name) for name in picked]
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
        """Sorted JPEG file names of the folder (other files are ignored); VideoError when there are none, or more
        than ``data.max_video_frames``."""
        folder = self.path(video_id)
        if not folder.is_dir():
            raise VideoError(video_id, f"{folder} not found", "missing")
        with os.scandir(folder) as entries:
            names = frame_names(video_id, str(folder), [e.name for e in entries if e.is_file()])
        self._check_frames(video_id, len(names), str(folder))
        return names

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        names = self._frame_names(video_id)
        picked = [names[i] for i in self._indices(len(names), mode, rng, offset)]
        folder = self.path(video_id)
        size = sum((folder / name).stat().st_size for name in picked)
        self._check_bytes(video_id, size, f"{folder}: the {len(picked)} sampled frames")
        return self._decode_jpegs(video_id, picked, [(folder / name).read_bytes() for name in picked])

    def _count(self, video_id: str) -> int:
        return len(self._frame_names(video_id))


# ----------------------------------------------------------------------------------------------------------------
# mp4 source


class Mp4FrameSource(FrameSource):
    """``<root>/videos/<split>/<id>.mp4`` decoded with decord; one reader per read, created in the reading process.

    decord (imported on first use, never before a DataLoader forks) is the fast path: it resizes frames that are
    larger than needed while decoding (see :meth:`decode_size`), and retries at the native size because it rejects
    some target sizes. decord's threaded decoder fails at random on a file with a broken tail, so when the header
    shows the file was cut (:attr:`Mp4Info.truncated`), or decord fails to open or to decode, the video is decoded
    by PyAV instead: sequentially, up to the first error, and the sample is drawn from the frames it obtained. The
    same file therefore always gives the same frames; only a file with no decodable frame raises.
    """

    name = "mp4"
    default_dir = "videos"

    def __init__(self, root: str | Path, split: str, max_frames: int, resize_size: int | None = None,
                 frame_dir: str | None = None, decode_threads: int = 1, **limits: int) -> None:
        super().__init__(root, split, max_frames, resize_size, frame_dir, **limits)
        self.decode_threads = decode_threads

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> FrameSource:
        return cls(cfg.root, split, cfg.max_frames, resolve_resize_size(cfg), cfg.frame_dir, cfg.decode_threads,
                   **video_limits(cfg))

    def path(self, video_id: str) -> Path:
        return self.base / self.split / f"{video_id}.mp4"

    def decode_size(self, path: Path, info: Mp4Info | None = None) -> tuple[int, int]:
        """``(width, height)`` for decord to resize to while decoding (``(-1, -1)``: native size).

        The native size comes from the mp4 header (``info``, parsed when not given; a PyAV probe when the file is
        not an mp4 that the parser understands); frames are resized on decode only when that shrinks them, which
        keeps memory flat for large videos. Any probe problem gives the native size.
        """
        if self.resize_size is None:
            return -1, -1
        info = info if info is not None else mp4_info(path)
        width, height = (info.width, info.height) if info is not None else (0, 0)
        if not width or not height:
            width, height = _probe_size(path)
        if not height or not width or min(height, width) <= self.resize_size:
            return -1, -1
        target_h, target_w = shorter_side_size(height, width, self.resize_size)
        return target_w, target_h

    def _checked_info(self, video_id: str, path: Path) -> Mp4Info | None:
        """The header of a present, non-empty mp4 within the caps (file size, and the frames its header counts)."""
        self._check_bytes(video_id, self._check_file(video_id, path), str(path))
        info = mp4_info(path)
        if info is not None:
            self._check_frames(video_id, info.frames, str(path))
        return info

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        path = self.path(video_id)
        info = self._checked_info(video_id, path)
        failure = self._truncation(video_id, info)
        if failure is None:
            try:
                return self._read_decord(video_id, path, info, mode, rng, offset)
            except VideoOverLimit:
                raise
            except VideoError as exc:
                failure = exc
        return self._read_pyav(video_id, path, failure, mode, rng, offset)

    def _count(self, video_id: str) -> int:
        path = self.path(video_id)
        failure = self._truncation(video_id, self._checked_info(video_id, path))
        if failure is None:
            try:
                count = len(self._open(video_id, path))
                self._check_frames(video_id, count, str(path))
                return count
            except VideoOverLimit:
                raise
            except VideoError as exc:
                failure = exc
        result = decode_sequentially(path)
        if result.count == 0:
            raise self._both_failed(video_id, path, failure, result.error)
        self._check_frames(video_id, result.count, str(path))
        return result.count

    @staticmethod
    def _truncation(video_id: str, info: Mp4Info | None) -> VideoError | None:
        """The (unraised) error that sends a cut file straight to PyAV; ``None`` for an intact or unknown file."""
        if info is None or not info.truncated:
            return None
        return VideoError(video_id, f"skipped: truncated ({info.file_size} of {info.data_end} bytes)", "corrupt")

    def _read_decord(self, video_id: str, path: Path, info: Mp4Info | None, mode: SamplingMode,
                     rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        """The fast path; VideoError (``corrupt``: cannot open, ``decode``: cannot decode) on any failure."""
        size = self.decode_size(path, info)
        reader = self._open(video_id, path, size)
        self._check_frames(video_id, len(reader), str(path))
        indices = self._indices(len(reader), mode, rng, offset)
        try:
            return self._decode(reader, indices)
        except Exception as exc:
            error = exc
        del reader
        if size != (-1, -1):  # decord's resize-on-decode rejects some target sizes: retry at the native size
            try:
                return self._decode(self._open(video_id, path), indices)
            except VideoError:
                raise
            except Exception as exc:
                error = exc
        raise VideoError(video_id, _describe(error), "decode")

    def _read_pyav(self, video_id: str, path: Path, failure: VideoError, mode: SamplingMode,
                   rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        """The rare path: count the decodable head of the file, then decode the sample from it."""
        counted = decode_sequentially(path)
        if counted.count == 0:
            raise self._both_failed(video_id, path, failure, counted.error)
        self._check_frames(video_id, counted.count, str(path))
        indices = self._indices(counted.count, mode, rng, offset)
        result = decode_sequentially(path, indices, self.resize_size, stop=indices[-1])
        if len(result.frames) != len(indices):  # cannot happen for a deterministic decoder
            raise self._both_failed(video_id, path, failure, result.error or "frames changed between two decodes")
        logger.debug("video %s: decord %s; PyAV decoded %d frames (%s)", video_id, failure.reason, counted.count,
                     counted.error or "to the end")
        return stack_frames([result.frames[i] for i in indices])

    @staticmethod
    def _both_failed(video_id: str, path: Path, failure: VideoError, pyav_error: str | None) -> VideoError:
        details = f"decord {failure.reason}; PyAV: {pyav_error or 'no frames'}".replace(str(path), path.name)
        return VideoError(video_id, f"{path}: {details}", failure.kind)

    def _open(self, video_id: str, path: Path, size: tuple[int, int] = (-1, -1)) -> Any:
        """A decord reader decoding to ``size`` = ``(width, height)`` (``(-1, -1)``: native size)."""
        import decord

        decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own messages; failures are reported by us

        width, height = size
        try:
            return decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=self.decode_threads, width=width,
                                      height=height)
        except Exception as exc:  # RuntimeError, DECORDError, AssertionError (zero frames) ...
            raise VideoError(video_id, f"cannot open: {_describe(exc)}", "corrupt") from None

    def _decode(self, reader: Any, indices: list[int]) -> torch.Tensor:
        array = reader.get_batch(indices).asnumpy()  # [T, H, W, 3] at the decode size
        return resize_shorter_side(torch.from_numpy(array).permute(0, 3, 1, 2), self.resize_size)


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
