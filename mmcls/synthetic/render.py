"""The synthetic frames: moving shapes over noisy backgrounds, one array per sample plan."""

from __future__ import annotations

import numpy as np

from mmcls.synthetic.plan import PLAYED_BACKWARDS, SPLIT_CODE, VIDEO_STREAM, SamplePlan, SyntheticSpec, sample_rng


def _colour(rng: np.random.Generator, dark: bool) -> np.ndarray:
    """A random RGB colour with every channel dark (0..80) or light (175..255)."""
    low, high = (0, 80) if dark else (175, 255)
    return rng.uniform(low, high, size=3).astype(np.float32)


def _progress(rng: np.random.Generator, n: int) -> np.ndarray:
    """Motion progress 0 -> 1 over ``n`` frames with a random easing."""
    return np.linspace(0.0, 1.0, n, dtype=np.float32) ** np.float32(rng.uniform(0.7, 1.4))


def _jitter(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    return rng.normal(0.0, scale, size=n).astype(np.float32)


def _square_motion(rng: np.random.Generator, n: int, s: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A square moving UP (image y decreasing) over the clip; boolean masks ``[n, s, s]``."""
    half = s * rng.uniform(0.08, 0.13)
    travel = s * rng.uniform(0.35, 0.55)
    y0 = rng.uniform(half + travel, s - half)
    x0 = rng.uniform(half, s - half)
    cy = y0 - travel * _progress(rng, n) + _jitter(rng, n, 0.4)
    cx = x0 + s * rng.uniform(-0.05, 0.05) * np.linspace(0, 1, n) + _jitter(rng, n, 0.4)
    return (np.abs(yy - cy[:, None, None]) <= half) & (np.abs(xx - cx[:, None, None]) <= half)


def _disk_growth(rng: np.random.Generator, n: int, s: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A disk GROWING over the clip; boolean masks ``[n, s, s]``."""
    r0, r1 = s * rng.uniform(0.04, 0.08), s * rng.uniform(0.2, 0.3)
    radius = r0 + (r1 - r0) * _progress(rng, n)
    cy = rng.uniform(0.3, 0.7) * s + _jitter(rng, n, 0.4)
    cx = rng.uniform(0.3, 0.7) * s + _jitter(rng, n, 0.4)
    dist2 = (yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2
    return dist2 <= (radius**2)[:, None, None]


def _cross_slide(rng: np.random.Generator, n: int, s: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A plus-shaped cross sliding LEFT TO RIGHT (image x increasing) over the clip; boolean masks ``[n, s, s]``.

    Everything but the direction is mirror-symmetric in distribution (the shape, the start position about the
    frame's centre column ``(s - 1) / 2``, the vertical drift and jitter, and a time-symmetric easing), so a
    horizontally flipped sample is distributed exactly as its time reversal: a ``right_to_left`` sample.
    """
    half = s * rng.uniform(0.09, 0.13)
    arm = half * rng.uniform(0.3, 0.45)  # half the thickness of each bar
    travel = s * rng.uniform(0.35, 0.55)
    x0 = rng.uniform(half, s - 1 - half - travel)
    y0 = rng.uniform(half, s - 1 - half)
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)
    smooth = np.float32(rng.uniform(0.0, 1.0))  # linear .. smoothstep: both unchanged by t -> 1 - t, x -> 1 - x
    progress = (1 - smooth) * t + smooth * t * t * (3 - 2 * t)
    cx = x0 + travel * progress + _jitter(rng, n, 0.4)
    cy = y0 + s * rng.uniform(-0.05, 0.05) * (t - 0.5) + _jitter(rng, n, 0.4)
    dy, dx = np.abs(yy - cy[:, None, None]), np.abs(xx - cx[:, None, None])
    return (dy <= half) & (dx <= half) & ((dy <= arm) | (dx <= arm))


def _wander(rng: np.random.Generator, n: int, s: int, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """A slowly wandering centre (random walk) kept ``margin`` px inside the frame."""
    start = rng.uniform(margin, s - margin, size=2)
    walk = np.cumsum(rng.normal(0.0, 0.6, size=(n, 2)), axis=0) + start
    walk = np.clip(walk, margin, s - margin).astype(np.float32)
    return walk[:, 0], walk[:, 1]


def _stripes(rng: np.random.Generator, n: int, s: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A horizontally striped square wandering in place."""
    half = s * rng.uniform(0.12, 0.18)
    period = max(2, round(s * rng.uniform(0.06, 0.09)))
    cy, cx = _wander(rng, n, s, half)
    inside = (np.abs(yy - cy[:, None, None]) <= half) & (np.abs(xx - cx[:, None, None]) <= half)
    return inside & (((yy - cy[:, None, None]) // period) % 2 == 0)


def _ring(rng: np.random.Generator, n: int, s: int, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A hollow ring wandering in place."""
    outer = s * rng.uniform(0.15, 0.25)
    width = max(1.5, s * rng.uniform(0.04, 0.07))
    cy, cx = _wander(rng, n, s, outer)
    dist = np.sqrt((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2)
    return (dist <= outer) & (dist >= outer - width)


_SHAPES = {"rise": _square_motion, "grow": _disk_growth, "stripes": _stripes, "ring": _ring,
           "left_to_right": _cross_slide}


def render_frames(spec: SyntheticSpec, plan: SamplePlan) -> np.ndarray:
    """The frames of one sample, uint8 ``[num_frames, size, size, 3]`` (RGB), from the sample's own stream.

    ``fall``, ``shrink`` and ``right_to_left`` samples are the ``rise``, ``grow`` and ``left_to_right`` samples of
    the same stream played backwards, so the two concepts of a pair have exactly the same distribution of frame sets
    and differ only in frame order. A horizontally flipped ``left_to_right`` sample is distributed as a
    ``right_to_left`` one (and vice versa): the flip swaps those classes (``flip_label_map.json``).
    """
    concept = PLAYED_BACKWARDS.get(plan.video_concept, plan.video_concept)
    if concept not in _SHAPES:
        raise ValueError(f"unknown video concept {plan.video_concept!r}")
    rng = sample_rng(spec.seed, SPLIT_CODE[plan.split], VIDEO_STREAM, plan.index)
    n, s = plan.num_frames, spec.size
    dark_bg = bool(rng.random() < 0.5)
    background, colour = _colour(rng, dark_bg), _colour(rng, not dark_bg)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    centre = (s - 1) / 2  # about the centre pixel, so a mirrored gradient is just another angle's
    gradient = rng.uniform(0, 20) * (np.cos(angle) * (xx - centre) + np.sin(angle) * (yy - centre)) / s
    frames = np.broadcast_to(background + gradient[..., None], (n, s, s, 3)).copy()
    frames[_SHAPES[concept](rng, n, s, yy, xx)] = colour
    if rng.random() < 0.5:  # a static distractor dot
        dy, dx = rng.uniform(0, s - 1, size=2)
        dot = (yy - dy) ** 2 + (xx - dx) ** 2 <= (s * rng.uniform(0.02, 0.04)) ** 2
        frames[:, dot] = rng.uniform(0, 255, size=3).astype(np.float32)
    frames += np.float32(rng.uniform(1.5, 6.0)) * rng.standard_normal(size=frames.shape, dtype=np.float32)
    frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frames[::-1]) if concept != plan.video_concept else frames


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------
