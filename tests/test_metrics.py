"""WBDC mean-F1, per-class reports and submission I/O (mmcls.metrics)."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmcls.errors import DataError
from mmcls.metrics import (
    METRIC_KEYS,
    format_report,
    format_scores,
    mean_f1_from_ids,
    mean_f1_from_indices,
    per_class_report,
    read_submission,
    write_submission,
)

# Hand-computed example (8 samples). Item 6 predicts 0301, a class that never occurs in the truth.
#
#   item   1     2     3     4     5     6     7     8
#   truth  0101  0101  0101  0102  0201  0201  0202  0202
#   pred   0101  0101  0102  0102  0201  0301  0201  0202
#   ok     y     y     n     y     y     n     n     y        -> lv2 micro-F1 = accuracy = 5/8
#
# Level 2, per class (F1 = 2PR/(P+R) = 2TP/(support+predicted)):
#   0101: support 3, predicted 2 (1,2),  TP 2 -> P 1,   R 2/3 -> F1 4/5
#   0102: support 1, predicted 2 (3,4),  TP 1 -> P 1/2, R 1   -> F1 2/3
#   0201: support 2, predicted 2 (5,7),  TP 1 -> P 1/2, R 1/2 -> F1 1/2
#   0202: support 2, predicted 1 (8),    TP 1 -> P 1,   R 1/2 -> F1 2/3
#   0301: support 0, predicted 1 (6),    TP 0 -> P 0,   R 0   -> F1 0   (counted: present in the prediction)
#   macro = (4/5 + 2/3 + 1/2 + 2/3 + 0) / 5 = 79/150            (without 0301 it would be 79/120)
#
# Level 1 by prefix (first two characters): truth 01 01 01 01 02 02 02 02, pred 01 01 01 01 02 03 02 02
#   items 3 (0101->0102) and 7 (0202->0201) become correct; only item 6 is wrong -> micro 7/8
#   01: support 4, predicted 4, TP 4 -> F1 1
#   02: support 4, predicted 3, TP 3 -> P 1, R 3/4 -> F1 6/7
#   03: support 0, predicted 1, TP 0 -> F1 0
#   macro = (1 + 6/7 + 0) / 3 = 13/21
#
# Level 1 by the hierarchy {0101: A, 0102: A, 0201: B, 0202: C, 0301: B}:
#   truth A A A A B B C C, pred A A A A B B B C: only item 7 (C -> B) is wrong -> micro 7/8
#   A: support 4, predicted 4, TP 4 -> F1 1
#   B: support 2, predicted 3, TP 2 -> P 2/3, R 1 -> F1 4/5
#   C: support 2, predicted 1, TP 1 -> P 1, R 1/2 -> F1 2/3
#   macro = (1 + 4/5 + 2/3) / 3 = 37/45
TRUTH = ["0101", "0101", "0101", "0102", "0201", "0201", "0202", "0202"]
PRED = ["0101", "0101", "0102", "0102", "0201", "0301", "0201", "0202"]
HIERARCHY = {"0101": "A", "0102": "A", "0201": "B", "0202": "C", "0301": "B"}

LV2_MICRO, LV2_MACRO = Fraction(5, 8), Fraction(79, 150)
PREFIX_LV1 = (Fraction(7, 8), Fraction(13, 21))
HIERARCHY_LV1 = (Fraction(7, 8), Fraction(37, 45))


def expected(lv1: tuple[Fraction, Fraction]) -> dict[str, float]:
    values = [lv1[0], lv1[1], LV2_MICRO, LV2_MACRO]
    return dict(zip(METRIC_KEYS, [float(v) for v in [*values, sum(values) / 4]], strict=True))


def assert_scores(got: dict[str, float], want: dict[str, float]) -> None:
    assert list(got) == list(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


# --- scores -------------------------------------------------------------------------------------------------------
def test_hand_computed_example_prefix_lv1():
    assert_scores(mean_f1_from_ids(TRUTH, PRED), expected(PREFIX_LV1))


def test_hand_computed_example_hierarchy_lv1():
    assert_scores(mean_f1_from_ids(TRUTH, PRED, lv1_of=HIERARCHY), expected(HIERARCHY_LV1))
    # the same mapping given as a callable
    assert_scores(mean_f1_from_ids(TRUTH, PRED, lv1_of=HIERARCHY.__getitem__), expected(HIERARCHY_LV1))


def test_class_only_in_prediction_counts_in_macro():
    scores = mean_f1_from_ids(TRUTH, PRED)
    assert scores["lv2_macro_f1"] == pytest.approx(79 / 150)
    assert scores["lv2_macro_f1"] != pytest.approx(79 / 120)  # the average that would skip 0301


def test_lv1_prefix_length_is_used():
    # a one-character prefix puts everything into level-1 class "0": level 1 is perfect
    scores = mean_f1_from_ids(TRUTH, PRED, lv1_prefix_len=1)
    assert scores["lv1_micro_f1"] == scores["lv1_macro_f1"] == 1.0
    assert scores["lv2_macro_f1"] == pytest.approx(79 / 150)


def test_hierarchy_missing_category_is_a_data_error():
    with pytest.raises(DataError, match="0301"):
        mean_f1_from_ids(TRUTH, PRED, lv1_of={k: v for k, v in HIERARCHY.items() if k != "0301"})


def test_indices_hand_computed_example():
    lv2_ids = ["0101", "0102", "0201", "0202", "0301"]
    lv1_of_lv2 = [0, 0, 1, 1, 2]  # prefixes 01, 02, 03
    truth = np.array([lv2_ids.index(c) for c in TRUTH])
    pred = np.array([lv2_ids.index(c) for c in PRED])
    assert_scores(mean_f1_from_indices(truth, pred, lv1_of_lv2), expected(PREFIX_LV1))


@pytest.mark.parametrize("lv1_of", [None, HIERARCHY])
def test_perfect_prediction_scores_one(lv1_of):
    scores = mean_f1_from_ids(TRUTH, TRUTH, lv1_of=lv1_of)
    assert scores == dict.fromkeys(METRIC_KEYS, 1.0)
    assert mean_f1_from_indices([0, 1, 1, 2], [0, 1, 1, 2], [0, 0, 1]) == dict.fromkeys(METRIC_KEYS, 1.0)


@st.composite
def labelled_pairs(draw):
    num_lv2 = draw(st.integers(1, 12))
    lv1_of_lv2 = draw(st.lists(st.integers(0, 5), min_size=num_lv2, max_size=num_lv2))
    n = draw(st.integers(1, 60))
    truth = draw(st.lists(st.integers(0, num_lv2 - 1), min_size=n, max_size=n))
    pred = draw(st.lists(st.integers(0, num_lv2 - 1), min_size=n, max_size=n))
    return truth, pred, lv1_of_lv2


@settings(max_examples=200, deadline=None)
@given(labelled_pairs())
def test_indices_match_ids(data):
    truth, pred, lv1_of_lv2 = data
    fast = mean_f1_from_indices(np.array(truth), np.array(pred), lv1_of_lv2)
    ids = [f"c{i:02d}" for i in range(len(lv1_of_lv2))]
    parents = {cid: f"p{lv1}" for cid, lv1 in zip(ids, lv1_of_lv2, strict=True)}
    slow = mean_f1_from_ids([ids[i] for i in truth], [ids[i] for i in pred], lv1_of=parents)
    for key in METRIC_KEYS:
        assert fast[key] == pytest.approx(slow[key], abs=1e-12), key


def test_indices_input_checks():
    with pytest.raises(ValueError, match="outside"):
        mean_f1_from_indices([0, 3], [0, 1], [0, 0, 1])
    with pytest.raises(ValueError, match="length"):
        mean_f1_from_indices([0, 1], [0], [0, 1])
    with pytest.raises(ValueError, match="empty"):
        mean_f1_from_ids([], [])


def test_format_scores():
    text = format_scores(mean_f1_from_ids(TRUTH, PRED))
    assert text.splitlines() == [
        "lv1_micro_f1 0.8750", "lv1_macro_f1 0.6190", "lv2_micro_f1 0.6250", "lv2_macro_f1 0.5267",
        "mean_f1 0.6614"]


# --- per-class report ---------------------------------------------------------------------------------------------
def test_per_class_report_level2():
    rows = per_class_report(TRUTH, PRED)
    assert [r["id"] for r in rows] == ["0101", "0201", "0202", "0102", "0301"]  # support 3, 2, 2, 1, 0
    first = rows[0]
    assert (first["lv1"], first["support"], first["predicted"], first["correct"]) == ("01", 3, 2, 2)
    assert (first["precision"], first["recall"], first["f1"]) == pytest.approx((1.0, 2 / 3, 0.8))
    only_pred = rows[-1]
    assert (only_pred["support"], only_pred["predicted"], only_pred["precision"], only_pred["f1"]) == (0, 1, 0, 0)
    assert np.mean([r["f1"] for r in rows]) == pytest.approx(79 / 150)


def test_per_class_report_level1_with_hierarchy():
    rows = per_class_report(TRUTH, PRED, lv1_of=HIERARCHY, level=1)
    assert [(r["id"], r["support"], r["predicted"], r["correct"]) for r in rows] == [
        ("A", 4, 4, 4), ("B", 2, 3, 2), ("C", 2, 1, 1)]
    assert [r["f1"] for r in rows] == pytest.approx([1.0, 0.8, 2 / 3])


def test_format_report_table():
    lines = format_report(per_class_report(TRUTH, PRED)).splitlines()
    assert lines[0].split() == ["id", "lv1", "support", "predicted", "correct", "precision", "recall", "f1"]
    assert lines[1].split() == ["0101", "01", "3", "2", "2", "1.0000", "0.6667", "0.8000"]
    assert len(lines) == 6
    assert len({len(line) for line in lines}) == 1  # aligned columns


# --- submission files ---------------------------------------------------------------------------------------------
IDS = ["v1", "v2", "v3"]
KNOWN = {"0101", "0102", "0201"}


def write(tmp_path: Path, text: str | bytes, name: str = "sub.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        text = text.encode("utf-8")
    path.write_bytes(text)
    return path


def test_read_valid_submission_in_file_order(tmp_path):
    path = write(tmp_path, "v3,0201\nv1,0101\nv2,0102\n")
    got = read_submission(path, expected_ids=IDS, known_categories=KNOWN)
    assert list(got.items()) == [("v3", "0201"), ("v1", "0101"), ("v2", "0102")]


@pytest.mark.parametrize("text", [
    b"v1,0101\nv2,0102\nv3,0201",  # no trailing newline
    b"v1,0101\r\nv2,0102\r\nv3,0201\r\n",  # Windows line endings
    b"\xef\xbb\xbfv1,0101\nv2,0102\nv3,0201\n",  # UTF-8 BOM
    b"v1,0101\nv2,0102\nv3,0201\n\n",  # trailing blank line
    b"v1 , 0101\nv2,0102 \nv3,0201\n",  # spaces around fields
])
def test_read_tolerates_formatting(tmp_path, text):
    got = read_submission(write(tmp_path, text), expected_ids=IDS, known_categories=KNOWN)
    assert got == {"v1": "0101", "v2": "0102", "v3": "0201"}


def check_error(path: Path, line: int, *fragments: str, **kwargs) -> DataError:
    with pytest.raises(DataError) as info:
        read_submission(path, **kwargs)
    message = str(info.value)
    assert message.startswith(f"{path}: line {line}"), message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


@pytest.mark.parametrize("kwargs", [{}, {"expected_ids": IDS}, {"expected_ids": IDS, "known_categories": KNOWN}])
def test_header_line(tmp_path, kwargs):
    path = write(tmp_path, "id,category_id\nv1,0101\nv2,0102\nv3,0201\n")
    check_error(path, 1, "header", **kwargs)


def test_header_detected_from_unknown_id_and_category(tmp_path):
    path = write(tmp_path, "vid_string,cat\nv1,0101\nv2,0102\nv3,0201\n")
    check_error(path, 1, "header", expected_ids=IDS, known_categories=KNOWN)


@pytest.mark.parametrize(("text", "line", "fragment"), [
    ("v1,0101\nv2,0102,extra\nv3,0201\n", 2, "got 3"),
    ("v1,0101\nv2;0102\nv3,0201\n", 2, "got 1"),
    ("v1,0101\n\nv2,0102\nv3,0201\n", 2, "empty line"),
])
def test_wrong_columns(tmp_path, text, line, fragment):
    check_error(write(tmp_path, text), line, fragment, expected_ids=IDS)


def test_empty_fields(tmp_path):
    check_error(write(tmp_path, "v1,0101\n,0102\n"), 2, "field 'id'", "empty id")
    check_error(write(tmp_path, "v1,0101\nv2,\n"), 2, "field 'category_id'", "empty category_id")


def test_duplicate_id(tmp_path):
    path = write(tmp_path, "v1,0101\nv2,0102\nv1,0201\n")
    error = check_error(path, 3, "duplicate id 'v1'", "first on line 1", expected_ids=IDS)
    assert error.field == "id"


def test_unknown_id(tmp_path):
    path = write(tmp_path, "v1,0101\nv9,0102\nv3,0201\n")
    check_error(path, 2, "unknown id 'v9'", expected_ids=IDS)


def test_extra_line_is_rejected(tmp_path):
    path = write(tmp_path, "v1,0101\nv2,0102\nv3,0201\nv4,0201\n")
    check_error(path, 4, "unknown id 'v4'", expected_ids=IDS)


def test_missing_ids_wrong_line_count(tmp_path):
    path = write(tmp_path, "v2,0102\n")
    check_error(path, 2, "wrong line count", "1 lines but 3 expected ids", "2 ids are missing", "'v1', 'v3'",
                expected_ids=IDS)


def test_many_missing_ids_are_abbreviated(tmp_path):
    ids = [f"v{i}" for i in range(20)]
    error = check_error(write(tmp_path, "v0,0101\n"), 2, "19 ids are missing", "'v1', 'v2', 'v3', 'v4', 'v5', ...",
                        expected_ids=ids)
    assert "'v6'" not in str(error)


def test_unknown_category(tmp_path):
    path = write(tmp_path, "v1,0101\nv2,9999\nv3,0201\n")
    error = check_error(path, 2, "unknown category_id '9999'", expected_ids=IDS, known_categories=KNOWN)
    assert error.field == "category_id"


def test_unreadable_files(tmp_path):
    for path, fragment in [(write(tmp_path, ""), "empty file"), (write(tmp_path, "\n\n", "blank.csv"), "empty file"),
                           (write(tmp_path, b"v1,\xff\xfe\n", "bin.csv"), "UTF-8"),
                           (tmp_path / "missing.csv", "not found")]:
        with pytest.raises(DataError, match=fragment) as info:
            read_submission(path)
        assert str(info.value).startswith(str(path))


def test_write_submission_roundtrip(tmp_path):
    path = tmp_path / "out" / "result.csv"
    write_submission(path, ["v2", "v1"], ["0102", "0101"])
    assert path.read_text() == "v2,0102\nv1,0101\n"  # no header, given order
    assert read_submission(path, expected_ids=["v1", "v2"]) == {"v2": "0102", "v1": "0101"}
    assert os.listdir(path.parent) == ["result.csv"]  # no temporary file left behind


def test_write_submission_rejects_bad_values(tmp_path):
    path = tmp_path / "result.csv"
    with pytest.raises(ValueError, match="2 ids but 1"):
        write_submission(path, ["v1", "v2"], ["0101"])
    with pytest.raises(DataError, match="cannot be written"):
        write_submission(path, ["v1", "v,2"], ["0101", "0102"])
    with pytest.raises(DataError, match="duplicate id"):
        write_submission(path, ["v1", "v1"], ["0101", "0102"])
    assert not path.exists()
