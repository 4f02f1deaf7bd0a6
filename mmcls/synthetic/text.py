"""The synthetic records: titles, speech transcripts and on-screen text built from a sample's text concept."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

import numpy as np

from mmcls.synthetic.plan import (
    FILLER_EN,
    FILLER_ZH,
    SPLIT_CODE,
    TEXT_CONCEPTS,
    TEXT_STREAM,
    TOPIC_STREAM,
    SamplePlan,
    SyntheticSpec,
    sample_rng,
)


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
    rng = sample_rng(seed, TOPIC_STREAM)
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
    rng = sample_rng(spec.seed, SPLIT_CODE[plan.split], TEXT_STREAM, plan.index)
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
