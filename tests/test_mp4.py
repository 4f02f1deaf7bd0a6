"""The mp4 header parser and PyAV's sequential decoder (:mod:`mmcls.data.mp4`) on real files, whole and cut."""

from __future__ import annotations

import av
import numpy as np

from mmcls.data.mp4 import decode_sequentially, mp4_info
from tests.media import decodable_head, write_cut_mp4, write_mp4


def test_mp4_info_reads_the_header_boxes(tmp_path):
    plain = write_mp4(tmp_path / "plain.mp4", n=12, height=36, width=80)
    faststart = write_mp4(tmp_path / "fs.mp4", n=12, height=36, width=80, faststart=True)
    for path in (plain, faststart):
        info = mp4_info(path)
        with av.open(str(path)) as container:
            packets = [(p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]
        assert info is not None and (info.width, info.height, info.frames) == (80, 36, 12)
        assert info.data_end == max(pos + size for pos, size in packets) and not info.truncated
    cut = write_cut_mp4(tmp_path / "cut.mp4")
    info = mp4_info(cut)
    assert info is not None and info.frames == 16 and info.truncated and info.file_size == cut.stat().st_size
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (tmp_path / "text.mp4").write_bytes(b"this is not a video\n" * 20)
    data = plain.read_bytes()
    (tmp_path / "nomoov.mp4").write_bytes(data[: len(data) // 2])  # moov at the end is lost
    for name in ("junk.mp4", "text.mp4", "nomoov.mp4", "absent.mp4"):
        assert mp4_info(tmp_path / name) is None


def test_decode_sequentially_stops_at_the_first_error_and_never_raises(tmp_path):
    path = write_cut_mp4(tmp_path / "cut.mp4")
    full = decode_sequentially(path)
    assert full.count == decodable_head(path) and full.error is not None and full.frames == {}
    part = decode_sequentially(path, [0, 3], short_side=16, stop=3)
    assert part.count == 4 and part.error is None and sorted(part.frames) == [0, 3]
    assert part.frames[3].shape == (3, 16, 16)
    assert decode_sequentially(tmp_path / "absent.mp4").count == 0
