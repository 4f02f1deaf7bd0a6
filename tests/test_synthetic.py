"""The synthetic dataset generator: layout, determinism, labels, the fusion and order properties, the flip map,
faults, CLI."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import zipfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

from mmcls.errors import ConfigError, UserError
from mmcls.synthetic import (
    FAULT_KINDS,
    FAULT_SOURCES,
    FLIP_MAP_FILE,
    MIRRORED_CONCEPT,
    REVERSE_MAP_FILE,
    REVERSED_CONCEPT,
    SPLITS,
    TEXT_CONCEPTS,
    SamplePlan,
    SyntheticSpec,
    active_fault_kinds,
    class_table,
    flip_label_map,
    load_faults,
    load_flip_label_map,
    load_oracle,
    load_spec,
    make_synthetic,
    mp4_path,
    plan_dataset,
    render_frames,
    reverse_label_map,
    text_concept_scores,
    zip_path,
)

REPO = Path(__file__).resolve().parents[1]
TINY = SyntheticSpec(num_labeled=40, num_unlabeled=12, num_test=12, min_frames=6, max_frames=12, workers=1)


def _records(root: Path, split: str) -> list[dict]:
    return json.loads((root / "annotations" / f"{split}.json").read_text(encoding="utf-8"))


def _zip_frames(path: Path) -> tuple[list[str], np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        frames = [np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("RGB")) for name in sorted(names)]
    return names, np.stack(frames)


def _mp4_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _data_files(root: Path) -> dict[str, bytes]:
    """Every file that must be byte-identical for the same seed (all but the mp4s and the README)."""
    paths = [*root.glob("annotations/*"), *root.glob("zip_frames/**/*.zip")]
    paths += [root / name for name in ("faults.json", "oracle.json", "category_ids.txt", "synthetic_spec.json",
                                       FLIP_MAP_FILE)]
    return {str(p.relative_to(root)): p.read_bytes() for p in paths}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth") / "data"
    return root, make_synthetic(root, TINY, progress=False)


# ---------------------------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------------------------

def test_same_seed_gives_identical_files_for_any_worker_count(tiny, tmp_path):
    root, _ = tiny
    again = tmp_path / "again"
    make_synthetic(again, replace(TINY, workers=2), progress=False)
    first, second = _data_files(root), _data_files(again)
    assert len(first) > 40 and first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []
    faults = load_faults(root)
    for split in SPLITS:  # mp4 bytes may differ; decoded content must not
        for video in sorted((root / "videos" / split).glob("*.mp4"))[:4]:
            if video.stem not in faults[split]:
                other = again / "videos" / split / video.name
                assert np.abs(_mp4_frames(video).astype(int) - _mp4_frames(other).astype(int)).mean() < 1.0


def test_different_seed_differs(tiny, tmp_path):
    root, _ = tiny
    other = tmp_path / "other"
    make_synthetic(other, replace(TINY, seed=1, write_mp4=False), progress=False)
    assert _records(root, "labeled") != _records(other, "labeled")
    a = sorted(root.glob("zip_frames/labeled/**/*.zip"))
    b = sorted(other.glob("zip_frames/labeled/**/*.zip"))
    assert {p.name for p in a}.isdisjoint({p.name for p in b})
    assert sorted(p.read_bytes() for p in a) != sorted(p.read_bytes() for p in b)


def test_plan_is_pure():
    assert plan_dataset(TINY) == plan_dataset(TINY)
    assert plan_dataset(TINY) != plan_dataset(replace(TINY, seed=7))


# ---------------------------------------------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------------------------------------------

def test_layout_zips_and_mp4s(tiny):
    root, summary = tiny
    oracle, faults = load_oracle(root), load_faults(root)
    assert summary["splits"] == {"labeled": 40, "unlabeled": 12, "test": 12}
    assert (root / "README.txt").read_text().startswith("mmcls synthetic")
    assert load_spec(root) == replace(TINY, workers=0)  # workers do not change the data, so are not stored
    checked_zip = checked_mp4 = 0
    for split in SPLITS:
        records = _records(root, split)
        assert [r["id"] for r in records] == list(oracle[split])
        for record in records:
            vid, broken = record["id"], FAULT_SOURCES.get(faults[split].get(record["id"], ""), frozenset())
            n = oracle[split][vid]["num_frames"]
            assert TINY.min_frames <= n <= TINY.max_frames
            if "zip" not in broken:
                names, frames = _zip_frames(zip_path(root, split, vid))
                assert names == sorted(names) == [f"{i:04d}.jpg" for i in range(n)]
                assert frames.shape == (n, 64, 64, 3)
                checked_zip += 1
            if "mp4" not in broken:
                assert _mp4_frames(mp4_path(root, split, vid)).shape == (n, 64, 64, 3)
                checked_mp4 += 1
    assert checked_zip == 64 - 5 * 3 and checked_mp4 == 64 - 3 * 3  # 5 zip-breaking, 3 mp4-breaking kinds per split
    assert zip_path(root, "test", "123456789").parent.name == "789"
    vid = next(v for v in oracle["labeled"] if v not in faults["labeled"])
    with zipfile.ZipFile(zip_path(root, "labeled", vid)) as archive:  # no clock in the bytes
        assert {info.date_time for info in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_files_hold_the_rendered_frames(tiny):
    root, _ = tiny
    plan, other = [p for p in plan_dataset(TINY)["labeled"] if p.fault is None][:2]
    expected = render_frames(TINY, plan).astype(int)
    _, from_zip = _zip_frames(zip_path(root, "labeled", plan.id))
    from_mp4 = _mp4_frames(mp4_path(root, "labeled", plan.id))
    _, unrelated = _zip_frames(zip_path(root, "labeled", other.id))
    n = min(len(expected), len(unrelated))
    assert np.abs(from_zip.astype(int) - expected).mean() < 6  # JPEG loses some of the pixel noise
    assert np.abs(from_mp4.astype(int) - expected).mean() < 8
    assert np.abs(unrelated[:n].astype(int) - expected[:n]).mean() > 20


def test_decord_reads_the_mp4s(tiny):
    decord = pytest.importorskip("decord")
    root, _ = tiny
    oracle, faults = load_oracle(root), load_faults(root)
    vid = next(v for v in oracle["test"] if v not in faults["test"])
    reader = decord.VideoReader(str(mp4_path(root, "test", vid)))
    assert len(reader) == oracle["test"][vid]["num_frames"]
    assert reader[0].shape == (64, 64, 3)


def test_refuses_a_foreign_folder_and_replaces_its_own(tiny, tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="not empty"):
        make_synthetic(tmp_path, TINY, progress=False)
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    root = tmp_path / "ds"
    make_synthetic(root, replace(TINY, write_mp4=False), progress=False)
    make_synthetic(root, replace(TINY, seed=3, write_mp4=False, faults=False), progress=False)
    ids = {r["id"] for s in SPLITS for r in _records(root, s)}
    assert {p.stem for p in root.glob("zip_frames/**/*.zip")} == ids  # no stale zips from the first run


def test_spec_validation():
    with pytest.raises(ConfigError, match="size"):
        plan_dataset(replace(TINY, size=15))
    with pytest.raises(ConfigError, match="max_frames"):
        plan_dataset(replace(TINY, min_frames=9, max_frames=8))
    with pytest.raises(ConfigError, match="num_video_concepts"):
        plan_dataset(replace(TINY, num_text_concepts=3, num_video_concepts=4))


# ---------------------------------------------------------------------------------------------------------------
# labels
# ---------------------------------------------------------------------------------------------------------------

def test_labels_ids_and_truth(tiny):
    root, _ = tiny
    table = class_table(TINY)
    category_ids = (root / "category_ids.txt").read_text().split()
    assert category_ids == sorted(c.category_id for c in table) and len(category_ids) == 27
    assert all(re.fullmatch(r"\d{4}", c) for c in category_ids)
    assert all(c.lv1_id == c.category_id[:2] for c in table) and len({c.lv1_id for c in table}) == 8
    labeled = _records(root, "labeled")
    assert {r["category_id"] for r in labeled} == set(category_ids)  # every class appears
    for split in ("unlabeled", "test"):
        assert all("category_id" not in r for r in _records(root, split))
    oracle = load_oracle(root)
    truth = (root / "annotations" / "test_truth.csv").read_text().splitlines()
    assert truth == [f"{r['id']},{oracle['test'][r['id']]['category_id']}" for r in _records(root, "test")]
    ids = [r["id"] for s in SPLITS for r in _records(root, s)]
    assert len(set(ids)) == len(ids) and all(re.fullmatch(r"[1-9]\d{15,19}", i) for i in ids)


def test_default_class_frequencies_are_long_tailed():
    counts = Counter(p.category_id for p in plan_dataset(SyntheticSpec())["labeled"])
    assert len(counts) == 27 and min(counts.values()) >= 8
    assert max(counts.values()) / min(counts.values()) >= 10


def test_text_mixes_chinese_and_english(tiny):
    root, _ = tiny
    text = " ".join(r["title"] + r["asr"] for r in _records(root, "labeled"))
    assert re.search(r"[\u4e00-\u9fff]", text) and re.search(r"[A-Za-z]{3,}", text)


# ---------------------------------------------------------------------------------------------------------------
# fusion: neither modality alone determines the class
# ---------------------------------------------------------------------------------------------------------------

def test_class_is_a_pair_that_neither_concept_determines():
    table = class_table()
    pairs = [(c.text_concept, c.video_concept) for c in table]
    assert len(set(pairs)) == len(pairs) == 27
    for attr in ("text_concept", "video_concept"):
        groups: dict[str, set[str]] = {}
        lv1: dict[str, set[str]] = {}
        for c in table:
            groups.setdefault(getattr(c, attr), set()).add(c.category_id)
            lv1.setdefault(getattr(c, attr), set()).add(c.lv1_id)
        assert {len(ids) for ids in groups.values()} == {3, 4}
        assert {len(ids) for ids in lv1.values()} == ({3} if attr == "text_concept" else {3, 4})  # lv1 needs both
    slides = [c for c in table if c.video_concept in MIRRORED_CONCEPT]
    assert len(slides) == 6 and {c.video_concept for c in slides} == set(MIRRORED_CONCEPT)
    # each text concept seen with the slide has both directions, in one level-1 group, at neighbouring frequencies
    for text in {c.text_concept for c in slides}:
        pair = sorted((c for c in slides if c.text_concept == text), key=lambda c: c.video_concept)
        assert [c.video_concept for c in pair] == ["left_to_right", "right_to_left"]
        assert pair[0].lv1_id == pair[1].lv1_id and 1 < pair[0].frequency / pair[1].frequency < 1.2


def test_modalities_are_correlated_so_matching_can_be_learned():
    """A text and a video of two random samples are an impossible pair about half the time (the ITM signal);
    video_concepts_per_text = num_video_concepts gives independent modalities."""
    plans = plan_dataset(SyntheticSpec(num_labeled=2000, num_unlabeled=0, num_test=0))["labeled"]
    classes = {(c.text_concept, c.video_concept) for c in class_table()}
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(len(plans))
    impossible = np.mean([(p.text_concept, plans[j].video_concept) not in classes
                          for p, j in zip(plans, shuffled, strict=True)])
    assert 0.35 <= impossible <= 0.65, impossible
    independent = SyntheticSpec(num_text_concepts=6, num_video_concepts=4, video_concepts_per_text=4)
    assert len({(c.text_concept, c.video_concept) for c in class_table(independent)}) == 24
    with pytest.raises(ConfigError, match="video_concepts_per_text"):
        plan_dataset(replace(TINY, video_concepts_per_text=8))


def _filler_concept_accuracy(root: Path) -> float:
    """Text concept accuracy of a nearest-centroid classifier on filler-word counts alone (keywords removed),
    trained on the first half of the labelled split and scored on the second."""
    from mmcls.synthetic import FILLERS

    records, oracle = _records(root, "labeled"), load_oracle(root)["labeled"]
    keywords = {word.lower() for _, words in TEXT_CONCEPTS for word in words}
    vocab = sorted(set(FILLERS) - keywords, key=len, reverse=True)  # longest first: 第一次 before 一
    def counts(record: dict) -> np.ndarray:
        text = " ".join([record["title"], record["asr"]] + [item["text"] for item in record["ocr"]]).lower()
        for word in keywords:
            text = text.replace(word, " ")
        return np.array([text.count(word) for word in vocab], dtype=float)
    x = np.stack([counts(r) for r in records])
    x /= np.maximum(x.sum(axis=1, keepdims=True), 1)
    y = np.array([oracle[r["id"]]["text_concept"] for r in records])
    half = len(records) // 2
    concepts = sorted(set(y[:half]))
    centroids = np.stack([x[:half][y[:half] == c].mean(axis=0) for c in concepts])
    guess = np.array(concepts)[np.argmin(((x[half:, None] - centroids[None]) ** 2).sum(-1), axis=1)]
    return float(np.mean(guess == y[half:]))


def test_filler_words_carry_the_topic_weakly(tmp_path):
    """Each concept favours some everyday words: without keywords the text is still a (weak) cue to its concept;
    with p_topic_word=0 it is none."""
    spec = SyntheticSpec(num_labeled=1600, num_unlabeled=0, num_test=0, write_zip=False, write_mp4=False)
    make_synthetic(tmp_path / "topic", spec, progress=False)
    make_synthetic(tmp_path / "flat", replace(spec, p_topic_word=0.0), progress=False)
    chance = 1 / spec.num_text_concepts
    assert _filler_concept_accuracy(tmp_path / "topic") > chance + 0.2
    assert _filler_concept_accuracy(tmp_path / "flat") < chance + 0.1


def _accuracies(records: list[dict], oracle: dict, level) -> dict[str, float]:
    """Accuracy of a keyword-count text classifier, a video-concept oracle, and the two combined (the class of the
    video concept whose text concept has the most keywords)."""
    table = class_table()
    counts = Counter(level(oracle[r["id"]]["category_id"]) for r in records)

    def most_common(attr: str, value: str) -> str:
        return max({level(c.category_id) for c in table if getattr(c, attr) == value}, key=counts.__getitem__)

    hits = Counter()
    for r in records:
        truth = oracle[r["id"]]
        scores = text_concept_scores(r, SyntheticSpec().num_text_concepts)
        text = max(scores, key=scores.__getitem__)
        target = level(truth["category_id"])
        hits["text"] += most_common("text_concept", text) == target
        hits["video"] += most_common("video_concept", truth["video_concept"]) == target
        fused = max((c for c in table if c.video_concept == truth["video_concept"]),
                    key=lambda c: (scores[c.text_concept], counts[level(c.category_id)]))
        hits["both"] += level(fused.category_id) == target
    return {k: hits[k] / len(records) for k in ("text", "video", "both")}


def test_only_fusion_scores_high(tmp_path):
    root = tmp_path / "text_only"
    make_synthetic(root, SyntheticSpec(num_labeled=2000, num_unlabeled=0, num_test=0, write_zip=False,
                                       write_mp4=False), progress=False)
    records, oracle = _records(root, "labeled"), load_oracle(root)["labeled"]
    for level in (lambda c: c, lambda c: c[:2]):
        acc = _accuracies(records, oracle, level)
        assert acc["both"] >= 0.8, acc
        assert acc["text"] <= acc["both"] - 0.2 and acc["video"] <= acc["both"] - 0.2, acc


# ---------------------------------------------------------------------------------------------------------------
# frame order
# ---------------------------------------------------------------------------------------------------------------

def _foreground(frames: np.ndarray) -> np.ndarray:
    """Pixels far from each frame's median colour (the background): bool ``[T, H, W]``."""
    median = np.median(frames.reshape(len(frames), -1, 3), axis=1)[:, None, None, :]
    return np.linalg.norm(frames.astype(float) - median, axis=-1) > 100


def _centroids(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The foreground's centre per frame: ``(rows, columns)``, each ``[T]``."""
    fg = _foreground(frames)
    area = np.maximum(fg.sum(axis=(1, 2)), 1)
    rows = (fg.sum(axis=2) * np.arange(frames.shape[1])).sum(axis=1) / area
    cols = (fg.sum(axis=1) * np.arange(frames.shape[2])).sum(axis=1) / area
    return rows, cols


def _trend(frames: np.ndarray, concept: str) -> float:
    """Change from first to last frame of the object's centre height (rise/fall), area (grow/shrink) or horizontal
    position (left_to_right/right_to_left)."""
    if concept in ("rise", "fall"):
        signal = -_centroids(frames)[0]  # image rows grow downwards: "up" is a rising signal
    elif concept in MIRRORED_CONCEPT:
        signal = _centroids(frames)[1]
    else:
        signal = _foreground(frames).sum(axis=(1, 2)).astype(float)
    return float(signal[-1] - signal[0])


#: The sign of :func:`_trend` of each concept with a direction.
DIRECTION = {"rise": 1, "fall": -1, "grow": 1, "shrink": -1, "left_to_right": 1, "right_to_left": -1}


def _plan(concept: str, index: int, num_frames: int = 10) -> SamplePlan:
    return SamplePlan("labeled", index, "1" * 19, "0101", "food", concept, num_frames=num_frames)


@pytest.mark.parametrize("concept", ["rise", "grow", "left_to_right"])
def test_direction_pairs_are_time_reversals(concept):
    opposite = REVERSED_CONCEPT[concept]
    for index in range(8):
        plan = _plan(concept, index, num_frames=10 + index)
        frames = render_frames(TINY, plan)
        backwards = render_frames(TINY, replace(plan, video_concept=opposite))
        assert np.array_equal(backwards, frames[::-1])  # same frames, opposite order
        assert _trend(frames, concept) > 5 and _trend(backwards, opposite) < -5
        assert _trend(frames[::-1], concept) < -5


def test_slides_move_left_to_right_and_right_to_left_only():
    """The cross's horizontal centre moves steadily in the concept's direction (nearly every step, 15+ px in all)
    while its height stays put."""
    for concept, sign in (("left_to_right", 1), ("right_to_left", -1)):
        for index in range(12):
            rows, cols = _centroids(render_frames(TINY, _plan(concept, index, num_frames=8 + index)))
            steps = sign * np.diff(cols)
            assert sign * (cols[-1] - cols[0]) > 15 and np.mean(steps > -1) == 1 and np.mean(steps > 0) >= 0.75
            assert np.ptp(rows) < 6, (concept, index, rows)


def test_a_flipped_left_to_right_video_is_a_right_to_left_one():
    """A horizontal flip mirrors the trajectory (x -> size - 1 - x): it turns a left_to_right sample into a
    right_to_left one, distributed as right_to_left samples are (same start and end columns on average), so a
    flip must swap the two labels; a flip leaves rise/fall alone."""
    flipped_ends, reference_ends = [], []
    for index in range(24):
        frames = render_frames(TINY, _plan("left_to_right", index))
        flipped = np.ascontiguousarray(frames[:, :, ::-1])
        cols, flipped_cols = _centroids(frames)[1], _centroids(flipped)[1]
        assert np.allclose(flipped_cols, TINY.size - 1 - cols)
        assert _trend(flipped, "right_to_left") < -15
        other = render_frames(TINY, _plan("right_to_left", 100 + index))  # an unrelated right_to_left sample
        flipped_ends.append(flipped_cols[[0, -1]])
        reference_ends.append(_centroids(other)[1][[0, -1]])
        rise = render_frames(TINY, _plan("rise", index))
        assert _trend(rise[:, :, ::-1], "rise") > 5
    flipped_mean, reference_mean = np.mean(flipped_ends, axis=0), np.mean(reference_ends, axis=0)
    assert flipped_mean[0] - flipped_mean[1] > 15  # starts on the right, ends on the left
    assert np.abs(flipped_mean - reference_mean).max() < 4, (flipped_mean, reference_mean)


def test_written_videos_move_the_way_their_concept_says(tiny):
    root, _ = tiny
    oracle, faults = load_oracle(root), load_faults(root)
    seen = Counter()
    for split in SPLITS:
        for vid, info in oracle[split].items():
            concept = info["video_concept"]
            if concept not in DIRECTION or "zip" in FAULT_SOURCES.get(faults[split].get(vid, ""), ()):
                continue
            assert DIRECTION[concept] * _trend(_zip_frames(zip_path(root, split, vid))[1], concept) > 3, (vid, concept)
            seen[concept] += 1
    assert set(seen) == set(DIRECTION)


# ---------------------------------------------------------------------------------------------------------------
# horizontal flips: the flip map
# ---------------------------------------------------------------------------------------------------------------

def test_flip_map_file_lists_exactly_the_direction_pairs(tiny):
    root, _ = tiny
    flips = load_flip_label_map(root)
    assert flips == json.loads((root / "flip_label_map.json").read_text()) == flip_label_map(TINY)
    table = {c.category_id: c for c in class_table(TINY)}
    slides = {cid for cid, c in table.items() if c.video_concept in ("left_to_right", "right_to_left")}
    assert len(slides) == 6 and set(flips) == slides  # exactly the slide classes, nothing else
    for source, target in flips.items():
        assert flips[target] == source != target  # symmetric, no class mapped to itself
        a, b = table[source], table[target]
        assert a.text_concept == b.text_concept and a.lv1_id == b.lv1_id == source[:2] == target[:2]
        assert {a.video_concept, b.video_concept} == {"left_to_right", "right_to_left"}
    assert set(flips) <= set((root / "category_ids.txt").read_text().split())
    readme = (root / "README.txt").read_text()
    assert "flip_label_map.json" in readme and f"{sorted(flips)[0]} " in readme
    assert list(flips) == sorted(flips)


def test_reverse_map_file_lists_every_class_that_plays_backwards_as_another(tiny):
    """Every rise/fall, grow/shrink and slide class is listed, with the class of the same text concept and the
    reversed concept where the dataset has it (both ways), else null; stripes and ring are not listed."""
    root, _ = tiny
    reverse = json.loads((root / REVERSE_MAP_FILE).read_text())
    assert reverse == reverse_label_map(TINY)
    table = {c.category_id: c for c in class_table(TINY)}
    assert set(reverse) == {cid for cid, c in table.items() if c.video_concept in REVERSED_CONCEPT}
    assert any(target is None for target in reverse.values()) and any(reverse.values())
    for source, target in reverse.items():
        a = table[source]
        if target is None:
            assert (a.text_concept, REVERSED_CONCEPT[a.video_concept]) not in {
                (c.text_concept, c.video_concept) for c in table.values()}
            continue
        b = table[target]
        assert reverse[target] == source and a.text_concept == b.text_concept
        assert REVERSED_CONCEPT[a.video_concept] == b.video_concept
    assert REVERSE_MAP_FILE in (root / "README.txt").read_text()


def test_flip_map_is_empty_without_the_slide(tmp_path):
    spec = replace(TINY, num_video_concepts=6, faults=False, write_zip=False, write_mp4=False)
    assert {c.video_concept for c in class_table(spec)}.isdisjoint(MIRRORED_CONCEPT)
    make_synthetic(tmp_path, spec, progress=False)
    assert load_flip_label_map(tmp_path) == {}


# ---------------------------------------------------------------------------------------------------------------
# faults
# ---------------------------------------------------------------------------------------------------------------

def test_faults_are_listed_and_real(tiny):
    root, _ = tiny
    faults, oracle = load_faults(root), load_oracle(root)
    for split in SPLITS:
        assert sorted(faults[split].values()) == sorted(FAULT_KINDS)
        records = {r["id"]: r for r in _records(root, split)}
        for vid, kind in faults[split].items():
            _check_fault(root, split, vid, kind, records[vid])
            if split == "labeled":
                assert records[vid]["category_id"] == oracle[split][vid]["category_id"]
    truth_ids = [line.split(",")[0] for line in (root / "annotations/test_truth.csv").read_text().splitlines()]
    assert set(faults["test"]) <= set(truth_ids)


def _check_fault(root: Path, split: str, vid: str, kind: str, record: dict) -> None:
    """Assert that the files and fields of one faulty sample really are broken the way ``kind`` says."""
    zpath, mpath = zip_path(root, split, vid), mp4_path(root, split, vid)
    if kind == "missing_video":
        assert not zpath.exists() and not mpath.exists()
    elif kind == "empty_zip":
        assert zpath.stat().st_size == 0
    elif kind == "truncated_zip":
        assert zpath.read_bytes()[:2] == b"PK" and not zipfile.is_zipfile(zpath)
    elif kind == "not_jpeg_zip":
        with zipfile.ZipFile(zpath) as archive:
            assert archive.namelist()
            for name in archive.namelist():
                with pytest.raises(UnidentifiedImageError):
                    Image.open(io.BytesIO(archive.read(name)))
    elif kind == "no_members_zip":
        with zipfile.ZipFile(zpath) as archive:
            assert archive.namelist() == []
    elif kind in ("truncated_mp4", "empty_mp4"):
        import av

        assert (mpath.stat().st_size == 0) == (kind == "empty_mp4")
        with pytest.raises(av.error.FFmpegError):
            _mp4_frames(mpath)
    elif kind == "long_asr":
        assert len(record["asr"]) >= 5000
    else:
        assert record[kind.removeprefix("empty_")] in ("", [])
    if "zip" not in FAULT_SOURCES[kind]:
        assert zipfile.ZipFile(zpath).namelist()  # other sources stay intact
    if "mp4" not in FAULT_SOURCES[kind]:
        assert mpath.stat().st_size > 0


def test_no_faults_and_no_video_switches(tmp_path):
    spec = replace(TINY, faults=False, write_mp4=False)
    make_synthetic(tmp_path / "clean", spec, progress=False)
    assert load_faults(tmp_path / "clean") == {s: {} for s in SPLITS}
    assert all(r["title"] and r["asr"] and r["ocr"] for s in SPLITS for r in _records(tmp_path / "clean", s))
    assert not (tmp_path / "clean" / "videos").exists()
    assert "truncated_mp4" not in active_fault_kinds(replace(TINY, write_mp4=False))
    assert active_fault_kinds(replace(TINY, write_zip=False, write_mp4=False)) == (
        "empty_title", "empty_asr", "empty_ocr", "long_asr")


# ---------------------------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------------------------

def test_cli_writes_a_dataset(tmp_path, capsys):
    from mmcls.commands import make_synthetic as cli
    args = ["--out", str(tmp_path / "d"), "--num-labeled", "30", "--num-unlabeled", "0", "--num-test", "12",
            "--no-mp4", "--no-progress", "--seed", "5"]
    assert cli.main(args) == 0
    assert "30" in capsys.readouterr().out
    assert load_spec(tmp_path / "d") == SyntheticSpec(num_labeled=30, num_unlabeled=0, num_test=12, seed=5,
                                                      write_mp4=False)
    from mmcls.cli import run_main

    assert run_main(cli.main, ["--out", str(tmp_path / "e"), "--size", "15"]) == 2
    assert "size" in capsys.readouterr().err


def test_cli_help_runs_as_a_script():
    result = subprocess.run([sys.executable, "tools/make_synthetic.py", "--help"], cwd=REPO, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "example:" in result.stdout and "--no-faults" in result.stdout


def test_an_empty_split_is_left_out_rather_than_written_empty(tmp_path):
    from mmcls.data.records import load_records

    make_synthetic(tmp_path, SyntheticSpec(num_labeled=30, num_unlabeled=0, num_test=5, size=16, min_frames=2,
                                           max_frames=3, workers=1, write_mp4=False), progress=False)
    assert not (tmp_path / "annotations" / "unlabeled.json").exists()
    assert len(load_records(tmp_path / "annotations" / "labeled.json")) == 30
