"""tools/probe_concepts.py: linear probes of frozen features on the synthetic dataset's hidden concepts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mmcls.commands import probe_concepts
from mmcls.config import build_config
from mmcls.errors import UserError
from mmcls.model_folder import save_pretrained_folder
from mmcls.models import build_pretrainer
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_probe_accuracy_reads_a_concept_that_the_features_hold():
    rng = np.random.default_rng(0)
    labels = [str(i % 3) for i in range(90)]
    informative = np.eye(3)[[int(y) for y in labels]] + 0.1 * rng.standard_normal((90, 3))  # [90, 3]
    noise = rng.standard_normal((90, 3))
    assert probe_concepts.probe_accuracy(informative[:60], labels[:60], informative[60:], labels[60:]) == 1.0
    assert probe_concepts.probe_accuracy(noise[:60], labels[:60], noise[60:], labels[60:]) < 0.7
    with pytest.raises(UserError, match="fewer than two concepts"):
        probe_concepts.probe_accuracy(informative[:3:3], labels[:3:3], informative, labels)


@pytest.fixture(scope="module")
def pretrained_folder(synthetic_root, tmp_path_factory):
    from mmcls.data.splits import build_tokenizer

    out = tmp_path_factory.mktemp("probe")
    cfg = build_config({}, tiny_overrides(synthetic_root, out, "pretrain.itc_weight=1"))
    tokenizer = build_tokenizer(cfg.data, None)
    torch.manual_seed(7)  # other weights than the fresh reference (seed 0)
    save_pretrained_folder(out / "best", build_pretrainer(cfg, tokenizer), cfg, tokenizer)
    return out / "best"


def test_the_model_carries_the_folder_weights_and_the_reference_does_not(pretrained_folder):
    from safetensors.torch import load_file

    model, fresh, _, _ = probe_concepts.build_models(pretrained_folder, None, seed=0)
    saved = load_file(str(pretrained_folder / "model.safetensors"))
    key = "encoder.text.bert.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(model.state_dict()[key], saved[key])
    assert not torch.equal(fresh.state_dict()[key], saved[key])


def test_probe_table_has_every_feature_and_concept(pretrained_folder, capsys):
    assert probe_concepts.main(["--model", str(pretrained_folder), "--fit-split", "train", "--fit-sizes", "16",
                                "48"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(probe_concepts.FEATURES) * len(probe_concepts.CONCEPTS) + 2  # + direction rows
    assert [row.split("|")[1:3] for row in rows[-2:]] == [[" video ", " direction "], [" fused ", " direction "]]
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for pair in cells[2:]:
            assert all(0.0 <= float(v) <= 1.0 for v in pair.split(" / "))


def test_bad_arguments_are_one_line_errors(pretrained_folder, tmp_path):
    with pytest.raises(UserError, match="must differ"):
        probe_concepts.main(["--model", str(pretrained_folder), "--fit-split", "test"])
    with pytest.raises(UserError, match=r"^--model: .*not a model folder"):
        probe_concepts.main(["--model", str(tmp_path)])


def test_direction_features_are_the_reversed_clips(pretrained_folder):
    """The reversed copy differs from the forward one exactly where a video has >= 2 frames to reverse."""
    model, _, _, tokenizer = probe_concepts.build_models(pretrained_folder, None, seed=0)
    encoded = tokenizer(["a video", "one frame", "three frames"], padding=True, return_tensors="pt")
    frame_mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 0]], dtype=torch.bool)
    frames = torch.randint(0, 256, (3, 4, 3, 24, 24), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    batch = {"frames": frames * frame_mask[:, :, None, None, None], "frame_mask": frame_mask, "ids": ["a", "b", "c"],
             "input_ids": encoded["input_ids"], "attention_mask": encoded["attention_mask"]}
    features, ids = probe_concepts.pooled_features(model, [batch])
    assert ids == ["a", "b", "c"] and features["ordered"].tolist() == [True, False, True]
    for name in probe_concepts.DIRECTION_FEATURES:
        forward, backward = features[name], features[f"{name}_reversed"]
        assert np.allclose(forward[1], backward[1], atol=1e-5)  # one frame: nothing to reverse
        assert not np.allclose(forward[0], backward[0], atol=1e-4) and not np.allclose(forward[2], backward[2],
                                                                                        atol=1e-4)
    x, y = probe_concepts.direction_data(features, "fused")
    assert y == ["forward", "reversed"] * 2
    assert np.array_equal(x, np.stack([features["fused"][0], features["fused_reversed"][0], features["fused"][2],
                                       features["fused_reversed"][2]]))
    assert len(probe_concepts.direction_data(features, "video", 1)[1]) == 2
