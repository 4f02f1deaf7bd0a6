"""Frame sources on REAL files (zip of JPEGs, mp4 via PyAV, JPEG folders, feats zip) and every kind of broken video.

Frame ``i`` of every generated video has mean brightness ``level(i)`` (see :mod:`tests.media`), so decoded frame
order can be checked.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import pickle
import threading
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from mmcls.config import DataConfig
from mmcls.data import frames as frames_module
from mmcls.data.dataset import ForkSafeDataLoader, init_worker
from mmcls.data.feature_source import FeatsFrameSource
from mmcls.data.frames import (
    FRAME_SOURCES,
    FrameLoader,
    JpegDirFrameSource,
    Mp4FrameSource,
    ZipFrameSource,
    build_frame_source,
)
from mmcls.data.sampling import sample_frame_indices
from mmcls.data.video_error import MAX_REASON_CHARS, VideoError
from tests.media import decodable_head, frame_array, jpeg_bytes, level, write_cut_mp4, write_mp4

SPLIT = "labeled"
# mmcls silences torchvision 0.29's per-call deprecation of decode_jpeg at import; pytest resets filters per test
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


# ----------------------------------------------------------------------------------------------------------------
# test media laid out as each source expects (frames and videos from tests.media)


def zip_path(root: Path, video_id: str) -> Path:
    return root / "zip_frames" / SPLIT / video_id[-3:] / f"{video_id}.zip"


def write_zip(root: Path, video_id: str, n: int, height: int = 48, width: int = 64,
              names: list[str] | None = None) -> Path:
    """A zip of ``n`` JPEG frames; member names are written in shuffled order (the reader must sort them)."""
    path = zip_path(root, video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = names or [f"{i:04d}.jpg" for i in range(n)]
    order = np.random.default_rng(0).permutation(n)
    with zipfile.ZipFile(path, "w") as zf:
        for i in order:
            zf.writestr(names[i], jpeg_bytes(frame_array(int(i), height, width)))
    return path


def mp4_path(root: Path, video_id: str) -> Path:
    return root / "videos" / SPLIT / f"{video_id}.mp4"


def write_jpeg_dir(root: Path, video_id: str, n: int, height: int = 48, width: int = 64) -> Path:
    folder = root / "jpeg_frames" / SPLIT / video_id
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:04d}.jpg").write_bytes(jpeg_bytes(frame_array(i, height, width)))
    return folder


def feat_rows(n: int, dim: int) -> np.ndarray:
    """Row ``i`` is filled with ``i`` (exact in float16)."""
    return np.repeat(np.arange(n, dtype=np.float16)[:, None], dim, axis=1)


def write_feats(root: Path, videos: dict[str, np.ndarray]) -> Path:
    path = root / "feats" / f"{SPLIT}.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for video_id, array in videos.items():
            buf = io.BytesIO()
            np.save(buf, array)
            zf.writestr(f"{video_id}.npy", buf.getvalue())
    return path


def means(frames: torch.Tensor) -> list[float]:
    return frames.reshape(frames.shape[0], -1).float().mean(1).tolist()


def assert_levels(frames: torch.Tensor, indices: list[int], tol: float = 3.0) -> None:
    """Decoded frames are the frames ``indices``, in that order."""
    got = means(frames)
    assert len(got) == len(indices)
    for value, i in zip(got, indices, strict=True):
        assert abs(value - level(i)) <= tol, (got, [level(i) for i in indices])


def config(root: Path, source: str, **kwargs) -> DataConfig:
    return DataConfig(root=str(root), frame_source=source, **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------------------------
# good videos


@pytest.mark.parametrize("mode", ["uniform", "random", "segment"])
def test_zip_source_reads_sampled_frames_in_sorted_member_order(tmp_path, mode):
    write_zip(tmp_path, "v123456", n=20)
    source = ZipFrameSource(tmp_path, SPLIT, max_frames=6, resize_size=None)
    frames = source.read("v123456", mode, np.random.default_rng(3))
    assert frames.shape == (6, 3, 48, 64) and frames.dtype == torch.uint8
    expected = sample_frame_indices(20, 6, mode, np.random.default_rng(3))
    assert_levels(frames, expected)


def test_zip_source_decodes_only_the_sampled_members(tmp_path, monkeypatch):
    write_zip(tmp_path, "v1", n=30)
    read = []
    original = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, pwd=None: read.append(name) or original(self, name))
    ZipFrameSource(tmp_path, SPLIT, max_frames=4).read("v1", "uniform")
    assert read == ["0000.jpg", "0007.jpg", "0014.jpg", "0021.jpg"]


def test_zip_source_resizes_the_shorter_side_and_keeps_few_frames(tmp_path):
    write_zip(tmp_path, "abc", n=3, height=40, width=60)
    frames = ZipFrameSource(tmp_path, SPLIT, max_frames=8, resize_size=32).read("abc")
    assert frames.shape == (3, 3, 32, 48)
    assert_levels(frames, [0, 1, 2])


def test_zip_source_ignores_non_jpeg_members_and_uses_frame_dir(tmp_path):
    path = tmp_path / "frames2" / SPLIT / "v42" / "xv42.zip"
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("notes.txt", b"hello")
        zf.writestr("frames/", b"")
        for i in (2, 0, 1):
            zf.writestr(f"frames/{i:03d}.JPG", jpeg_bytes(frame_array(i, 16, 16)))
    source = build_frame_source(config(tmp_path, "zip", frame_dir="frames2", max_frames=8, frame_size=16), SPLIT)
    assert_levels(source.read("xv42"), [0, 1, 2])


def test_zip_and_jpeg_dir_sources_skip_macos_junk(tmp_path):
    """Finder zips carry __MACOSX/ folders and ._* resource forks named like frames: they are not frames."""
    junk = b"\x00\x05\x16\x07 AppleDouble resource fork"
    path = zip_path(tmp_path, "mac1")
    path.parent.mkdir(parents=True)
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(3):
            zf.writestr(f"frames/{i:04d}.jpg", jpeg_bytes(frame_array(i, 16, 16)))
            zf.writestr(f"__MACOSX/frames/._{i:04d}.jpg", junk)
        zf.writestr("frames/._0000.jpg", junk)
        zf.writestr("._0000.jpg", junk)
    source = ZipFrameSource(tmp_path, SPLIT, max_frames=8)
    assert source.count_frames("mac1") == 3
    assert_levels(source.read("mac1"), [0, 1, 2])
    with zipfile.ZipFile(write_zip(tmp_path, "onlyjunk", n=0), "w") as zf:
        zf.writestr("__MACOSX/._0000.jpg", junk)
    with pytest.raises(VideoError) as info:
        source.read("onlyjunk")
    assert info.value.kind == "empty"

    folder = write_jpeg_dir(tmp_path, "mac2", n=3, height=16, width=16)
    (folder / "._0000.jpg").write_bytes(junk)
    (folder / "._0001.jpg").write_bytes(junk)
    (folder / "sub.jpg").mkdir()  # a folder named like a frame is not one
    jpeg = JpegDirFrameSource(tmp_path, SPLIT, max_frames=8)
    assert jpeg.count_frames("mac2") == 3
    assert_levels(jpeg.read("mac2"), [0, 1, 2])


@pytest.mark.parametrize(("height", "width", "resize", "expected"), [(64, 64, 32, (32, 32)), (48, 64, 36, (36, 48))])
def test_mp4_source_decodes_in_order_and_resizes(tmp_path, monkeypatch, height, width, resize, expected):
    """decord rejects some resize-on-decode sizes (64x48 -> 48x36): it retries at the native size, not PyAV."""
    monkeypatch.setattr(frames_module, "decode_sequentially", lambda *a, **k: pytest.fail("PyAV fallback used"))
    write_mp4(mp4_path(tmp_path, "m1"), n=24, height=height, width=width)
    source = Mp4FrameSource(tmp_path, SPLIT, max_frames=8, resize_size=resize)
    frames = source.read("m1", "uniform")
    assert frames.shape == (8, 3, *expected) and frames.dtype == torch.uint8 and frames.is_contiguous()
    assert_levels(frames, list(range(0, 24, 3)))
    rng_frames = source.read("m1", "segment", np.random.default_rng(1))
    assert_levels(rng_frames, sample_frame_indices(24, 8, "segment", np.random.default_rng(1)))


def test_mp4_source_resizes_while_decoding(tmp_path, monkeypatch):
    write_mp4(mp4_path(tmp_path, "big"), n=8, height=48, width=64)
    source = Mp4FrameSource(tmp_path, SPLIT, max_frames=4, resize_size=24)
    probes = []
    original_probe = frames_module._probe_size
    monkeypatch.setattr(frames_module, "_probe_size", lambda path: probes.append(path) or original_probe(path))
    assert source.decode_size(mp4_path(tmp_path, "big")) == (32, 24)  # decord gets (width, height)
    assert Mp4FrameSource(tmp_path, SPLIT, 4, resize_size=48).decode_size(mp4_path(tmp_path, "big")) == (-1, -1)
    assert probes == []  # an mp4's size comes from its header boxes, without opening it with PyAV
    assert source.decode_size(tmp_path / "nothing.mp4") == (-1, -1)  # the open then reports the real error
    calls = []
    original = Mp4FrameSource.decode_size

    def spy(self, path, info=None):
        calls.append(original(self, path, info))
        return calls[-1]

    Mp4FrameSource.decode_size = spy
    try:
        frames = source.read("big")
    finally:
        Mp4FrameSource.decode_size = original
    assert calls == [(32, 24)] and frames.shape == (4, 3, 24, 32)
    assert_levels(frames, [0, 2, 4, 6])


def test_mp4_source_short_video_gives_all_frames(tmp_path):
    write_mp4(mp4_path(tmp_path, "short"), n=5)
    frames = Mp4FrameSource(tmp_path, SPLIT, max_frames=8).read("short", "random", np.random.default_rng(0))
    assert_levels(frames, [0, 1, 2, 3, 4])


def test_jpeg_dir_source(tmp_path):
    write_jpeg_dir(tmp_path, "d1", n=10)
    source = JpegDirFrameSource(tmp_path, SPLIT, max_frames=4, resize_size=24)
    frames = source.read("d1", "uniform")
    assert frames.shape == (4, 3, 24, 32)
    assert_levels(frames, [0, 2, 4, 6])


def test_feats_source_samples_rows(tmp_path):
    write_feats(tmp_path, {"f1": feat_rows(20, 6), "f2": feat_rows(3, 6).astype(np.float32)})
    source = FeatsFrameSource(tmp_path, SPLIT, max_frames=5)
    feats = source.read("f1", "uniform")
    assert feats.dtype == torch.float16 and feats.shape == (5, 6)
    assert feats[:, 0].tolist() == [0, 4, 8, 12, 16]
    short = source.read("f2", "random", np.random.default_rng(0))
    assert short.dtype == torch.float16 and short[:, 0].tolist() == [0, 1, 2]


def test_feats_float32_and_float64_come_out_float16_and_other_types_are_corrupt(tmp_path):
    write_feats(tmp_path, {"f32": feat_rows(4, 3).astype(np.float32), "f64": feat_rows(4, 3).astype(np.float64),
                           "big": np.full((2, 3), 1e6, np.float32), "nan": np.full((2, 3), np.nan, np.float16),
                           "ints": np.ones((2, 3), np.int64), "be": feat_rows(4, 3).astype(">f4")})
    source = FeatsFrameSource(tmp_path, SPLIT, max_frames=4)
    for video_id in ("f32", "f64", "be"):
        feats = source.read(video_id)
        assert feats.dtype == torch.float16 and feats[:, 0].tolist() == [0, 1, 2, 3]
    for video_id in ("big", "nan", "ints"):
        with pytest.raises(VideoError) as info:
            source.read(video_id)
        assert info.value.kind == "corrupt", video_id


def test_feats_feature_dim_is_given_or_probed_once_and_enforced(tmp_path, monkeypatch):
    write_feats(tmp_path, {"a": feat_rows(3, 6), "b": feat_rows(2, 6), "wide": feat_rows(2, 8)})
    source = FeatsFrameSource(tmp_path, SPLIT, max_frames=4)
    probes = []
    original = FeatsFrameSource._probe_dim
    monkeypatch.setattr(FeatsFrameSource, "_probe_dim", lambda self, zf: probes.append(1) or original(self, zf))
    assert source.feature_dim() == 6
    assert source.read("a").shape == (3, 6) and source.read("b").shape == (2, 6)
    with pytest.raises(VideoError) as info:
        source.read("wide")  # would break the batch's [B, T, D] stack
    assert info.value.kind == "corrupt" and "8" in info.value.reason and "6" in info.value.reason
    assert probes == [1]  # once per process
    clone = pickle.loads(pickle.dumps(source))
    assert clone.feature_dim() == 6 and probes == [1]
    given = FeatsFrameSource(tmp_path, SPLIT, max_frames=4, feat_dim=8)
    assert given.feature_dim() == 8 and given.read("wide").shape == (2, 8)
    with pytest.raises(VideoError):
        given.read("a")
    assert FeatsFrameSource(tmp_path, "no_such_split", max_frames=4).feature_dim() is None  # no exception
    with pytest.raises(ValueError):
        FeatsFrameSource(tmp_path, SPLIT, max_frames=4, feat_dim=0)


def test_feats_probe_outvotes_an_odd_first_member_and_skips_broken_ones(tmp_path, caplog):
    videos = {"odd": feat_rows(2, 3), "flat": np.zeros(4, np.float16)}
    videos.update({f"v{i}": feat_rows(2, 5) for i in range(4)})
    write_feats(tmp_path, videos)
    assert FeatsFrameSource(tmp_path, SPLIT, max_frames=4).feature_dim() == 5
    other = tmp_path / "other"
    write_feats(other, {"flat": np.zeros(4, np.float16)})
    with caplog.at_level(logging.WARNING, logger="mmcls.data"):
        assert FeatsFrameSource(other, SPLIT, max_frames=4).feature_dim() is None
    assert "feat_dim" in caplog.text


def test_feats_from_config_reads_feat_dim(tmp_path):
    write_feats(tmp_path, {"a": feat_rows(3, 6)})
    assert FeatsFrameSource.from_config(config(tmp_path, "feats"), SPLIT).feature_dim() == 6  # probed
    assert FeatsFrameSource.from_config(config(tmp_path, "feats", feat_dim=12), SPLIT).feature_dim() == 12


def test_feats_source_reopens_after_pickling(tmp_path):
    write_feats(tmp_path, {"f1": feat_rows(4, 2)})
    source = FeatsFrameSource(tmp_path, SPLIT, max_frames=4)
    source.read("f1")
    clone = pickle.loads(pickle.dumps(source))
    assert clone._zip is None
    assert clone.read("f1")[:, 0].tolist() == [0, 1, 2, 3]


def test_count_frames_for_every_source(tmp_path):
    write_zip(tmp_path, "c1", n=7)
    write_mp4(mp4_path(tmp_path, "c1"), n=9)
    write_jpeg_dir(tmp_path, "c1", n=5)
    write_feats(tmp_path, {"c1": feat_rows(11, 3)})
    expected = {"zip": 7, "mp4": 9, "jpeg": 5, "feats": 11}
    for name, count in expected.items():
        source = build_frame_source(config(tmp_path, name, max_frames=4), SPLIT)
        assert source.count_frames("c1") == count
        with pytest.raises(VideoError) as info:
            source.count_frames("absent")
        assert info.value.kind == "missing"


def test_builder_maps_every_name_and_passes_the_config(tmp_path):
    assert set(FRAME_SOURCES) == {"zip", "mp4", "jpeg", "feats"}
    for name, cls in FRAME_SOURCES.items():
        source = build_frame_source(config(tmp_path, name, max_frames=5, frame_size=112, decode_threads=2), "test")
        assert type(source) is cls and source.max_frames == 5 and source.split == "test"
        assert source.resize_size == 128  # round(112 * 256 / 224)
    mp4 = build_frame_source(config(tmp_path, "mp4", decode_threads=3, resize_size=300), "x")
    assert isinstance(mp4, Mp4FrameSource) and mp4.decode_threads == 3 and mp4.resize_size == 300
    assert ZipFrameSource(tmp_path, "x", 4).path("12345") == tmp_path / "zip_frames" / "x" / "345" / "12345.zip"
    assert FeatsFrameSource(tmp_path, "x", 4, frame_dir="zip_feats").path("1") == tmp_path / "zip_feats" / "x.zip"


def test_builder_warns_when_the_source_folder_is_missing(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="mmcls.data"):
        build_frame_source(config(tmp_path, "zip"), SPLIT)
    assert "does not exist" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# broken videos: each raises VideoError from the source and becomes (None, reason) in the loader


def _corrupt_zip_cases(root: Path) -> dict[str, str]:
    """Broken zips by id -> expected failure kind."""
    cases = {"missing1": "missing"}
    empty_file = zip_path(root, "zerobyte")
    empty_file.parent.mkdir(parents=True, exist_ok=True)
    empty_file.write_bytes(b"")
    cases["zerobyte"] = "empty"
    good = write_zip(root, "trunc1", n=6).read_bytes()
    zip_path(root, "trunc1").write_bytes(good[: len(good) // 2])
    cases["trunc1"] = "corrupt"
    with zipfile.ZipFile(write_zip(root, "nomembers", n=0), "w"):
        pass
    cases["nomembers"] = "empty"
    path = zip_path(root, "pngonly")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        png = io.BytesIO()
        Image.new("RGB", (8, 8)).save(png, "PNG")
        zf.writestr("0000.png", png.getvalue())
        zf.writestr("readme.txt", b"x")
    cases["pngonly"] = "corrupt"
    path = zip_path(root, "pngnamedjpg")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("0000.jpg", png.getvalue())
    cases["pngnamedjpg"] = "corrupt"
    path = zip_path(root, "badjpeg")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        data = jpeg_bytes(frame_array(0, 32, 32, noise=True))
        zf.writestr("0000.jpg", data[: len(data) // 2])
    cases["badjpeg"] = "decode"
    return cases


def test_broken_zips_raise_video_error_with_their_kind(tmp_path):
    cases = _corrupt_zip_cases(tmp_path)
    source = ZipFrameSource(tmp_path, SPLIT, max_frames=4, resize_size=32)
    for video_id, kind in cases.items():
        with pytest.raises(VideoError) as info:
            source.read(video_id)
        assert info.value.kind == kind, (video_id, info.value)
        assert info.value.video_id == video_id and video_id in str(info.value)


def test_loader_turns_broken_zips_into_counted_logged_failures(tmp_path, caplog):
    cases = _corrupt_zip_cases(tmp_path)
    write_zip(tmp_path, "good1", n=4)
    loader = FrameLoader(ZipFrameSource(tmp_path, SPLIT, max_frames=4, resize_size=32), timeout=5.0)
    with caplog.at_level(logging.WARNING, logger="mmcls.data"):
        for video_id, kind in cases.items():
            frames, error = loader.load(video_id)
            assert frames is None and error is not None and error.startswith(f"{kind}: ")
        frames, error = loader.load("good1")
        assert error is None and frames is not None and frames.shape == (4, 3, 32, 43)
        loader.load("trunc1")  # counted again, not logged again
    expected = {kind: sum(k == kind for k in cases.values()) for kind in set(cases.values())}
    expected["corrupt"] += 1
    assert dict(loader.failures) == expected
    assert loader.num_failures == len(cases) + 1
    records = [r for r in caplog.records if r.name == "mmcls.data"]
    assert len(records) == len(cases)
    for video_id in cases:
        assert sum(video_id in r.getMessage() for r in records) == 1


def test_loader_catches_any_exception_from_a_decoder(tmp_path, monkeypatch):
    write_zip(tmp_path, "v1", n=4)
    source = ZipFrameSource(tmp_path, SPLIT, max_frames=4)

    def explode(*args, **kwargs):
        raise OSError("libjpeg exploded")

    monkeypatch.setattr("mmcls.data.frame_source.decode_jpeg_frame", explode)
    frames, error = FrameLoader(source).load("v1")
    assert frames is None and error == "decode: OSError: libjpeg exploded"


def _write_broken_mp4s(root: Path) -> dict[str, str]:
    cases = {"nofile": "missing"}
    mp4_path(root, "zero").parent.mkdir(parents=True, exist_ok=True)
    mp4_path(root, "zero").write_bytes(b"")
    cases["zero"] = "empty"
    data = write_mp4(mp4_path(root, "cut"), n=30).read_bytes()
    mp4_path(root, "cut").write_bytes(data[: len(data) // 2])  # moov atom at the end is lost
    cases["cut"] = "corrupt"
    mp4_path(root, "junk").write_bytes(np.random.default_rng(0).bytes(4000))
    cases["junk"] = "corrupt"
    mp4_path(root, "text").write_bytes(b"this is not a video\n" * 20)
    cases["text"] = "corrupt"
    return cases


def test_broken_mp4s_become_failures(tmp_path, caplog):
    cases = _write_broken_mp4s(tmp_path)
    loader = FrameLoader(Mp4FrameSource(tmp_path, SPLIT, max_frames=4, resize_size=32), timeout=10.0)
    with caplog.at_level(logging.WARNING, logger="mmcls.data"):
        for video_id, kind in cases.items():
            frames, error = loader.load(video_id)
            assert frames is None and error is not None and error.startswith(f"{kind}: "), (video_id, error)
    assert sum(loader.failures.values()) == len(cases)
    assert all(video_id in caplog.text for video_id in cases)


def spy_decord_opens(monkeypatch) -> list[tuple[int, int]]:
    """Record every decord reader the mp4 source opens (its decode size)."""
    opened: list[tuple[int, int]] = []
    original = Mp4FrameSource._open

    def spy(self, video_id, path, size=(-1, -1)):
        opened.append(size)
        return original(self, video_id, path, size)

    monkeypatch.setattr(Mp4FrameSource, "_open", spy)
    return opened


def test_truncated_mp4_gives_the_same_decodable_head_on_every_read(tmp_path, monkeypatch):
    """decord fails at random on a broken tail (masked in some epochs, not others); the cut is seen in the header
    and PyAV decodes the head deterministically, so every read returns the same frames, in order."""
    path = write_cut_mp4(mp4_path(tmp_path, "fs"), n=16)
    head = decodable_head(path)
    assert 8 <= head < 16
    opened = spy_decord_opens(monkeypatch)
    for max_frames, mode in [(16, "uniform"), (4, "uniform"), (4, "random"), (5, "segment")]:
        source = Mp4FrameSource(tmp_path, SPLIT, max_frames=max_frames, resize_size=32)
        expected = sample_frame_indices(head, max_frames, mode, np.random.default_rng(7))
        reads = [FrameLoader(source).load("fs", mode, np.random.default_rng(7)) for _ in range(5)]
        for frames, error in reads:
            assert error is None and frames is not None and frames.shape == (len(expected), 3, 32, 32)
            assert torch.equal(frames, reads[0].frames)
            assert_levels(frames, expected)  # the head, in time order, never more frames than exist
    assert opened == []  # the header showed the cut: decord (racy on it) was not even tried
    assert Mp4FrameSource(tmp_path, SPLIT, max_frames=4).count_frames("fs") == head


def test_mp4_decord_decode_failure_falls_back_to_pyav(tmp_path, monkeypatch):
    import decord

    write_mp4(mp4_path(tmp_path, "ok"), n=40, height=48, width=64)
    calls = []

    def failing_get_batch(self, indices):
        calls.append(list(indices))
        raise decord.DECORDError("[12:00:00] /src/video.cc:12: broken frame in the middle\nwith a C++ stack")

    monkeypatch.setattr(decord.VideoReader, "get_batch", failing_get_batch)
    frames, error = FrameLoader(Mp4FrameSource(tmp_path, SPLIT, max_frames=4, resize_size=24)).load("ok")
    assert error is None and frames is not None and frames.shape == (4, 3, 24, 32)
    assert_levels(frames, [0, 10, 20, 30])
    assert calls == [[0, 10, 20, 30]] * 2  # decord at the decode size, then at the native size; then PyAV


def test_mp4_decord_open_failure_falls_back_to_pyav(tmp_path, monkeypatch):
    import decord

    write_mp4(mp4_path(tmp_path, "ok"), n=10)

    def failing_reader(*args, **kwargs):
        raise RuntimeError("decord cannot open this")

    monkeypatch.setattr(decord, "VideoReader", failing_reader)
    source = Mp4FrameSource(tmp_path, SPLIT, max_frames=4)
    assert_levels(source.read("ok", "uniform"), [0, 2, 4, 6])
    assert source.count_frames("ok") == 10


def test_mp4_that_neither_decoder_reads_names_both_failures_on_one_short_line(tmp_path, monkeypatch):
    import decord

    write_mp4(mp4_path(tmp_path, "ok"), n=12)

    def failing_get_batch(self, indices):
        raise decord.DECORDError("[12:00:00] /github/src/threaded_decoder.cc:292: synthetic decoder failure\n"
                                 + "  frame #1: a C++ stack\n" * 50)

    def failing_open(*args, **kwargs):
        raise av.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(decord.VideoReader, "get_batch", failing_get_batch)
    monkeypatch.setattr(av, "open", failing_open)
    with pytest.raises(VideoError) as info:
        Mp4FrameSource(tmp_path, SPLIT, max_frames=4).read("ok")
    reason = info.value.reason
    assert info.value.kind == "decode" and "synthetic decoder failure" in reason and "Invalid data" in reason
    assert "decord" in reason and "PyAV" in reason and "\n" not in reason and len(reason) <= MAX_REASON_CHARS
    assert "C++ stack" not in reason and "threaded_decoder.cc" not in reason


def test_truncated_mp4_without_a_decodable_frame_is_corrupt(tmp_path):
    path = write_mp4(mp4_path(tmp_path, "stub"), n=16, faststart=True)
    with av.open(str(path)) as container:
        first = next(p.pos for p in container.demux(container.streams.video[0]) if p.size)
    path.write_bytes(path.read_bytes()[: first + 10])  # the header survives, the frames do not
    frames, error = FrameLoader(Mp4FrameSource(tmp_path, SPLIT, max_frames=4)).load("stub")
    assert frames is None and error is not None and error.startswith("corrupt: ")
    assert "truncated" in error and "PyAV" in error


def test_broken_jpeg_dirs_and_feats(tmp_path):
    jpeg = JpegDirFrameSource(tmp_path, SPLIT, max_frames=4)
    (tmp_path / "jpeg_frames" / SPLIT / "emptydir").mkdir(parents=True)
    for video_id, kind in {"nodir": "missing", "emptydir": "empty"}.items():
        with pytest.raises(VideoError) as info:
            jpeg.read(video_id)
        assert info.value.kind == kind
    empty_rows = np.zeros((0, 4), np.float16)
    write_feats(tmp_path, {"ok": feat_rows(3, 2), "flat": np.zeros(5, np.float16), "none": empty_rows})
    feats = FeatsFrameSource(tmp_path, SPLIT, max_frames=4)
    for video_id, kind in {"absent": "missing", "flat": "corrupt", "none": "empty"}.items():
        with pytest.raises(VideoError) as info:
            feats.read(video_id)
        assert info.value.kind == kind
    nozip = FeatsFrameSource(tmp_path, "other_split", max_frames=4)
    with pytest.raises(VideoError) as info:
        nozip.read("ok")
    assert info.value.kind == "missing"


# ----------------------------------------------------------------------------------------------------------------
# videos over the per-video caps (data.max_video_bytes, data.max_video_frames): broken, found before reading


def _padded_zip(root: Path, video_id: str, n: int, padding: int) -> Path:
    """A zip of ``n`` JPEG frames, each followed by ``padding`` zero bytes: small on disk (deflated), large read."""
    path = zip_path(root, video_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(n):
            zf.writestr(f"{i:04d}.jpg", jpeg_bytes(frame_array(i, 48, 64)) + bytes(padding))
    return path


def test_videos_over_the_caps_are_broken_before_anything_is_read(tmp_path, monkeypatch):
    """A hostile member (a zip bomb, a 5 GB feature array) is refused from the sizes in the zip directory or the file
    system, before it is read: a counted ``corrupt`` failure naming the cap, never an exception or a memory blow-up.
    Videos within the caps read as before."""
    caps = {"max_video_bytes": 100_000, "max_video_frames": 8, "max_frames": 4}
    _padded_zip(tmp_path, "bomb1", n=4, padding=200_000)  # ~5 KB on disk, 800 KB uncompressed
    assert zip_path(tmp_path, "bomb1").stat().st_size < 20_000
    write_zip(tmp_path, "long1", n=9)
    write_zip(tmp_path, "good1", n=8)
    write_jpeg_dir(tmp_path, "long1", n=9)
    write_jpeg_dir(tmp_path, "good1", n=8)
    bomb_dir = write_jpeg_dir(tmp_path, "bomb1", n=4)
    (bomb_dir / "0000.jpg").write_bytes((bomb_dir / "0000.jpg").read_bytes() + bytes(200_000))
    write_mp4(mp4_path(tmp_path, "long1"), n=9)
    write_mp4(mp4_path(tmp_path, "good1"), n=8)
    mp4_path(tmp_path, "bomb1").write_bytes(mp4_path(tmp_path, "good1").read_bytes() + bytes(200_000))
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((1000, 64), np.float16))  # 128 KB, deflated to a few hundred bytes
    with zipfile.ZipFile(write_feats(tmp_path, {"good1": feat_rows(8, 64), "long1": feat_rows(9, 64)}), "a",
                         compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb1.npy", buffer.getvalue())
    reads: list[str] = []
    real_read = zipfile.ZipFile.read
    monkeypatch.setattr(zipfile.ZipFile, "read", lambda self, name, *a: reads.append(str(getattr(
        name, "filename", name))) or real_read(self, name, *a))

    for name in ("zip", "jpeg", "mp4", "feats"):
        source = build_frame_source(config(tmp_path, name, **caps), SPLIT)
        assert (source.max_video_bytes, source.max_video_frames) == (100_000, 8)
        assert source.read("good1").shape[0] == 4, name
        loader = FrameLoader(source)
        for video_id, cap in (("bomb1", "max_video_bytes=100000"), ("long1", "max_video_frames=8")):
            reads.clear()
            frames, error = loader.load(video_id)
            assert frames is None and error.startswith("corrupt: ") and f"over data.{cap}" in error, (name, error)
            assert not any(read.startswith(("bomb1", "0")) for read in reads), (name, reads)  # nothing of it read
        assert loader.failures["corrupt"] == 2
    unlimited = build_frame_source(config(tmp_path, "zip", max_frames=4, max_video_bytes=0, max_video_frames=0), SPLIT)
    assert unlimited.read("bomb1").shape[0] == 4 and unlimited.read("long1").shape[0] == 4  # 0 = no cap: they decode

    from mmcls.config import build_config
    from mmcls.errors import ConfigError

    defaults = build_config({}).data
    assert (defaults.max_video_bytes, defaults.max_video_frames) == (512 << 20, 100_000)
    with pytest.raises(ConfigError, match=r"^data.max_video_bytes: must be >= 0 \(0 = no limit\), got -1$"):
        build_config({}, ["data.max_video_bytes=-1"])


# ----------------------------------------------------------------------------------------------------------------
# hanging decodes


def test_hanging_decode_is_cut_off_by_the_timeout(tmp_path, monkeypatch, caplog):
    write_zip(tmp_path, "hang1", n=4)
    write_zip(tmp_path, "good2", n=4)
    source = ZipFrameSource(tmp_path, SPLIT, max_frames=4, resize_size=16)
    release = threading.Event()
    original = source._read

    def hanging_read(video_id, *args):
        if video_id == "hang1":
            release.wait(30)  # a stuck decoder: C code that releases the GIL but never returns
        return original(video_id, *args)

    monkeypatch.setattr(source, "_read", hanging_read)
    loader = FrameLoader(source, timeout=0.5)
    try:
        with caplog.at_level(logging.WARNING, logger="mmcls.data"):
            start = time.monotonic()
            frames, error = loader.load("hang1")
            elapsed = time.monotonic() - start
        assert frames is None and error is not None and error.startswith("timeout: ")
        assert 0.4 < elapsed < 3.0
        assert loader.failures["timeout"] == 1
        assert "hang1" in caplog.text and "abandoned a decode thread" in caplog.text
        frames, error = loader.load("good2")  # a fresh decode thread serves the next sample
        assert error is None and frames is not None and frames.shape[0] == 4
    finally:
        release.set()


# ----------------------------------------------------------------------------------------------------------------
# inside forked DataLoader workers


class _LoaderDataset(torch.utils.data.Dataset):
    def __init__(self, loader: FrameLoader, ids: list[str]) -> None:
        self.loader, self.ids = loader, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[str, int, str]:
        frames, error = self.loader.load(self.ids[index])
        return self.ids[index], -1 if frames is None else int(frames.shape[0]), error or ""


@pytest.mark.parametrize("source_name", ["zip", "mp4", "feats"])
def test_sources_work_in_forked_workers_after_use_in_the_parent(tmp_path, source_name):
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    ids = [f"id{i:03d}" for i in range(6)]
    for i, video_id in enumerate(ids[:-1]):
        if source_name == "zip":
            write_zip(tmp_path, video_id, n=3 + i, height=16, width=16)
        elif source_name == "mp4":
            write_mp4(mp4_path(tmp_path, video_id), n=3 + i, height=32, width=32)
    if source_name == "feats":
        write_feats(tmp_path, {video_id: feat_rows(3 + i, 4) for i, video_id in enumerate(ids[:-1])})
    loader = FrameLoader.from_config(config(tmp_path, source_name, max_frames=4, frame_size=16), SPLIT)
    assert loader.load(ids[0]).error is None  # handles and the decode thread now exist in the parent
    data = ForkSafeDataLoader(_LoaderDataset(loader, ids), batch_size=None, num_workers=2,
                                       multiprocessing_context="fork", worker_init_fn=init_worker)
    rows = sorted(data)
    assert [count for _, count, _ in rows] == [3, 4, 4, 4, 4, -1]
    assert rows[-1][2].startswith("missing: ")


class _CollectingDataset(torch.utils.data.Dataset):
    """Each item runs the garbage collector in the worker, as a long-running worker eventually does."""

    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int) -> int:
        import gc

        gc.collect()
        return index


def test_forked_workers_never_destroy_decord_readers_left_as_garbage_in_the_parent(tmp_path):
    """A decord reader destroyed in a forked child joins threads that do not exist there: the worker would hang."""
    import decord

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork")
    path = write_mp4(mp4_path(tmp_path, "g"), n=4, height=32, width=32)
    import gc

    gc.disable()  # keep the cycle below uncollected until the fork, as a busy parent process may
    try:
        reader = decord.VideoReader(str(path))
        reader.get_batch([0]).asnumpy()
        cycle: list = [reader]
        cycle.append(cycle)  # a reference cycle: garbage only the cyclic collector frees
        del reader, cycle
        loader = ForkSafeDataLoader(_CollectingDataset(), batch_size=None, num_workers=1,
                                             multiprocessing_context="fork", worker_init_fn=init_worker, timeout=60)
        assert sorted(loader) == [0, 1]
    finally:
        gc.enable()
        gc.collect()
