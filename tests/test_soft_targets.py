"""Soft targets: self-distillation from saved logits and soft pseudo-labels, from the dataset through the loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcls.config import DistillConfig, LossConfig, ModelConfig, build_config
from mmcls.data.categories import CategorySpace
from mmcls.data.dataset import Collator
from mmcls.data.records import VideoRecord
from mmcls.data.soft_targets import SoftTargets
from mmcls.engine.losses import Criterion
from mmcls.errors import ConfigError
from mmcls.logits import save_logits, softmax

CLASSES = ["0101", "0102", "0201"]
SPACE = CategorySpace.build(CLASSES)  # level 1: 01 (classes 0, 1), 02 (class 2)


def _criterion(smoothing: float = 0.0, lv1_weight: float = 0.5) -> Criterion:
    model_cfg = ModelConfig(lv1_loss_weight=lv1_weight, aux_video_weight=0.0)
    return Criterion(3, 2, LossConfig(label_smoothing=smoothing), model_cfg, lv1_of_lv2=SPACE.lv1_index_of_lv2())


def _ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -(targets * logits.log_softmax(-1)).sum(-1)


def test_soft_rows_replace_the_label_and_hard_rows_keep_smoothing():
    torch.manual_seed(0)
    logits, logits_lv1 = torch.randn(3, 3), torch.randn(3, 2)
    labels, labels_lv1 = torch.tensor([0, 2, 1]), torch.tensor([0, 1, 0])
    soft = torch.tensor([[0.2, 0.7, 0.1], [0.0, 0.0, 0.0], [0.5, 0.0, 0.5]])
    mask = torch.tensor([True, False, True])
    losses = _criterion(smoothing=0.1)({"logits": logits, "logits_lv1": logits_lv1},
                                       {"labels": labels, "labels_lv1": labels_lv1}, soft_targets=soft, soft_mask=mask)
    smoothed = torch.full((3,), 0.1 / 3) + 0.9 * torch.eye(3)[2]
    expected_lv2 = torch.stack([_ce(logits[0], soft[0]), _ce(logits[1], smoothed), _ce(logits[2], soft[2])]).mean()
    assert losses["loss_lv2"] == pytest.approx(float(expected_lv2), rel=1e-5)
    # level 1 of a soft row = its level-2 target summed per parent; the hard row keeps its smoothed label
    soft_lv1 = torch.tensor([[0.9, 0.1], [0.5, 0.5]])
    hard_lv1 = torch.full((2,), 0.05) + 0.9 * torch.eye(2)[1]
    expected_lv1 = torch.stack([_ce(logits_lv1[0], soft_lv1[0]), _ce(logits_lv1[1], hard_lv1),
                                _ce(logits_lv1[2], soft_lv1[1])]).mean()
    assert losses["loss_lv1"] == pytest.approx(float(expected_lv1), rel=1e-5)


def test_teacher_mixes_with_the_label_by_alpha_and_aligns_columns(tmp_path):
    teacher_logits = np.array([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    order = [2, 0, 1]  # the bundle stores the classes in another order
    save_logits(tmp_path / "t.npy", ["a", "b"], teacher_logits[:, order], [CLASSES[i] for i in order])
    targets = SoftTargets.from_config(DistillConfig(teacher=str(tmp_path / "t.npy"), alpha=0.25, temperature=2.0),
                                      SPACE, [VideoRecord("a", category_id="0102")])
    expected = 0.75 * softmax(teacher_logits[:1] / 2.0)[0]
    expected[1] += 0.25
    np.testing.assert_allclose(targets(VideoRecord("a", category_id="0102")), expected, rtol=1e-6)
    assert targets(VideoRecord("zz", category_id="0102")) is None  # not covered: the label alone


def test_soft_label_wins_over_the_teacher(tmp_path):
    save_logits(tmp_path / "t.npy", ["a"], np.zeros((1, 3)), CLASSES)
    record = VideoRecord("a", category_id="0201", category_probs={"0201": 0.6, "0101": 0.4})
    targets = SoftTargets.from_config(DistillConfig(teacher=str(tmp_path / "t.npy")), SPACE, [record])
    np.testing.assert_allclose(targets(record), [0.4, 0.0, 0.6])


def test_no_teacher_and_no_soft_labels_means_no_soft_targets():
    assert SoftTargets.from_config(DistillConfig(), SPACE, [VideoRecord("a", category_id="0101")]) is None


def test_teacher_errors(tmp_path):
    save_logits(tmp_path / "other.npy", ["a"], np.zeros((1, 2)), ["0101", "9999"])
    with pytest.raises(ConfigError, match="other classes"):
        SoftTargets.from_config(DistillConfig(teacher=str(tmp_path / "other.npy")), SPACE, [VideoRecord("a")])
    save_logits(tmp_path / "t.npy", ["x"], np.zeros((1, 3)), CLASSES)
    with pytest.raises(ConfigError, match="covers none"):
        SoftTargets.from_config(DistillConfig(teacher=str(tmp_path / "t.npy")), SPACE,
                                [VideoRecord("a", category_id="0101")])
    with pytest.raises(ConfigError, match="alpha"):
        build_config({}, ["train.distill.alpha=1.5"])


def _sample(label: int, soft: np.ndarray | None) -> dict:
    return {"id": "x", "input_ids": [1, 2], "frames": None, "video_error": None, "label": label, "label_lv1": 0,
            "soft_target": soft}


def test_collator_stacks_soft_targets_with_a_mask():
    batch = Collator(0, 4, None)([_sample(0, np.array([0.1, 0.2, 0.7], np.float32)), _sample(1, None)])
    assert batch["soft_mask"].tolist() == [True, False]
    assert torch.allclose(batch["soft_targets"], torch.tensor([[0.1, 0.2, 0.7], [0.0, 0.0, 0.0]]))
    plain = Collator(0, 4, None)([_sample(0, None)])
    assert "soft_targets" not in plain and "soft_mask" not in plain


def test_distillation_reaches_the_loss_through_the_dataset(synthetic_root, tmp_path, tiny_tokenizer):
    """alpha = 0 and a teacher sure of one class: the training loss is the cross-entropy against the teacher."""
    from mmcls.data.dataset import build_dataset
    from mmcls.data.splits import load_labelled_splits

    cfg = build_config({}, [f"data.root={synthetic_root}", "data.category_file=category_ids.txt",
                            "data.max_text_len=16"])
    train, _, categories = load_labelled_splits(cfg.data, cfg.seed)
    ids = [r.id for r in train.records[:4]]
    teacher = np.full((4, categories.num_lv2), -20.0)
    teacher[:, 3] = 20.0  # the teacher says class 3 for every video
    save_logits(tmp_path / "t.npy", ids, teacher, categories.lv2_ids)
    soft = SoftTargets.from_config(DistillConfig(teacher=str(tmp_path / "t.npy"), alpha=0.0), categories,
                                   train.records)
    dataset = build_dataset(cfg.data, train, tiny_tokenizer, categories, train=True, with_frames=False,
                            soft_targets=soft)
    batch = Collator(0, 4, None)([dataset[i] for i in range(6)])  # 4 covered by the teacher, 2 not
    assert batch["soft_mask"].tolist() == [True] * 4 + [False] * 2
    logits = torch.randn(6, categories.num_lv2)
    criterion = Criterion(categories.num_lv2, categories.num_lv1, LossConfig(), ModelConfig(aux_video_weight=0.0))
    loss = criterion({"logits": logits}, batch, soft_targets=batch["soft_targets"], soft_mask=batch["soft_mask"])
    expected = torch.cat([_ce(logits[:4], torch.eye(categories.num_lv2)[3].expand(4, -1)),
                          torch.nn.functional.cross_entropy(logits[4:], batch["labels"][4:], reduction="none")])
    assert loss["loss_lv2"] == pytest.approx(float(expected.mean()), rel=1e-4)
