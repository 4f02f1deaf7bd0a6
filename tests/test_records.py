"""Annotation loading: JSON list and JSONL, and an error naming file/record/field for every kind of bad record."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmcls.data.records import VideoRecord, frame_folder_name, load_records, save_records
from mmcls.errors import DataError

GOOD = {"id": "1001", "title": "t", "asr": "a", "ocr": [{"time": 1, "text": "x"}], "category_id": "0102"}


def write_json(path: Path, records) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    return path


def test_json_and_jsonl_give_the_same_records(tmp_path):
    recs = [GOOD, {"id": "1002", "title": "标题", "asr": None, "category_id": "0201"}]
    a = load_records(write_json(tmp_path / "labeled.json", recs), labelled=True)
    b = load_records(write_jsonl(tmp_path / "labeled.jsonl", recs), labelled=True)
    assert a == b
    assert a[0] == VideoRecord("1001", "t", "a", [(1, "x")], "0102")
    assert a[1] == VideoRecord("1002", "标题", "", [], "0201")  # missing/null text fields are empty


def test_unlabelled_load_drops_labels_and_save_round_trips(tmp_path):
    recs = load_records(write_json(tmp_path / "x.json", [GOOD]), labelled=False)
    assert recs[0].category_id is None
    labelled = load_records(write_json(tmp_path / "y.json", [GOOD]))
    for name in ("out.json", "out.jsonl"):
        save_records(labelled, tmp_path / name)
        assert load_records(tmp_path / name) == labelled


def test_split_name():
    assert frame_folder_name("annotations/labeled.json") == "labeled"
    assert frame_folder_name("a/test_b.jsonl") == "test_b"


def bad_case(record: dict | list | int, **changes):
    if isinstance(record, dict):
        record = {**record, **changes}
        for key, value in list(record.items()):
            if value is ...:
                del record[key]
    return record


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (5, r"record 1: expected a JSON object, got int"),
        (bad_case(GOOD, id=...), r"record 1: field 'id': missing"),
        (bad_case(GOOD, id=1003), r"record 1: field 'id': expected a string, got int \(write ids as strings"),
        (bad_case(GOOD, id=" "), r"record 1: field 'id': empty id"),
        (bad_case(GOOD, title=3), r"record 1: field 'title': expected a string, got int"),
        (bad_case(GOOD, asr=["a"]), r"record 1: field 'asr': expected a string, got list"),
        (bad_case(GOOD, ocr="text"), r"record 1: field 'ocr': expected a list"),
        (bad_case(GOOD, ocr=["x"]), r"record 1: field 'ocr\[0\]': expected an object"),
        (bad_case(GOOD, ocr=[{"time": "1", "text": "x"}]),
         r"record 1: field 'ocr\[0\]\.time': expected a finite number"),
        (bad_case(GOOD, ocr=[{"time": 1, "text": 2}]), r"record 1: field 'ocr\[0\]\.text': expected a string"),
        (bad_case(GOOD, category_id=...), r"record 1: field 'category_id': missing in a labelled file"),
        (bad_case(GOOD, category_id=102), r"record 1: field 'category_id': expected a string, got int"),
        (bad_case(GOOD, id="1001"), r"record 1: field 'id': duplicate id '1001' \(first at record 0\)"),
        (bad_case(GOOD, id="1002", category_id="9999"), r"record 1: field 'category_id': unknown category '9999'"),
    ],
)
def test_each_bad_record_names_file_record_and_field(tmp_path, bad, message):
    path = write_json(tmp_path / "labeled.json", [GOOD, bad])
    with pytest.raises(DataError, match=r"^" + str(path).replace(".", r"\.") + ": " + message):
        load_records(path, labelled=True, categories={"0102", "0201"})


def test_jsonl_errors_name_the_line(tmp_path):
    path = tmp_path / "u.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + '{"id": "7", "title": 1}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"u\.jsonl: line 3: field 'title': expected a string"):
        load_records(path)
    path.write_text(json.dumps(GOOD) + "\n{not json}\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"u\.jsonl: line 2: malformed JSON"):
        load_records(path)


def test_malformed_json_names_line_and_column(tmp_path):
    path = tmp_path / "a.json"
    path.write_text('[{"id": "1"},\n {"id": "2",}]', encoding="utf-8")
    with pytest.raises(DataError, match=r"a\.json: line 2 column \d+: malformed JSON"):
        load_records(path)


def test_missing_file_and_wrong_top_level(tmp_path):
    with pytest.raises(DataError, match=r"nope\.json: annotation file not found"):
        load_records(tmp_path / "nope.json")
    path = tmp_path / "s.json"
    path.write_text('"just a string"', encoding="utf-8")
    with pytest.raises(DataError, match="expected a JSON list of records or JSON Lines"):
        load_records(path)


def test_cli_reports_one_line_and_exit_code_2(tmp_path):
    import subprocess
    import sys

    root = tmp_path / "ds"
    (root / "annotations").mkdir(parents=True)
    write_json(root / "annotations" / "labeled.json", [GOOD, bad_case(GOOD, id="9", title=5)])
    tools = Path(__file__).resolve().parents[1] / "tools"
    proc = subprocess.run([sys.executable, str(tools / "check_data.py"), str(root)], capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {root / 'annotations' / 'labeled.json'}: record 1: field 'title': expected a string, "
                      "got int"], proc.stderr
    assert "Traceback" not in proc.stderr


def test_jsonl_keeps_unicode_line_separators_inside_values(tmp_path):
    record = {**GOOD, "asr": "first\u2028second\u2029third\x85end"}
    path = write_jsonl(tmp_path / "u.jsonl", [record])
    loaded = load_records(path)
    assert loaded[0].asr == record["asr"]
    save_records(loaded, tmp_path / "again.jsonl")
    assert load_records(tmp_path / "again.jsonl") == loaded


@pytest.mark.parametrize(("raw", "message"), [
    ("", r"no records in the file"),
    ("[]", r"no records in the file"),
    ('[{"id": "a/b"}]', r"record 0: field 'id': id 'a/b' is not usable as a file name"),
    ('[{"id": ".."}]', r"record 0: field 'id': id '\.\.' is not usable as a file name"),
    ('[{"id": "1", "ocr": [{"time": NaN, "text": "x"}]}]',
     r"field 'ocr\[0\]\.time': expected a finite number, got nan"),
    ("[" * 100000 + "]" * 100000, r"malformed JSON: nested too deeply"),
])
def test_more_bad_files(tmp_path, raw, message):
    path = tmp_path / "x.json"
    path.write_text(raw, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_records(path)


def test_null_and_missing_ocr_time_both_mean_zero(tmp_path):
    path = write_json(tmp_path / "x.json", [{"id": "1", "ocr": [{"time": None, "text": "a"}, {"text": "b"}]}])
    assert load_records(path)[0].ocr == [(0, "a"), (0, "b")]


@pytest.mark.parametrize(("raw", "message"), [
    ('[{"id": "a,b"}]', r"record 0: field 'id': id 'a,b' cannot go into a submission CSV: contains a comma"),
    ('[{"id": " a"}]', r"field 'id': id ' a' cannot go into a submission CSV: leading or trailing white space"),
    ('[{"id": "a", "category_id": ""}]', r"field 'category_id': category id '' is unusable: empty"),
    ('{\n  "id": "a"\n}', r"expected a JSON list of records \(or one object per line\), got one JSON object"),
])
def test_ids_and_categories_must_fit_a_submission(tmp_path, raw, message):
    path = tmp_path / "x.json"
    path.write_text(raw, encoding="utf-8")
    with pytest.raises(DataError, match=message):
        load_records(path)
