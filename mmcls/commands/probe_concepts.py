"""Linear probes of frozen features on the synthetic dataset's hidden concepts: what did pretraining learn?

For a model folder (RUN/best of pretrain/train.py or finetune/train.py) and, as the reference, a fresh randomly
initialised model of the same architecture, three pooled features per video are taken without any training:
``text`` (the text alone through the encoder), ``video`` (the frames alone) and ``fused`` (both). A logistic
regression on each is fitted to the text concept and to the video concept of ``oracle.json`` (written by
tools/make_synthetic.py) on the first N videos of the fit split, and scored on the score split. Few fitted videos
show what a few labels can get out of the features; many show what the features hold at all.

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


def probe_accuracy(fit_x: np.ndarray, fit_y: Sequence[str], score_x: np.ndarray, score_y: Sequence[str]) -> float:
    """Accuracy on ``score_x`` of a logistic regression fitted on standardised ``fit_x`` ``[n, d]``."""
    from sklearn.linear_model import LogisticRegression

    if len(set(fit_y)) < 2:
        raise UserError("the fitted videos show fewer than two concepts; fit on more videos (--fit-sizes)")
    mean, std = fit_x.mean(axis=0), fit_x.std(axis=0) + 1e-6
    model = LogisticRegression(max_iter=2000).fit((fit_x - mean) / std, list(fit_y))
    return float(model.score((score_x - mean) / std, list(score_y)))


def pooled_features(model, loader) -> tuple[dict[str, np.ndarray], list[str]]:
    """``{feature: [n, H]}`` masked means of the text-only, frames-only and fused encoder outputs, and the ids."""
    import torch

    from mmcls.models.fusion import masked_mean

    parts: dict[str, list[torch.Tensor]] = {name: [] for name in FEATURES}
    ids: list[str] = []
    encoder = model.encoder.eval()
    with torch.no_grad():
        for batch in loader:
            feats = encoder.frame_features(batch["frames"], batch["frame_mask"])  # [B, T, D], the tower runs once
            text, mask = batch["input_ids"], batch["attention_mask"]
            for name, out in (("text", encoder.encode(text, mask)),
                              ("video", encoder.encode_frames(feats, batch["frame_mask"])),
                              ("fused", encoder.encode(text, mask, frame_mask=batch["frame_mask"], features=feats))):
                parts[name].append(masked_mean(out.hidden, out.mask))  # [B, H]
            ids += batch["ids"]
    return {name: torch.cat(values).float().numpy() for name, values in parts.items()}, ids


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
    if not oracle_path.is_file():
        raise UserError(f"{cfg.data.root}: no oracle.json; probes need a dataset from tools/make_synthetic.py")
    oracle = json.loads(oracle_path.read_text(encoding="utf-8"))
    data = {}
    for which in (fit_split, score_split):
        split = load_split(cfg.data, which)
        if split.folder not in oracle:
            raise UserError(f"{oracle_path}: no concepts for split {split.folder!r} (data.{which})")
        loader = build_dataloader(build_dataset(cfg.data, split, tokenizer, None, train=False, with_frames=True,
                                                seed=seed), cfg.data, cfg.train.eval_batch_size)
        data[which] = (loader, oracle[split.folder])
    rows = []
    for name, net in (("model", model), ("fresh", reference)):
        features = {which: pooled_features(net, loader) for which, (loader, _) in data.items()}
        for feature in FEATURES:
            for concept in CONCEPTS:
                (fit_x, fit_ids), (score_x, score_ids) = [(f[feature], ids) for f, ids in features.values()]
                fit_y = [data[fit_split][1][i][concept] for i in fit_ids]
                score_y = [data[score_split][1][i][concept] for i in score_ids]
                accuracy = {n: probe_accuracy(fit_x[:n], fit_y[:n], score_x, score_y) for n in fit_sizes}
                rows.append({"model": name, "feature": feature, "concept": concept, "accuracy": accuracy})
    return rows


def markdown_table(rows: Sequence[dict], fit_sizes: Sequence[int]) -> str:
    """Accuracy per feature and concept: the folder's model against the fresh one, for each fit size."""
    index = {(r["model"], r["feature"], r["concept"]): r["accuracy"] for r in rows}
    header = " | ".join(f"{n} fitted: model / fresh" for n in fit_sizes)
    lines = [f"| feature | concept | {header} |", "|---|---|" + "---:|" * len(fit_sizes)]
    for feature in FEATURES:
        for concept in CONCEPTS:
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
                        help="Numbers of fitted videos (default 109 500; more than the split has = all).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the fresh reference model (default 0).")
    args = parser.parse_args(argv)
    if args.fit_split == args.score_split:
        raise UserError("--fit-split and --score-split must differ")
    if min(args.fit_sizes) < 2:
        raise UserError("--fit-sizes: each must be >= 2")
    rows = probe(Path(args.model), args.data, args.fit_split, args.score_split, args.fit_sizes, args.seed)
    print(markdown_table(rows, args.fit_sizes))
    return 0
