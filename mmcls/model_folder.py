"""Portable model folders (``best/``): weights, config, categories, tokenizer and tower configs, nothing else needed.

A folder written by :func:`save_portable` rebuilds the exact model with :func:`load_portable` on any machine,
without the original pretrained directories: the text tower's architecture comes from ``bert_config.json`` (any
BERT family), a vision tower's from ``config.yaml`` plus, for kinds whose folder decides it (transformers models,
open_clip folders), ``vision_config.json``; every weight comes from ``model.safetensors`` (safetensors: loading
never executes code). A model trained with ``data.flip_label_map`` also holds ``flip_label_map.json``
(:class:`mmcls.data.flips.FlipLabelMap`, ``LoadedModel.flip_map``), which ``--tta-hflip`` uses.

Pretraining writes the same kind of folder with :func:`save_pretrained_folder` (encoder weights only, task heads
apart, a ``pretrained.json`` marker instead of ``categories.json``). Finetuning starts from either kind
(``model.init_from``)::

    encoder = load_pretrained_encoder(cfg.model.init_from)     # its tokenizer and BERT config rule the model
    model = build_model(cfg, num_lv2, num_lv1, encoder.tokenizer, text_config=encoder.text_config,
                        load_pretrained=not encoder.supplies_vision(parts),  # else model.vision.pretrained
                        vision_config=encoder.vision_config_for(parts))
    loaded = init_from_pretrained(model, encoder, parts)           # parts: model.init_parts

Weights are stored in the model's own state-dict layout (``encoder.text.bert.*``, ``encoder.vision.backbone.*``,
``encoder.frame_embedder.*``, then the heads). Folders written before the encoder became one module (top-level
``bert.*``, ``vision.*``, ``frame_embedder.*``) still load: :func:`migrate_state_dict` renames their keys wherever a
folder is read. Training and inference both use this module.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import save_model
from torch import nn
from transformers import PretrainedConfig

from mmcls.config import Config, load_config, parse_override, save_config
from mmcls.data.categories import CategorySpace
from mmcls.data.flips import FLIP_MAP_FILE, FlipLabelMap
from mmcls.data.tokenizer import load_tokenizer
from mmcls.errors import ConfigError, UserError
from mmcls.io import atomic_dir, read_json_object
from mmcls.models.classifier import MultimodalClassifier
from mmcls.models.encoder import ENCODER_PARTS
from mmcls.models.pretrainer import PRETRAIN_HEADS, MultimodalPretrainer
from mmcls.models.text import read_text_config
from mmcls.models.weights import load_exact, read_state_dict, strip_prefix

T = TypeVar("T")

MODEL_FILE = "model.safetensors"
BERT_CONFIG_FILE = "bert_config.json"  # the text tower's config, any BERT family (the name predates the others)
VISION_CONFIG_FILE = "vision_config.json"  # the vision tower's own architecture, for kinds that have one
PRETRAIN_HEADS_FILE = "pretrain_heads.safetensors"
PRETRAINED_MARKER = "pretrained.json"
INIT_KEY = "model.init_from"

# Top-level prefixes of the layout before the encoder was one module -> where those weights are now.
_LEGACY_PREFIXES = {"bert.": "encoder.text.bert.", "vision.": "encoder.vision.",
                    "frame_embedder.": "encoder.frame_embedder."}
# model.init_parts names (as users type them) -> the encoder's parts
_PART_NAMES = {"bert": "text", "text": "text", "vision": "vision", "frame_embedder": "frame_embedder"}


def migrate_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A model folder's weights in the current layout: keys of the old layout (``bert.*``, ``vision.*``,
    ``frame_embedder.*`` at the top) move under ``encoder.`` (``encoder.text.bert.*`` ...); others are kept."""
    out = {}
    for key, value in state.items():
        prefix = next((p for p in _LEGACY_PREFIXES if key.startswith(p)), None)
        out[_LEGACY_PREFIXES[prefix] + key[len(prefix):] if prefix else key] = value
    return out


def _save_model_files(folder: Path, model: nn.Module, cfg: Config, tokenizer: Any) -> None:
    """What every model folder holds besides its weights: the towers' configs, the run config and the tokenizer."""
    model.encoder.text.config.to_json_file(str(folder / BERT_CONFIG_FILE))
    vision = model.encoder.vision
    if vision is not None and vision.config is not None:
        (folder / VISION_CONFIG_FILE).write_text(json.dumps(vision.config, indent=2, sort_keys=True) + "\n")
    save_config(cfg, folder / "config.yaml")
    tokenizer.save_pretrained(str(folder))


def _submodules(model: nn.Module, names: tuple[str, ...]) -> nn.ModuleDict:
    """The named submodules of ``model`` (those it has), under their own names: their state-dict keys are the
    model's (``mlm_head.dense.weight`` ...)."""
    return nn.ModuleDict({name: module for name in names if (module := getattr(model, name, None)) is not None})


def save_portable(dest: str | Path, model: nn.Module, cfg: Config, categories: CategorySpace, tokenizer: Any,
                  flip_map: FlipLabelMap | None = None) -> None:
    """Write ``dest`` atomically: build in ``dest.tmp``, then swap it in. ``flip_map`` (``data.flip_label_map``
    resolved) goes in as ``flip_label_map.json``, for ``--tta-hflip`` without the data folder."""
    with atomic_dir(dest) as tmp:
        save_model(model, str(tmp / MODEL_FILE))
        _save_model_files(tmp, model, cfg, tokenizer)
        categories.save(tmp / "categories.json")
        if flip_map is not None:
            flip_map.save(tmp)


def save_pretrained_folder(dest: str | Path, model: MultimodalPretrainer, cfg: Config, tokenizer: Any) -> None:
    """Write a pretraining result atomically, as ``model.init_from`` of finetuning takes it.

    ``model.safetensors`` holds only the encoder (``encoder.*``: the keys a classifier shares),
    ``pretrain_heads.safetensors`` the task heads (to continue pretraining), plus
    the tower configs, ``config.yaml``, the tokenizer and the ``pretrained.json`` marker.
    """
    with atomic_dir(dest) as tmp:
        save_model(nn.ModuleDict({"encoder": model.encoder}), str(tmp / MODEL_FILE))
        save_model(_submodules(model, PRETRAIN_HEADS), str(tmp / PRETRAIN_HEADS_FILE))
        _save_model_files(tmp, model, cfg, tokenizer)
        marker = {"kind": "pretrained", "tasks": list(model.tasks), "encoder_parts": list(ENCODER_PARTS)}
        (tmp / PRETRAINED_MARKER).write_text(json.dumps(marker, indent=2) + "\n")


@dataclass(frozen=True)
class FrameSpec:
    """What a model takes as frames: pixels for its own vision tower, or cached features of ``width``.

    ``width`` is None without frames (text mode); ``tower`` (``kind name``) and ``fingerprint``
    (:meth:`~mmcls.models.towers.VisionTower.fingerprint`) name the vision tower that makes the features (None
    without one), so a feature cache made by another tower is refused.
    """

    reads_features: bool
    width: int | None
    tower: str | None = None
    fingerprint: str | None = None

    @classmethod
    def of_encoder(cls, encoder: nn.Module) -> FrameSpec:
        """The spec of a :class:`~mmcls.models.encoder.MultimodalEncoder` as it is switched now."""
        vision = encoder.vision
        return cls(bool(encoder.reads_features), encoder.frame_dim,
                   f"{vision.kind} {vision.name}" if vision is not None else None,
                   vision.fingerprint() if vision is not None else None)


@dataclass
class LoadedModel:
    """A trained model with everything needed to feed it.

    ``model`` takes the collated batch (``input_ids``, ``attention_mask``, ``frames``, ``frame_mask``) and returns
    ``{"logits": ...}``: a torch classifier, or an exported graph (:mod:`mmcls.deploy`, ``exported`` True), which
    runs outside torch and is not prepared by accelerate.
    """

    model: nn.Module
    cfg: Config
    categories: CategorySpace
    tokenizer: Any
    path: Path
    flip_map: FlipLabelMap | None = None  # the category pairs a horizontal flip swaps (best/flip_label_map.json)
    frame_spec: FrameSpec | None = None  # None: read from the model's encoder when asked
    exported: bool = False

    def prepared(self, accelerator: Any) -> nn.Module:
        """The model ready to run under ``accelerator``: prepared by it, or as it is when exported (a graph
        that ONNX Runtime runs has no torch parameters to place or wrap)."""
        return self.model if self.exported else accelerator.prepare(self.model)

    @property
    def frames(self) -> FrameSpec:
        """What the model takes as frames (:class:`FrameSpec`)."""
        if self.frame_spec is None:
            self.frame_spec = FrameSpec.of_encoder(self.model.encoder)
        return self.frame_spec


def load_portable(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedModel:
    """Rebuild a model saved by :func:`save_portable`; ``overrides`` (e.g. ``data.root=...``) redirect its data.

    The architecture comes from the folder's config with the ``data.*`` section as saved (``model.*`` overrides,
    such as ``model.text.attn_implementation``, still apply): ``data.*`` overrides change only how the data is
    read. So a model trained on pixels predicts from cached frame features with ``data.frame_source=feats`` (its
    encoder is switched to read features ``[B, T, D]`` and skips the vision tower; see
    :func:`check_feature_width`). Folders of the old weights layout load (:func:`migrate_state_dict`). The
    returned ``cfg`` has every override. Data settings the trained weights cannot take are a one-line UserError.

    Every tool reads model folders through here (predict, ensembles, averaging, explain, feature extraction), so a
    corrupt or mismatched folder is one UserError naming the file: a missing, unreadable or truncated file, a
    ``categories.json`` with another number of classes than the weights' heads, a tokenizer larger than
    ``bert_config.json``'s vocabulary, or weights that do not fit the model ``config.yaml`` and the tower configs
    describe (the missing, unexpected and mis-shaped keys, as every strict load reports them).
    """
    from mmcls.models import build_model

    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{path}: not a folder; pass a trained model folder (RUN/best)")
    if (path / PRETRAINED_MARKER).is_file():
        raise UserError(f"{path}: a pretrained encoder, not a classifier; finetune it first "
                        f"(finetune/train.py {INIT_KEY}={path})")
    missing = [name for name in ("config.yaml", "categories.json", MODEL_FILE, BERT_CONFIG_FILE)
               if not (path / name).is_file()]
    if missing:
        raise UserError(f"{path}: not a trained model folder (missing {', '.join(missing)}); pass RUN/best")
    own = [f"data.tokenizer={path}"]
    saved = _naming(path / "config.yaml", lambda: load_config(path / "config.yaml", own))
    cfg = load_config(path / "config.yaml", [*_prediction_overrides(saved, overrides), *own])  # the user's own
    categories = _naming(path / "categories.json", lambda: CategorySpace.load(path))
    tokenizer = load_tokenizer(path)
    text_config, vision_config = read_tower_configs(path, UserError)
    if len(tokenizer) > text_config.vocab_size:
        raise UserError(f"{path}: its tokenizer has {len(tokenizer)} tokens but {BERT_CONFIG_FILE} a vocabulary of "
                        f"{text_config.vocab_size}: not the tokenizer the model was saved with")
    state = migrate_state_dict(read_state_dict(path / MODEL_FILE, str(path)))
    _check_heads(state, categories, path)
    names = [name for name in ("config.yaml", BERT_CONFIG_FILE, VISION_CONFIG_FILE) if (path / name).is_file()]
    configs = f"{', '.join(names[:-1])} and {names[-1]}"
    try:
        model = build_model(dataclasses.replace(cfg, data=saved.data), categories.num_lv2, categories.num_lv1,
                            tokenizer, text_config=text_config, load_pretrained=False, vision_config=vision_config)
    except UserError as exc:
        raise UserError(f"{path}: cannot rebuild the model that {configs} describe: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError, AssertionError) as exc:
        raise UserError(f"{path}: cannot rebuild the model that {configs} describe: {_one_line(exc)}") from None
    try:
        load_exact(model, state, str(path), path / MODEL_FILE)
    except ConfigError as exc:
        raise UserError(f"{exc}; the model is built from {configs}, which must be those saved with these "
                        "weights") from None
    model.eval()
    _check_data_fits(model, saved, cfg, path)
    if model.encoder.frame_embedder is not None:
        model.encoder.set_reads_features(cfg.data.reads_features)
    flip_map = _naming(path / FLIP_MAP_FILE, lambda: FlipLabelMap.load(path, categories))
    return LoadedModel(model, cfg, categories, tokenizer, path, flip_map)


def load_for_inference(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedModel:
    """A model folder to predict with: an export folder (``export.json``, run by ONNX Runtime:
    :func:`mmcls.deploy.onnx_runtime.load_export`) or a trained ``RUN/best`` (:func:`load_portable`)."""
    from mmcls.deploy.spec import is_export_folder

    if is_export_folder(path):
        from mmcls.deploy.onnx_runtime import load_export

        return load_export(path, overrides)
    return load_portable(path, overrides)


def _naming(file: Path, read: Callable[[], T]) -> T:
    """``read()``, whose UserError names ``file`` (a message that does not mention it gets it in front)."""
    try:
        return read()
    except UserError as exc:
        if str(file) in str(exc):
            raise
        raise UserError(f"{file}: {exc}") from None


def _one_line(exc: BaseException) -> str:
    """The gist of a library error in one line: its first line, and the next one when the first ends in ':'."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return " ".join(lines[:2]) if lines[0].endswith(":") and len(lines) > 1 else lines[0]


# the classification heads' weights -> how many categories of each level they score
_HEAD_WEIGHTS = {"heads.lv2.weight": "level-2", "heads.lv1.weight": "level-1"}


def _check_heads(state: dict[str, torch.Tensor], categories: CategorySpace, path: Path) -> None:
    """UserError when ``categories.json`` has another number of categories than the heads in the weights."""
    counts = {"level-2": categories.num_lv2, "level-1": categories.num_lv1}
    for key, level in _HEAD_WEIGHTS.items():
        if key in state and state[key].ndim == 2 and state[key].shape[0] != counts[level]:
            raise UserError(f"{path / 'categories.json'}: {counts[level]} {level} categories, but the weights in "
                            f"{path / MODEL_FILE} score {state[key].shape[0]}; the categories.json saved with these "
                            "weights is needed")


def read_tower_configs(path: Path, error: type[UserError] = UserError,
                       key: str = "") -> tuple[PretrainedConfig, dict[str, Any] | None]:
    """The towers' configs a model folder stores (text always, vision for kinds that have one); ``error`` names
    ``key`` when a file cannot be read."""
    where = f"{key}: " if key else ""
    try:
        text_config = read_text_config(path / BERT_CONFIG_FILE)
    except UserError as exc:
        raise error(f"{where}{exc}") from None
    except Exception as exc:  # json, or transformers' validation of the values (its own exception types)
        raise error(f"{where}cannot read {path / BERT_CONFIG_FILE}: {_one_line(exc)}") from None
    vision_file = path / VISION_CONFIG_FILE
    if not vision_file.is_file():
        return text_config, None
    return text_config, read_json_object(vision_file, error, where)


def _prediction_overrides(saved: Config, overrides: Sequence[str]) -> list[str]:
    """``overrides``, plus ``train.mix.cutmix_alpha=0`` first when they switch a CutMix-trained model to frame
    features: CutMix is a training switch, and the config check that rejects it with ``feats`` must not stop a
    prediction."""
    source = saved.data.frame_source
    for item in overrides:
        key, value = parse_override(item)
        if key == ["data", "frame_source"]:
            source = value
    if source == "feats" and saved.train.mix.cutmix_alpha > 0:
        return ["train.mix.cutmix_alpha=0", *overrides]
    return list(overrides)


def frame_feature_width(model: nn.Module) -> int | None:
    """The frame-feature width ``model`` takes (its vision tower's ``out_dim``, or the width of the features it was
    trained on); None without frame layers (text mode)."""
    return model.encoder.frame_dim


def _check_data_fits(model: nn.Module, saved: Config, cfg: Config, path: Path) -> None:
    """UserError when the (overridden) data settings cannot feed the trained ``model``."""
    width = frame_feature_width(model)
    encoder = model.encoder
    data, vision = cfg.data, encoder.vision
    if data.max_text_len > encoder.text.max_positions:
        raise UserError(f"data.max_text_len={data.max_text_len}: {path} has only "
                        f"{encoder.text.max_positions} text positions")
    if width is None:  # text mode: no frames are read
        return
    if not data.reads_features and vision is None:
        raise UserError(f"data.frame_source={data.frame_source}: {path} was trained on frame features "
                        f"(data.frame_source=feats) and has no vision tower to read frames with")
    if data.reads_features and data.feat_dim is not None and data.feat_dim != width:
        raise UserError(f"data.feat_dim={data.feat_dim}: {path} takes frame features of width {width}")
    if data.max_frames > encoder.max_frames:
        raise UserError(f"data.max_frames={data.max_frames}: {path} was trained with at most "
                        f"{encoder.max_frames} frames per video")
    if not data.reads_features and data.frame_size != saved.data.frame_size:
        if vision.kind == "clip":  # fixed position embeddings: other sizes cannot run
            raise UserError(f"data.frame_size={data.frame_size}: {path} has a CLIP tower trained at "
                            f"{saved.data.frame_size} px")
        logging.getLogger("mmcls").warning("data.frame_size=%d: %s was trained at %d px", data.frame_size, path,
                                           saved.data.frame_size)


def check_feature_width(loaded: LoadedModel, split: str) -> None:
    """With ``data.frame_source=feats``: UserError when the feature zip of annotation split ``split`` (e.g.
    ``test``) holds features of another width than the model takes (probed from the zip, never from
    ``data.feat_dim``), or, for a model with its own vision tower, features that another tower made (the zip's
    manifest fingerprint). Cheap: reads a few members; a missing zip is left to the usual per-video reporting."""
    from mmcls.data.feature_source import FeatsFrameSource

    if not loaded.cfg.data.reads_features:
        return
    spec = loaded.frames  # hashes the tower's weights: only here, where it is needed
    width = spec.width
    if width is None:
        return
    source = FeatsFrameSource.from_config(dataclasses.replace(loaded.cfg.data, feat_dim=None), split)
    found = source.feature_dim()
    if found is not None and found != width:
        why = (f"the output width of its vision tower {spec.tower}" if spec.tower is not None
               else "the width of the features it was trained on")
        raise UserError(f"{source.location}: frame features of width {found}, but {loaded.path} takes {width} "
                        f"({why}); extract matching ones with tools/extract_features.py --model {loaded.path}")
    manifest = source.manifest() or {}
    if spec.fingerprint is not None and manifest.get("vision_sha256") not in (None, spec.fingerprint):
        raise UserError(f"{source.location}: made by another vision tower ({manifest.get('source', '?')}) than "
                        f"{loaded.path}'s; extract its own with tools/extract_features.py --model {loaded.path}, "
                        "or share one cache among models trained on it (data.frame_source=feats)")


# ----------------------------------------------------------------------------------------------------------------
# model.init_from: a pretrained (or finetuned) encoder as the start of a new model

# What must agree between the folder's model and the new one, per part (quoted when shapes differ).
_PART_HINTS = {
    "text": "the text tower is built from the folder's bert_config.json and tokenizer",
    "vision": "model.vision.*, model.temporal.frame_diff and data.frame_size must be those of the folder's "
              "config.yaml",
    "frame_embedder": "data.max_frames and the frame feature width (vision tower or data.feat_dim) must be those "
                      "of the folder's config.yaml",
}


@dataclass
class PretrainedEncoder:
    """The encoder weights of a model folder and what rebuilds a model around them.

    ``state_dict`` holds the encoder's tensors, keyed as in the encoder: ``text.*``, ``vision.*`` (absent when
    pretrained on frame features) and ``frame_embedder.*``; ``heads`` the pretraining task heads (empty for a
    finetuned folder, whose classification heads are skipped). ``kind`` is ``pretrained`` or ``finetuned``.
    """

    state_dict: dict[str, torch.Tensor]
    text_config: PretrainedConfig
    tokenizer: Any
    cfg: Config
    path: Path
    kind: str
    heads: dict[str, torch.Tensor] = field(default_factory=dict)
    vision_config: dict[str, Any] | None = None

    @property
    def has_vision(self) -> bool:
        """Whether the folder has vision tower weights (not when it was trained on frame features)."""
        return any(key.startswith("vision.") for key in self.state_dict)

    def vision_config_for(self, parts: Sequence[str]) -> dict[str, Any] | None:
        """The stored vision architecture to build the model with when ``parts`` take the folder's vision tower
        (None otherwise: the tower is built from ``model.vision``)."""
        return self.vision_config if self.supplies_vision(parts) else None

    def supplies_vision(self, parts: Sequence[str]) -> bool:
        """Whether loading ``parts`` of this folder sets the vision tower (else it is built from
        ``model.vision.pretrained``)."""
        return self.has_vision and "vision" in {_PART_NAMES.get(part, part) for part in parts}


def _folder_kind(path: Path) -> str:
    """``pretrained`` (pretrain/train.py best/) or ``finetuned`` (finetune/train.py best/); UserError otherwise."""
    if not path.is_dir():
        raise UserError(f"{INIT_KEY}: not a folder: {path}")
    if (path / PRETRAINED_MARKER).is_file():
        try:
            kind = json.loads((path / PRETRAINED_MARKER).read_text()).get("kind")
        except (ValueError, AttributeError):
            kind = None
        if kind != "pretrained":
            raise UserError(f"{INIT_KEY}: {path / PRETRAINED_MARKER} is not a pretrained-model marker")
        return "pretrained"
    if (path / "categories.json").is_file():
        return "finetuned"
    raise UserError(f"{INIT_KEY}: {path} is not a model folder (no {PRETRAINED_MARKER} or categories.json); "
                    "pass RUN/best of pretrain/train.py or finetune/train.py")


def load_pretrained_encoder(path: str | Path) -> PretrainedEncoder:
    """Read the encoder of a folder written by :func:`save_pretrained_folder` or :func:`save_portable`.

    Needs nothing but the folder (no original BERT or vision files). Every problem is a one-line UserError naming
    ``model.init_from``.
    """
    path = Path(path)
    kind = _folder_kind(path)
    missing = [name for name in ("config.yaml", BERT_CONFIG_FILE, MODEL_FILE) if not (path / name).is_file()]
    if missing:
        raise UserError(f"{INIT_KEY}: {path} is incomplete (missing {', '.join(missing)})")
    try:
        cfg = load_config(path / "config.yaml", [f"data.tokenizer={path}"])
        tokenizer = load_tokenizer(path)
    except UserError as exc:
        raise UserError(f"{INIT_KEY}: {path}: {exc}") from None
    text_config, vision_config = read_tower_configs(path, UserError, INIT_KEY)
    weights = strip_prefix(migrate_state_dict(read_state_dict(path / MODEL_FILE, INIT_KEY)), "encoder.")
    state = {key: value for key, value in weights.items() if key.split(".", 1)[0] in ENCODER_PARTS}
    if not any(key.startswith("text.") for key in state):
        raise UserError(f"{INIT_KEY}: {path / MODEL_FILE} holds no encoder weights (no text tower tensors)")
    heads = {}
    if kind == "pretrained" and (path / PRETRAIN_HEADS_FILE).is_file():
        heads = read_state_dict(path / PRETRAIN_HEADS_FILE, INIT_KEY)
    return PretrainedEncoder(state, text_config, tokenizer, cfg, path, kind, heads, vision_config)


def init_from_pretrained(model: MultimodalClassifier | MultimodalPretrainer, encoder: PretrainedEncoder,
                         parts: Sequence[str] = ENCODER_PARTS) -> list[str]:
    """Copy the folder's encoder into ``model``; returns the loaded keys of ``model`` (for the log).

    ``parts``: ``model.init_parts`` (``bert`` or ``text``, ``vision``, ``frame_embedder``). Rules, per part, then
    for the pretraining heads:

    - a part both have is copied exactly: every key of the model's part must be in the folder with the same shape,
      and the folder's part must have no other key (ConfigError naming ``model.init_from`` otherwise);
    - the model's text tower and, unless text mode, its frame layers must be in the folder;
    - a vision tower the folder lacks (pretraining on frame features) keeps its weights as built
      (``model.vision.pretrained``); a folder's tower the model lacks (frame features, text mode) is not used,
      nor are the frame layers of a folder when the model is in text mode;
    - classification heads stay as initialised; a pretrainer also takes the folder's heads of the tasks it has
      (continued pretraining), the others stay fresh.
    """
    chosen = {_PART_NAMES.get(part, part) for part in parts}
    jobs = [(f"encoder.{part}", getattr(model.encoder, part), strip_prefix(encoder.state_dict, f"{part}."), part)
            for part in ENCODER_PARTS if part in chosen]
    jobs += [(name, getattr(model, name, None), strip_prefix(encoder.heads, f"{name}."), name)
             for name in PRETRAIN_HEADS]
    loaded: list[str] = []
    for prefix, module, state, part in jobs:
        if module is None or (not state and part in (*PRETRAIN_HEADS, "vision")):
            continue
        if not state:
            raise ConfigError(f"{INIT_KEY}: {encoder.path} has no {part}.* weights, but this model needs them "
                              f"(mode {model.mode})")
        file = encoder.path / (PRETRAIN_HEADS_FILE if part in PRETRAIN_HEADS else MODEL_FILE)
        try:
            load_exact(module, state, INIT_KEY, f"{file} [{part}.*]")
        except ConfigError as exc:
            hint = _PART_HINTS.get(part, "the task heads must be those of the folder's config.yaml")
            raise ConfigError(f"{exc}; {hint}") from None
        loaded += [f"{prefix}.{key}" for key in state]
    vision = model.encoder.vision
    if vision is not None and "encoder.frame_embedder.proj.weight" in loaded and not encoder.supplies_vision(parts):
        trained_on = ("the folder's vision tower, which model.init_parts leaves out" if encoder.has_vision else
                      f"cached frame features (data.frame_source={encoder.cfg.data.frame_source})")
        logging.getLogger("mmcls").warning(
            "%s: the frame layers were pretrained on %s; they fit this model only if its vision tower (%s %s) "
            "gives the same features", INIT_KEY, trained_on, vision.kind, vision.name)
    return loaded
