"""The frame-feature cache (tools/extract_features.py): a model trained on pixels predicts the same from its cache."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from mmcls.cli import run_main
from mmcls.config import build_config
from mmcls.errors import UserError
from mmcls.synthetic import FAULT_SOURCES
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def _finetune(root: Path, out: Path, *extra: str) -> Path:
    from mmcls.engine.finetune import finetune

    finetune(build_config({}, tiny_overrides(root, out, "train.max_steps=2", "train.eval_every=2", *extra)))
    return out / "best"


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> Path:
    """A tiny fusion model trained for two steps on pixels (4 frames per video)."""
    return _finetune(synthetic_root, tmp_path_factory.mktemp("extract") / "run")


@pytest.fixture(scope="module")
def extracted(trained, tmp_path_factory):
    """The test split's features from the trained model's tower (every frame: the fixture has <= 12 per video)."""
    from mmcls.workflow.features import extract_features, load_tower

    out = tmp_path_factory.mktemp("feats") / "test.zip"
    tower = load_tower(model=trained)
    summary = extract_features(tower.model, tower.cfg.data, "test", out, max_frames=16, batch_size=8,
                               mixed_precision="no", progress=False)
    return out, summary, tower


def _members(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        return {name.removesuffix(".npy"): np.load(io.BytesIO(zf.read(name))) for name in zf.namelist()
                if name.endswith(".npy")}


def test_cached_features_give_the_same_predictions_as_live_frames(trained, extracted, synthetic_root):
    from mmcls.workflow.predict import predict

    out, summary, tower = extracted
    dim = tower.model.vision.out_dim
    members = _members(out)
    assert summary.dim == dim and summary.written == len(members) > 0
    for array in members.values():
        assert array.dtype == np.float16 and array.ndim == 2 and array.shape[1] == dim
        assert 6 <= array.shape[0] <= 12  # every frame of the video (the fixture has 6 to 12)
        assert np.isfinite(array).all()
    assert sorted(p.name for p in out.parent.iterdir()) == ["test.zip"]  # no temporary file left behind
    with zipfile.ZipFile(out) as zf:
        manifest = json.loads(zf.read("__mmcls__.json"))
    assert manifest["vision_sha256"] == tower.model.vision.fingerprint()

    live = predict([trained], "test", mixed_precision="no")
    cached = predict([trained], "test", mixed_precision="no",
                     overrides=["data.frame_source=feats", f"data.frame_dir={out.parent}"])
    assert cached.ids == live.ids
    np.testing.assert_allclose(cached.logits, live.logits, atol=1e-3, rtol=0)  # other frames: ~1e-2
    agree = np.mean(np.array(cached.category_ids) == np.array(live.category_ids))
    assert agree >= 0.9, agree
    from mmcls.errors import ArgumentError
    from mmcls.workflow.predict import TestTimeAugmentation

    with pytest.raises(ArgumentError, match=r"hflip: .* reads frame features"):  # features cannot be mirrored
        predict([trained], "test", mixed_precision="no", tta=TestTimeAugmentation(hflip=True),
                overrides=["data.frame_source=feats", f"data.frame_dir={out.parent}"])


def test_unreadable_videos_are_not_stored_and_still_predicted(trained, extracted, synthetic_root):
    from mmcls.workflow.predict import predict

    out, summary, _ = extracted
    faults = json.loads((synthetic_root / "faults.json").read_text())["test"]
    broken = {video_id for video_id, kind in faults.items() if "zip" in FAULT_SOURCES[kind]}
    test_ids = [r["id"] for r in json.loads((synthetic_root / "annotations" / "test.json").read_text())]
    assert broken and summary.failed == len(broken) and set(summary.failed_ids) == broken
    assert sum(summary.failures.values()) == len(broken)
    assert set(_members(out)) == set(test_ids) - broken
    assert summary.videos == len(test_ids) and summary.written == len(test_ids) - len(broken)

    cached = predict([trained], "test", mixed_precision="no",
                     overrides=["data.frame_source=feats", f"data.frame_dir={out.parent}"])
    assert cached.ids == test_ids and len(cached.category_ids) == len(test_ids)
    assert cached.video_failures == len(broken)  # reported as missing members, predicted from their text


def test_feature_width_mismatch_and_impossible_overrides_are_one_line_errors(trained, tmp_path):
    from mmcls.model_folder import load_portable
    from mmcls.workflow.predict import predict

    with zipfile.ZipFile(tmp_path / "test.zip", "w") as zf:  # features of another tower
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((3, 7), np.float16))
        zf.writestr("x.npy", buffer.getvalue())
    with pytest.raises(UserError, match=r"width 7, but .* takes") as info:
        predict([trained], "test", overrides=["data.frame_source=feats", f"data.frame_dir={tmp_path}"])
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=r"data.max_frames=8: .* at most 4 frames"):
        load_portable(trained, ["data.max_frames=8"])
    loaded = load_portable(trained, ["data.frame_source=feats"])  # the architecture is the saved one
    assert loaded.model.encoder.vision is not None and loaded.cfg.data.frame_source == "feats"


def test_features_of_another_tower_are_refused(trained, extracted, synthetic_root, tmp_path):
    """Same width, other weights (e.g. another fold's finetuned tower): the manifest fingerprint tells them apart."""
    from mmcls.workflow.predict import predict

    other = _finetune(synthetic_root, tmp_path / "other", "seed=3")
    out = extracted[0]
    with pytest.raises(UserError, match="made by another vision tower") as info:
        predict([other], "test", overrides=["data.frame_source=feats", f"data.frame_dir={out.parent}"])
    assert "\n" not in str(info.value)


def test_cli_writes_the_zip_and_rejects_a_model_without_a_vision_tower(trained, synthetic_root, tmp_path, capsys):
    from mmcls.commands.extract_features import main

    out = tmp_path / "feats" / "test.zip"
    assert run_main(main, ["--model", str(trained), "--split", "test", "--out", str(out), "--max-frames", "12",
                           "--precision", "no", "--no-progress", "--batch-size", "16"]) == 0
    assert out.is_file() and "videos/s" in capsys.readouterr().out
    assert len(_members(out)) > 0

    text_model = _finetune(synthetic_root, tmp_path / "text", "model.mode=text", "train.max_steps=1")
    capsys.readouterr()
    assert run_main(main, ["--model", str(text_model), "--out", str(tmp_path / "t.zip")]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "text-only" in err and "\n" not in err
    assert not (tmp_path / "t.zip").exists()
    config = ["--config", str(ROOT / "configs" / "demo.yaml"), f"data.root={synthetic_root}"]
    assert run_main(main, [*config, "data.frame_source=feats", "--out", str(tmp_path / "f.zip")]) != 0
    assert "extraction reads pixel frames" in capsys.readouterr().err


def test_a_temporal_tower_caches_its_own_frames_and_predicts_the_same_from_them(trained, synthetic_root, tmp_path):
    """With frame differences a frame's features depend on its neighbour, so the cache holds exactly the frames the
    model reads (data.max_frames): predictions from it match live ones; another frame count is refused."""
    from mmcls.workflow.features import extract_features, frames_to_cache, load_tower
    from mmcls.workflow.predict import predict

    model = _finetune(synthetic_root, tmp_path / "run", "model.temporal.frame_diff=rgb")
    tower = load_tower(model=model)
    frames = tower.cfg.data.max_frames
    plain = load_tower(model=trained)
    assert frames_to_cache(plain.model, plain.cfg.data) == 32 and frames_to_cache(tower.model, tower.cfg.data, 8) == 8
    assert frames_to_cache(tower.model, tower.cfg.data) == frames < 32
    with pytest.raises(UserError, match=rf"--max-frames 16: the tower looks across .* data.max_frames={frames};"):
        extract_features(tower.model, tower.cfg.data, "test", tmp_path / "feats" / "x.zip", max_frames=16,
                         mixed_precision="no", progress=False)
    out = tmp_path / "feats" / "test.zip"
    extract_features(tower.model, tower.cfg.data, "test", out, max_frames=frames, batch_size=8,
                     mixed_precision="no", progress=False)
    assert max(array.shape[0] for array in _members(out).values()) == frames
    live = predict([model], "test", mixed_precision="no")
    cached = predict([model], "test", mixed_precision="no",
                     overrides=["data.frame_source=feats", f"data.frame_dir={out.parent}"])
    np.testing.assert_allclose(cached.logits, live.logits, atol=1e-3, rtol=0)

