"""Frame-index sampling: properties of every mode, and the WBDC evaluation rule exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcls.config import DataConfig
from mmcls.data.sampling import SAMPLING_MODES, sample_frame_indices, sampling_mode, segment_bounds

frame_counts = st.integers(min_value=0, max_value=600)
max_frame_counts = st.integers(min_value=1, max_value=64)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


def wbdc_rule(n: int, max_frames: int) -> list[int]:
    """The official WBDC 2022 baseline's evaluation sampling, written out independently."""
    if n <= max_frames:
        return list(range(n))
    step = n // max_frames
    return list(range(0, n, step))[:max_frames]


@settings(max_examples=300, deadline=None)
@given(n=frame_counts, max_frames=max_frame_counts, seed=seeds, mode=st.sampled_from(SAMPLING_MODES),
       offset=st.integers(min_value=0, max_value=100))
def test_every_mode_is_sorted_unique_in_range_with_the_right_count(n, max_frames, seed, mode, offset):
    idx = sample_frame_indices(n, max_frames, mode, np.random.default_rng(seed), offset=offset)
    assert idx == sorted(set(idx))
    assert all(isinstance(i, int) and 0 <= i < n for i in idx)
    assert len(idx) == min(n, max_frames)


@settings(max_examples=300, deadline=None)
@given(n=frame_counts, max_frames=max_frame_counts)
def test_uniform_is_the_official_wbdc_rule(n, max_frames):
    assert sample_frame_indices(n, max_frames, "uniform") == wbdc_rule(n, max_frames)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(min_value=1, max_value=600), max_frames=max_frame_counts, offset=st.integers(0, 1000))
def test_uniform_offset_shifts_the_grid_within_the_stride(n, max_frames, offset):
    idx = sample_frame_indices(n, max_frames, "uniform", offset=offset)
    if n <= max_frames:
        assert idx == list(range(n))
        return
    stride = n // max_frames
    base = wbdc_rule(n, max_frames)
    assert idx == [i + offset % stride for i in base]


@settings(max_examples=300, deadline=None)
@given(n=frame_counts, max_frames=max_frame_counts, seed=seeds)
def test_segment_takes_exactly_one_frame_per_segment(n, max_frames, seed):
    idx = sample_frame_indices(n, max_frames, "segment", np.random.default_rng(seed))
    if n <= max_frames:
        assert idx == list(range(n))
        return
    bounds = segment_bounds(n, max_frames)
    assert len(bounds) == max_frames
    assert bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(hi > lo for lo, hi in bounds)
    assert all(lo <= i < hi for i, (lo, hi) in zip(idx, bounds, strict=True))


@pytest.mark.parametrize("mode", ["random", "segment"])
def test_random_modes_are_reproducible_and_vary(mode):
    a = sample_frame_indices(100, 8, mode, np.random.default_rng(7))
    b = sample_frame_indices(100, 8, mode, np.random.default_rng(7))
    assert a == b
    draws = {tuple(sample_frame_indices(100, 8, mode, np.random.default_rng(s))) for s in range(20)}
    assert len(draws) > 10


def test_random_mode_covers_every_frame():
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(200):
        seen.update(sample_frame_indices(40, 4, "random", rng))
    assert seen == set(range(40))


def test_small_and_empty_videos_give_all_frames():
    for mode in SAMPLING_MODES:
        assert sample_frame_indices(0, 8, mode) == []
        assert sample_frame_indices(5, 8, mode) == [0, 1, 2, 3, 4]
        assert sample_frame_indices(8, 8, mode) == list(range(8))


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="max_frames"):
        sample_frame_indices(10, 0, "uniform")
    with pytest.raises(ValueError, match="num_frames"):
        sample_frame_indices(-1, 4, "uniform")
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample_frame_indices(10, 4, "middle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="offset"):
        sample_frame_indices(10, 4, "uniform", offset=-1)


def test_sampling_mode_follows_the_config():
    assert sampling_mode(DataConfig(train_sampling="segment"), train=True) == "segment"
    assert sampling_mode(DataConfig(train_sampling="segment"), train=False) == "uniform"
    assert sampling_mode(DataConfig(), train=True) == "random"
