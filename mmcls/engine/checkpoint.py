"""Portable model folders (``best/``): weights, config, categories, tokenizer and BERT config, nothing else needed.

A folder written by :func:`save_portable` rebuilds the exact model with :func:`load_portable` on any machine,
without the original pretrained directories: the BERT architecture comes from ``bert_config.json`` and every weight
from ``model.safetensors`` (safetensors: loading never executes code).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_model, save_model
from torch import nn

from mmcls.config import Config, load_config, save_config
from mmcls.data.categories import CategorySpace
from mmcls.data.tokenizer import load_tokenizer
from mmcls.engine.rundir import replace_dir
from mmcls.errors import UserError

MODEL_FILE = "model.safetensors"
BERT_CONFIG_FILE = "bert_config.json"


def save_portable(dest: str | Path, model: nn.Module, cfg: Config, categories: CategorySpace, tokenizer: Any) -> None:
    """Write ``dest`` atomically: build in ``dest.tmp``, then swap it in."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    save_model(model, str(tmp / MODEL_FILE))
    model.bert.config.to_json_file(str(tmp / BERT_CONFIG_FILE))
    save_config(cfg, tmp / "config.yaml")
    categories.save(tmp / "categories.json")
    tokenizer.save_pretrained(str(tmp))
    replace_dir(tmp, dest)


@dataclass
class LoadedModel:
    """A trained model with everything needed to feed it."""

    model: nn.Module
    cfg: Config
    categories: CategorySpace
    tokenizer: Any
    path: Path


def load_portable(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedModel:
    """Rebuild a model saved by :func:`save_portable`; ``overrides`` (e.g. ``data.root=...``) redirect its data."""
    from transformers import BertConfig

    from mmcls.models import build_model

    path = Path(path)
    missing = [name for name in ("config.yaml", "categories.json", MODEL_FILE, BERT_CONFIG_FILE)
               if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path}: not a trained model folder (missing {', '.join(missing)}); pass RUN/best")
    cfg = load_config(path / "config.yaml", [*overrides, f"data.tokenizer={path}"])
    categories = CategorySpace.load(path)
    tokenizer = load_tokenizer(path)
    bert_config = BertConfig.from_json_file(str(path / BERT_CONFIG_FILE))
    model = build_model(cfg, categories.num_lv2, categories.num_lv1, tokenizer, bert_config=bert_config,
                        load_pretrained=False)
    load_model(model, str(path / MODEL_FILE), strict=True)
    model.eval()
    return LoadedModel(model, cfg, categories, tokenizer, path)
