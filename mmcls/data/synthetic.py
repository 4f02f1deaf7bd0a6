"""A built-in synthetic short-video dataset in the WBDC layout, small enough for CPU demos and tests.

Every level-2 class is a unique pair (text concept, video concept). By default 8 text concepts each go with 3 of
6 video concepts (every video concept with 4 text concepts): 24 classes in 8 level-1 groups. A class's level-1
group is ``(text + video) mod num_text_concepts``, so neither modality alone determines the level-2 class *or* the
level-1 group: text alone narrows a sample to 3 classes, video alone to 4, and only their fusion can score high.
As in real videos, the two modalities are correlated (a text concept is seen with only some video concepts), so a
video and a text drawn from different samples are often an impossible pair: the signal that video-text matching
and contrastive pretraining learn from on unlabelled videos. ``video_concepts_per_text = num_video_concepts``
makes every pair a class (independent modalities, nothing to match).

- Text concepts are keyword sets mixing Chinese and English ("美食", "cooking", ...). A keyword of the sample's
  concept shows up in the title, the asr and/or the ocr with some probability each (sometimes nowhere), among
  everyday filler words, and sometimes a keyword of another concept is slipped in as a distractor. Like a real
  topic, each concept also favours some filler words (``p_topic_word`` of them come from the concept's own Dirichlet
  distribution over the fillers): every word is a weak cue that a few labels cannot learn, but that masked language
  modelling on unlabelled text can (a masked word is predicted from the topic of the others).
- Video concepts are moving shapes. ``rise``/``fall`` (a square moving up/down) and ``grow``/``shrink`` (a disk
  growing/shrinking) are exact time reversals of each other, so only the frame *order* separates them; left/right
  is never used because training flips frames horizontally. Nuisance per video: background colour, gradient and
  noise, object colour, size, position, speed and easing, jitter, an optional static distractor dot, and the
  number of frames.
- Class frequencies follow a Zipf law; every class gets at least one sample in a split of at least
  ``num_classes`` samples (the rarest default class has ~13 labelled samples, the commonest ~300).
- Faulty samples are planted in every split by default (missing / empty / truncated / non-JPEG / member-less
  zips, truncated or empty mp4s, empty text fields, a very long asr) and listed in ``faults.json``.

Everything is deterministic by seed: annotations and zips are byte-identical across runs and worker counts
(each sample draws from its own random stream); mp4 files are encoded from the same frames.

Files written under the output root (see DESIGN.md section 2): ``annotations/{labeled,unlabeled,test}.json``,
``annotations/test_truth.csv``, ``category_ids.txt``, ``zip_frames/<split>/<id[-3:]>/<id>.zip``,
``videos/<split>/<id>.mp4``, ``faults.json``, ``oracle.json`` (per-sample concepts), ``synthetic_spec.json``
and ``README.txt``.
"""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import time
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mmcls.errors import ConfigError, UserError
from mmcls.io import atomic_write_text

SPLITS = ("labeled", "unlabeled", "test")
SPLIT_CODE = {name: code for code, name in enumerate(SPLITS)}
SPEC_FILE = "synthetic_spec.json"
FAULTS_FILE = "faults.json"
ORACLE_FILE = "oracle.json"
ID_DIGITS = 19
ZIP_DATE = (1980, 1, 1, 0, 0, 0)

TEXT_CONCEPTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("food", ("美食", "做饭", "recipe", "cooking")),
    ("travel", ("旅行", "风景", "travel", "hiking")),
    ("game", ("游戏", "通关", "gaming", "esports")),
    ("music", ("音乐", "唱歌", "music", "guitar")),
    ("sports", ("运动", "篮球", "fitness", "football")),
    ("pets", ("宠物", "猫咪", "puppy", "kitten")),
    ("tech", ("数码", "手机", "gadget", "unboxing")),
    ("fashion", ("穿搭", "时尚", "outfit", "makeup")),
)
VIDEO_CONCEPTS: tuple[str, ...] = ("rise", "fall", "grow", "shrink", "stripes", "ring")
#: Video concepts that are exact time reversals of each other (same frames, opposite order).
REVERSED_CONCEPT = {"rise": "fall", "fall": "rise", "grow": "shrink", "shrink": "grow"}
#: Concepts rendered as the time reversal of another: sample i of "fall" is sample i of "rise", played backwards.
_PLAYED_BACKWARDS = {"fall": "rise", "shrink": "grow"}

FILLER_ZH = ("今天", "我们", "一起", "看看", "这个", "视频", "真的", "非常", "喜欢", "分享", "大家", "时候", "开始",
             "最后", "朋友", "生活", "一下", "感觉", "知道", "觉得", "记得", "关注", "点赞", "哈哈", "好看", "简单",
             "日常", "周末", "第一次", "终于", "其实", "还是", "已经", "可以", "怎么", "什么", "这样", "那个")
FILLER_EN = ("the", "a", "this", "video", "today", "really", "so", "share", "like", "watch", "new", "best", "daily",
             "vlog", "guys", "look", "wow", "my", "with", "and", "time", "day", "fun", "life", "first", "part",
             "more", "check", "live", "story")

#: Fault kinds, in the order they are planted, mapped to what they break ("zip", "mp4" or a text field).
FAULT_SOURCES: dict[str, frozenset[str]] = {
    "missing_video": frozenset({"zip", "mp4"}),
    "empty_zip": frozenset({"zip"}),
    "truncated_zip": frozenset({"zip"}),
    "not_jpeg_zip": frozenset({"zip"}),
    "no_members_zip": frozenset({"zip"}),
    "truncated_mp4": frozenset({"mp4"}),
    "empty_mp4": frozenset({"mp4"}),
    "empty_title": frozenset({"title"}),
    "empty_asr": frozenset({"asr"}),
    "empty_ocr": frozenset({"ocr"}),
    "long_asr": frozenset({"asr"}),
}
FAULT_KINDS = tuple(FAULT_SOURCES)

# Stream tags: each (seed, split, tag, index) tuple seeds an independent random stream.
_IDS, _CLASSES, _FRAMES, _FAULTS, _TEXT, _VIDEO, _TOPICS = range(7)


@dataclass
class SyntheticSpec:
    """Sizes, seed and switches of a synthetic dataset (defaults: ~2k videos of 64x64 px, faults on)."""

    num_labeled: int = 1200
    num_unlabeled: int = 500
    num_test: int = 300
    size: int = 64
    min_frames: int = 8
    max_frames: int = 24
    seed: int = 0
    num_text_concepts: int = 8
    num_video_concepts: int = 6
    video_concepts_per_text: int = 3
    zipf_exponent: float = 1.0
    faults: bool = True
    write_zip: bool = True
    write_mp4: bool = True
    workers: int = 0  # 0: one per CPU core (at most 8); 1: no worker processes
    jpeg_quality: int = 90
    fps: int = 8
    p_title_keyword: float = 0.6
    p_asr_keyword: float = 0.5
    p_ocr_keyword: float = 0.4
    p_distractor: float = 0.2
    p_topic_word: float = 0.3
    topic_concentration: float = 1.0
    long_asr_chars: int = 6000

    def split_sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        return {"labeled": self.num_labeled, "unlabeled": self.num_unlabeled, "test": self.num_test}

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first invalid field."""
        checks = [
            ("num_labeled", self.num_labeled >= 1, "must be >= 1"),
            ("num_unlabeled", self.num_unlabeled >= 0, "must be >= 0"),
            ("num_test", self.num_test >= 0, "must be >= 0"),
            ("size", self.size >= 16 and self.size % 2 == 0, "must be an even number >= 16"),
            ("min_frames", self.min_frames >= 1, "must be >= 1"),
            ("max_frames", self.max_frames >= self.min_frames, "must be >= min_frames"),
            ("num_text_concepts", 2 <= self.num_text_concepts <= len(TEXT_CONCEPTS),
             f"must be in 2..{len(TEXT_CONCEPTS)}"),
            ("num_video_concepts", 2 <= self.num_video_concepts <= min(len(VIDEO_CONCEPTS), self.num_text_concepts),
             f"must be in 2..{len(VIDEO_CONCEPTS)} and <= num_text_concepts"),
            ("video_concepts_per_text", 1 <= self.video_concepts_per_text <= self.num_video_concepts,
             "must be in 1..num_video_concepts"),
            ("zipf_exponent", self.zipf_exponent >= 0, "must be >= 0"),
            ("workers", self.workers >= 0, "must be >= 0"),
            ("jpeg_quality", 1 <= self.jpeg_quality <= 100, "must be in 1..100"),
            ("fps", self.fps >= 1, "must be >= 1"),
            ("long_asr_chars", self.long_asr_chars >= 1, "must be >= 1"),
        ]
        checks.append(("topic_concentration", self.topic_concentration > 0, "must be > 0"))
        for name in ("p_title_keyword", "p_asr_keyword", "p_ocr_keyword", "p_distractor", "p_topic_word"):
            checks.append((name, 0.0 <= getattr(self, name) <= 1.0, "must be in [0, 1]"))
        for name, ok, message in checks:
            if not ok:
                raise ConfigError(f"synthetic spec: {name}={getattr(self, name)!r} {message}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyntheticSpec:
        """Build from a dict such as ``synthetic_spec.json``; unknown keys are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class ClassInfo:
    """One level-2 class: its id ``LLNN``, level-1 id ``LL``, the two concepts it pairs, and its Zipf share."""

    category_id: str
    lv1_id: str
    text_concept: str
    video_concept: str
    frequency: float


@dataclass(frozen=True)
class SamplePlan:
    """Everything decided about one sample before its text and frames are drawn."""

    split: str
    index: int
    id: str
    category_id: str
    text_concept: str
    video_concept: str
    num_frames: int
    fault: str | None = None


# ----------------------------------------------------------------------------------------------------------------
# Classes and the sample plan
# ----------------------------------------------------------------------------------------------------------------

def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent random stream for ``(seed, *keys)``."""
    return np.random.default_rng([seed, *keys])


def _pairs_by_rank(num_text: int, num_video: int, per_text: int) -> list[tuple[int, int]]:
    """(text, video) concept pairs in frequency-rank order: each text concept gets ``per_text`` video concepts.

    Round ``q`` gives every text concept ``t`` (rank ``q * num_text + t``) one more video concept: the least used
    one so far, ties broken by the order ``t + q, t + q + 1, ...`` (mod ``num_video``). So every video concept ends
    with the same number of text concepts when ``num_text * per_text`` allows it, and the ``num_text`` most frequent
    classes have distinct text concepts (the ``num_video`` most frequent distinct video concepts), which keeps
    single-modality guessing weak even under the long tail.
    """
    uses = [0] * num_video
    pairs: list[tuple[int, int]] = []
    for q in range(per_text):
        for t in range(num_text):
            order = [(t + q + k) % num_video for k in range(num_video)]
            free = [v for v in order if (t, v) not in pairs]
            v = min(free, key=lambda v: (uses[v], order.index(v)))
            uses[v] += 1
            pairs.append((t, v))
    return pairs


def class_table(spec: SyntheticSpec | None = None) -> list[ClassInfo]:
    """All level-2 classes sorted by category id. The level-1 group is ``(t + v) mod num_text_concepts``."""
    spec = spec or SyntheticSpec()
    pairs = _pairs_by_rank(spec.num_text_concepts, spec.num_video_concepts, spec.video_concepts_per_text)
    weights = np.array([(rank + 1.0) ** -spec.zipf_exponent for rank in range(len(pairs))])
    weights /= weights.sum()
    table = []
    for (t, v), share in zip(pairs, weights, strict=True):
        group = (t + v) % spec.num_text_concepts
        table.append(ClassInfo(category_id=f"{group + 1:02d}{v + 1:02d}", lv1_id=f"{group + 1:02d}",
                               text_concept=TEXT_CONCEPTS[t][0], video_concept=VIDEO_CONCEPTS[v],
                               frequency=float(share)))
    return sorted(table, key=lambda c: c.category_id)


def _class_counts(n: int, shares: Sequence[float]) -> list[int]:
    """Exact per-class counts summing to ``n``: one each when ``n`` allows, the rest by largest remainder."""
    base = 1 if n >= len(shares) else 0
    rest = n - base * len(shares)
    raw = np.asarray(shares) * rest
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: rest - int(counts.sum())]] += 1
    return [int(c) + base for c in counts]


def _make_ids(spec: SyntheticSpec) -> dict[str, list[str]]:
    """Unique ``ID_DIGITS``-digit id strings per split, deterministic from the seed."""
    rng = _rng(spec.seed, _IDS)
    seen: set[str] = set()
    ids: dict[str, list[str]] = {}
    for split, n in spec.split_sizes().items():
        out: list[str] = []
        while len(out) < n:
            digits = rng.integers(0, 10, size=ID_DIGITS)
            digits[0] = 1 + digits[0] % 9
            new = "".join(map(str, digits))
            if new not in seen:
                seen.add(new)
                out.append(new)
        ids[split] = out
    return ids


def active_fault_kinds(spec: SyntheticSpec) -> tuple[str, ...]:
    """Fault kinds planted in every split for ``spec`` (video faults only for the sources that are written)."""
    if not spec.faults:
        return ()
    written = {name for name, on in (("zip", spec.write_zip), ("mp4", spec.write_mp4)) if on}
    return tuple(k for k, hits in FAULT_SOURCES.items() if not hits & {"zip", "mp4"} or hits & written)


def _assign_faults(spec: SyntheticSpec, split: str, n: int) -> dict[int, str]:
    """Sample index -> fault kind for one split (one sample per kind, as many kinds as the split has samples)."""
    kinds = active_fault_kinds(spec)[:n]
    picks = _rng(spec.seed, SPLIT_CODE[split], _FAULTS).choice(n, size=len(kinds), replace=False)
    return {int(i): kind for i, kind in zip(picks, kinds, strict=True)}


def plan_dataset(spec: SyntheticSpec | None = None) -> dict[str, list[SamplePlan]]:
    """The full sample plan (ids, classes, concepts, frame counts, faults) per split; pure and deterministic."""
    spec = spec or SyntheticSpec()
    spec.validate()
    table = class_table(spec)
    ids = _make_ids(spec)
    plans: dict[str, list[SamplePlan]] = {}
    for split, n in spec.split_sizes().items():
        code = SPLIT_CODE[split]
        counts = _class_counts(n, [c.frequency for c in table])
        classes = np.repeat(np.arange(len(table)), counts)
        _rng(spec.seed, code, _CLASSES).shuffle(classes)
        frames = _rng(spec.seed, code, _FRAMES).integers(spec.min_frames, spec.max_frames + 1, size=n)
        faults = _assign_faults(spec, split, n)
        plans[split] = [
            SamplePlan(split=split, index=i, id=ids[split][i], category_id=table[c].category_id,
                       text_concept=table[c].text_concept, video_concept=table[c].video_concept,
                       num_frames=int(frames[i]), fault=faults.get(i))
            for i, c in enumerate(classes)
        ]
    return plans


# ----------------------------------------------------------------------------------------------------------------
# Text
# ----------------------------------------------------------------------------------------------------------------

def _is_ascii(token: str) -> bool:
    return token.isascii()


def join_tokens(tokens: Iterable[str]) -> str:
    """Join words the way mixed Chinese/English text looks: no space between hanzi, spaces around English."""
    out = ""
    prev = ""
    for token in tokens:
        if out and (_is_ascii(token) or _is_ascii(prev)) and not prev.endswith(("，", "。", "！")):
            out += " "
        out += token
        prev = token
    return out


def _keywords(name: str) -> tuple[str, ...]:
    return dict(TEXT_CONCEPTS)[name]


def _keyword(rng: np.random.Generator, concept: str) -> str:
    """A keyword of ``concept``; English ones sometimes capitalised."""
    word = str(rng.choice(_keywords(concept)))
    if word.isascii():
        roll = rng.random()
        word = word.upper() if roll < 0.05 else word.capitalize() if roll < 0.25 else word
    return word


FILLERS = FILLER_ZH + FILLER_EN
_TEXT_CONCEPT_INDEX = {name: index for index, (name, _) in enumerate(TEXT_CONCEPTS)}


@lru_cache(maxsize=8)
def _topic_table(seed: int, num_text_concepts: int, concentration: float) -> np.ndarray:
    """Each text concept's word distribution over :data:`FILLERS` ``[num_text_concepts, len(FILLERS)]``:
    Dirichlet draws, so every concept favours some everyday words (as real topics do) without owning any."""
    rng = _rng(seed, _TOPICS)
    return rng.dirichlet(np.full(len(FILLERS), concentration), size=num_text_concepts)


def _fillers(rng: np.random.Generator, n: int, topic: np.ndarray | None = None, p_topic: float = 0.0) -> list[str]:
    """``n`` filler words: each from the ``topic`` distribution with probability ``p_topic``, else uniform
    (about 60% Chinese)."""
    words = []
    for _ in range(n):
        if topic is not None and rng.random() < p_topic:
            words.append(FILLERS[int(rng.choice(len(FILLERS), p=topic))])
        else:
            words.append(str(rng.choice(FILLER_ZH)) if rng.random() < 0.6 else str(rng.choice(FILLER_EN)))
    return words


def _insert(rng: np.random.Generator, tokens: list[str], word: str) -> None:
    tokens.insert(int(rng.integers(0, len(tokens) + 1)), word)


def _sentences(rng: np.random.Generator, tokens: list[str]) -> str:
    """Cut tokens into short sentences with Chinese punctuation."""
    parts, i = [], 0
    while i < len(tokens):
        step = int(rng.integers(4, 9))
        parts.append(join_tokens(tokens[i:i + step]) + str(rng.choice(["，", "。", "！"])))
        i += step
    return "".join(parts)


def make_record(spec: SyntheticSpec, plan: SamplePlan, labeled: bool) -> dict[str, Any]:
    """The annotation record of one sample (its text is drawn from the sample's own random stream)."""
    rng = _rng(spec.seed, SPLIT_CODE[plan.split], _TEXT, plan.index)
    concept = plan.text_concept
    topic = _topic_table(spec.seed, spec.num_text_concepts, spec.topic_concentration)[_TEXT_CONCEPT_INDEX[concept]]
    title = _fillers(rng, int(rng.integers(3, 9)), topic, spec.p_topic_word)
    asr = _fillers(rng, int(rng.integers(8, 31)), topic, spec.p_topic_word)
    ocr = [_fillers(rng, int(rng.integers(2, 6)), topic, spec.p_topic_word) for _ in range(int(rng.integers(1, 5)))]
    if rng.random() < spec.p_title_keyword:
        word = _keyword(rng, concept)
        _insert(rng, title, f"#{word}#" if rng.random() < 0.3 else word)
    if rng.random() < spec.p_asr_keyword:
        for _ in range(int(rng.integers(1, 3))):
            _insert(rng, asr, _keyword(rng, concept))
    if rng.random() < spec.p_ocr_keyword:
        _insert(rng, ocr[int(rng.integers(0, len(ocr)))], _keyword(rng, concept))
    if rng.random() < spec.p_distractor:
        others = [name for name, _ in TEXT_CONCEPTS[: spec.num_text_concepts] if name != concept]
        target = (title, asr, ocr[0])[int(rng.integers(0, 3))]
        _insert(rng, target, _keyword(rng, str(rng.choice(others))))
    asr_text = _sentences(rng, asr)
    if plan.fault == "long_asr":
        while len(asr_text) < spec.long_asr_chars:
            asr_text += _sentences(rng, _fillers(rng, 30))
    times = np.sort(rng.choice(max(30, len(ocr)), size=len(ocr), replace=False))
    record: dict[str, Any] = {
        "id": plan.id,
        "title": "" if plan.fault == "empty_title" else join_tokens(title),
        "asr": "" if plan.fault == "empty_asr" else asr_text,
        "ocr": [] if plan.fault == "empty_ocr" else [
            {"time": int(t), "text": join_tokens(words)} for t, words in zip(times, ocr, strict=True)],
    }
    if labeled:
        record["category_id"] = plan.category_id
    return record


def text_concept_scores(record: dict[str, Any], num_text_concepts: int | None = None) -> dict[str, int]:
    """Keyword counts per text concept in a record's title, asr and ocr (a simple text-only 'classifier')."""
    text = " ".join([record.get("title") or "", record.get("asr") or ""]
                    + [item.get("text", "") for item in record.get("ocr") or []]).lower()
    concepts = TEXT_CONCEPTS[: num_text_concepts or len(TEXT_CONCEPTS)]
    return {name: sum(text.count(word.lower()) for word in words) for name, words in concepts}


# ----------------------------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------------------------

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


_SHAPES = {"rise": _square_motion, "grow": _disk_growth, "stripes": _stripes, "ring": _ring}


def render_frames(spec: SyntheticSpec, plan: SamplePlan) -> np.ndarray:
    """The frames of one sample, uint8 ``[num_frames, size, size, 3]`` (RGB), from the sample's own stream.

    ``fall`` and ``shrink`` samples are the ``rise`` and ``grow`` samples of the same stream played backwards, so
    the two concepts of a pair have exactly the same distribution of frame sets and differ only in frame order.
    """
    concept = _PLAYED_BACKWARDS.get(plan.video_concept, plan.video_concept)
    if concept not in _SHAPES:
        raise ValueError(f"unknown video concept {plan.video_concept!r}")
    rng = _rng(spec.seed, SPLIT_CODE[plan.split], _VIDEO, plan.index)
    n, s = plan.num_frames, spec.size
    dark_bg = bool(rng.random() < 0.5)
    background, colour = _colour(rng, dark_bg), _colour(rng, not dark_bg)
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    gradient = rng.uniform(0, 20) * ((np.cos(angle) * xx + np.sin(angle) * yy) / s - 0.5)
    frames = np.broadcast_to(background + gradient[..., None], (n, s, s, 3)).copy()
    frames[_SHAPES[concept](rng, n, s, yy, xx)] = colour
    if rng.random() < 0.5:  # a static distractor dot
        dy, dx = rng.uniform(0, s, size=2)
        dot = (yy - dy) ** 2 + (xx - dx) ** 2 <= (s * rng.uniform(0.02, 0.04)) ** 2
        frames[:, dot] = rng.uniform(0, 255, size=3).astype(np.float32)
    frames += np.float32(rng.uniform(1.5, 6.0)) * rng.standard_normal(size=frames.shape, dtype=np.float32)
    frames = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frames[::-1]) if concept != plan.video_concept else frames


# ----------------------------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------------------------

def zip_path(root: str | Path, split: str, video_id: str) -> Path:
    """``<root>/zip_frames/<split>/<id[-3:]>/<id>.zip``."""
    return Path(root) / "zip_frames" / split / video_id[-3:] / f"{video_id}.zip"


def mp4_path(root: str | Path, split: str, video_id: str) -> Path:
    """``<root>/videos/<split>/<id>.mp4``."""
    return Path(root) / "videos" / split / f"{video_id}.mp4"


def _zip_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A stored (uncompressed) zip with fixed timestamps, so equal members give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _jpeg_bytes(frame: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _frames_zip(frames: np.ndarray, quality: int) -> bytes:
    return _zip_bytes([(f"{i:04d}.jpg", _jpeg_bytes(frame, quality)) for i, frame in enumerate(frames)])


@lru_cache(maxsize=1)
def mp4_codec() -> str:
    """The encoder used for mp4 files: H.264 (libx264) when PyAV has it, else MPEG-4 part 2."""
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # any failure means "not available"
            continue
    raise UserError("PyAV has neither a libx264 nor an mpeg4 encoder; use --no-mp4")


def write_mp4(path: str | Path, frames: np.ndarray, fps: int) -> None:
    """Encode RGB frames ``[T, H, W, 3]`` (H, W even) into an mp4 with PyAV, one frame per input frame."""
    import av

    codec = mp4_codec()
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "18"}
        else:
            stream.codec_context.bit_rate = 2_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_zip_file(path: Path, frames: np.ndarray, quality: int, fault: str | None) -> None:
    """Write a frames zip, or its faulty stand-in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fault == "empty_zip":
        data = b""
    elif fault == "no_members_zip":
        data = _zip_bytes([])
    elif fault == "not_jpeg_zip":
        data = _zip_bytes([(f"{i:04d}.jpg", f"frame {i}: this is not a JPEG\n".encode()) for i in range(len(frames))])
    else:
        data = _frames_zip(frames, quality)
        if fault == "truncated_zip":
            data = data[: len(data) // 2]
    path.write_bytes(data)


def _write_mp4_file(path: Path, frames: np.ndarray, fps: int, fault: str | None) -> None:
    """Write an mp4, or its faulty stand-in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fault == "empty_mp4":
        path.write_bytes(b"")
        return
    write_mp4(path, frames, fps)
    if fault == "truncated_mp4":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def write_video(root: str | Path, spec: SyntheticSpec, plan: SamplePlan) -> int:
    """Render one sample and write its zip and/or mp4 (or their faulty stand-ins); return bytes written."""
    breaks = FAULT_SOURCES.get(plan.fault or "", frozenset())
    if plan.fault == "missing_video" or not (spec.write_zip or spec.write_mp4):
        return 0
    frames = render_frames(spec, plan)
    written = 0
    if spec.write_zip:
        path = zip_path(root, plan.split, plan.id)
        _write_zip_file(path, frames, spec.jpeg_quality, plan.fault if "zip" in breaks else None)
        written += path.stat().st_size
    if spec.write_mp4:
        path = mp4_path(root, plan.split, plan.id)
        _write_mp4_file(path, frames, spec.fps, plan.fault if "mp4" in breaks else None)
        written += path.stat().st_size
    return written


def _write_video_job(job: tuple[str, dict[str, Any], SamplePlan]) -> int:
    """Pool entry point (top-level so it pickles)."""
    root, spec_dict, plan = job
    return write_video(root, SyntheticSpec(**spec_dict), plan)


def _worker_count(spec: SyntheticSpec, jobs: int) -> int:
    if spec.workers:
        return min(spec.workers, max(jobs, 1))
    return max(1, min(os.cpu_count() or 1, 8, jobs // 50 or 1))


def _run_jobs(root: Path, spec: SyntheticSpec, plans: list[SamplePlan], progress: bool) -> int:
    """Write all videos (in worker processes when useful) with an optional progress bar; return total bytes."""
    from tqdm.auto import tqdm

    spec_dict = asdict(spec)
    jobs = [(str(root), spec_dict, plan) for plan in plans]
    workers = _worker_count(spec, len(jobs))
    with tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress) as bar:
        if workers == 1:
            results: Iterator[int] = map(_write_video_job, jobs)
            return sum(_tick(bar, r) for r in results)
        with multiprocessing.get_context().Pool(workers) as pool:
            results = pool.imap_unordered(_write_video_job, jobs, chunksize=8)
            return sum(_tick(bar, r) for r in results)


def _tick(bar: Any, value: int) -> int:
    bar.update(1)
    return value


def _json_list(records: Sequence[dict[str, Any]]) -> str:
    """A JSON list with one record per line (valid JSON, easy to diff)."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def _prepare_out_dir(root: Path) -> None:
    """Create ``root``; clear a previous synthetic dataset there; refuse to write into any other non-empty folder."""
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not (root / SPEC_FILE).is_file():
            raise UserError(f"{root}: folder is not empty and holds no synthetic dataset ({SPEC_FILE}); "
                            "choose another output folder")
        for name in ("annotations", "zip_frames", "videos"):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in (SPEC_FILE, FAULTS_FILE, ORACLE_FILE, "category_ids.txt", "README.txt"):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def _readme(spec: SyntheticSpec, table: list[ClassInfo], faults: dict[str, dict[str, str]]) -> str:
    """The text of ``README.txt``."""
    lines = [
        "mmcls synthetic short-video dataset (WBDC 2022 layout)",
        "",
        "Generated by mmcls.data.synthetic.make_synthetic / tools/make_synthetic.py.",
        f"seed={spec.seed} sizes: labeled={spec.num_labeled} unlabeled={spec.num_unlabeled} test={spec.num_test}",
        f"frames: {spec.min_frames}..{spec.max_frames} per video, {spec.size}x{spec.size} px, JPEG quality "
        f"{spec.jpeg_quality}; zip={spec.write_zip} mp4={spec.write_mp4} ({mp4_codec() if spec.write_mp4 else '-'})",
        "",
        f"{len(table)} level-2 classes = (text concept, video concept) pairs, {spec.video_concepts_per_text} video "
        "concept(s) per text concept;",
        "level-1 = first two digits = (text + video) mod #text concepts, so neither modality alone determines",
        "either level.",
        "Text concepts are Chinese/English keyword sets that appear in title/asr/ocr only with some probability.",
        "Video concepts rise/fall and grow/shrink are time reversals of each other: frame order matters.",
        f"Class frequencies: Zipf with exponent {spec.zipf_exponent}.",
        "",
        "category_id lv1 text_concept video_concept share",
    ]
    lines += [f"{c.category_id} {c.lv1_id} {c.text_concept} {c.video_concept} {c.frequency:.4f}" for c in table]
    lines += ["", "Faulty samples (also in faults.json; video faults break the sources named there):"]
    for split, items in faults.items():
        lines += [f"  {split} {vid} {kind}" for vid, kind in items.items()]
    if not any(faults.values()):
        lines.append("  none")
    lines += ["", "oracle.json holds each sample's category, text concept, video concept and frame count."]
    return "\n".join(lines) + "\n"


def _write_annotations(root: Path, spec: SyntheticSpec, plans: dict[str, list[SamplePlan]]) -> None:
    """Write the annotation files, the test truth, the category list and the oracle."""
    ann = root / "annotations"
    for split, items in plans.items():
        if not items:  # an empty annotation file is an error for the loader: leave the split out instead
            continue
        records = [make_record(spec, plan, labeled=split == "labeled") for plan in items]
        atomic_write_text(ann / f"{split}.json", _json_list(records))
    atomic_write_text(ann / "test_truth.csv", "".join(f"{p.id},{p.category_id}\n" for p in plans["test"]))
    atomic_write_text(root / "category_ids.txt", "".join(f"{c.category_id}\n" for c in class_table(spec)))
    oracle = {split: {p.id: {"category_id": p.category_id, "text_concept": p.text_concept,
                             "video_concept": p.video_concept, "num_frames": p.num_frames} for p in items}
              for split, items in plans.items()}
    atomic_write_text(root / ORACLE_FILE, json.dumps(oracle, ensure_ascii=False, indent=1) + "\n")


def make_synthetic(out_dir: str | Path, spec: SyntheticSpec | None = None, progress: bool = True) -> dict:
    """Write the dataset; return a summary dict (counts per split, num classes, faults, seconds)."""
    start = time.perf_counter()
    spec = spec or SyntheticSpec()
    plans = plan_dataset(spec)
    root = Path(out_dir)
    _prepare_out_dir(root)
    if spec.write_mp4:
        mp4_codec()  # fail early, before any work, if there is no encoder
    _write_annotations(root, spec, plans)
    video_bytes = _run_jobs(root, spec, [p for items in plans.values() for p in items], progress)
    faults = {split: {p.id: p.fault for p in items if p.fault} for split, items in plans.items()}
    table = class_table(spec)
    atomic_write_text(root / FAULTS_FILE, json.dumps(faults, indent=1) + "\n")
    atomic_write_text(root / "README.txt", _readme(spec, table, faults))
    content_spec = {k: v for k, v in asdict(spec).items() if k != "workers"}  # workers do not change the output
    atomic_write_text(root / SPEC_FILE, json.dumps(content_spec, indent=1) + "\n")
    labeled_counts: dict[str, int] = {c.category_id: 0 for c in table}
    for plan in plans["labeled"]:
        labeled_counts[plan.category_id] += 1
    return {
        "out_dir": str(root),
        "splits": {split: len(items) for split, items in plans.items()},
        "num_classes": len(table),
        "num_lv1": len({c.lv1_id for c in table}),
        "labeled_class_counts": labeled_counts,
        "num_frames": sum(p.num_frames for items in plans.values() for p in items),
        "faults": faults,
        "video_bytes": video_bytes,
        "codec": mp4_codec() if spec.write_mp4 else None,
        "seconds": round(time.perf_counter() - start, 3),
    }


# ----------------------------------------------------------------------------------------------------------------
# Reading back
# ----------------------------------------------------------------------------------------------------------------

def load_faults(root: str | Path) -> dict[str, dict[str, str]]:
    """``faults.json`` of a generated dataset: ``{split: {id: kind}}``."""
    return json.loads((Path(root) / FAULTS_FILE).read_text(encoding="utf-8"))


def load_oracle(root: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``oracle.json``: ``{split: {id: {category_id, text_concept, video_concept, num_frames}}}``."""
    return json.loads((Path(root) / ORACLE_FILE).read_text(encoding="utf-8"))


def load_spec(root: str | Path) -> SyntheticSpec:
    """The spec a dataset was generated with (``synthetic_spec.json``; ``workers`` is not stored)."""
    return SyntheticSpec.from_dict(json.loads((Path(root) / SPEC_FILE).read_text(encoding="utf-8")))
