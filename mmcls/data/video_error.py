"""The error every frame source raises for a video it cannot read, with its reason kept to one short line.

:class:`VideoError` carries the failure ``kind`` (missing, empty, corrupt, decode, timeout) that
:class:`~mmcls.data.frames.FrameLoader` counts and reports. It lives apart from the sources so that the decoders
(:mod:`mmcls.data.mp4`) and the data checks (:mod:`mmcls.data.check`) can use it and :func:`_describe` without
importing every source. Reasons are collapsed to one line of at most :data:`MAX_REASON_CHARS`: decord's and PyAV's
messages carry log prefixes, errnos and C++ stack traces.
"""

from __future__ import annotations

import re
from typing import Any, Literal

FailureKind = Literal["missing", "empty", "corrupt", "decode", "timeout"]
MAX_REASON_CHARS = 300
_NOISE = re.compile(r"\[\d\d:\d\d:\d\d\] \S+:\d+: |\[Errno -?\d+\] ")  # decord log prefixes, PyAV errnos


def _shorten(text: str, limit: int) -> str:
    """``text`` on one line (whitespace collapsed), at most ``limit`` characters (middle elided)."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 3
    return f"{text[:head]} ... {text[len(text) - (limit - 5 - head):]}"


def _describe(exc: BaseException, limit: int = 120) -> str:
    """``Type: first line of the message``, short (decord messages carry log prefixes and C++ stack traces)."""
    lines = str(exc).strip().splitlines()
    text = _NOISE.sub("", lines[0]) if lines else ""
    return _shorten(f"{type(exc).__name__}: {text}" if text else type(exc).__name__, limit)


class VideoError(Exception):
    """A video that cannot be read; ``kind`` is one of missing, empty, corrupt, decode, timeout.

    ``reason`` is kept to one short line (at most :data:`MAX_REASON_CHARS`).
    """

    def __init__(self, video_id: str, reason: str, kind: FailureKind = "decode") -> None:
        reason = _shorten(reason, MAX_REASON_CHARS)
        self.video_id, self.reason, self.kind = video_id, reason, kind
        super().__init__(f"video {video_id}: {kind}: {reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.video_id, self.reason, self.kind)


class VideoOverLimit(VideoError):
    """A video over a per-video cap (``data.max_video_bytes``, ``data.max_video_frames``): ``corrupt``, found before
    it is read, and never retried with another decoder."""
