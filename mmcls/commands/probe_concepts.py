"""Linear probes of frozen features on the synthetic dataset's hidden concepts: what did pretraining learn?

For a model folder (RUN/best of pretrain/train.py or finetune/train.py) and, as the reference, a fresh randomly
initialised model of the same architecture, three pooled features per video are taken without any training:
``text`` (the text alone through the encoder), ``video`` (the frames alone) and ``fused`` (both). A logistic
regression on each is fitted to the text concept and to the video concept of ``oracle.json`` (written by
tools/make_synthetic.py) on the first N videos of the fit split, and scored on the score split. Few fitted videos
show what a few labels can get out of the features; many show what the features hold at all.

``direction``: do the features hold the arrow of time? Each video with >= 2 valid frames is encoded twice, as it
is and with its valid frames reversed (before the vision tower, so temporal modelling inside it sees the reversed
clip); a logistic regression on the ``video`` and ``fused`` features of both copies of the first N videos of the
fit split tells forward from reversed, scored on both copies of every video of the score split (0.5 = blind to
order). It needs no oracle.json: on a dataset without one, only the direction rows are printed. A model pretrained
with the order task (pretrain.order_weight) should beat the fresh one here.

Examples:
    python tools/probe_concepts.py --model runs/pretrain_demo/best
    python tools/probe_concepts.py --model runs/pretrain_demo/best --fit-sizes 109 1000 --fit-split train
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mmcls.errors import UserError

FEATURES = ("text", "video", "fused")
CONCEPTS = ("text_concept", "video_concept")
DIRECTION = "direction"  # forward vs reversed clips, on the features that see frames
DIRECTION_FEATURES = ("video", "fused")


def probe_accuracy(fit_x: np.ndarray, fit_y: Sequence[str], score_x: np.ndarray, score_y: Sequence[str]) -> float:
    """Accuracy on ``score_x`` of a logistic regression fitted on standardised ``fit_x`` ``[n, d]``."""
    from sklearn.linear_model import LogisticRegression

    if len(set(fit_y)) < 2:
        raise UserError("the fitted videos show fewer than two concepts; fit on more videos (--fit-sizes)")
    mean, std = fit_x.mean(axis=0), fit_x.std(axis=0) + 1e-6
    model = LogisticRegression(max_iter=2000).fit((fit_x - mean) / std, list(fit_y))
    return float(model.score((score_x - mean) / std, list(score_y)))


def pooled_features(model, loader) -> tuple[dict[str, np.ndarray], list[str]]:
    """``{feature: [n, H]}`` masked means of the text-only, frames-only and fused encoder outputs, and the ids; and
    for the direction probe ``{feature}_reversed`` (the same with each video's valid frames reversed) and
    ``ordered`` (bool ``[n]``: the video has >= 2 valid frames, so reversing it changes it)."""
    import torch

    from mmcls.engine.masking import reverse_frames
    from mmcls.models.fusion import masked_mean

    names = (*FEATURES, *(f"{name}_reversed" for name in DIRECTION_FEATURES), "ordered")
    parts: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    ids: list[str] = []
    encoder = model.encoder.eval()
    with torch.no_grad():
        for batch in loader:
            frames, frame_mask = batch["frames"], batch["frame_mask"].bool()
            text, mask = batch["input_ids"], batch["attention_mask"]
            rows = torch.arange(frames.shape[0]).unsqueeze(1)
            for suffix, clip in (("", frames), ("_reversed", frames[rows, reverse_frames(frame_mask)])):
                feats = encoder.frame_features(clip, frame_mask)  # [B, T, D], the tower runs once per direction
                outputs = [("video", encoder.encode_frames(feats, frame_mask)),
                           ("fused", encoder.encode(text, mask, frame_mask=frame_mask, features=feats))]
                if not suffix:
                    outputs.append(("text", encoder.encode(text, mask)))
                for name, out in outputs:
                    parts[name + suffix].append(masked_mean(out.hidden, out.mask))  # [B, H]
            parts["ordered"].append(frame_mask.sum(dim=1) >= 2)
            ids += batch["ids"]
    return {name: torch.cat(values).float().numpy() for name, values in parts.items()}, ids


def direction_data(features: dict[str, np.ndarray], feature: str, videos: int | None = None
                   ) -> tuple[np.ndarray, list[str]]:
    """Both copies (forward, reversed) of the first ``videos`` (default all) videos with an order: ``[2n, H]``."""
    ordered = features["ordered"].astype(bool)
    forward, backward = features[feature][ordered][:videos], features[f"{feature}_reversed"][ordered][:videos]
    x = np.stack([forward, backward], axis=1).reshape(-1, forward.shape[-1])  # a video's two copies side by side
    return x, ["forward", "reversed"] * len(forward)


def build_models(folder: Path, data_root: str | None, seed: int):
    """The folder's model and a fresh one of the same architecture (classifier encoders, heads unused), with the
    config and tokenizer to read data with."""
    import torch

    from mmcls.config import load_config
    from mmcls.model_folder import init_from_pretrained, load_pretrained_encoder
    from mmcls.models import build_model

    try:
        encoder = load_pretrained_encoder(folder)
    except UserError as exc:  # its messages name the finetuning key; here the folder is --model
        raise UserError(str(exc).replace("model.init_from: ", "--model: ", 1)) from None
    overrides = [f"data.tokenizer={folder}"] + ([f"data.root={data_root}"] if data_root else [])
    cfg = load_config(folder / "config.yaml", overrides)
    cfg.model.mode = "fusion"
    models = []
    for load in (True, False):
        torch.manual_seed(seed)
        model = build_model(cfg, 1, 1, encoder.tokenizer, text_config=encoder.text_config,
                            load_pretrained=not encoder.has_vision, vision_config=encoder.vision_config)
        if load:
            init_from_pretrained(model, encoder)
        models.append(model)
    return models[0], models[1], cfg, encoder.tokenizer


def probe(folder: Path, data_root: str | None, fit_split: str, score_split: str, fit_sizes: Sequence[int],
          seed: int = 0) -> list[dict]:
    """One row per (model, feature, concept): accuracies per fit size."""
    from mmcls.data.dataset import build_dataloader, build_dataset
    from mmcls.data.splits import load_split

    model, reference, cfg, tokenizer = build_models(folder, data_root, seed)
    oracle_path = Path(cfg.data.root) / "oracle.json"
    # without concepts (a dataset not made by tools/make_synthetic.py) only the direction probe runs
    oracle = json.loads(oracle_path.read_text(encoding="utf-8")) if oracle_path.is_file() else None
    concepts = CONCEPTS if oracle is not None else ()
    data = {}
    for which in (fit_split, score_split):
        split = load_split(cfg.data, which)
        if oracle is not None and split.folder not in oracle:
            raise UserError(f"{oracle_path}: no concepts for split {split.folder!r} (data.{which})")
        loader = build_dataloader(build_dataset(cfg.data, split, tokenizer, None, train=False, with_frames=True,
                                                seed=seed), cfg.data, cfg.train.eval_batch_size)
        data[which] = (loader, oracle[split.folder] if oracle is not None else None)
    rows = []
    for name, net in (("model", model), ("fresh", reference)):
        features = {which: pooled_features(net, loader) for which, (loader, _) in data.items()}
        for feature in FEATURES:
            for concept in concepts:
                (fit_x, fit_ids), (score_x, score_ids) = [(f[feature], ids) for f, ids in features.values()]
                fit_y = [data[fit_split][1][i][concept] for i in fit_ids]
                score_y = [data[score_split][1][i][concept] for i in score_ids]
                accuracy = {n: probe_accuracy(fit_x[:n], fit_y[:n], score_x, score_y) for n in fit_sizes}
                rows.append({"model": name, "feature": feature, "concept": concept, "accuracy": accuracy})
        (fit, _), (score, _) = features[fit_split], features[score_split]
        if not fit["ordered"].any() or not score["ordered"].any():
            raise UserError(f"no video of data.{fit_split if not fit['ordered'].any() else score_split} has 2 "
                            "frames: nothing to tell forward from reversed")
        for feature in DIRECTION_FEATURES:
            score_x, score_y = direction_data(score, feature)
            accuracy = {n: probe_accuracy(*direction_data(fit, feature, n), score_x, score_y) for n in fit_sizes}
            rows.append({"model": name, "feature": feature, "concept": DIRECTION, "accuracy": accuracy})
    return rows


def markdown_table(rows: Sequence[dict], fit_sizes: Sequence[int]) -> str:
    """Accuracy per feature and concept: the folder's model against the fresh one, for each fit size."""
    index = {(r["model"], r["feature"], r["concept"]): r["accuracy"] for r in rows}
    header = " | ".join(f"{n} fitted: model / fresh" for n in fit_sizes)
    lines = [f"| feature | concept | {header} |", "|---|---|" + "---:|" * len(fit_sizes)]
    for _, feature, concept in [key for key in index if key[0] == "model"]:
        model, fresh = index[("model", feature, concept)], index[("fresh", feature, concept)]
        cells = " | ".join(f"{model[n]:.3f} / {fresh[n]:.3f}" for n in fit_sizes)
        lines.append(f"| {feature} | {concept.split('_')[0]} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A model folder (RUN/best of pretraining or finetuning).")
    parser.add_argument("--data", help="Dataset root (default: the folder's data.root).")
    parser.add_argument("--fit-split", default="unlabeled", choices=("train", "unlabeled", "test"),
                        help="Annotation file (data.<name>) the probes are fitted on (default unlabeled).")
    parser.add_argument("--score-split", default="test", choices=("train", "unlabeled", "test"),
                        help="Annotation file the probes are scored on (default test).")
    parser.add_argument("--fit-sizes", nargs="+", type=int, default=[109, 500],
                        help="Numbers of fitted videos (default 109 500; more than the split has = all; the "
                        "direction probe fits both copies of each).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fresh reference model (default 0).")
    args = parser.parse_args(argv)
    if args.fit_split == args.score_split:
        raise UserError("--fit-split and --score-split must differ")
    if min(args.fit_sizes) < 2:
        raise UserError("--fit-sizes: each must be >= 2")
    rows = probe(Path(args.model), args.data, args.fit_split, args.score_split, args.fit_sizes, args.seed)
    print(markdown_table(rows, args.fit_sizes))
    return 0
