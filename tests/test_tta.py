"""Test-time augmentation in predict: the views, the flip, and the average of their probabilities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate import Accelerator

from mmcls.config import build_config
from mmcls.engine.inference import model_inputs
from mmcls.errors import UserError
from mmcls.logits import softmax
from mmcls.workflow.predict import TestTimeAugmentation
from tests.helpers import tiny_overrides


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> Path:
    from mmcls.engine.finetune import finetune

    run = tmp_path_factory.mktemp("tta") / "run"
    finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2")))
    return run / "best"


def test_views_cover_every_offset_with_and_without_flip():
    assert TestTimeAugmentation().views() == [(0, False)]
    assert TestTimeAugmentation(offsets=2, hflip=True).views() == [(0, False), (0, True), (1, False), (1, True)]
    with pytest.raises(UserError, match=r"^offsets: must be >= 1, got 0$"):  # the library names its argument
        TestTimeAugmentation(offsets=0)


def test_the_predict_command_names_its_flag(tmp_path, capsys):
    from mmcls.cli import run_main
    from mmcls.commands import predict

    args = ["--model", str(tmp_path), "--out", str(tmp_path / "x.csv"), "--precision", "no"]
    assert run_main(predict.main, [*args, "--tta-offsets", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --tta-offsets: must be >= 1, got 0"
    assert run_main(predict.main, [*args, "--logit-adjust", "-1"]) == 2
    assert capsys.readouterr().err.strip() == "error: --logit-adjust: must be >= 0, got -1.0"


def test_hflip_mirrors_pixels():
    frames = torch.arange(2 * 3 * 2 * 4, dtype=torch.uint8).view(1, 2, 3, 2, 4)  # [B, T, 3, H, W]
    batch = {"input_ids": torch.ones(1, 3), "attention_mask": torch.ones(1, 3), "frames": frames,
             "frame_mask": torch.ones(1, 2, dtype=torch.bool)}
    assert torch.equal(model_inputs(batch, hflip=True)["frames"], frames.flip(-1))
    assert torch.equal(model_inputs(batch)["frames"], frames)
    # cached features are never flipped: prediction refuses --tta-hflip for a model that reads them (whether a
    # model reads features is its encoder's flag, not the rank of a tensor)


def test_tta_averages_the_probabilities_of_every_view(trained):
    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import load_split
    from mmcls.engine.inference import run_inference
    from mmcls.model_folder import load_portable
    from mmcls.workflow.predict import predict

    tta = TestTimeAugmentation(offsets=2, hflip=True)
    got = predict([trained], "test", mixed_precision="no", tta=tta)

    loaded = load_portable(trained)
    records = load_split(loaded.cfg.data, "test")
    accelerator = Accelerator(cpu=True)
    views = []
    for offset, flip in tta.views():
        dataset = build_dataset(loaded.cfg.data, records, loaded.tokenizer, None, train=False, sampling_offset=offset)
        result = run_inference(loaded.model, build_dataloader(dataset, loaded.cfg.data, 16), accelerator, hflip=flip)
        assert result.ids == got.ids
        views.append(softmax(result.logits))
    assert not np.allclose(views[0], views[1], atol=1e-4)  # the flip changes what the model sees
    assert not np.allclose(views[0], views[2], atol=1e-4)  # so does the shifted frame grid
    np.testing.assert_allclose(np.exp(got.logits), np.mean(views, axis=0), rtol=1e-4, atol=1e-6)
    assert got.category_ids == [got.classes[i] for i in np.mean(views, axis=0).argmax(axis=1)]
