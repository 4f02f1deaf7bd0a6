"""Pseudo-labels: confident-sample filtering, soft labels, the annotation file and how finetuning takes it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mmcls.cli import run_main
from mmcls.config import build_config
from mmcls.data.records import VideoRecord, load_records
from mmcls.errors import DataError, UserError
from mmcls.logits import save_logits
from mmcls.workflow.pseudo import pseudo_records, select_confident, soft_label

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["0101", "0102", "0201"]

PROBS = np.array([
    [0.95, 0.03, 0.02],  # 0: class 0, very sure
    [0.60, 0.30, 0.10],  # 1: class 0, unsure
    [0.90, 0.05, 0.05],  # 2: class 0, sure
    [0.05, 0.85, 0.10],  # 3: class 1, sure
    [0.10, 0.20, 0.70],  # 4: class 2, fairly sure
    [0.20, 0.35, 0.45],  # 5: class 2, unsure
])


def test_threshold_keeps_confident_rows():
    assert select_confident(PROBS, threshold=0.8).tolist() == [0, 2, 3]
    assert select_confident(PROBS, threshold=0.0).tolist() == list(range(6))


def test_top_k_per_class_keeps_the_most_confident_of_each_class():
    assert select_confident(PROBS, top_k_per_class=1).tolist() == [0, 3, 4]
    assert select_confident(PROBS, top_k_per_class=2).tolist() == [0, 2, 3, 4, 5]


def test_threshold_and_top_k_combine():
    assert select_confident(PROBS, threshold=0.65, top_k_per_class=1).tolist() == [0, 3, 4]


@pytest.mark.parametrize("kwargs, message", [({}, "choose threshold and/or top_k_per_class"),
                                             ({"threshold": 1.5}, "threshold: must be in \\[0, 1\\]"),
                                             ({"top_k_per_class": 0}, ">= 1")])
def test_selection_rejects_bad_settings(kwargs, message):
    with pytest.raises(UserError, match=message):
        select_confident(PROBS, **kwargs)


def test_soft_label_drops_tiny_probabilities_and_renormalises():
    label = soft_label(np.array([0.7, 0.2995, 0.0005]), CLASSES)
    assert set(label) == {"0101", "0102"}
    assert sum(label.values()) == pytest.approx(1.0, abs=1e-5)
    assert label["0101"] == pytest.approx(0.7 / 0.9995, abs=1e-5)


def test_pseudo_records_copy_the_text_and_label_with_the_argmax(tmp_path):
    records = [VideoRecord(id=f"u{i}", title=f"title {i}", asr="asr", ocr=[(1.0, "ocr")]) for i in range(6)]
    keep = select_confident(PROBS, threshold=0.8)
    hard = pseudo_records(records, PROBS, CLASSES, keep)
    soft = pseudo_records(records, PROBS, CLASSES, keep, soft=True)
    assert [(r.id, r.category_id, r.category_probs) for r in hard] == [("u0", "0101", None), ("u2", "0101", None),
                                                                       ("u3", "0102", None)]
    assert soft[2].category_probs == pytest.approx({"0101": 0.05, "0102": 0.85, "0201": 0.10})
    assert soft[0].title == "title 0" and soft[0].ocr == [(1.0, "ocr")]
    assert records[0].category_id is None  # the inputs are untouched


def test_cli_writes_a_file_that_finetuning_reads(tmp_path, capsys):
    from mmcls.commands import pseudo_label

    ids = [f"u{i}" for i in range(6)]
    annotations = tmp_path / "unlabeled.json"
    annotations.write_text(json.dumps([{"id": i, "title": "t", "asr": "", "ocr": []} for i in ids]))
    save_logits(tmp_path / "u.npy", ids, np.log(PROBS), CLASSES)
    truth = tmp_path / "truth.csv"
    truth.write_text("u0,0101\nu2,0102\nu3,0102\n")
    out = tmp_path / "pseudo.json"
    assert run_main(pseudo_label.main, ["--logits", str(tmp_path / "u.npy"), "--annotations", str(annotations),
                                        "--threshold", "0.8", "--soft", "--out", str(out),
                                        "--truth", str(truth)]) == 0
    loaded = load_records(out, labelled=True, categories=CLASSES)
    assert [r.id for r in loaded] == ["u0", "u2", "u3"]
    assert loaded[2].category_probs == pytest.approx({"0101": 0.05, "0102": 0.85, "0201": 0.10})
    # nothing passes: a one-line error, exit 2
    assert run_main(pseudo_label.main, ["--logits", str(tmp_path / "u.npy"), "--annotations", str(annotations),
                                        "--threshold", "0.99", "--out", str(out)]) == 2
    # a library argument is named by the command's flag
    capsys.readouterr()
    assert run_main(pseudo_label.main, ["--logits", str(tmp_path / "u.npy"), "--annotations", str(annotations),
                                        "--top-k-per-class", "0", "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == "error: --top-k-per-class: must be >= 1, got 0"


@pytest.mark.parametrize("probs, message", [
    ({"0101": 0.5}, "sum to 0.5000"),
    ({"0101": 1.5, "0102": -0.5}, "probability in \\[0, 1\\]"),
    ([0.5, 0.5], "non-empty object"),
])
def test_bad_soft_labels_name_the_field(tmp_path, probs, message):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"id": "a", "category_id": "0101", "category_probs": probs}]))
    with pytest.raises(DataError, match=f"field 'category_probs'.*{message}"):
        load_records(path, labelled=True)


def test_unknown_soft_label_category_is_an_error(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps([{"id": "a", "category_id": "0101", "category_probs": {"0101": 0.5, "9999": 0.5}}]))
    with pytest.raises(DataError, match="unknown category '9999'"):
        load_records(path, labelled=True, categories=CLASSES)


def test_pseudo_split_drops_labelled_ids_and_reads_the_unlabelled_frames(synthetic_root, tmp_path):
    from mmcls.data.splits import load_labelled_splits, load_pseudo_splits

    cfg = build_config({}, [f"data.root={synthetic_root}", "data.category_file=category_ids.txt"])
    train, val, categories = load_labelled_splits(cfg.data, cfg.seed)
    unlabeled = load_records(synthetic_root / "annotations" / "unlabeled.json")
    leaked = [val.records[0], train.records[0]]  # pseudo-labels for a validation and a training video
    rows = [{"id": r.id, "title": r.title, "category_id": categories.lv2_ids[0]} for r in [*unlabeled[:5], *leaked]]
    (tmp_path / "pseudo.json").write_text(json.dumps(rows))
    cfg = build_config({}, [f"data.root={synthetic_root}", "data.category_file=category_ids.txt",
                            f"data.pseudo={tmp_path / 'pseudo.json'}"])
    labelled = {r.id for r in train.records + val.records}
    (split,) = load_pseudo_splits(cfg.data, categories, labelled)
    assert [r.id for r in split.records] == [r.id for r in unlabeled[:5]]
    assert split.folder == "unlabeled"
    assert load_pseudo_splits(build_config({}, [f"data.root={synthetic_root}"]).data, categories, labelled) == []


def test_training_set_holds_the_pseudo_labels_with_their_soft_targets(synthetic_root, tmp_path, tiny_tokenizer):
    from mmcls.data.splits import load_labelled_splits
    from mmcls.engine.finetune import build_train_set

    unlabeled = load_records(synthetic_root / "annotations" / "unlabeled.json")
    ids = (synthetic_root / "category_ids.txt").read_text().split()
    rows = [{"id": r.id, "title": r.title, "category_id": ids[i], "category_probs": {ids[i]: 0.75, ids[i + 1]: 0.25}}
            for i, r in enumerate(unlabeled[:8])]
    (tmp_path / "pseudo.json").write_text(json.dumps(rows))
    cfg = build_config({}, [f"data.root={synthetic_root}", "data.category_file=category_ids.txt",
                            "data.max_text_len=16", f"data.pseudo={tmp_path / 'pseudo.json'}"])
    train, val, categories = load_labelled_splits(cfg.data, cfg.seed)
    dataset, pseudo = build_train_set(cfg, train, val, categories, tiny_tokenizer)
    assert len(dataset) == len(train.records) + 8 and [split.folder for split in pseudo] == ["unlabeled"]
    samples = [dataset[len(train.records) + i] for i in range(8)]
    assert [s["id"] for s in samples] == [r["id"] for r in rows]
    for i, sample in enumerate(samples):
        assert sample["label"] == categories.lv2_index(ids[i])
        assert sample["soft_target"][categories.lv2_index(ids[i + 1])] == pytest.approx(0.25)
        assert sample["frames"] is not None or sample["video_error"]  # read from zip_frames/unlabeled/
    assert dataset[0]["soft_target"] is None  # labelled videos keep their hard label (no teacher)


def test_finetuning_trains_on_pseudo_labels_and_never_validates_on_them(synthetic_root, tmp_path):
    from mmcls.engine.finetune import finetune
    from mmcls.logits import load_logits
    from tests.helpers import tiny_overrides

    unlabeled = load_records(synthetic_root / "annotations" / "unlabeled.json")
    ids = (synthetic_root / "category_ids.txt").read_text().split()
    labelled = json.loads((synthetic_root / "annotations" / "labeled.json").read_text())
    rows = [{"id": r.id, "title": r.title, "category_id": ids[i % len(ids)]} for i, r in enumerate(unlabeled[:8])]
    rows += [{"id": r["id"], "title": "leak", "category_id": ids[0]} for r in labelled]  # every labelled video
    (tmp_path / "pseudo.json").write_text(json.dumps(rows))
    run = tmp_path / "run"
    finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2",
                                             f"data.pseudo={tmp_path / 'pseudo.json'}")))
    log = (run / "train.log").read_text()
    pseudo = tmp_path / "pseudo.json"
    assert f"{len(labelled)} of {len(rows)} pseudo-labelled ids of {pseudo} are labelled videos" in log
    assert "(8 pseudo-labelled)" in log
    val_ids = set(load_logits(run / "val_logits.npy").ids)
    assert val_ids and not val_ids & {r["id"] for r in rows[:8]}


def test_a_wrong_frame_folder_is_a_config_error(synthetic_root, tmp_path):
    from mmcls.data.splits import load_labelled_splits, load_pseudo_splits
    from mmcls.errors import ConfigError

    test = load_records(synthetic_root / "annotations" / "test.json")
    ids = (synthetic_root / "category_ids.txt").read_text().split()
    (tmp_path / "pseudo.json").write_text(json.dumps([{"id": r.id, "category_id": ids[0]} for r in test[:5]]))
    base = [f"data.root={synthetic_root}", "data.category_file=category_ids.txt", f"data.pseudo={tmp_path}/pseudo.json"]
    cfg = build_config({}, base)
    _, _, categories = load_labelled_splits(cfg.data, cfg.seed)
    with pytest.raises(ConfigError, match=r"data\.pseudo_frames: none of the first 5"):
        load_pseudo_splits(cfg.data, categories, set())  # test videos looked for under zip_frames/unlabeled
    assert load_pseudo_splits(cfg.data, categories, set(), with_frames=False)  # text-only: no frames needed
    fixed = build_config({}, [*base, "data.pseudo_frames=test"])
    assert [split.folder for split in load_pseudo_splits(fixed.data, categories, set())] == ["test"]


def test_pseudo_labels_of_unlabelled_and_test_videos_from_two_files(synthetic_root, tmp_path, tiny_tokenizer):
    from mmcls.data.splits import load_labelled_splits, load_pseudo_splits
    from mmcls.engine.finetune import build_train_set
    from mmcls.errors import ConfigError

    ids = (synthetic_root / "category_ids.txt").read_text().split()
    unlabeled = load_records(synthetic_root / "annotations" / "unlabeled.json")[:4]
    test = load_records(synthetic_root / "annotations" / "test.json")[:3]
    (tmp_path / "u.json").write_text(json.dumps([{"id": r.id, "category_id": ids[0]} for r in unlabeled]))
    rows = [{"id": r.id, "category_id": ids[1]} for r in [*test, unlabeled[0]]]  # one id also in the first file
    (tmp_path / "t.json").write_text(json.dumps(rows))
    base = [f"data.root={synthetic_root}", "data.category_file=category_ids.txt", "data.max_text_len=16",
            f"data.pseudo=[{tmp_path / 'u.json'},{tmp_path / 't.json'}]"]
    cfg = build_config({}, [*base, "data.pseudo_frames=[unlabeled,test]"])
    train, val, categories = load_labelled_splits(cfg.data, cfg.seed)
    splits = load_pseudo_splits(cfg.data, categories, set())
    assert [(s.folder, [r.id for r in s.records]) for s in splits] == [
        ("unlabeled", [r.id for r in unlabeled]), ("test", [r.id for r in test])]  # the first file keeps the id
    dataset, _ = build_train_set(cfg, train, val, categories, tiny_tokenizer)
    assert len(dataset) == len(train.records) + 7
    assert dataset[len(train.records) + 4]["label"] == categories.lv2_index(ids[1])
    with pytest.raises(ConfigError, match=r"data\.pseudo_frames: 3 frame folders for 2 data\.pseudo files"):
        load_pseudo_splits(build_config({}, [*base, "data.pseudo_frames=[unlabeled,test,test]"]).data, categories,
                           set())
