"""tools/check_data.py on a real (tiny) synthetic dataset: statistics, unreadable videos, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "check_data.py"


def run(*args):
    return subprocess.run([sys.executable, str(TOOL), *map(str, args)], capture_output=True, text=True)


def test_reports_counts_text_and_every_unreadable_video(synthetic_root):
    proc = run(synthetic_root, "data.category_file=category_ids.txt", "data.num_workers=2", "data.max_text_len=48",
               "--max-bad-fraction", "0.5")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "train      annotations/labeled.json" in out and "96 labelled" in out
    assert "categories: " in out and "text tokens per field" in out
    for name in ("title", "asr", "ocr", "total"):
        assert f"  {name} " in out
    faults = json.loads((synthetic_root / "faults.json").read_text())
    from mmcls.synthetic import FAULT_SOURCES

    for split, kinds in faults.items():
        for video_id, kind in kinds.items():
            listed = f"unreadable {split}/{video_id}:" in out
            assert listed == ("zip" in FAULT_SOURCES[kind]), (split, video_id, kind)
    assert out.rstrip().endswith("OK: the data is usable")


def test_wrong_frame_folder_is_fatal(synthetic_root):
    proc = run(synthetic_root, "data.frame_dir=nowhere", "data.num_workers=0")
    assert proc.returncode == 1
    assert "FATAL" in proc.stderr and "check data.root / data.frame_source" in proc.stderr


def test_missing_root_and_bad_annotation_are_one_line_errors(tmp_path):
    proc = run(tmp_path / "nope")
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {tmp_path / 'nope'}: dataset root not found"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "labeled.json").write_text('[{"id": "1", "category_id": "0101"}, [1]]')
    proc = run(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'annotations' / 'labeled.json'}: record 1: expected a JSON object, got list"]


def test_readme_command_with_config_and_overrides(synthetic_root):
    config = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
    proc = run(synthetic_root, "--config", config, "data.max_frames=4", "--max-bad-fraction", "0.5",
               "data.num_workers=0")
    assert proc.returncode == 0, proc.stderr
    assert "frames per video" in proc.stdout


def test_label_outside_the_category_file_is_reported_as_training_would(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "labeled.json").write_text('[{"id": "1", "category_id": "0101"}]')
    (tmp_path / "category_ids.txt").write_text("0102\n")
    proc = run(tmp_path, "data.category_file=category_ids.txt", "--no-videos")
    assert proc.returncode == 2
    assert "record 0: field 'category_id': unknown category '0101'" in proc.stderr
