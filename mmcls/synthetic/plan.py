"""The synthetic dataset's specification, its classes and the per-sample plan (which concepts, which fault)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from mmcls.errors import ConfigError

SPLITS = ("labeled", "unlabeled", "test")
SPLIT_CODE = {name: code for code, name in enumerate(SPLITS)}
SPEC_FILE = "synthetic_spec.json"
FAULTS_FILE = "faults.json"
ORACLE_FILE = "oracle.json"
FLIP_MAP_FILE = "flip_label_map.json"
REVERSE_MAP_FILE = "reverse_label_map.json"
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
VIDEO_CONCEPTS: tuple[str, ...] = ("rise", "fall", "grow", "shrink", "stripes", "ring", "left_to_right",
                                   "right_to_left")
#: What classes pair text concepts with (``num_video_concepts`` counts these): one video concept each, except the
#: horizontal slide, which gives a text concept seen with it one class per direction (so the two classes differ only
#: by left vs right, and a horizontal flip maps each onto the other).
VIDEO_MOTIONS: tuple[tuple[str, ...], ...] = (("rise",), ("fall",), ("grow",), ("shrink",), ("stripes",), ("ring",),
                                              ("left_to_right", "right_to_left"))
#: Video concepts that are exact time reversals of each other (same frames, opposite order).
REVERSED_CONCEPT = {"rise": "fall", "fall": "rise", "grow": "shrink", "shrink": "grow",
                    "left_to_right": "right_to_left", "right_to_left": "left_to_right"}
#: Concepts rendered as the time reversal of another: sample i of "fall" is sample i of "rise", played backwards.
PLAYED_BACKWARDS = {"fall": "rise", "shrink": "grow", "right_to_left": "left_to_right"}
#: Video concepts that a horizontal flip turns into each other: a mirrored left_to_right video is distributed exactly
#: as a right_to_left one (and vice versa); every other concept is its own mirror image in distribution.
MIRRORED_CONCEPT = {"left_to_right": "right_to_left", "right_to_left": "left_to_right"}

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
_IDS, _CLASSES, _FRAMES, _FAULTS, TEXT_STREAM, VIDEO_STREAM, TOPIC_STREAM = range(7)  # random streams of a sample


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
    num_video_concepts: int = 7  # motions (VIDEO_MOTIONS): the 7th, the horizontal slide, gives 2 classes per text
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
            ("num_video_concepts", 2 <= self.num_video_concepts <= min(len(VIDEO_MOTIONS), self.num_text_concepts),
             f"must be in 2..{len(VIDEO_MOTIONS)} and <= num_text_concepts"),
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

def sample_rng(seed: int, *keys: int) -> np.random.Generator:
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
    """All level-2 classes sorted by category id.

    Text concept ``t`` and motion ``m`` (:data:`VIDEO_MOTIONS`) give the level-1 group ``(t + m) mod
    num_text_concepts`` and one class per video concept of the motion, ``GGVV`` with ``VV`` the concept's position
    in :data:`VIDEO_CONCEPTS`: the two directions of the horizontal slide share the level-1 group and take
    consecutive frequency ranks.
    """
    spec = spec or SyntheticSpec()
    pairs = _pairs_by_rank(spec.num_text_concepts, spec.num_video_concepts, spec.video_concepts_per_text)
    ranked = [(t, m, concept) for t, m in pairs for concept in VIDEO_MOTIONS[m]]
    weights = np.array([(rank + 1.0) ** -spec.zipf_exponent for rank in range(len(ranked))])
    weights /= weights.sum()
    table = []
    for (t, m, concept), share in zip(ranked, weights, strict=True):
        group = (t + m) % spec.num_text_concepts
        v = VIDEO_CONCEPTS.index(concept)
        table.append(ClassInfo(category_id=f"{group + 1:02d}{v + 1:02d}", lv1_id=f"{group + 1:02d}",
                               text_concept=TEXT_CONCEPTS[t][0], video_concept=concept, frequency=float(share)))
    return sorted(table, key=lambda c: c.category_id)


def flip_label_map(spec: SyntheticSpec | None = None) -> dict[str, str]:
    """``{category_id: category_id}`` of the classes a horizontal flip swaps (both ways; sorted by key): the pairs
    with the same text concept whose video concepts are mirror images (:data:`MIRRORED_CONCEPT`). Classes that a
    flip leaves alone are not listed. Empty when ``num_video_concepts`` leaves the horizontal slide out."""
    table = class_table(spec)
    by_pair = {(c.text_concept, c.video_concept): c.category_id for c in table}
    pairs = {}
    for c in table:
        if c.video_concept in MIRRORED_CONCEPT:
            pairs[c.category_id] = by_pair[(c.text_concept, MIRRORED_CONCEPT[c.video_concept])]
    return dict(sorted(pairs.items()))


def reverse_label_map(spec: SyntheticSpec | None = None) -> dict[str, str | None]:
    """``{category_id: category_id or None}`` of the classes whose video concept plays backwards as another concept
    (:data:`REVERSED_CONCEPT`): the class with the same text concept and the reversed concept, or None when the
    dataset has no such class (a text concept seen with ``rise`` but not ``fall``). Classes that a reversal leaves
    alone (``stripes``, ``ring``) are not listed. The temporal diagnostic's ``--reverse-map``."""
    table = class_table(spec)
    by_pair = {(c.text_concept, c.video_concept): c.category_id for c in table}
    return {c.category_id: by_pair.get((c.text_concept, REVERSED_CONCEPT[c.video_concept]))
            for c in table if c.video_concept in REVERSED_CONCEPT}


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
    rng = sample_rng(spec.seed, _IDS)
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
    picks = sample_rng(spec.seed, SPLIT_CODE[split], _FAULTS).choice(n, size=len(kinds), replace=False)
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
        sample_rng(spec.seed, code, _CLASSES).shuffle(classes)
        frames = sample_rng(spec.seed, code, _FRAMES).integers(spec.min_frames, spec.max_frames + 1, size=n)
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
