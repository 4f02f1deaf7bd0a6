"""Real test media shared by the frame tests: JPEG bytes and H.264 mp4 files (whole or cut), written with PIL and PyAV.

Frame ``i`` of every generated video has mean brightness ``level(i)``, so decoded frame order can be checked.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
from PIL import Image


def level(i: int) -> int:
    """Brightness that encodes frame index ``i``."""
    return 20 + 6 * i


def frame_array(i: int, height: int, width: int, noise: bool = False) -> np.ndarray:
    """An RGB frame of brightness ``level(i)``; ``noise`` adds texture (mean-preserving) so codecs do real work."""
    frame = np.full((height, width, 3), level(i), dtype=np.int16)
    if noise:
        frame += np.random.default_rng(i).integers(-8, 9, frame.shape, dtype=np.int16)
    return frame.clip(0, 255).astype(np.uint8)


def jpeg_bytes(array: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=95, **kwargs)
    return buf.getvalue()


def write_mp4(path: Path, n: int, height: int = 64, width: int = 64, faststart: bool = False) -> Path:
    """A real H.264 mp4 written with PyAV."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_array(i, height, width, noise=True), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_cut_mp4(path: Path, n: int = 16, keep: int = 5) -> Path:
    """A faststart mp4 cut ``keep`` bytes into its last packet: it still claims ``n`` frames, its tail is broken."""
    write_mp4(path, n=n, faststart=True)
    with av.open(str(path)) as container:
        last = [p.pos for p in container.demux(container.streams.video[0]) if p.size][-1]
    path.write_bytes(path.read_bytes()[: last + keep])
    return path


def decodable_head(path: Path) -> int:
    """Frames PyAV decodes, in order, before the first error (independent of mmcls)."""
    count = 0
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(container.streams.video[0]):
                count += 1
    except av.FFmpegError:
        pass
    return count
