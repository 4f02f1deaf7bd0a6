"""The frame-feature cache: run a frozen vision tower once over every video of a split and store its features.

Writes the ``feats`` layout of the README's "Data format": one zip per annotation split (default
``<data.root>/feats/<split>.zip``) with one member ``<id>.npy`` per video, float16 ``[n_frames, dim]``, ``dim`` =
the tower's output width (``encoder.vision.out_dim``: what :meth:`MultimodalEncoder.frame_features` gives per
frame). A model then trains or predicts with ``data.frame_source=feats`` without decoding a JPEG or running the
tower again::

    tower = load_tower(model="runs/base/best")                      # tower.model: the MultimodalEncoder
    summary = extract_features(tower.model, tower.cfg.data, "test")  # -> data.root/feats/test.zip
    predict(["runs/base/best"], "test", overrides=["data.frame_source=feats"])

Frames are read as evaluation reads them (uniform sampling, resize + centre crop) with ``max_frames`` raised to
``max_frames`` (default 32, the WBDC frame count), so every frame of a typical video is stored. The feats source
later samples rows of a stored array exactly as the zip source samples frames, so a model with ``data.max_frames``
<= the stored count sees the same frames either way (for videos of at most ``max_frames`` frames; a longer video
keeps the uniform grid of ``max_frames`` frames, which is then sampled again). Videos that cannot be read are not
stored: the feats source reports them as missing, i.e. an empty video, exactly as the pixel sources do.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
import zipfile
from collections import Counter
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm import tqdm

from mmcls.accelerators import inference_accelerator
from mmcls.config import Config, DataConfig, load_config
from mmcls.data.dataset import build_dataloader, build_dataset
from mmcls.data.feature_source import FEATS_MANIFEST, FeatsFrameSource
from mmcls.data.splits import ANNOTATION_KEYS, build_tokenizer, load_split
from mmcls.errors import ArgumentError, UserError
from mmcls.io import atomic_open
from mmcls.model_folder import PRETRAINED_MARKER, load_portable, load_pretrained_encoder
from mmcls.models import MultimodalEncoder, build_encoder
from mmcls.models.weights import load_exact, strip_prefix

logger = logging.getLogger("mmcls")

DEFAULT_MAX_FRAMES = 32  # WBDC videos have at most 32 frames


@dataclass
class FrameTower:
    """An encoder whose vision tower extracts the features, and the config whose ``data.*`` says where frames are."""

    model: MultimodalEncoder
    cfg: Config
    source: str  # what it was loaded from, for messages


@dataclass
class ExtractionSummary:
    """What :func:`extract_features` did."""

    output: Path
    split: str  # annotation split name (the file stem, e.g. ``test``)
    videos: int  # records of the split
    written: int  # members written (distinct ids)
    failed: int  # unreadable videos, not written
    dim: int
    max_frames: int
    seconds: float
    failures: dict[str, int] = field(default_factory=dict)  # failure kind -> count
    failed_ids: list[str] = field(default_factory=list)

    @property
    def videos_per_s(self) -> float:
        return self.videos / max(self.seconds, 1e-9)

    def describe(self) -> str:
        """One line for the console."""
        failed = ""
        if self.failed:
            kinds = ", ".join(f"{kind} {count}" for kind, count in sorted(self.failures.items()))
            failed = f"; {self.failed} unreadable videos not stored ({kinds})"
        return (f"wrote {self.written} of {self.videos} videos (float16 [<= {self.max_frames}, {self.dim}]) -> "
                f"{self.output} in {self.seconds:.1f} s ({self.videos_per_s:.1f} videos/s){failed}")


# ----------------------------------------------------------------------------------------------------------------
# the tower


def _check_tower(has_vision: bool, cfg: Config, source: str) -> None:
    """UserError unless the model has a vision tower and ``cfg`` reads pixel frames."""
    if not has_vision:
        if cfg.model.mode == "text":
            raise UserError(f"{source}: a text-only model (model.mode=text) has no vision tower to extract frame "
                            "features with")
        raise UserError(f"{source}: trained on frame features (data.frame_source=feats), so it has no vision tower "
                        "to extract features with; use the model or config of the tower that made them")
    if cfg.data.reads_features:
        raise UserError(f"{source}: data.frame_source=feats, but extraction reads pixel frames; pass "
                        "data.frame_source=zip (or mp4, jpeg)")


def load_tower(model: str | Path | None = None, config: str | Path | Sequence[str | Path] | None = None,
               overrides: Sequence[str] = ()) -> FrameTower:
    """The vision tower of a model folder or of a config, frozen, in eval mode.

    ``model``: a trained ``RUN/best`` (:func:`load_portable`: ``overrides`` such as ``data.root=...`` redirect
    only its data) or a pretraining ``best/`` (its encoder's vision tower). ``config``: a config file (list:
    layered), the tower built by :func:`build_model` with ``model.vision.pretrained`` weights. Exactly one of the
    two. UserError (one line) when the model has no vision tower (text mode, or trained on frame features).
    """
    if (model is None) == (config is None):
        raise ArgumentError(None, "give either {model} RUN/best or {config} CONFIG.yaml")
    if model is not None:
        path = Path(model)
        if (path / PRETRAINED_MARKER).is_file():
            tower = _pretrained_tower(path, overrides)
        else:
            loaded = load_portable(path, list(overrides))
            tower = FrameTower(loaded.model.encoder, loaded.cfg, str(path))
    else:
        cfg = load_config(config, list(overrides))
        source = str(config if isinstance(config, (str, Path)) else config[-1])
        _check_tower(cfg.model.mode != "text", cfg, source)  # before building anything
        if not cfg.model.vision.pretrained:
            logger.warning("%s: model.vision.pretrained is null: the tower has random weights (seeded by seed=%d; "
                           "fine for tests and the demo only)", source, cfg.seed)
        tokenizer = build_tokenizer(cfg.data, cfg.model.text.pretrained)
        set_seed(cfg.seed)  # random weights are the same in every process and every run
        built = build_encoder(cfg, tokenizer)  # model.vision.pretrained weights when set
        tower = FrameTower(built, cfg, source)
    _check_tower(tower.model.vision is not None, tower.cfg, tower.source)
    tower.model.eval().requires_grad_(False)
    return tower


def _pretrained_tower(path: Path, overrides: Sequence[str]) -> FrameTower:
    """The vision tower of a pretraining folder (:func:`save_pretrained_folder`): architecture from its saved
    config, data from the config with ``overrides``."""
    encoder = load_pretrained_encoder(path)
    cfg = load_config(path / "config.yaml", [*overrides, f"data.tokenizer={path}"])
    arch = dataclasses.replace(cfg, data=encoder.cfg.data)
    if not encoder.has_vision:
        raise UserError(f"{path}: pretrained on frame features (data.frame_source="
                        f"{encoder.cfg.data.frame_source}), so it has no vision tower to extract features with")
    model = build_encoder(arch, encoder.tokenizer, text_config=encoder.text_config, load_pretrained=False,
                          vision_config=encoder.vision_config)
    if model.vision is not None:
        load_exact(model.vision, strip_prefix(encoder.state_dict, "vision."), "model", path)
    return FrameTower(model, cfg, str(path))


# ----------------------------------------------------------------------------------------------------------------
# extraction


def default_output(cfg: DataConfig, folder: str) -> Path:
    """Where the feats source looks by default for the videos of frame folder ``folder``:
    ``<root>/feats/<folder>.zip``."""
    return Path(cfg.root) / FeatsFrameSource.default_dir / f"{folder}.zip"


def _member(video_id: str) -> zipfile.ZipInfo:
    """The zip entry of one video: ``<id>.npy``, stored (float16 features barely compress), with a fixed
    timestamp so the same features give the same zip bytes."""
    info = zipfile.ZipInfo(f"{video_id}.npy", date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type, info.external_attr = zipfile.ZIP_STORED, 0o644 << 16
    return info


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@torch.no_grad()
def _batch_features(model: MultimodalEncoder, batch: dict[str, Any], accelerator: Accelerator
                    ) -> list[tuple[str, np.ndarray | None, str | None]]:
    """``(id, float16 [n, D] or None, failure reason or None)`` per video of a collated batch."""
    frames, mask = batch["frames"], batch["frame_mask"].to(accelerator.device)
    with accelerator.autocast():
        feats = model.frame_features(frames.to(accelerator.device, non_blocking=True), mask)  # [B, T, D]
    feats = feats.to(torch.float16).cpu()  # beyond the float16 range -> inf: reported, not stored
    counts = mask.sum(dim=1).tolist()
    out: list[tuple[str, np.ndarray | None, str | None]] = []
    for i, (video_id, error) in enumerate(zip(batch["ids"], batch["video_errors"], strict=True)):
        array = feats[i, :counts[i]].numpy()
        if error is None and counts[i] == 0:
            error = "empty: no frames"
        elif error is None and not np.isfinite(array).all():
            error = "nonfinite: the tower gave NaN or inf features"
            logger.warning("video %s: %s (not stored)", video_id, error)
        out.append((video_id, None if error else array, error))
    return out


def frames_to_cache(model: torch.nn.Module, data: DataConfig, requested: int | None = None) -> int:
    """Frames per video to extract: ``requested``, else :data:`DEFAULT_MAX_FRAMES`; a tower with ``model.temporal``
    (whose features of a frame depend on its neighbours) extracts ``data.max_frames``, the frames it was trained
    on, so a model reading the cache sees the features it would compute from pixels."""
    vision = getattr(model, "encoder", model).vision
    if vision is not None and vision.temporal and requested is None:
        return data.max_frames
    return DEFAULT_MAX_FRAMES if requested is None else requested


def extract_features(model: MultimodalEncoder, data: DataConfig, split: str = "test",
                     output: str | Path | None = None, max_frames: int = DEFAULT_MAX_FRAMES,
                     batch_size: int = 16, mixed_precision: str = "auto", accelerator: Accelerator | None = None,
                     progress: bool = True, source: str = "") -> ExtractionSummary:
    """Run the frozen vision tower of ``model`` (an encoder, or a model built around one) over every video of
    ``data.<split>`` and write the feature zip.

    ``split``: a config key (``test``, ``unlabeled``, ``train``, ``val``). ``output``: the zip to write (default
    :func:`default_output`: ``<data.root>/feats/<annotation file stem>.zip``), written atomically (a temporary
    file in the same folder, renamed when complete). Frames: the evaluation pipeline of ``data`` with at most
    ``max_frames`` per video; ``batch_size`` videos per tower pass (their valid frames, flattened); autocast
    ``mixed_precision`` (``auto``: bf16/fp16 on GPUs, none on CPU). Under ``accelerate launch`` every process
    encodes a shard and the main process writes (and holds the complete summary). Unreadable videos are counted,
    logged and not written. The zip also holds ``__mmcls__.json``: the tower's weight fingerprint and ``source``
    (where the tower came from), so predicting with another tower's features is refused.
    """
    if split not in ANNOTATION_KEYS:
        raise ArgumentError("split", f"expected one of {list(ANNOTATION_KEYS)}, got {split!r}")
    if max_frames < 1:
        raise ArgumentError("max_frames", f"must be >= 1, got {max_frames}")
    if batch_size < 1:
        raise ArgumentError("batch_size", f"must be >= 1, got {batch_size}")
    model = getattr(model, "encoder", model)
    vision = model.vision
    if vision is None or model.reads_features:
        raise UserError("extract_features: the model has no vision tower")
    if data.reads_features:
        raise UserError("data.frame_source=feats: extraction reads pixel frames (zip, mp4 or jpeg)")
    if vision.temporal and max_frames != data.max_frames:
        raise UserError(f"--max-frames {max_frames}: the tower looks across frames (model.temporal), so its features "
                        f"hold only for the frames it reads, data.max_frames={data.max_frames}; extract with that")
    accelerator = accelerator or inference_accelerator(mixed_precision)
    start = time.perf_counter()
    data = dataclasses.replace(data, max_frames=max_frames)
    records = load_split(data, split)
    output = Path(output) if output is not None else default_output(data, records.folder)
    dataset = build_dataset(data, records, None, None, train=False, with_text=False)
    loader = accelerator.prepare(build_dataloader(dataset, data, batch_size, pad_id=0))
    was_training = model.training
    model.eval().to(accelerator.device)
    main = accelerator.is_main_process
    written: set[str] = set()
    failures: Counter[str] = Counter()
    failed_ids: list[str] = []
    seen: set[str] = set()
    try:
        with atomic_open(output, "wb") if main else nullcontext() as handle, \
                zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED, allowZip64=True) if main else nullcontext() as zf:
            bar = tqdm(loader, desc=f"features {records.folder}", dynamic_ncols=True,
                       disable=not (progress and accelerator.is_local_main_process))
            for batch in bar:
                items = accelerator.gather_for_metrics(_batch_features(model, batch, accelerator),
                                                       use_gather_object=True)
                if not main:
                    continue
                for video_id, array, error in items:
                    if video_id in seen:
                        continue  # a repeated id in the annotations is stored once
                    seen.add(video_id)
                    if array is None:
                        failures[str(error).split(":", 1)[0]] += 1
                        failed_ids.append(video_id)
                        continue
                    zf.writestr(_member(video_id), _npy_bytes(array))
                    written.add(video_id)
                if failed_ids:
                    bar.set_postfix(failed=len(failed_ids))
            if main:
                info = zipfile.ZipInfo(FEATS_MANIFEST, date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                zf.writestr(info, json.dumps({"vision_sha256": vision.fingerprint(), "source": source,
                                              "max_frames": max_frames, "frame_size": data.frame_size}))
    finally:
        model.train(was_training)
    accelerator.wait_for_everyone()
    summary = ExtractionSummary(output, records.folder, len(records.records), len(written), len(failed_ids),
                                int(vision.out_dim), max_frames, time.perf_counter() - start, dict(failures),
                                failed_ids)
    if main:
        logger.info("%s", summary.describe())
    return summary

