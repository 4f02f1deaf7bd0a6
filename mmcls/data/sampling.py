"""Frame-index sampling: which frames of an ``n``-frame video a sample uses.

Every mode returns a sorted list of unique indices in ``[0, n)`` of length ``min(n, max_frames)``:

- ``uniform`` (evaluation): the WBDC official rule. All frames when ``n <= max_frames``, else
  ``range(0, n, n // max_frames)[:max_frames]``. ``offset`` shifts the grid start inside the stride (taken modulo
  the stride) for test-time augmentation; ``offset=0`` is the official rule exactly.
- ``random`` (training): a random subset of ``max_frames`` frames kept in time order.
- ``segment`` (training, TSN style): ``max_frames`` equal integer segments, one random frame from each.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal, get_args

import numpy as np

from mmcls.config import DataConfig

SamplingMode = Literal["uniform", "random", "segment"]
SAMPLING_MODES: tuple[str, ...] = get_args(SamplingMode)


def uniform_indices(num_frames: int, max_frames: int, offset: int = 0) -> list[int]:
    """WBDC evaluation rule: a stride of ``n // max_frames`` starting at ``offset % stride``."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    stride = num_frames // max_frames
    start = offset % stride
    return list(range(start, num_frames, stride))[:max_frames]


def random_indices(num_frames: int, max_frames: int, rng: np.random.Generator) -> list[int]:
    """A random sorted subset of ``max_frames`` distinct frames (all frames if there are not more)."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    return sorted(int(i) for i in rng.choice(num_frames, size=max_frames, replace=False))


def segment_bounds(num_frames: int, max_frames: int) -> list[tuple[int, int]]:
    """Half-open ``[start, end)`` bounds of ``max_frames`` near-equal segments (each non-empty when ``n >= max``)."""
    edges = [(i * num_frames) // max_frames for i in range(max_frames + 1)]
    return list(pairwise(edges))


def segment_indices(num_frames: int, max_frames: int, rng: np.random.Generator) -> list[int]:
    """One random frame from each of ``max_frames`` equal segments (all frames if there are not more)."""
    if num_frames <= max_frames:
        return list(range(num_frames))
    bounds = segment_bounds(num_frames, max_frames)
    starts = np.array([lo for lo, _ in bounds])
    lengths = np.array([hi - lo for lo, hi in bounds])
    return [int(i) for i in starts + rng.integers(0, lengths)]


def sample_frame_indices(num_frames: int, max_frames: int, mode: SamplingMode,
                         rng: np.random.Generator | None = None, offset: int = 0) -> list[int]:
    """Indices of the frames to decode: sorted, unique, in range, ``min(num_frames, max_frames)`` of them.

    ``rng`` drives the random modes (a fresh unseeded generator when ``None``); ``offset`` only affects ``uniform``.
    """
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if mode == "uniform":
        return uniform_indices(num_frames, max_frames, offset)
    if mode not in SAMPLING_MODES:
        raise ValueError(f"unknown sampling mode {mode!r} (choose from {list(SAMPLING_MODES)})")
    rng = rng if rng is not None else np.random.default_rng()
    if mode == "random":
        return random_indices(num_frames, max_frames, rng)
    return segment_indices(num_frames, max_frames, rng)


def sampling_mode(cfg: DataConfig, train: bool) -> SamplingMode:
    """``cfg.train_sampling`` for training, ``uniform`` (the WBDC rule) for evaluation and prediction."""
    return cfg.train_sampling if train else "uniform"
