"""The frame-source interface: a video id in, uint8 frames (or one error) out; the helpers every source shares."""

from __future__ import annotations

import zipfile
from abc import ABC, abstractmethod
from collections.abc import Iterable
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from mmcls.config import DataConfig
from mmcls.data.jpeg import JPEG_SUFFIXES, NotJPEGError, decode_jpeg_frame, stack_frames
from mmcls.data.sampling import SamplingMode, sample_frame_indices
from mmcls.data.transforms import resolve_resize_size
from mmcls.data.video_error import VideoError, VideoOverLimit, _describe


class FrameSource(ABC):
    """Reads the sampled frames of one video; raises :class:`VideoError` for any data problem.

    Subclasses implement :meth:`_read`; :meth:`read` turns any exception escaping it (PIL, decord, zipfile, numpy
    ...) into a ``decode`` :class:`VideoError`.
    """

    name: ClassVar[str]
    default_dir: ClassVar[str]

    def __init__(self, root: str | Path, split: str, max_frames: int, resize_size: int | None = None,
                 frame_dir: str | None = None, *, max_video_bytes: int = DataConfig.max_video_bytes,
                 max_video_frames: int = DataConfig.max_video_frames) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        if max_video_bytes < 0 or max_video_frames < 0:
            raise ValueError(f"max_video_bytes and max_video_frames must be >= 0 (0 = no limit), got "
                             f"{max_video_bytes} and {max_video_frames}")
        self.root, self.split, self.max_frames, self.resize_size = Path(root), split, max_frames, resize_size
        self.base = self.root / (frame_dir or self.default_dir)
        self.max_video_bytes, self.max_video_frames = max_video_bytes, max_video_frames

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> FrameSource:
        """Build from the data config for annotation split ``split`` (e.g. ``"labeled"``)."""
        return cls(cfg.root, split, cfg.max_frames, resolve_resize_size(cfg), cfg.frame_dir, **video_limits(cfg))

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

    def _check_file(self, video_id: str, path: Path) -> int:
        """The size of ``path``; missing and zero-byte files are their own failure kinds."""
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise VideoError(video_id, f"{path} not found", "missing") from None
        if not path.is_file():
            raise VideoError(video_id, f"{path} is not a file", "missing")
        if size == 0:
            raise VideoError(video_id, f"{path} is empty (0 bytes)", "empty")
        return size

    def _check_bytes(self, video_id: str, size: int, what: str) -> None:
        """``corrupt`` VideoError when ``size`` (bytes of ``what``, known before reading it) exceeds the cap."""
        if self.max_video_bytes and size > self.max_video_bytes:
            raise VideoOverLimit(video_id, f"{what}: {size} bytes, over data.max_video_bytes={self.max_video_bytes}",
                                 "corrupt")

    def _check_frames(self, video_id: str, count: int, what: str) -> None:
        """``corrupt`` VideoError when the video (``what``) has more frames than the cap."""
        if self.max_video_frames and count > self.max_video_frames:
            raise VideoOverLimit(video_id, f"{what}: {count} frames, over data.max_video_frames="
                                 f"{self.max_video_frames}", "corrupt")

    def _decode_jpegs(self, video_id: str, names: list[str], blobs: list[bytes]) -> torch.Tensor:
        """Decode JPEG frames (named for error messages) into uint8 ``[T, 3, H, W]``."""
        frames = []
        for name, blob in zip(names, blobs, strict=True):
            try:
                frames.append(decode_jpeg_frame(blob, self.resize_size))
            except NotJPEGError:
                raise VideoError(video_id, f"frame {name} is not a JPEG", "corrupt") from None
        return stack_frames(frames)


def video_limits(cfg: DataConfig) -> dict[str, int]:
    """The per-video caps of the data config (``data.max_video_bytes``, ``data.max_video_frames``), as the keyword
    arguments every :class:`FrameSource` takes."""
    return {"max_video_bytes": cfg.max_video_bytes, "max_video_frames": cfg.max_video_frames}


def is_macos_junk(name: str) -> bool:
    """``__MACOSX/`` folders and ``._*`` AppleDouble files (resource forks) that macOS adds to zips and folders."""
    parts = name.split("/")
    return "__MACOSX" in parts[:-1] or parts[-1].startswith("._")


def frame_names(video_id: str, where: str, names: Iterable[str]) -> list[str]:
    """The sorted JPEG frame names among the file names ``names`` found in ``where`` (macOS junk ignored).

    Raises :class:`VideoError`: ``empty`` when there are no files, ``corrupt`` when none of them is a JPEG.
    """
    files = [name for name in names if not is_macos_junk(name)]
    if not files:
        raise VideoError(video_id, f"{where} has no files", "empty")
    jpegs = sorted(name for name in files if name.lower().endswith(JPEG_SUFFIXES))
    if not jpegs:
        shown = ", ".join(files[:3]) + (" ..." if len(files) > 3 else "")
        raise VideoError(video_id, f"{where} has no JPEG files ({len(files)} files: {shown})", "corrupt")
    return jpegs


MAX_FRAME_BYTES = 64 << 20  # a JPEG frame claiming more is a corrupt (or hostile) zip, not a frame


def _read_member(video_id: str, zf: zipfile.ZipFile, name: str) -> bytes:
    """One zip member, refusing sizes no video frame has (a zip bomb would exhaust the worker's memory)."""
    size = zf.getinfo(name).file_size
    if size > MAX_FRAME_BYTES:
        raise VideoError(video_id, f"frame {name} claims {size} bytes (> {MAX_FRAME_BYTES})", "corrupt")
    return zf.read(name)
