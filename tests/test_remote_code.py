"""No code from a model folder runs: every transformers load passes ``trust_remote_code=False``, and folders whose
configs name remote code (``auto_map``) load with the built-in classes or are refused in one line."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mmcls.config import VisionConfig
from mmcls.data.categories import CategorySpace
from mmcls.data.tokenizer import load_tokenizer
from mmcls.errors import ConfigError, DataError
from mmcls.model_folder import load_portable, save_portable
from mmcls.models import build_bert, build_model, build_vision_tower
from tests.helpers import NUM_LV1, NUM_LV2, make_cfg

MMCLS = Path(__file__).resolve().parents[1] / "mmcls"


def test_every_from_pretrained_call_refuses_remote_code():
    """Every ``*.from_pretrained(...)`` in the package says ``trust_remote_code=False`` itself (transformers' default
    may prompt, or change)."""
    calls, lacking = 0, []
    for file in sorted(MMCLS.rglob("*.py")):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                    node.func.attr == "from_pretrained":
                calls += 1
                trust = {k.arg: k.value for k in node.keywords}.get("trust_remote_code")
                if not (isinstance(trust, ast.Constant) and trust.value is False):
                    lacking.append(f"{file.relative_to(MMCLS.parent)}:{node.lineno}")
    assert calls >= 6 and lacking == []


def _plant_remote_code(folder: Path, marker: Path, model_type: str | None = None) -> None:
    """Make ``folder``'s configs name a module of the folder for every Auto class; importing it writes ``marker``."""
    (folder / "remote.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                      "from transformers import BertConfig as C, BertModel as M, BertTokenizer as T\n")
    auto_map = {"AutoConfig": "remote.C", "AutoModel": "remote.M", "AutoTokenizer": ["remote.T", None],
                "AutoImageProcessor": "remote.C"}
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            data = json.loads((folder / name).read_text())
            data["auto_map"] = auto_map
            if model_type:  # a model (and tokenizer) only the folder's code defines
                data.update({"config.json": {"model_type": model_type},
                             "tokenizer_config.json": {"tokenizer_class": "T"}}.get(name, {}))
            (folder / name).write_text(json.dumps(data))


def test_folders_naming_remote_code_run_none_of_it(tmp_path, tiny_tokenizer):
    marker = tmp_path / "remote-code-ran"
    cfg = make_cfg()
    bert = tmp_path / "bert"
    build_bert(cfg.model.text, len(tiny_tokenizer), tiny_tokenizer.pad_token_id).save_pretrained(bert)
    tiny_tokenizer.save_pretrained(bert)
    _plant_remote_code(bert, marker)
    assert type(load_tokenizer(bert)).__module__.startswith("transformers.")  # the built-in class
    text = dataclasses.replace(cfg.model.text, pretrained=str(bert))
    assert type(build_bert(text, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)).__name__ == "BertModel"

    best = tmp_path / "best"  # a model folder whose tokenizer config names remote code
    save_portable(best, build_model(cfg, NUM_LV2, NUM_LV1, tiny_tokenizer), cfg,
                  CategorySpace.build(["0101", "0102", "0103", "0201", "0202", "0301", "0302"]), tiny_tokenizer)
    _plant_remote_code(best, marker)
    assert load_portable(best).categories.num_lv2 == NUM_LV2

    import transformers as hf

    vision = tmp_path / "clip"
    hf.CLIPVisionModel(hf.CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                           num_attention_heads=2, image_size=32, patch_size=8)).save_pretrained(vision)
    _plant_remote_code(vision, marker)
    tower = build_vision_tower(VisionConfig(kind="hf", pretrained=str(vision)), 32)
    assert tower(torch.zeros(1, 3, 32, 32)).shape == (1, 32)

    _plant_remote_code(bert, marker, model_type="remote-only")  # no built-in class: refused, in one line
    with pytest.raises(DataError, match=r"cannot load a tokenizer .*custom code") as tokenizer_error:
        load_tokenizer(bert)
    with pytest.raises(ConfigError, match=r"^model.text.pretrained: ") as text_error:
        build_bert(text, len(tiny_tokenizer), tiny_tokenizer.pad_token_id)
    assert "\n" not in str(tokenizer_error.value) + str(text_error.value)
    assert not marker.exists()
