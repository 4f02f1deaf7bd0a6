"""mp4 files without a full decode: the header (``moov`` box) parser and PyAV's sequential decoder.

:func:`mp4_info` reads a video track's coded size, sample count and where its sample data ends from the ISO BMFF
header boxes: a small parser (~0.06 ms) instead of a PyAV probe (0.4-2 ms) gives
:class:`~mmcls.data.frames.Mp4FrameSource` its decode size, and shows when a file was cut (its sample table points
past the end of the file). :func:`decode_sequentially` is the deterministic fallback for such a file, or one that
decord fails on: PyAV decodes it in order up to the first error, so the same file always gives the same frames.
:func:`_probe_size` asks PyAV for the size of a container the parser does not read.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from mmcls.data.transforms import resize_shorter_side
from mmcls.data.video_error import _describe

MAX_MOOV_BYTES = 64 << 20
MAX_TOP_LEVEL_BOXES = 64
MAX_SAMPLES = 1 << 24  # more frames than any real video (a week at 25 fps): the header is garbage
_BOX = struct.Struct(">I4s")


class Mp4Info(NamedTuple):
    """What an mp4's ``moov`` box says about its first video track."""

    width: int  # coded size from the sample description (0: unknown)
    height: int
    frames: int  # samples in the track (0 for a fragmented mp4)
    data_end: int | None  # byte offset just past the track's last sample (None: no sample table)
    file_size: int

    @property
    def truncated(self) -> bool:
        """Whether the track's samples run past the end of the file (the file was cut)."""
        return self.data_end is not None and self.data_end > self.file_size


def mp4_info(path: Path) -> Mp4Info | None:
    """Parse the ``moov`` box of an mp4/mov file; ``None`` if it is not one, or has no (readable) video track."""
    try:
        with open(path, "rb") as f:
            file_size = os.fstat(f.fileno()).st_size
            moov = _read_top_level_box(f, b"moov", file_size)
            return None if moov is None else _video_track_info(moov, file_size)
    except (OSError, ValueError, IndexError, struct.error):
        return None


def _read_top_level_box(f: io.BufferedReader, kind: bytes, file_size: int) -> bytes | None:
    """The payload of the first top-level box ``kind``, seeking over the others (e.g. ``mdat``).

    Gives up (``None``) on a box type that is not printable ASCII (not an mp4) or after :data:`MAX_TOP_LEVEL_BOXES`.
    """
    pos = 0
    for _ in range(MAX_TOP_LEVEL_BOXES):
        if pos + 8 > file_size:
            return None
        f.seek(pos)
        head = f.read(16)
        size, box = _BOX.unpack_from(head)
        if not all(32 <= c < 127 for c in box):
            return None
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", head, 8)[0], 16
        elif size == 0:
            size = file_size - pos
        if size < header:
            return None
        if box == kind:
            if size > MAX_MOOV_BYTES or pos + size > file_size:
                return None
            f.seek(pos + header)
            return f.read(size - header)
        pos += size
    return None


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """``(type, payload_start, payload_end)`` of the boxes in ``data[start:end]``; ValueError if malformed."""
    pos = start
    while pos + 8 <= end:
        size, box = _BOX.unpack_from(data, pos)
        header = 8
        if size == 1:
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"malformed {box!r} box")
        yield box, pos + header, pos + size
        pos += size


def _children(data: bytes, start: int, end: int) -> dict[bytes, tuple[int, int]]:
    """The first child box of each type inside ``data[start:end]``."""
    found: dict[bytes, tuple[int, int]] = {}
    for box, s, e in _boxes(data, start, end):
        found.setdefault(box, (s, e))
    return found


def _video_track_info(moov: bytes, file_size: int) -> Mp4Info | None:
    """:class:`Mp4Info` of the first ``trak`` whose handler is ``vide``."""
    for box, s, e in _boxes(moov, 0, len(moov)):
        if box != b"trak" or (mdia := _children(moov, s, e).get(b"mdia")) is None:
            continue
        parts = _children(moov, *mdia)
        if b"hdlr" not in parts or moov[parts[b"hdlr"][0] + 8:parts[b"hdlr"][0] + 12] != b"vide":
            continue
        stbl = _children(moov, *parts[b"minf"]).get(b"stbl") if b"minf" in parts else None
        return None if stbl is None else _sample_table_info(moov, _children(moov, *stbl), file_size)
    return None


def _sample_table_info(data: bytes, stbl: dict[bytes, tuple[int, int]], file_size: int) -> Mp4Info:
    """Size (``stsd``), sample count (``stsz``) and end of sample data (``stsz``+``stsc``+``stco``/``co64``)."""
    width = height = 0
    stsd = stbl.get(b"stsd")
    if stsd is not None and stsd[1] - stsd[0] >= 8 + 36 and struct.unpack_from(">I", data, stsd[0] + 4)[0] > 0:
        width, height = struct.unpack_from(">HH", data, stsd[0] + 8 + 32)  # VisualSampleEntry fields
    frames, sizes = _sample_sizes(data, stbl[b"stsz"]) if b"stsz" in stbl else (0, None)
    data_end = None
    offsets_box = stbl.get(b"co64", stbl.get(b"stco"))
    if frames and sizes is not None and offsets_box is not None and b"stsc" in stbl:
        offsets = _table(data, offsets_box, ">u8" if b"co64" in stbl else ">u4", 1)[:, 0].astype(np.int64)
        data_end = _data_end(offsets, _table(data, stbl[b"stsc"], ">u4", 3), sizes)
    return Mp4Info(int(width), int(height), frames, data_end, file_size)


def _table(data: bytes, box: tuple[int, int], dtype: str, columns: int) -> np.ndarray:
    """A full box's ``entry_count``-row table of ``columns`` big-endian integers."""
    start, end = box
    count = struct.unpack_from(">I", data, start + 4)[0]
    size = count * columns * np.dtype(dtype).itemsize
    if start + 8 + size > end:
        raise ValueError("sample table runs past its box")
    return np.frombuffer(data, dtype, count * columns, start + 8).reshape(count, columns)


def _sample_sizes(data: bytes, box: tuple[int, int]) -> tuple[int, np.ndarray]:
    """``(sample_count, sizes)`` from ``stsz`` (one constant size expanded)."""
    start, end = box
    constant, count = struct.unpack_from(">II", data, start + 4)
    if count > MAX_SAMPLES:
        raise ValueError(f"stsz claims {count} samples")
    if constant:
        return count, np.full(count, constant, dtype=np.int64)
    if start + 12 + 4 * count > end:
        raise ValueError("stsz runs past its box")
    return count, np.frombuffer(data, ">u4", count, start + 12).astype(np.int64)


def _data_end(offsets: np.ndarray, stsc: np.ndarray, sizes: np.ndarray) -> int | None:
    """The largest ``chunk offset + bytes of its samples``; ``None`` if the tables disagree."""
    first_chunks = stsc[:, 0].astype(np.int64)
    if len(offsets) == 0 or len(first_chunks) == 0 or first_chunks[0] != 1 or np.any(np.diff(first_chunks) <= 0):
        return None
    runs = np.diff(np.append(np.minimum(first_chunks, len(offsets) + 1), len(offsets) + 1))
    per_chunk = np.repeat(stsc[:, 1].astype(np.int64), np.maximum(runs, 0))
    ends = np.cumsum(per_chunk)
    if len(per_chunk) != len(offsets) or ends[-1] != len(sizes):
        return None
    cumulative = np.concatenate([[0], np.cumsum(sizes)])
    return int(np.max(offsets + cumulative[ends] - cumulative[ends - per_chunk]))


class PyAVDecode(NamedTuple):
    """Result of :func:`decode_sequentially`."""

    count: int  # frames decoded before the first error (or before stopping)
    frames: dict[int, torch.Tensor]  # the wanted ones, uint8 [3, H, W], already resized
    error: str | None  # what ended decoding early (None: the end of the stream, or ``stop``)


def decode_sequentially(path: Path, wanted: Iterable[int] = (), short_side: int | None = None,
                        stop: int | None = None) -> PyAVDecode:
    """Decode the first video stream of ``path`` with PyAV, single-threaded, in order, until the first error.

    Keeps the frames whose index is in ``wanted`` (shorter side resized to ``short_side``); stops after frame
    ``stop``. Deterministic: the same file always gives the same frames. Never raises.
    """
    import av

    keep, kept, count = set(wanted), dict[int, torch.Tensor](), 0
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return PyAVDecode(0, {}, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = "NONE", 1
            for frame in container.decode(stream):
                if count in keep:
                    image = torch.from_numpy(frame.to_ndarray(format="rgb24")).permute(2, 0, 1)
                    kept[count] = resize_shorter_side(image, short_side)
                count += 1
                if stop is not None and count > stop:
                    break
    except Exception as exc:  # av.FFmpegError and friends: the frames so far are the usable head
        return PyAVDecode(count, kept, _describe(exc))
    return PyAVDecode(count, kept, None)


def _probe_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` from PyAV's probe of a container the mp4 parser does not read; ``(0, 0)`` on failure."""
    try:
        import av

        with av.open(str(path)) as container:
            context = container.streams.video[0].codec_context
            return int(context.width or 0), int(context.height or 0)
    except Exception:
        return 0, 0
