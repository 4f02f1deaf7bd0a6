"""Typed configuration: dataclasses are the schema, YAML files set values, ``key.sub=value`` arguments override.

Precedence (lowest to highest): dataclass defaults < YAML file < command-line overrides. Unknown keys, wrong types
and invalid values raise :class:`~mmcls.errors.ConfigError` naming the full dotted key; every number must be finite
(``.nan``, ``.inf`` and integers too large for a float are errors for every key). The resolved config dumps to
YAML and reloads to an equal object, so a run directory's ``config.yaml`` reproduces the run.

Every field carries its documentation in ``metadata["help"]`` (see :func:`option`), which is what docs generation
and ``--help`` read.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import logging
import math
import re
import sys
import threading
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from mmcls.errors import ConfigError

T = TypeVar("T")

TruncationMode = Literal["head", "tail", "head_tail"]
TextField = Literal["title", "asr", "ocr"]
TEXT_FIELDS: tuple[str, ...] = typing.get_args(TextField)


def option(default: Any, help: str, *, runtime: bool = False) -> Any:
    """A dataclass field with documentation; mutable defaults are copied per instance.

    ``runtime=True`` marks a key that changes how a run is executed but not what it computes (workers, checkpoint
    cadence, compilation ...): a killed run may be resumed with another value (:func:`runtime_keys`).
    """
    metadata = {"help": help, "runtime": runtime}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return field(default=default, metadata=metadata)


def _check_at_least(prefix: str, section: Any, names: tuple[str, ...], low: int) -> None:
    """ConfigError naming the first of ``names`` (fields of ``section``) below ``low``."""
    for name in names:
        value = getattr(section, name)
        if value < low:
            raise ConfigError(f"{prefix}{name}: must be >= {low}, got {value}")


def _check_range(prefix: str, name: str, value: float, low: float, high: float, *, open_high: bool = False) -> None:
    """ConfigError unless ``low <= value <= high`` (``< high`` with ``open_high``)."""
    if not (low <= value < high if open_high else low <= value <= high):
        bracket = ")" if open_high else "]"
        raise ConfigError(f"{prefix}{name}: must be in [{low}, {high}{bracket}, got {value}")


def check_flip_pairs(key: str, pairs: dict[str, str]) -> None:
    """ConfigError naming ``key`` unless every pair ``a -> b`` of a flip map comes with ``b -> a``."""
    for a, b in pairs.items():
        if a != b and pairs.get(b) != a:
            back = f"{b!r} maps to {pairs[b]!r}" if b in pairs else f"{b!r} is missing"
            raise ConfigError(f"{key}: not symmetric: {a!r} maps to {b!r} but {back} (a flip swaps pairs: give "
                              f"{b!r}: {a!r} too)")


@dataclass
class DataConfig:
    """Where the data lives and how samples are built (the README's "Data format")."""

    root: str = option("data/synthetic", "Dataset root in the WBDC layout (annotations/, zip_frames/, videos/ ...).")
    train: str | None = option("annotations/labeled.json", "Labelled annotation file, relative to data.root.")
    val: str | None = option(None, "Validation annotation file; null = hold out data.val_fraction of data.train.")
    val_fraction: float = option(
        0.1, "Fraction of data.train held out for validation when data.val is null (stratified: every class with "
        "two or more samples puts at least one in validation).")
    folds_file: str | None = option(
        None, "K-fold assignment (id,fold CSV from tools/make_folds.py) used with data.fold, relative to data.root.")
    fold: int | None = option(None, "Validate on this fold of data.folds_file and train on the others.")
    train_fraction: float = option(
        1.0, "Train on this stratified fraction of the training split (validation unchanged): few-label "
        "experiments and learning curves.")
    test: str | None = option("annotations/test.json", "Test annotation file (predictions are written for it).")
    unlabeled: str | None = option("annotations/unlabeled.json", "Unlabelled annotation file (pretraining).")
    pseudo: str | list[str] | None = option(
        None, "Pseudo-labelled annotation file, or a list of them (tools/pseudo_label.py; hard category_id and "
        "optional soft category_probs) added to the training split only; ids in the labelled data are dropped, and "
        "an id in two files is taken from the first.")
    pseudo_frames: str | list[str] | None = option(
        None, "Frame folder (split name) of the data.pseudo videos, or one per file; null = that of data.unlabeled "
        "(e.g. unlabeled). Pseudo-labels of the test videos: test.")
    category_file: str | None = option(
        None, "Ordered category ids, one per line (e.g. category_ids.txt); null = sorted ids of data.train.")
    hierarchy_file: str | None = option(
        None, "Optional two-column file 'lv2_id lv1_id' per line; null = level 1 is a prefix of the id.")
    lv1_prefix_len: int = option(2, "Length of the category-id prefix that names the level-1 class (WBDC: 2).")

    frame_source: Literal["zip", "mp4", "jpeg", "feats"] = option(
        "zip", "Frame source: zip (zip_frames/<split>/<id[-3:]>/<id>.zip), mp4 (videos/<split>/<id>.mp4), "
        "jpeg (jpeg_frames/<split>/<id>/*.jpg) or feats (feats/<split>.zip with <id>.npy).")
    frame_dir: str | None = option(
        None, "Folder of the frame source relative to data.root; null = the source's default folder.")
    max_frames: int = option(8, "Frames per video at most.")
    frame_size: int = option(224, "Side of the square frames given to the vision tower.")
    resize_size: int | None = option(
        None, "Evaluation resize of the shorter side before the centre crop; null = frame_size * 256 / 224.")
    train_sampling: Literal["random", "segment"] = option(
        "random", "Training frame sampling: random sorted subset, or one random offset per equal segment.")
    train_crop_scale: list[float] = option([0.6, 1.0], "Area range of the training random resized crop.")
    hflip: float = option(0.5, "Training horizontal-flip probability (same flip for every frame of a video).")
    flip_label_map: str | dict[str, str] | None = option(
        None, "Category pairs a horizontal flip swaps (left/right direction classes such as 'swipe left' / 'swipe "
        "right'): a JSON file of an object {\"0101\": \"0102\", \"0102\": \"0101\"} or a text file of 'a b' pairs, "
        "relative to data.root, or that mapping itself (quote the ids in YAML). A flipped training video gets the "
        "swapped label (level 1 follows; soft targets are permuted too), and predict --tta-hflip swaps the flipped "
        "view's scores before averaging; unlisted categories, or ones mapped to themselves, keep theirs. The map "
        "must be symmetric and name only the run's categories; it is saved with the model "
        "(best/flip_label_map.json). null = flips never change labels: with direction classes set it, or "
        "data.hflip=0.")
    color_jitter: float = option(0.1, "Training brightness/contrast/saturation jitter strength (0 = off).")
    decode_timeout: float = option(10.0, "Seconds before a hanging video decode is abandoned (0 = no timeout).",
        runtime=True)
    decode_threads: int = option(1, "Threads decord may use per video reader.", runtime=True)
    feat_dim: int | None = option(None, "Feature width of the feats source; null = read from the first feature file.")
    max_video_bytes: int = option(
        512 << 20, "Most bytes of one video (0 = no limit): its zip or mp4 file, the JPEG frames sampled from it, or "
        "its member of a feature zip (uncompressed), as the file system and zip headers give them before anything "
        "is read. A larger video is broken (corrupt: counted and masked, never fatal).", runtime=True)
    max_video_frames: int = option(
        100_000, "Most frames one video may have (0 = no limit): JPEG files in its zip or folder, rows of its "
        "feature array, frames of its mp4. A longer video is broken (corrupt: counted and masked, never fatal).",
        runtime=True)

    max_text_len: int = option(256, "Tokens per sample including [CLS]/[SEP].")
    text_fields: list[TextField] = option(
        ["title", "asr", "ocr"], "Text fields in input order, each followed by [SEP].")
    text_budgets: dict[str, int] = option(
        {"title": 64, "asr": 96, "ocr": 96},
        "Token budget per field; a field that needs less passes the rest to the others.")
    text_truncation: dict[str, TruncationMode] = option(
        {"title": "head", "asr": "head_tail", "ocr": "head_tail"},
        "How a field over its budget is cut: head (keep start), tail (keep end), head_tail (keep both ends).")
    tokenizer: str | None = option(
        None, "Local tokenizer directory (transformers); null = data.root/tokenizer (see tools/build_tokenizer.py).")

    num_workers: int = option(2, "DataLoader worker processes (0 = load in the main process).", runtime=True)
    pin_memory: bool = option(True, "Pin batches in page-locked memory for fast host-to-device copies.", runtime=True)
    persistent_workers: bool = option(True, "Keep workers alive between epochs (when num_workers > 0).", runtime=True)
    prefetch_factor: int = option(2, "Batches each worker loads ahead (when num_workers > 0).", runtime=True)
    worker_start: Literal["auto", "fork", "forkserver", "spawn"] = option(
        "auto", "How DataLoader workers start: auto = forkserver for mp4 (decord is not fork-safe once used in the "
        "parent), fork otherwise.", runtime=True)

    @property
    def reads_features(self) -> bool:
        """Whether frames arrive as cached features ``[T, D]`` (``frame_source: feats``) rather than pixels: the one
        place this is decided; everything else asks this property (or the model's ``reads_features``)."""
        return self.frame_source == "feats"

    def validate(self, prefix: str) -> None:
        """Value checks across keys; ``prefix`` is this section's dotted path for error messages."""
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"{prefix}train_fraction: must be in (0, 1], got {self.train_fraction}")
        if not self.root.strip():
            raise ConfigError(f"{prefix}root: must not be empty")
        if self.feat_dim is not None and self.feat_dim < 1:
            raise ConfigError(f"{prefix}feat_dim: must be >= 1, got {self.feat_dim}")
        if not 0.0 <= self.color_jitter <= 1.0:
            raise ConfigError(f"{prefix}color_jitter: must be in [0, 1], got {self.color_jitter}")
        positive = {"max_frames": self.max_frames, "frame_size": self.frame_size, "max_text_len": self.max_text_len,
                    "lv1_prefix_len": self.lv1_prefix_len, "prefetch_factor": self.prefetch_factor,
                    "decode_threads": self.decode_threads}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{prefix}{name}: must be >= 1, got {value}")
        if self.resize_size is not None and self.resize_size < self.frame_size:
            raise ConfigError(f"{prefix}resize_size: must be >= frame_size ({self.frame_size}), got {self.resize_size}")
        if self.fold is not None and (self.folds_file is None or self.val is not None or self.fold < 0):
            raise ConfigError(f"{prefix}fold: needs data.folds_file, no data.val, and a fold >= 0")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"{prefix}val_fraction: must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ConfigError(f"{prefix}hflip: must be in [0, 1], got {self.hflip}")
        if isinstance(self.flip_label_map, dict):
            check_flip_pairs(f"{prefix}flip_label_map", self.flip_label_map)
        elif self.flip_label_map is not None and not self.flip_label_map.strip():
            raise ConfigError(f"{prefix}flip_label_map: must not be empty (null = no map)")
        if self.num_workers < 0:
            raise ConfigError(f"{prefix}num_workers: must be >= 0, got {self.num_workers}")
        for name in ("max_video_bytes", "max_video_frames"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{prefix}{name}: must be >= 0 (0 = no limit), got {getattr(self, name)}")
        if not 0 <= self.decode_timeout <= threading.TIMEOUT_MAX:  # also rejects nan and inf
            raise ConfigError(f"{prefix}decode_timeout: must be a number of seconds >= 0, got {self.decode_timeout}")
        lo_hi = self.train_crop_scale
        if len(lo_hi) != 2 or not 0.0 < lo_hi[0] <= lo_hi[1] <= 1.0:
            raise ConfigError(f"{prefix}train_crop_scale: must be [min, max] with 0 < min <= max <= 1, got {lo_hi}")
        if len(set(self.text_fields)) != len(self.text_fields) or not self.text_fields:
            raise ConfigError(f"{prefix}text_fields: must be a non-empty list without repeats, got {self.text_fields}")
        for name in ("text_budgets", "text_truncation"):
            unknown = sorted(set(getattr(self, name)) - set(TEXT_FIELDS))
            if unknown:
                raise ConfigError(f"{prefix}{name}.{unknown[0]}: unknown text field (choose from {list(TEXT_FIELDS)})")
        for key, budget in self.text_budgets.items():
            if budget < 0:
                raise ConfigError(f"{prefix}text_budgets.{key}: must be >= 0, got {budget}")
        if self.max_text_len < len(self.text_fields) + 1:
            raise ConfigError(f"{prefix}max_text_len: must leave room for [CLS] and one [SEP] per field")


ScalarValue = bool | int | float | str


@dataclass
class VisionConfig:
    """The frame encoder (docs/ARCHITECTURE.md). Ignored when frames come as features (data.frame_source=feats)."""

    kind: Literal["clip", "timm", "hf"] = option(
        "clip", "Frame encoder family: clip (open-clip-torch ViT), timm (any timm backbone) or hf (the vision part "
        "of a transformers model folder: CLIP, Chinese-CLIP, SigLIP / SigLIP2, DINOv2, ViT).")
    name: str = option("ViT-B-16", "Model name: an open_clip model config (ViT-B-16, ViT-B-32 ...) or a timm model; "
                       "ignored by kind hf (the folder's config.json names the architecture).")
    pretrained: str | None = option(
        None, "Local weights: an open_clip checkpoint or folder (clip), a timm .safetensors/.pth file or folder "
        "(timm), or, required by kind hf, a transformers folder saved with save_pretrained (config.json, "
        "model.safetensors or pytorch_model.bin, optionally preprocessor_config.json for the pixel mean/std and "
        "image size); null = random init (clip, timm).")
    overrides: dict[str, ScalarValue] = option(
        {}, "Architecture overrides: open_clip vision_cfg keys (width, layers, patch_size, image_size ...) or timm "
        "create_model kwargs (embed_dim, depth, num_heads, img_size ...), used for tiny test/demo towers; kind hf "
        "takes only pooling (projected / pooled for CLIP, pooled / mean for SigLIP, cls / mean for DINOv2, cls / "
        "mean / pooled for ViT) and attn_implementation (sdpa / eager). On the "
        "command line model.vision.overrides=~ (or ={}) empties it; switching model.vision.kind there drops the "
        "other kind's overrides of the config files (with a warning).")
    normalization: Literal["auto", "clip", "imagenet"] = option(
        "auto", "Pixel mean/std applied on the device: auto = clip for CLIP towers, the timm model's own, or for "
        "kind hf the folder's preprocessor_config.json (else the family's default).")
    trust_torchscript: bool = option(
        False, "Read a TorchScript model.vision.pretrained file (OpenAI's CLIP .pt files are TorchScript archives). "
        "Loading one runs the code inside it, so it is refused unless this is true; the error shows how to convert "
        "the file once to safetensors instead.", runtime=True)


@dataclass
class TextConfig:
    """The BERT-family encoder that embeds the text and, VisualBERT-style, fuses text and frames in its encoder."""

    pretrained: str | None = option(
        None, "Local directory of a BERT-family encoder saved with save_pretrained, with its own tokenizer: "
        "config.json model_type bert (BERT, MacBERT, MiniLM, RoBERTa-wwm-ext), roberta, xlm-roberta or ernie; "
        "loaded strictly (only a pooler / MLM head may be left over). null = a BERT built from the sizes below with "
        "the tokenizer's vocabulary.")
    hidden_size: int = option(768, "Hidden width when building from config (ignored with model.text.pretrained).")
    num_layers: int = option(12, "Encoder layers when building from config.")
    num_heads: int = option(12, "Attention heads when building from config.")
    intermediate_size: int = option(3072, "Feed-forward width when building from config.")
    max_positions: int = option(512, "Position table size when building from config (>= data.max_text_len).")
    attn_implementation: Literal["sdpa", "eager"] = option(
        "sdpa", "Attention kernel: sdpa (PyTorch fused scaled-dot-product attention) or eager.")
    dropout: float | None = option(
        None, "Dropout inside the BERT (hidden states and attention probabilities, also on the frame embeddings); "
        "null = the value in the checkpoint's config (0.1 when built from the sizes above). A model saved with a "
        "value keeps it in its bert_config.json, so a later model.init_from run inherits it unless set again.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        if self.dropout is not None and not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{prefix}dropout: must be in [0, 1) or null, got {self.dropout}")


@dataclass
class TemporalConfig:
    """Time inside the vision tower, which otherwise sees one frame at a time (mmcls/models/temporal.py; docs/RECIPES.md
    "Time"). Both work within each video's valid frames, need pixel frames (not data.frame_source=feats) and are
    part of the architecture (a model folder rebuilds them from its config.yaml)."""

    frame_diff: Literal["none", "rgb", "grey"] = option(
        "none", "Frame differences (TSN's RGB difference): each frame also gets next frame - this frame of the "
        "normalised pixels (rgb: 3 channels; grey: their channel mean, 1) as extra input channels of the tower's "
        "stem convolution, widened with zero weights so a pretrained tower starts exactly unchanged; zero for a "
        "video's last frame. A 3-channel stem weight (model.vision.pretrained, model.init_from) loads with zeros "
        "padded in.")
    shift: float = option(
        0.0, "Temporal shift (TSM): this fraction of the channels per direction (0.125 = TSM's 1/8 from the "
        "previous frame and 1/8 from the next) of the residual branch of every block of the tower (ViT, ResNet, "
        "ConvNeXt blocks of open_clip, timm and transformers towers); no weights. 0 = off.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_range(prefix, "shift", self.shift, 0.0, 0.5)

    @property
    def enabled(self) -> bool:
        return self.frame_diff != "none" or self.shift > 0


@dataclass
class ModelConfig:
    """The multimodal classifier: towers, fusion, pooling and heads."""

    vision: VisionConfig = field(default_factory=VisionConfig, metadata={"help": "Frame encoder."})
    text: TextConfig = field(default_factory=TextConfig, metadata={"help": "Text encoder and fusion transformer."})
    temporal: TemporalConfig = field(default_factory=TemporalConfig,
                                     metadata={"help": "Temporal modelling in the vision tower."})
    mode: Literal["fusion", "text", "video"] = option(
        "fusion", "Inputs used: fusion (text + frames), text only, or video only (same model, for ablations).")
    pooling: Literal["cls", "mean"] = option(
        "mean", "How the fused sequence becomes one vector: the [CLS] state, or the masked mean of all states.")
    dropout: float = option(0.1, "Dropout before the classifier heads.")
    dropout_samples: int = option(
        1, "Multi-sample dropout: average the heads' logits over this many dropout masks in training (1 = plain).")
    lv1_head: bool = option(True, "Add a level-1 classifier head (auxiliary loss; predictions use level 2).")
    lv1_loss_weight: float = option(0.3, "Weight of the level-1 loss.")
    aux_video_weight: float = option(
        0.3, "Weight of the auxiliary video-only classifier loss on the pooled frame features (0 = off).")
    init_from: str | None = option(
        None, "Start from a pretrained model folder (RUN/best of pretrain/train.py): its BERT, vision tower and "
        "frame layers, its BERT architecture and its tokenizer; the classifier heads start fresh.")
    init_parts: list[Literal["bert", "vision", "frame_embedder"]] = option(
        ["bert", "vision", "frame_embedder"], "Parts of the model.init_from folder loaded: the BERT (text and fusion "
        "layers), the vision tower, the frame layers (projection and frame positions). A part left out keeps its "
        "fresh initialisation (the vision tower: model.vision.pretrained); the BERT architecture and tokenizer "
        "still come from the folder.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{prefix}dropout: must be in [0, 1), got {self.dropout}")
        _check_at_least(prefix, self, ("dropout_samples",), 1)
        _check_at_least(prefix, self, ("lv1_loss_weight", "aux_video_weight"), 0)
        if not self.init_parts or len(set(self.init_parts)) != len(self.init_parts):
            raise ConfigError(f"{prefix}init_parts: must be a non-empty list without repeats, got {self.init_parts}")


@dataclass
class EmaConfig:
    """Exponential moving average of the weights (timm ModelEmaV3), evaluated and exported when on."""

    decay: float = option(0.0, "EMA decay per optimizer update, e.g. 0.999 (0 = EMA off).")
    warmup: bool = option(
        True, "Warm the decay up as 1 - (1 + update)^(-2/3), capped at train.ema.decay, so early averages are not "
        "dominated by the random initialisation.")
    evaluate: bool = option(
        True, "Validate (and export to best/) the EMA weights instead of the raw ones.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_range(prefix, "decay", self.decay, 0.0, 1.0, open_high=True)


@dataclass
class AdversarialConfig:
    """Adversarial training on the word embeddings (FGM, or PGD with K steps), optionally also on frame features.

    The attack passes reuse the frame features of the clean pass (no second trip through the vision tower)."""

    method: Literal["none", "fgm", "pgd"] = option("none", "none, fgm (one step) or pgd (train.adversarial.steps).")
    epsilon: float = option(0.5, "Radius of the perturbation (L2 norm over the word-embedding table).")
    alpha: float = option(0.3, "PGD step size (each step moves alpha along the normalised gradient).")
    steps: int = option(3, "PGD steps per update (each costs one extra forward and backward of the fusion).")
    frames: bool = option(False, "Also perturb the frame features fed to the fusion (same epsilon, per video).")
    weight: float = option(1.0, "Weight of the adversarial loss added to the clean loss.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_at_least(prefix, self, ("epsilon", "alpha", "weight"), 0)
        _check_at_least(prefix, self, ("steps",), 1)


@dataclass
class LossConfig:
    """Classification loss: class weights for imbalance, focal loss, label smoothing, R-Drop."""

    class_weights: Literal["none", "inverse", "effective"] = option(
        "none", "Per-class loss weights: none, inverse (n^-power) or effective (effective number of samples, "
        "(1 - beta) / (1 - beta^n)); normalised to average 1 over the training samples.")
    class_weight_power: float = option(0.5, "Exponent of train.loss.class_weights=inverse (1 = fully inverse).")
    effective_beta: float = option(0.999, "beta of train.loss.class_weights=effective.")
    focal_gamma: float = option(0.0, "Focal loss exponent gamma (0 = plain cross-entropy).")
    label_smoothing: float = option(0.0, "Label smoothing epsilon: targets (1 - eps) one-hot + eps / classes.")
    rdrop_alpha: float = option(
        0.0, "R-Drop: weight of the symmetric KL between two dropout passes of the same batch (0 = off; doubles "
        "the batch in the forward pass).")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_at_least(prefix, self, ("class_weight_power", "focal_gamma", "rdrop_alpha"), 0)
        _check_range(prefix, "effective_beta", self.effective_beta, 0.0, 1.0, open_high=True)
        _check_range(prefix, "label_smoothing", self.label_smoothing, 0.0, 1.0, open_high=True)


@dataclass
class MixConfig:
    """Mixup / CutMix on the frames of a batch: one mix per video (same for all its frames), labels mixed alike."""

    mixup_alpha: float = option(0.0, "Beta(alpha, alpha) of the mixup coefficient (0 = no mixup).")
    cutmix_alpha: float = option(0.0, "Beta(alpha, alpha) of the CutMix area (0 = no CutMix).")
    prob: float = option(1.0, "Probability that a batch is mixed at all.")
    switch_prob: float = option(0.5, "With both on: probability of CutMix instead of mixup for a batch.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_at_least(prefix, self, ("mixup_alpha", "cutmix_alpha"), 0)
        for name in ("prob", "switch_prob"):
            _check_range(prefix, name, getattr(self, name), 0.0, 1.0)

    @property
    def enabled(self) -> bool:
        """Whether any mixing happens."""
        return self.prob > 0 and (self.mixup_alpha > 0 or self.cutmix_alpha > 0)


@dataclass
class SwaConfig:
    """Stochastic weight averaging during training: the average is validated, saved to swa/, and replaces best/
    when it scores higher."""

    mode: Literal["none", "last", "topk"] = option(
        "none", "none; last = average the weights at the end of the last train.swa.count epochs; topk = average "
        "the train.swa.count best-validated weights.")
    count: int = option(3, "Epochs (mode last) or checkpoints (mode topk) to average.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_at_least(prefix, self, ("count",), 1)


@dataclass
class FreezeConfig:
    """Freeze a tower (or its lower layers) for the first updates, then train it."""

    towers: list[Literal["vision", "text"]] = option([], "Towers to freeze: any of vision, text.")
    layers: int = option(
        0, "0 = the whole tower; k > 0 = its embeddings and its lowest k blocks (the rest trains throughout).")
    updates: int = option(0, "Unfreeze after this many optimizer updates (0 = frozen for the whole run).")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_at_least(prefix, self, ("layers", "updates"), 0)
        if len(set(self.towers)) != len(self.towers):
            raise ConfigError(f"{prefix}towers: repeated tower in {self.towers}")


@dataclass
class DistillConfig:
    """Self-distillation: train on ``alpha * one-hot + (1 - alpha) * teacher probabilities``, the teacher being
    saved logits (e.g. the out-of-fold logits of an earlier K-fold round, so no video's target comes from a model
    that trained on it)."""

    teacher: str | None = option(
        None, "Logits bundle (X.npy + X.ids.txt + X.classes.txt) of the teacher, e.g. runs/kfold/oof_logits.npy; "
        "videos it does not cover train on their labels alone (null = off).")
    alpha: float = option(0.5, "Weight of the one-hot label; 1 - alpha goes to the teacher's probabilities.")
    temperature: float = option(1.0, "Softmax temperature applied to the teacher's logits.")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        _check_range(prefix, "alpha", self.alpha, 0.0, 1.0)
        if self.temperature <= 0:
            raise ConfigError(f"{prefix}temperature: must be > 0, got {self.temperature}")


@dataclass
class TrainConfig:
    """Optimisation and evaluation schedule of finetuning (counted in optimizer updates)."""

    epochs: int = option(5, "Passes over the training split (train.max_steps > 0 stops earlier).")
    max_steps: int = option(0, "Stop after this many optimizer updates (0 = run all epochs).")
    batch_size: int = option(32, "Training videos per process per forward pass.")
    eval_batch_size: int = option(64, "Videos per process per batch in evaluation and prediction.", runtime=True)
    grad_accum_steps: int = option(1, "Forward passes per optimizer update (global batch = processes x batch x this).")
    lr: float = option(5e-4, "Learning rate of the fusion-specific layers and heads.")
    lr_text: float = option(5e-5, "Learning rate of the BERT (embeddings and encoder).")
    lr_vision: float = option(5e-6, "Learning rate of the frame encoder.")
    layer_decay: float = option(
        1.0, "Layer-wise learning-rate decay inside the towers: the top layer keeps its tower's rate and each layer "
        "below gets this times the rate above it, down to the embeddings (1 = off; e.g. 0.975).")
    weight_decay: float = option(0.01, "Weight decay (not applied to biases, norms and embedding tables).")
    optimizer: Literal["adamw", "sgd", "radam", "ranger"] = option(
        "adamw", "adamw; sgd (Nesterov, train.momentum); radam; ranger = RAdam + Lookahead (k=6, alpha=0.5).")
    momentum: float = option(0.9, "SGD momentum.")
    sam_rho: float = option(
        0.0, "Sharpness-aware minimisation around the optimizer: neighbourhood radius rho, e.g. 0.05 (0 = off; "
        "costs a second forward and backward per update; needs train.grad_accum_steps=1 and no fp16).")
    schedule: Literal["cosine", "linear", "constant", "cosine_restarts"] = option(
        "cosine", "Learning-rate decay after warm-up, per optimizer update; cosine_restarts = SGDR with "
        "train.cycles equal cycles.")
    cycles: int = option(2, "Cosine cycles of schedule=cosine_restarts.")
    cycle_decay: float = option(1.0, "Peak multiplier from one SGDR cycle to the next.")
    warmup_ratio: float = option(0.06, "Warm-up length as a fraction of all updates (train.warmup_steps wins if > 0).")
    warmup_steps: int = option(0, "Warm-up length in optimizer updates (0 = use train.warmup_ratio).")
    min_lr_ratio: float = option(0.0, "Final learning rate as a fraction of the peak.")
    max_grad_norm: float = option(1.0, "Gradient clipping by global norm (0 = off).")
    max_nonfinite_updates: int = option(
        10, "An update whose gradient is NaN or inf is skipped (weights and optimizer state unchanged) and counted; "
        "after this many in a row the run stops with a clear message (0 = never stop).")
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = option(
        "auto", "Autocast precision: auto = bf16 where the device supports it (else fp16 on CUDA, no on CPU).")
    eval_every: int = option(0, "Also evaluate every N optimizer updates (0 = only at the end of each epoch).")
    log_every: int = option(10, "Log training loss and learning rate every N optimizer updates.", runtime=True)
    resume: bool = option(
        True, "Finetuning and pretraining continue from output_dir/checkpoints/last when it exists (after a kill, "
        "rerun the same command); a checkpoint of a run with other settings is an error. false = start over.",
        runtime=True)
    checkpoint_every: int = option(
        0, "Also save checkpoints/last every N optimizer updates, so a kill loses at most N (0 = at validations).",
        runtime=True)
    keep_checkpoints: int = option(
        1, "Resumable checkpoints kept: checkpoints/last plus the previous N - 1 as checkpoints/update-<N> (best/ "
        "always holds the best weights).", runtime=True)
    early_stopping_patience: int = option(
        0, "Stop after this many validations in a row without a better score (finetuning: mean-F1; pretraining: "
        "held-out loss; 0 = never).")
    grad_checkpointing: bool = option(False, "Recompute activations of both towers in the backward pass (less memory).")
    compile: bool = option(
        False, "torch.compile the model (inductor): fuses elementwise work into the matmuls' neighbours; the first "
        "updates are slow while it compiles, each new text length may compile again, and selecting the valid frames "
        "breaks the graph. Needs a C++ compiler on CPU. Measured on CPU only (no gain there); untested under DDP.",
        runtime=True)
    channels_last: bool = option(
        False, "Keep the vision tower's weights and frames in channels_last memory format: faster convolutions with "
        "tensor cores (timm convnets on GPUs); no effect on ViTs.", runtime=True)
    ema: EmaConfig = field(default_factory=EmaConfig, metadata={"help": "Weight EMA (see EmaConfig)."})
    adversarial: AdversarialConfig = field(default_factory=AdversarialConfig,
                                           metadata={"help": "FGM / PGD (see AdversarialConfig)."})
    loss: LossConfig = field(default_factory=LossConfig, metadata={"help": "Loss options (see LossConfig)."})
    mix: MixConfig = field(default_factory=MixConfig, metadata={"help": "Mixup / CutMix (see MixConfig)."})
    swa: SwaConfig = field(default_factory=SwaConfig, metadata={"help": "Weight averaging (see SwaConfig)."})
    freeze: FreezeConfig = field(default_factory=FreezeConfig,
                                 metadata={"help": "Tower freezing (see FreezeConfig)."})
    distill: DistillConfig = field(default_factory=DistillConfig,
                                   metadata={"help": "Self-distillation from saved logits (see DistillConfig)."})

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "eval_batch_size": self.eval_batch_size,
                    "keep_checkpoints": self.keep_checkpoints,
                    "grad_accum_steps": self.grad_accum_steps, "log_every": self.log_every, "cycles": self.cycles}
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{prefix}{name}: must be >= 1, got {value}")
        _check_at_least(prefix, self, ("max_steps", "warmup_steps", "eval_every", "early_stopping_patience",
                                       "max_nonfinite_updates", "checkpoint_every"), 0)
        _check_at_least(prefix, self, ("lr", "lr_text", "lr_vision", "weight_decay", "max_grad_norm", "sam_rho"), 0)
        for name in ("warmup_ratio", "min_lr_ratio", "momentum", "cycle_decay"):
            _check_range(prefix, name, getattr(self, name), 0.0, 1.0)
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"{prefix}layer_decay: must be in (0, 1], got {self.layer_decay}")
        if self.sam_rho > 0 and self.grad_accum_steps > 1:
            raise ConfigError(f"{prefix}sam_rho: SAM needs {prefix}grad_accum_steps=1 (its second pass re-runs the "
                              "batch of the update)")
        if self.sam_rho > 0 and self.mixed_precision == "fp16":
            raise ConfigError(f"{prefix}sam_rho: SAM does not work with fp16 loss scaling; use bf16 or no")


@dataclass
class PretrainConfig:
    """Pretraining tasks on unlabelled videos (pretrain/train.py); optimisation comes from the train section."""

    sources: list[Literal["train", "val", "unlabeled", "test"]] = option(
        ["train", "unlabeled", "test"], "Annotation files (data.<name>) whose videos are pretrained on; labels are "
        "ignored and an id in several files is used once.")
    holdout: int = option(256, "Videos held out of the sources to validate the pretraining tasks.")
    mlm_prob: float = option(0.15, "MLM: fraction of text tokens (or words) masked; 80% [MASK], 10% random, 10% kept.")
    mlm_weight: float = option(1.0, "Weight of the MLM loss (0 = task off).")
    whole_word: bool = option(
        False, "MLM masks whole words: WordPiece continuations with their word, Chinese words as segmented by jieba.")
    mfm_prob: float = option(0.15, "MFM: fraction of valid frames masked (their features zeroed at the input).")
    mfm_weight: float = option(
        1.0, "Weight of masked frame modelling: each masked frame's output must pick its own feature among all "
        "frames of the batch (NCE) (0 = task off).")
    itm_prob: float = option(0.5, "ITM: fraction of samples whose video is swapped with another sample's.")
    itm_weight: float = option(1.0, "Weight of video-text matching (0 = task off).")
    itc_weight: float = option(
        0.0, "Weight of video-text contrastive loss (extra text-only and frames-only passes of the fusion encoder, "
        "batch-normalised projections; 0 = task off).")
    itc_temperature: float = option(0.07, "Temperature of the contrastive loss.")
    order_weight: float = option(
        0.0, "Weight of the order task: each video with >= 2 valid frames plays forward, reversed or shuffled "
        "(equally likely; 2-frame videos never shuffled) for every task, and a head on the pooled fused sequence "
        "tells which; validated as order_accuracy (0 = task off).")

    def validate(self, prefix: str) -> None:
        """Value checks; ``prefix`` is this section's dotted path."""
        if not self.sources or len(set(self.sources)) != len(self.sources):
            raise ConfigError(f"{prefix}sources: must be a non-empty list without repeats, got {self.sources}")
        _check_at_least(prefix, self, ("holdout",), 0)
        for name in ("mlm_prob", "mfm_prob", "itm_prob"):
            _check_range(prefix, name, getattr(self, name), 0.0, 1.0)
        _check_at_least(prefix, self, ("mlm_weight", "mfm_weight", "itm_weight", "itc_weight", "order_weight"), 0)
        if self.itc_temperature <= 0:
            raise ConfigError(f"{prefix}itc_temperature: must be > 0, got {self.itc_temperature}")
        if not any(getattr(self, f"{task}_weight") > 0 for task in ("mlm", "mfm", "itm", "itc", "order")):
            raise ConfigError(f"{prefix}: every task weight is 0; switch on at least one of mlm, mfm, itm, itc, order")


@dataclass
class Config:
    """A whole run: where it writes, its seed, and the data, model and training sections."""

    output_dir: str = option("runs/default", "Run directory: config.yaml, metrics.csv, train.log, checkpoints/, best/.")
    seed: int = option(
        42, "Random seed: model init, shuffling, and (with epoch and index) each sample's frames and augmentation.")
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data options (see DataConfig)."})
    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Model options (see ModelConfig)."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Training options (see TrainConfig)."})
    pretrain: PretrainConfig = field(default_factory=PretrainConfig,
                                     metadata={"help": "Pretraining tasks (see PretrainConfig)."})

    def validate(self, prefix: str) -> None:
        """Value checks of the top-level keys."""
        if not 0 <= self.seed < 2**32:
            raise ConfigError(f"{prefix}seed: must be in [0, 2**32), got {self.seed}")
        if not self.output_dir.strip():
            raise ConfigError(f"{prefix}output_dir: must not be empty")
        if self.train.mix.enabled and self.model.mode == "text":
            raise ConfigError(f"{prefix}train.mix: mixup/CutMix mix frames, but model.mode=text uses none")
        if self.train.mix.cutmix_alpha > 0 and self.data.reads_features:
            raise ConfigError(f"{prefix}train.mix.cutmix_alpha: CutMix cuts pixels; frame features "
                              "(data.frame_source=feats) can only be mixed with mixup")


# ----------------------------------------------------------------------------------------------------------------
# YAML with YAML 1.2 numbers: PyYAML (YAML 1.1) reads ``1e-4`` as a string, which every learning rate hits.


class _Loader(yaml.SafeLoader):
    """Safe loader that also reads exponents without a dot (``1e-4``, ``5E3``) as floats."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+][0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


class _Dumper(yaml.SafeDumper):
    """Safe dumper that quotes strings the loader would read as numbers (``"1e3"``), so dumps reload identically."""


for _first, _resolvers in _Loader.yaml_implicit_resolvers.items():
    for _tag, _regexp in _resolvers:
        if _tag == "tag:yaml.org,2002:float":
            _Dumper.add_implicit_resolver(_tag, _regexp, [_first])


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    """Double-quote strings with YAML 1.1 line breaks (NEL, LS, PS), which plain or single-quoted style would fold."""
    style = '"' if any(ch in data for ch in "\x85\u2028\u2029") else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _represent_str)


def _too_many_digits() -> str:
    return f"an integer of more than {sys.get_int_max_str_digits()} digits"


def parse_yaml(text: str) -> Any:
    """Parse YAML text safely (no object construction), with YAML 1.2 floats."""
    return yaml.load(text, Loader=_Loader)


# ----------------------------------------------------------------------------------------------------------------
# strict conversion of plain YAML values into the typed schema


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


class _NotFinite(ConfigError):
    """A NaN or an infinity (or an integer too large for a float) where a number is taken: no config key accepts
    one (its min-only checks would pass NaN, and e.g. ``train.max_grad_norm=.nan`` would turn clipping off)."""


def _finite_float(value: int | float, key: str) -> float:
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise _NotFinite(f"{key}: expected a finite number, got an integer of {len(str(abs(value)))} digits") from None
    if not math.isfinite(number):
        raise _NotFinite(f"{key}: expected a finite number, got {value!r} (NaN and infinities are not accepted)")
    return number


def _coerce(value: Any, tp: Any, key: str, validate: bool) -> Any:
    """Check ``value`` against type ``tp`` and return it converted (dataclasses built, ints widened to float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key or 'config'}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return _build_dataclass(tp, value, key, validate)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key, validate)
            except _NotFinite:
                raise
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is Literal:
        if isinstance(value, bool) and not any(isinstance(a, bool) for a in args):
            # YAML reads a bare no/off/false (yes/on/true) as a boolean: take the word the choices spell it with
            words = ("no", "off", "false", "none") if not value else ("yes", "on", "true")
            value = next((a for a in args if isinstance(a, str) and a.lower() in words), value)
        if value not in args:
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{key}[{i}]", validate) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, args[0], key, validate): _coerce(v, args[1], f"{key}.{k}", validate)
                for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return _finite_float(value, key)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")  # a schema bug, not a user error


def _build_dataclass(cls: type[T], values: dict[str, Any], prefix: str, validate: bool = True) -> T:
    """Build ``cls`` from a mapping, checking keys and types; ``validate`` also runs the value checks."""
    hints = typing.get_type_hints(cls)
    dotted = f"{prefix}." if prefix else ""
    for name in values:
        if name not in hints:
            raise ConfigError(f"{dotted}{name}: unknown config key (known: {', '.join(sorted(hints))})")
    obj = cls(**{name: _coerce(value, hints[name], f"{dotted}{name}", validate) for name, value in values.items()})
    if validate and hasattr(obj, "validate"):
        obj.validate(dotted)
    return obj


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge: mappings merge key by key (at every level), anything else replaces."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _resolve_type(cls: type, path: list[str]) -> Any:
    """Type of the field at ``path`` (dataclass fields, then dict values)."""
    tp: Any = cls
    walked: list[str] = []
    for part in path:
        walked.append(part)
        if is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            if part not in hints:
                known = ", ".join(sorted(hints))
                raise ConfigError(f"{'.'.join(walked)}: unknown config key (known here: {known})")
            tp = hints[part]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            raise ConfigError(f"{'.'.join(walked)}: unknown config key ({'.'.join(walked[:-1])} has no sub-keys)")
        while typing.get_origin(tp) in (typing.Union, types.UnionType):  # Optional[Dataclass] -> Dataclass
            inner = [a for a in typing.get_args(tp) if a is not type(None)]
            if len(inner) == 1 and (is_dataclass(inner[0]) or typing.get_origin(inner[0]) is dict):
                tp = inner[0]
            else:
                break
    return tp


def _accepts_str(tp: Any) -> bool:
    if tp is str:
        return True
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)


EMPTY_MAPPING: Any = object()  # what parse_override returns for ``key=~`` / ``key={}`` on a mapping


def parse_override(item: str, cls: type = Config) -> tuple[list[str], Any]:
    """Parse ``key.sub=value``: the value is read as YAML, or kept as text where the key takes a string."""
    if "=" not in item:
        raise ConfigError(f"{item}: overrides look like key.sub=value")
    key, raw = item.split("=", 1)
    path = key.strip().split(".")
    if not all(path):
        raise ConfigError(f"{key}: malformed config key")
    tp = _resolve_type(cls, path)
    try:
        value = parse_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except ValueError:  # an integer over Python's digit limit
        raise ConfigError(f"{key.strip()}: {_too_many_digits()}") from None
    if typing.get_origin(tp) is dict and (value is None or value == {}):
        return path, EMPTY_MAPPING
    if _accepts_str(tp) and not isinstance(value, str) and value is not None and not _fits(value, tp):
        value = raw  # e.g. data.root=2022 stays the string "2022"
    return path, value


def _fits(value: Any, tp: Any) -> bool:
    """Whether ``value`` passes the type check of ``tp`` as it is."""
    try:
        _coerce(value, tp, "", validate=False)
    except ConfigError:
        return False
    return True


def _nest(path: list[str], value: Any) -> dict[str, Any]:
    """``["a", "b"], v`` -> ``{"a": {"b": v}}``."""
    for part in reversed(path):
        value = {part: value}
    return value


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def build_config(values: dict[str, Any] | None = None, overrides: list[str] | tuple[str, ...] = (),
                 cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Defaults <- ``values`` (e.g. parsed YAML) <- ``overrides``.

    Each layer's keys and types are checked as it is applied (so an error names the layer's key); value checks
    that relate several keys run once, on the final result. Mappings merge key by key in both layers, so
    ``data.text_budgets={title: 8}`` changes only the title budget.
    """
    tree = to_dict(cls())
    if values:
        if not isinstance(values, dict):
            raise ConfigError(f"config: expected a mapping at the top level, got {type(values).__name__}")
        _build_dataclass(cls, values, "", validate=False)
        tree = _merge(tree, values)
    parsed = [parse_override(item, cls) for item in overrides]
    _drop_overrides_of_another_kind(tree, parsed)
    for path, value in parsed:
        # key=~ or key={} on a mapping replaces it with an empty one; anything else merges
        tree = _replaced(tree, path, {}) if value is EMPTY_MAPPING else _merge(tree, _nest(path, value))
    return _build_dataclass(cls, tree, "")


def _replaced(tree: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of ``tree`` with the value at ``path`` replaced (not merged)."""
    head, *rest = path
    return {**tree, head: _replaced(tree.get(head, {}), rest, value) if rest else value}


def _stale_vision_overrides(tree: dict[str, Any], new_kind: Any) -> list[str]:
    """The ``model.vision.overrides`` keys of ``tree`` that a switch to ``model.vision.kind=new_kind`` makes stale
    (they were written for the other kind: open_clip keys mean nothing to timm); empty when the kind stays."""
    model = tree.get("model")
    vision = model.get("vision") if isinstance(model, dict) else None
    if new_kind is None or not isinstance(vision, dict) or not vision.get("overrides"):
        return []
    return [] if vision.get("kind", VisionConfig.kind) == new_kind else list(vision["overrides"])


def _drop_overrides_of_another_kind(tree: dict[str, Any], parsed: list[tuple[list[str], Any]]) -> None:
    """``model.vision.kind`` switched on the command line: the config files' stale overrides are dropped, with a
    warning; overrides given on the command line apply to the new kind (an emptying of the mapping goes in front
    of ``parsed``)."""
    kinds = [value for path, value in parsed if path == ["model", "vision", "kind"]]
    stale = _stale_vision_overrides(tree, kinds[-1] if kinds else None)
    if stale:
        logging.getLogger("mmcls").warning(
            "model.vision.kind=%s: dropping the %s overrides of the config files (%s); set model.vision.overrides "
            "on the command line for the new kind", kinds[-1], tree["model"]["vision"].get("kind"), ", ".join(stale))
        parsed.insert(0, (["model", "vision", "overrides"], EMPTY_MAPPING))


def _without_other_kind_overrides(values: dict[str, Any], layer: dict[str, Any]) -> dict[str, Any]:
    """``values`` without its ``model.vision.overrides`` when the next file ``layer`` switches ``model.vision.kind``
    (a tower family's config over ``base.yaml``)."""
    model = layer.get("model")
    vision = model.get("vision") if isinstance(model, dict) else None
    new_kind = vision.get("kind") if isinstance(vision, dict) else None
    if not _stale_vision_overrides(values, new_kind):
        return values
    return _replaced(values, ["model", "vision", "overrides"], {})


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file; a missing file or bad YAML is a one-line :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        values = parse_yaml(path.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    except ValueError:  # an integer over Python's digit limit
        raise ConfigError(f"{path}: invalid YAML: {_too_many_digits()}") from None
    return values or {}


def load_config(path: str | Path | Sequence[str | Path] | None = None, overrides: list[str] | tuple[str, ...] = (),
                cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Load ``path`` (YAML) over the defaults, then apply ``key.sub=value`` overrides.

    ``path`` may be a list of files, applied in order (``[demo.yaml, pretrain_demo.yaml]``: the second only says
    what differs); each file's keys are checked on their own. A file that switches ``model.vision.kind`` starts
    ``model.vision.overrides`` afresh (the earlier files' were for the other kind).
    """
    paths = [] if path is None else [path] if isinstance(path, (str, Path)) else list(path)
    values: dict[str, Any] = {}
    for item in paths:
        layer = load_yaml(item)
        if not isinstance(layer, dict):
            raise ConfigError(f"{item}: expected a mapping at the top level, got {type(layer).__name__}")
        _build_dataclass(cls, layer, "", validate=False)
        values = _merge(_without_other_kind_overrides(values, layer), layer)
    return build_config(values, overrides, cls)


def dump_config(cfg: Any) -> str:
    """YAML text of a config; :func:`load_config` on it gives back an equal object."""
    return yaml.dump(to_dict(cfg), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config atomically."""
    from mmcls.io import atomic_write_text

    atomic_write_text(path, dump_config(cfg))


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """Add ``--config`` and the positional ``key.sub=value`` overrides to a parser.

    Parse with ``parser.parse_intermixed_args`` so overrides may come before or after the options.
    """
    parser.add_argument("--config", required=required, action="append",
                        help="YAML config file (see configs/); repeat to layer files, later ones winning.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Config overrides, applied after the YAML file, e.g. data.max_frames=16.")


def config_from_args(args: argparse.Namespace, cls: type[T] = Config) -> T:  # type: ignore[assignment]
    """Build the config from parsed ``--config`` and overrides."""
    return load_config(args.config, list(args.overrides), cls)


def _describe_type(tp: Any) -> str:
    """Readable type for the reference: ``int | null``, ``one of zip, mp4``, ``list[float]`` ..."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _describe_type(a) for a in args)
    if origin is Literal:
        return " / ".join(str(a) for a in args)
    if origin in (list, dict):
        return f"{origin.__name__}[{', '.join(_describe_type(a) for a in args)}]"
    return getattr(tp, "__name__", str(tp))


def config_reference(cls: type = Config, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key, type, default, help)`` for every leaf key of the schema, in declaration order."""
    rows = []
    hints = typing.get_type_hints(cls)
    defaults = cls()
    for f in fields(cls):
        key, tp = f"{prefix}{f.name}", hints[f.name]
        if is_dataclass(tp):
            rows.extend(config_reference(tp, f"{key}."))
            continue
        default = yaml.safe_dump(getattr(defaults, f.name), default_flow_style=True, width=1000).strip()
        rows.append((key, _describe_type(tp), default.removesuffix("\n...").removesuffix(" ..."),
                     f.metadata.get("help", "")))
    return rows


def runtime_keys(cls: type = Config, prefix: str = "") -> set[str]:
    """Dotted keys whose fields are marked ``runtime=True`` (:func:`option`): they may differ between a run and its
    resumption because they change how it executes, not what it computes."""
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        key = f"{prefix}{f.name}"
        if is_dataclass(hints[f.name]):
            keys |= runtime_keys(hints[f.name], f"{key}.")
        elif f.metadata.get("runtime"):
            keys.add(key)
    return keys


def config_reference_markdown(cls: type = Config) -> str:
    """docs/CONFIG.md: every config key with its type, default and meaning (generated, so it cannot drift)."""
    lines = ["# Configuration reference", "",
             "Generated from the dataclasses in `mmcls/config.py` by `python tools/config_docs.py`; a test checks that",
             "it is current. Set keys in a YAML file (`--config`) or on the command line (`key.sub=value`).",
             "Every number must be finite: NaN and infinities (`.nan`, `.inf`) are errors for every key.", ""]
    section = None
    for key, tp, default, help_text in config_reference(cls):
        head = key.split(".")[0] if "." in key else "top level"
        if head != section:
            section = head
            lines += [f"## {section}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        cell = default.replace("|", "\\|")
        lines.append(f"| `{key}` | {tp.replace('|', 'or')} | `{cell}` | {help_text.replace('|', '/')} |")
    text = "\n".join(lines) + "\n"
    return text.replace("\n## ", "\n\n## ").replace("\n\n\n", "\n\n")
