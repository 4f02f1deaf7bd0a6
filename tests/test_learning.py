"""Learning is real: on the synthetic dataset the fused model beats text-only and video-only runs (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mmcls.config import load_config
from mmcls.synthetic import SyntheticSpec, make_synthetic

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(1800)  # three trainings: several minutes on a 2-core CPU
def test_fusion_beats_each_modality_alone(tmp_path):
    from mmcls.commands.build_tokenizer import corpus
    from mmcls.data.tokenizer import train_wordpiece
    from mmcls.engine.finetune import finetune
    from mmcls.metrics import mean_f1_from_ids, read_submission
    from mmcls.workflow.predict import predict

    data = tmp_path / "data"
    make_synthetic(data, SyntheticSpec(num_labeled=900, num_unlabeled=50, num_test=300, seed=1), progress=False)
    train_wordpiece(corpus(sorted((data / "annotations").glob("*.json")))).save_pretrained(data / "tokenizer")
    truth = read_submission(data / "annotations" / "test_truth.csv")
    scores = {}
    for mode in ("fusion", "text", "video"):
        cfg = load_config(ROOT / "configs" / "demo.yaml", [f"data.root={data}", f"model.mode={mode}",
                                                           f"output_dir={tmp_path / mode}", "train.epochs=12"])
        finetune(cfg)
        prediction = predict([tmp_path / mode / "best"], overrides=[f"data.root={data}"])
        scores[mode] = mean_f1_from_ids([truth[i] for i in prediction.ids], prediction.category_ids)["mean_f1"]
    assert scores["fusion"] > max(scores["text"], scores["video"]) + 0.05, scores


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a pretraining and two finetunings: about 10 minutes on a 2-core CPU
def test_pretraining_helps_with_few_labels(tmp_path):
    """Finetuning on 10% of the labels scores higher on the test split from the pretrained frame encoder than from
    scratch (the arms of tools/few_label.py, one seed, a smaller dataset)."""
    from mmcls.commands.build_tokenizer import corpus
    from mmcls.commands.few_label import ARMS
    from mmcls.data.tokenizer import train_wordpiece
    from mmcls.engine.finetune import finetune
    from mmcls.engine.pretrain import pretrain
    from mmcls.metrics import mean_f1_from_ids, read_submission
    from mmcls.workflow.predict import predict

    data = tmp_path / "data"
    make_synthetic(data, SyntheticSpec(num_labeled=1000, num_unlabeled=600, num_test=300, seed=3), progress=False)
    train_wordpiece(corpus(sorted((data / "annotations").glob("*.json")))).save_pretrained(data / "tokenizer")
    configs = [ROOT / "configs" / "demo.yaml"]
    pretrain(load_config([*configs, ROOT / "configs" / "pretrain_demo.yaml"],
                         [f"data.root={data}", f"output_dir={tmp_path / 'pre'}", "train.epochs=12"]))
    truth = read_submission(data / "annotations" / "test_truth.csv")
    scores = {}
    for arm in ("scratch", "pretrained_vision"):
        overrides = [o.format(pretrained=tmp_path / "pre" / "best") for o in ARMS[arm]]
        finetune(load_config([*configs, ROOT / "configs" / "few_label.yaml"],
                             [f"data.root={data}", f"output_dir={tmp_path / arm}", *overrides]))
        prediction = predict([tmp_path / arm / "best"], overrides=[f"data.root={data}"])
        scores[arm] = mean_f1_from_ids([truth[i] for i in prediction.ids], prediction.category_ids)["mean_f1"]
    assert scores["pretrained_vision"] > scores["scratch"] + 0.02, scores
