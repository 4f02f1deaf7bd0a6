"""The temporal diagnostic: does a model use the order of its frames at all?

Every video of a split is predicted once as it is and once under each frame perturbation:

- ``reverse``: the valid frames in reverse order;
- ``shuffle``: the valid frames in a random order (fixed by ``seed`` and the video id, so the same on any batch
  size or number of processes);
- ``first_frame`` / ``middle_frame``: a one-frame video, the first or the middle valid frame;
- ``hflip``: every frame mirrored left-right (turns a left-to-right motion into a right-to-left one).

For each, the share of videos whose level-2 prediction changes against the unperturbed one, and (when the split
has labels) the mean-F1. A model that ignores order changes nothing under ``reverse`` and ``shuffle``; one that
reads direction from motion changes its direction classes under ``reverse`` (and ``hflip``) and nothing else.
Per class (by true class when the split has labels, else by the unperturbed prediction), the share that changes
under each perturbation and the class most videos move to under reversal.

The perturbations are pure functions of a batch's ``frames`` ``[B, T, ...]`` (uint8 pixels ``[B, T, 3, S, S]``, or
cached features ``[B, T, D]``) and ``frame_mask`` ``[B, T]``: the valid frames are permuted among their own
positions, so padding stays where it was (at the end, as the collator puts it).
"""

from __future__ import annotations

import json
import logging
import zlib
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from mmcls.errors import ArgumentError, UserError
from mmcls.labels import IGNORE_INDEX
from mmcls.logits import predicted_indices
from mmcls.metrics import mean_f1_from_indices
from mmcls.rundir import TEMPORAL_FILE

logger = logging.getLogger("mmcls")

ORIGINAL = "original"
Frames = tuple[torch.Tensor, torch.Tensor]  # (frames [B, T, ...], frame_mask [B, T])


# ----------------------------------------------------------------------------------------------------------------
# the perturbations


def _permute_valid(frames: torch.Tensor, frame_mask: torch.Tensor,
                   order: Callable[[int, int], Sequence[int]]) -> Frames:
    """Video ``b``'s valid frames (positions where ``frame_mask`` is true, in order) permuted among those positions
    by ``order(b, n)`` (a permutation of ``range(n)``); padding and the mask stay as they are."""
    index = torch.arange(frames.shape[1], device=frames.device).repeat(frames.shape[0], 1)  # [B, T]
    for b in range(frames.shape[0]):
        valid = torch.nonzero(frame_mask[b], as_tuple=False).flatten()
        if valid.numel() > 1:
            index[b, valid] = valid[torch.as_tensor(list(order(b, valid.numel())), device=valid.device)]
    rows = torch.arange(frames.shape[0], device=frames.device)[:, None]
    return frames[rows, index], frame_mask.clone()


def reverse_frames(frames: torch.Tensor, frame_mask: torch.Tensor) -> Frames:
    """Each video's valid frames in reverse order; padding stays at the end."""
    return _permute_valid(frames, frame_mask, lambda _b, n: range(n - 1, -1, -1))


def shuffle_frames(frames: torch.Tensor, frame_mask: torch.Tensor, seed: int = 0,
                   keys: Sequence[str] | None = None) -> Frames:
    """Each video's valid frames in a random order drawn from ``(seed, key)``: ``keys[b]`` (the video id) when
    given, else the row ``b``. (A video of n frames keeps its order with probability 1 / n!.)"""
    if keys is not None and len(keys) != frames.shape[0]:
        raise ValueError(f"{len(keys)} keys for {frames.shape[0]} videos")

    def order(b: int, n: int) -> Sequence[int]:
        key = zlib.crc32(keys[b].encode("utf-8")) if keys is not None else b
        return np.random.default_rng([seed, key]).permutation(n).tolist()

    return _permute_valid(frames, frame_mask, order)


def one_frame(frames: torch.Tensor, frame_mask: torch.Tensor, which: str = "first") -> Frames:
    """A one-frame video: the first valid frame (``which="first"``) or the middle one (``"middle"``: index n // 2
    of the n valid frames) at position 0, every other position padding (zeros, masked). A video without frames
    stays without."""
    if which not in ("first", "middle"):
        raise ValueError(f"which must be 'first' or 'middle', got {which!r}")
    out = torch.zeros_like(frames)
    mask = torch.zeros_like(frame_mask)
    for b in range(frames.shape[0]):
        valid = torch.nonzero(frame_mask[b], as_tuple=False).flatten()
        if valid.numel():
            out[b, 0] = frames[b, valid[0 if which == "first" else valid.numel() // 2]]
            mask[b, 0] = True
    return out, mask


def hflip_frames(frames: torch.Tensor, frame_mask: torch.Tensor) -> Frames:
    """Every frame mirrored left-right (the width axis, the last one of pixels ``[B, T, 3, S, S]``)."""
    return frames.flip(-1), frame_mask.clone()


PERTURBATIONS = ("reverse", "shuffle", "first_frame", "middle_frame", "hflip")


def check_perturbations(names: Sequence[str]) -> None:
    """An :class:`ArgumentError` naming ``perturbations`` unless ``names`` are known ones, at least one."""
    if not names:
        raise ArgumentError("perturbations", f"give at least one of {', '.join(PERTURBATIONS)}")
    unknown = [name for name in names if name not in PERTURBATIONS]
    if unknown:
        raise ArgumentError("perturbations", f"unknown perturbation {unknown[0]!r} (known: {', '.join(PERTURBATIONS)})")


def perturb(name: str, frames: torch.Tensor, frame_mask: torch.Tensor, seed: int = 0,
            keys: Sequence[str] | None = None) -> Frames:
    """Perturbation ``name`` (one of :data:`PERTURBATIONS`) of a batch's frames and mask."""
    if name == "reverse":
        return reverse_frames(frames, frame_mask)
    if name == "shuffle":
        return shuffle_frames(frames, frame_mask, seed, keys)
    if name in ("first_frame", "middle_frame"):
        return one_frame(frames, frame_mask, name.split("_")[0])
    if name == "hflip":
        return hflip_frames(frames, frame_mask)
    check_perturbations([name])
    raise AssertionError(name)


# ----------------------------------------------------------------------------------------------------------------
# running a model


@dataclass
class TemporalPredictions:
    """The level-2 predictions of every video (loader order) unperturbed (:data:`ORIGINAL`) and per perturbation."""

    ids: list[str]
    predictions: dict[str, np.ndarray]  # name -> int64 [N]
    labels: np.ndarray  # int64 [N], IGNORE_INDEX where unlabelled
    frames: np.ndarray  # int64 [N]: valid frames of each video


@torch.no_grad()
def predict_perturbed(model: torch.nn.Module, loader: Any, perturbations: Sequence[str] = PERTURBATIONS,
                      seed: int = 0, accelerator: Any = None, desc: str = "temporal") -> TemporalPredictions:
    """Run ``model`` (the classifier's forward signature, ``logits`` in its output) over ``loader`` once, every
    batch unperturbed and under each perturbation. With an ``accelerator`` (a prepared model and loader) the
    results are gathered across processes without the sampler's padding duplicates."""
    check_perturbations(perturbations)
    names = [ORIGINAL, *perturbations]
    was_training = model.training
    model.eval()
    ids: list[str] = []
    predictions: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    labels, counts = [], []
    main = accelerator is None or accelerator.is_local_main_process
    for batch in tqdm(loader, desc=desc, leave=False, dynamic_ncols=True, disable=not main):
        frames, mask = batch.get("frames"), batch.get("frame_mask")
        if frames is None or mask is None:
            raise UserError("the model sees no frames (model.mode=text?): there is no time to diagnose")
        mask = mask.bool()
        rows: dict[str, torch.Tensor] = {}
        for name in names:
            inputs = (frames, mask) if name == ORIGINAL else perturb(name, frames, mask, seed, list(batch["ids"]))
            outputs = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                            frames=inputs[0], frame_mask=inputs[1])
            rows[name] = torch.as_tensor(predicted_indices(outputs["logits"].float().cpu().numpy())[0],
                                         device=mask.device)
        batch_labels, batch_counts = batch["labels"], mask.sum(dim=1).long()
        gathered = (rows, batch_labels, batch_counts)
        batch_ids = list(batch["ids"])
        if accelerator is not None:
            gathered = accelerator.gather_for_metrics(gathered)
            batch_ids = accelerator.gather_for_metrics(batch_ids, use_gather_object=True)
        rows, batch_labels, batch_counts = gathered
        ids.extend(batch_ids)
        for name in names:
            predictions[name].append(rows[name].cpu())
        labels.append(batch_labels.cpu())
        counts.append(batch_counts.cpu())
    model.train(was_training)

    def cat(parts: list[torch.Tensor]) -> np.ndarray:
        return torch.cat(parts).numpy().astype(np.int64) if parts else np.zeros(0, dtype=np.int64)

    return TemporalPredictions(ids, {name: cat(parts) for name, parts in predictions.items()}, cat(labels),
                               cat(counts))


# ----------------------------------------------------------------------------------------------------------------
# scoring


@dataclass
class TemporalReport:
    """What :func:`summarize` finds; :meth:`to_json` is the file ``RUN/temporal.json``."""

    model: str
    split: str
    videos: int
    multi_frame_videos: int  # videos with 2+ valid frames: the only ones an order change can affect
    labelled: int
    seed: int
    rows: list[dict[str, Any]]  # per perturbation (the original first): name, changed, changed_multi_frame, mean_f1
    classes: list[dict[str, Any]] = field(default_factory=list)  # per class: id, videos, changed {name: share} ...
    classes_by: str = "truth"  # "truth" or "prediction": what a class row groups by
    skipped: dict[str, str] = field(default_factory=dict)  # perturbation -> why it was not run
    flip_pairs: int = 0  # category pairs of the model's flip map (hflip scored against swapped labels), 0: none
    direction: dict[str, Any] = field(default_factory=dict)  # :func:`direction_summary`; empty without a map

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TemporalReport:
        return cls(**{key: data[key] for key in cls.__dataclass_fields__ if key in data})


def summarize(result: TemporalPredictions, classes: Sequence[str], lv1_of_lv2: Sequence[int], model: str = "",
              split: str = "", seed: int = 0, skipped: Mapping[str, str] | None = None,
              flip_lv2: Sequence[int] | None = None,
              direction_classes: DirectionClasses | None = None) -> TemporalReport:
    """Change shares against the unperturbed predictions, mean-F1 over the labelled videos, per-class change shares.

    ``classes``: the level-2 category ids of the logits' columns; ``lv1_of_lv2``: the level-1 index of each.
    ``flip_lv2``: the class each class becomes when its video is mirrored (a model's ``data.flip_label_map``, as
    a permutation of the level-2 indices): the ``hflip`` row is then scored against the swapped labels, and
    ``changed_vs_flipped`` is the share of mirrored predictions that are not the swapped unperturbed prediction
    (0 for a model that mirrors its direction classes exactly). ``direction_classes`` (else the flip map's pairs):
    the classes whose label depends on the direction of motion, for :func:`direction_summary`.
    """
    flip = None if flip_lv2 is None else np.asarray(flip_lv2, dtype=np.int64)
    original = result.predictions[ORIGINAL]
    n = len(original)
    if n == 0:
        raise UserError(f"{split or 'the split'}: no videos to diagnose")
    multi = result.frames >= 2
    labelled = result.labels != IGNORE_INDEX
    rows = []
    for name, pred in result.predictions.items():
        changed = pred != original
        row: dict[str, Any] = {"name": name, "changed": float(changed.mean()),
                               "changed_multi_frame": float(changed[multi].mean()) if multi.any() else 0.0,
                               "mean_f1": None}
        truth = result.labels
        if name == "hflip" and flip is not None:
            row["changed_vs_flipped"] = float((pred != flip[original]).mean())
            truth = np.where(labelled, flip[np.where(labelled, truth, 0)], truth)
        if labelled.any():
            scores = mean_f1_from_indices(truth[labelled], pred[labelled], lv1_of_lv2)
            row["mean_f1"] = scores["mean_f1"]
            row["lv2_macro_f1"] = scores["lv2_macro_f1"]
        rows.append(row)
    if labelled.all():
        group, by = result.labels, "truth"
    else:
        group, by = original, "prediction"
    per_class = []
    reversed_preds = result.predictions.get("reverse")
    for index in sorted(set(group.tolist())):
        members = group == index
        entry: dict[str, Any] = {
            "id": classes[index], "videos": int(members.sum()),
            "changed": {name: float((pred[members] != original[members]).mean())
                        for name, pred in result.predictions.items() if name != ORIGINAL},
        }
        if reversed_preds is not None:
            moved = reversed_preds[members & (reversed_preds != original)]
            entry["reversed_to"] = classes[Counter(moved.tolist()).most_common(1)[0][0]] if moved.size else None
        per_class.append(entry)
    if direction_classes is None and flip is not None:
        direction_classes = DirectionClasses.from_flip(flip)
    direction = {} if direction_classes is None else direction_summary(result, direction_classes)
    first = next((name for name in result.predictions if name != ORIGINAL), None)  # what the table heads with
    if first is not None:
        per_class.sort(key=lambda e: (-e["changed"][first], -e["videos"], e["id"]))
    return TemporalReport(model=model, split=split, videos=n, multi_frame_videos=int(multi.sum()),
                          labelled=int(labelled.sum()), seed=seed, rows=rows, classes=per_class, classes_by=by,
                          skipped=dict(skipped or {}),
                          flip_pairs=0 if flip is None else int((flip != np.arange(flip.size)).sum()) // 2,
                          direction=direction)


@dataclass(frozen=True)
class DirectionClasses:
    """Which classes tell a direction of motion, and the class each becomes when the motion runs the other way.

    From a reverse map (:func:`read_reverse_map`: every class that plays backwards as another) or, without one,
    from the model's flip map (the left/right pairs only).
    """

    partner: np.ndarray  # int64 [C]: the level-2 index a class becomes when its motion runs the other way, -1: none
    directional: np.ndarray  # bool [C]: classes whose label depends on the direction of time
    source: str  # "reverse map" or "flip map"

    @classmethod
    def from_flip(cls, flip: np.ndarray) -> DirectionClasses:
        paired = flip != np.arange(flip.size)
        return cls(np.where(paired, flip, -1), paired, "flip map")

    @property
    def pairs(self) -> int:
        return int((self.partner >= 0).sum()) // 2


def read_reverse_map(path: str | Path, categories: Any) -> DirectionClasses:
    """A reverse map: a JSON object ``{category_id: category_id or null}`` listing every class that frame reversal
    changes, with the class it plays backwards as (null: no class of the dataset; listed both ways where both
    exist). Classes not listed are the same played backwards (``stripes``, ``ring``). The synthetic dataset writes
    one (``reverse_label_map.json``). UserError naming the file for anything else."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"--reverse-map {path}: cannot read it: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UserError(f"--reverse-map {path}: expected a JSON object of category ids, got {type(data).__name__}")
    known = set(categories.lv2_ids)
    for key, value in data.items():
        if value is not None and not isinstance(value, str):
            raise UserError(f"--reverse-map {path}: {key!r} must map to a category id or null, got {value!r}")
        for category in (key, value):
            if category is not None and category not in known:
                raise UserError(f"--reverse-map {path}: unknown category {category!r} (not among the model's "
                                f"{len(known)} categories)")
        if value == key:
            raise UserError(f"--reverse-map {path}: {key!r} plays backwards as itself: leave such classes out")
        if value is not None and value not in data:
            raise UserError(f"--reverse-map {path}: {key!r} plays backwards as {value!r}, which is not listed")
        if value is not None and data[value] != key:
            other = "null" if data[value] is None else repr(data[value])
            raise UserError(f"--reverse-map {path}: {key!r} plays backwards as {value!r}, but {value!r} as {other}")
    index = categories.lv2_index
    partner = np.full(len(categories.lv2_ids), -1, dtype=np.int64)
    directional = np.zeros(len(categories.lv2_ids), dtype=bool)
    for key, value in data.items():
        directional[index(key)] = True
        if value is not None:
            partner[index(key)] = index(value)
    return DirectionClasses(partner, directional, "reverse map")


def direction_summary(result: TemporalPredictions, classes: DirectionClasses) -> dict[str, Any]:
    """How well the model tells the direction of motion.

    ``right_direction``: of the labelled videos with 2+ frames (one frame shows no direction) of a paired class (two
    classes that differ only in the direction) whose prediction is either class of the pair (the right shape), the
    share predicted as the right one (0.5 for a model that guesses, more with unequal class frequencies). Under
    ``reverse``, by the unperturbed prediction over the videos with 2+ frames: the share
    that changes among those predicted as a directional class (``reverse_changed_directional``; ideally all), the
    share of those predicted as a paired class that move to its partner (``reverse_to_pair``), and the share that
    changes among the others (``reverse_changed_others``; ideally none). ``None`` where no video qualifies.
    """
    def share(mask: np.ndarray, of: np.ndarray) -> float | None:
        return float(mask[of].mean()) if of.any() else None

    original = result.predictions[ORIGINAL]
    partner, directional = classes.partner, classes.directional
    paired = partner >= 0
    labelled = result.labels != IGNORE_INDEX
    multi = result.frames >= 2
    truth = np.where(labelled, result.labels, 0)
    of_pair = labelled & multi & paired[truth]
    right_shape = of_pair & ((original == truth) | (original == partner[truth]))
    summary: dict[str, Any] = {
        "source": classes.source, "pairs": classes.pairs, "directional_classes": int(directional.sum()),
        "pair_videos": int(of_pair.sum()), "right_shape": int(right_shape.sum()),
        "right_direction": share(original == truth, right_shape),
    }
    reversed_preds = result.predictions.get("reverse")
    if reversed_preds is not None:
        changed = reversed_preds != original
        summary["reverse_changed_directional"] = share(changed, multi & directional[original])
        summary["reverse_to_pair"] = share(reversed_preds == partner[original], multi & paired[original])
        summary["reverse_changed_others"] = share(changed, multi & ~directional[original])
    return summary


def format_direction(direction: Mapping[str, Any]) -> list[str]:
    """The direction lines of the report (nothing without a reverse or flip map)."""
    if not direction:
        return []

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    pairs = direction["pairs"]
    lines = [f"direction ({direction['source']}: {direction['directional_classes']} directional classes, {pairs} "
             f"pair{'' if pairs == 1 else 's'}): right direction for {pct(direction['right_direction'])} of the "
             f"{direction['right_shape']} videos of a pair with the right shape (of {direction['pair_videos']} "
             "labelled, 2+ frames)"]
    if direction["source"] == "flip map":
        lines.append("  (the flip map names only the left/right pairs: other classes that play backwards as another "
                     "count among the others; --reverse-map lists them all)")
    if "reverse_changed_directional" in direction:
        lines.append(f"  under reverse: {pct(direction['reverse_changed_directional'])} of the videos predicted as a "
                     f"directional class change ({pct(direction['reverse_to_pair'])} of the paired ones to the "
                     f"partner), {pct(direction['reverse_changed_others'])} of the others")
    return lines


def format_report(report: TemporalReport, top: int = 10) -> str:
    """The table printed by the command: one line per perturbation, then the classes that change most."""
    lines = [f"temporal diagnostic: {report.model} on {report.split}: {report.videos} videos "
             f"({report.multi_frame_videos} with 2+ frames, {report.labelled} labelled)"]
    base = report.rows[0].get("mean_f1")
    lines.append(f"  {'perturbation':<14}{'changed':>9}{'(2+ frames)':>13}{'mean-F1':>10}{'delta':>9}")
    for row in report.rows:
        changed = "-" if row["name"] == ORIGINAL else f"{row['changed']:.1%}"
        multi = "-" if row["name"] == ORIGINAL else f"{row['changed_multi_frame']:.1%}"
        f1 = "-" if row.get("mean_f1") is None else f"{row['mean_f1']:.4f}"
        delta = ("-" if row.get("mean_f1") is None or base is None or row["name"] == ORIGINAL
                 else f"{row['mean_f1'] - base:+.4f}")
        lines.append(f"  {row['name']:<14}{changed:>9}{multi:>13}{f1:>10}{delta:>9}")
    for name, why in report.skipped.items():
        lines.append(f"  {name:<14}skipped: {why}")
    flipped = next((row for row in report.rows if "changed_vs_flipped" in row), None)
    if flipped is not None:
        pairs = f"{report.flip_pairs} pair{'' if report.flip_pairs == 1 else 's'}"
        lines.append(f"  hflip with the model's flip map ({pairs}): mean-F1 against the swapped labels; "
                     f"{flipped['changed_vs_flipped']:.1%} of the mirrored predictions are not the swapped "
                     "unperturbed ones")
    lines += format_direction(report.direction)
    names = [row["name"] for row in report.rows[1:]]
    if report.classes and names and top > 0:
        lines.append(f"classes (by {report.classes_by}) whose predictions change most under {names[0]}:")
        header = "".join(f"{name:>14}" for name in names)
        lines.append(f"  {'class':<12}{'videos':>7}{header}  {'reversed to' if 'reverse' in names else ''}")
        for entry in report.classes[:top]:
            cells = "".join(f"{entry['changed'][name]:>14.1%}" for name in names)
            target = entry.get("reversed_to") or ""
            lines.append(f"  {entry['id']:<12}{entry['videos']:>7}{cells}  {target}")
    if "reverse" in names and "shuffle" in names:
        share = max(row["changed"] for row in report.rows if row["name"] in ("reverse", "shuffle"))
        lines.append("verdict: " + ("order-blind: no prediction changes when the frames are reversed or shuffled"
                                    if share == 0 else f"order matters for {share:.1%} of the videos"))
    return "\n".join(lines)


def write_report(report: TemporalReport, path: str | Path) -> None:
    from mmcls.io import atomic_write_text

    atomic_write_text(path, json.dumps(report.to_json(), indent=2) + "\n")


def read_report(path: str | Path) -> TemporalReport:
    path = Path(path)
    try:
        return TemporalReport.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: not a temporal diagnostic ({exc})") from None


# ----------------------------------------------------------------------------------------------------------------
# a model folder over a split


def default_output(model: str | Path) -> Path:
    """``RUN/temporal.json`` for the model folder ``RUN/best`` (beside the run's report)."""
    return Path(model).resolve().parent / TEMPORAL_FILE


def _read_truth(path: str | Path, ids: Sequence[str], categories: Any) -> dict[str, int]:
    """``{video id: level-2 index}`` of an ``id,category_id`` CSV that must hold exactly ``ids``."""
    from mmcls.metrics import read_submission

    truth = read_submission(path, expected_ids=ids, known_categories=categories.lv2_ids)
    return {video_id: categories.lv2_index(category) for video_id, category in truth.items()}


def temporal_diagnostic(model: str | Path, split: str = "val", overrides: Sequence[str] = (),
                        batch_size: int | None = None, perturbations: Sequence[str] = PERTURBATIONS, seed: int = 0,
                        truth: str | Path | None = None, accelerator: Any = None,
                        mixed_precision: str = "auto", reverse_map: str | Path | None = None) -> TemporalReport:
    """The diagnostic of the model folder ``model`` (RUN/best) over ``data.<split>``.

    ``split="val"`` without a ``data.val`` file is the run's own validation hold-out (``data.val_fraction`` of
    ``data.train`` with the run's seed, or its fold). ``truth``: an ``id,category_id`` CSV with the labels of a split
    whose annotations have none (e.g. the synthetic ``annotations/test_truth.csv``). A model that reads cached
    frame features cannot be flipped: ``hflip`` is skipped, and said so. ``reverse_map``: which classes play
    backwards as which (:func:`read_reverse_map`), for the direction figures; else the model's flip map gives them.
    """
    from mmcls.accelerators import inference_accelerator
    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import ANNOTATION_KEYS, load_labelled_splits, load_split
    from mmcls.model_folder import check_feature_width, load_for_inference

    if split not in ANNOTATION_KEYS:
        raise ArgumentError("split", f"expected one of {list(ANNOTATION_KEYS)}, got {split!r}")
    check_perturbations(perturbations)
    loaded = load_for_inference(model, list(overrides))
    cfg = loaded.cfg
    if cfg.model.mode == "text":
        raise UserError(f"{model}: a text-only model (model.mode=text) sees no frames: there is no time to diagnose")
    records = (load_labelled_splits(cfg.data, cfg.seed)[1] if split == "val" and not cfg.data.val
               else load_split(cfg.data, split))
    if not records.records:
        raise UserError(f"data.{split}: no videos to diagnose")
    check_feature_width(loaded, records.folder)
    labels = _read_truth(truth, [r.id for r in records.records], loaded.categories) if truth is not None else None
    direction = None if reverse_map is None else read_reverse_map(reverse_map, loaded.categories)
    skipped: dict[str, str] = {}
    if "hflip" in perturbations and loaded.cfg.data.reads_features:
        skipped["hflip"] = "the model reads cached frame features (data.frame_source=feats), which cannot be flipped"
    perturbations = [name for name in perturbations if name not in skipped]
    accelerator = accelerator or inference_accelerator(mixed_precision)
    dataset = build_dataset(cfg.data, records, loaded.tokenizer, loaded.categories, train=False)
    prepared = loaded.prepared(accelerator)
    loader = accelerator.prepare(build_dataloader(dataset, cfg.data, batch_size or cfg.train.eval_batch_size))
    name = f"temporal {Path(loaded.path).parent.name}/{Path(loaded.path).name}"
    result = predict_perturbed(prepared, loader, perturbations, seed, accelerator, desc=name)
    if labels is not None:
        result.labels = np.asarray([labels[video_id] for video_id in result.ids], dtype=np.int64)
    flip_map = getattr(loaded, "flip_map", None)  # best/flip_label_map.json of a model trained with data.flip_label_map
    flip_lv2 = None if flip_map is None else [flip_map.lv2_index(i) for i in range(loaded.categories.num_lv2)]
    return summarize(result, loaded.categories.lv2_ids, loaded.categories.lv1_index_of_lv2(), model=str(model),
                     split=split, seed=seed, skipped=skipped, flip_lv2=flip_lv2, direction_classes=direction)
