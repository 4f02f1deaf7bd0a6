"""Ablation of the competition tricks: the demo config with each trick switched on alone.

Every variant is a real run (finetune/train.py in its own process, then tools/predict.py on the test split), scored
on the test truth with the WBDC mean-F1. Writes ``ablation.json`` (with each run's training videos/s) and
``ablation.md`` (the table of docs/RECIPES.md) into --out, and skips variants whose result is already there (rerun
after an interruption to finish). The cost of each trick per step: tools/benchmark_step.py.

Examples:
    python tools/ablate.py                                   # all variants, data/synthetic, runs/ablation
    python tools/ablate.py --only baseline fgm pgd rdrop     # a subset
    python tools/ablate.py --seeds 42 43 44 --only baseline  # the seed-to-seed noise of the baseline
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mmcls.cli import command_argv
from mmcls.errors import UserError
from mmcls.io import atomic_write_text
from mmcls.workflow.steps import run_step


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: config overrides of the training run and extra options of the prediction."""

    name: str
    trick: str
    overrides: tuple[str, ...] = ()
    predict_args: tuple[str, ...] = ()
    reuse: str | None = None  # predict-time tricks reuse the model of this variant instead of training again


VARIANTS: tuple[Variant, ...] = (
    Variant("baseline", "demo config as shipped"),
    Variant("layer_decay", "layer-wise LR decay 0.8", ("train.layer_decay=0.8",)),
    Variant("ranger", "RAdam + Lookahead", ("train.optimizer=ranger",)),
    Variant("sam", "SAM rho 0.05", ("train.sam_rho=0.05",)),
    Variant("sgdr", "cosine with 3 restarts", ("train.schedule=cosine_restarts", "train.cycles=3")),
    Variant("ema", "EMA 0.99 (evaluated)", ("train.ema.decay=0.99",)),
    Variant("fgm", "FGM epsilon 0.5", ("train.adversarial.method=fgm", "train.adversarial.epsilon=0.5")),
    Variant("pgd", "PGD 3 steps, epsilon 0.5, alpha 0.3",
            ("train.adversarial.method=pgd", "train.adversarial.steps=3", "train.adversarial.epsilon=0.5",
             "train.adversarial.alpha=0.3")),
    Variant("class_weights", "class weights n^-0.5", ("train.loss.class_weights=inverse",)),
    Variant("effective_number", "class weights by effective number (beta 0.999)",
            ("train.loss.class_weights=effective",)),
    Variant("focal", "focal loss gamma 2", ("train.loss.focal_gamma=2.0",)),
    Variant("label_smoothing", "label smoothing 0.1", ("train.loss.label_smoothing=0.1",)),
    Variant("logit_adjust", "logit adjustment tau 1 at prediction", predict_args=("--logit-adjust", "1.0"),
            reuse="baseline"),
    Variant("rdrop", "R-Drop alpha 1", ("train.loss.rdrop_alpha=1.0",)),
    Variant("multi_sample_dropout", "multi-sample dropout x5 (dropout 0.3)",
            ("model.dropout_samples=5", "model.dropout=0.3")),
    Variant("mixup", "mixup alpha 0.4 on frames", ("train.mix.mixup_alpha=0.4",)),
    Variant("cutmix", "CutMix alpha 1.0 on frames", ("train.mix.cutmix_alpha=1.0",)),
    Variant("swa_last", "SWA over the last 3 epochs", ("train.swa.mode=last", "train.swa.count=3")),
    Variant("swa_topk", "SWA of the top-3 validated weights", ("train.swa.mode=topk", "train.swa.count=3")),
    Variant("grad_checkpointing", "gradient checkpointing (memory, not accuracy)", ("train.grad_checkpointing=true",)),
    Variant("freeze_vision", "vision tower frozen for the first 100 updates",
            ("train.freeze.towers=[vision]", "train.freeze.updates=100")),
    Variant("early_stopping", "early stopping, patience 3", ("train.early_stopping_patience=3",)),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


@dataclass
class Result:
    """Scores of one variant and seed."""

    name: str
    seed: int
    mean_f1: float
    scores: dict[str, float] = field(default_factory=dict)
    train_videos_per_s: float | None = None
    seconds: float = 0.0


def train_speed(run: Path) -> float | None:
    """Training videos/s from the run's log line ``done in ... (training X videos/s)``."""
    log = run / "train.log"
    for line in reversed(log.read_text(encoding="utf-8").splitlines() if log.is_file() else []):
        if "videos/s" in line and "training" in line:
            return float(line.split("(training ")[1].split(" videos/s")[0])
    return None


def run_variant(variant: Variant, seed: int, args: argparse.Namespace) -> Result:
    """Train (unless the variant reuses another's model), predict the test split, score it."""
    out = Path(args.out)
    tag = f"{variant.name}-s{seed}"
    run = out / (f"{variant.reuse}-s{seed}" if variant.reuse else tag)
    start = time.perf_counter()
    if not variant.reuse:
        run_step([sys.executable, *command_argv("finetune"), "--config", args.config, f"data.root={args.data}",
                  f"output_dir={run}", f"seed={seed}", *variant.overrides], out / f"{tag}.train.log")
    elif not (run / "best").is_dir():
        raise UserError(f"variant {variant.name} needs the model of {variant.reuse}; run that one first")
    scores = predict_and_score(run / "best", Path(args.data), out / tag, variant.predict_args)
    return Result(variant.name, seed, scores["mean_f1"], scores, train_speed(run), time.perf_counter() - start)


def predict_and_score(model: Path, data: Path, stem: Path, predict_args: Sequence[str] = ()) -> dict[str, float]:
    """Predict the test split of ``data`` with ``model`` (into ``stem``.csv) and score it on its test truth."""
    from mmcls.metrics import mean_f1_from_ids, read_submission

    pred = stem.with_suffix(".csv")
    run_step([sys.executable, *command_argv("predict"), "--model", str(model), "--output", str(pred),
              f"data.root={data}", *predict_args], stem.with_suffix(".predict.log"))
    truth = read_submission(data / "annotations" / "test_truth.csv")
    predicted = read_submission(pred, expected_ids=list(truth))
    ids = list(truth)
    return mean_f1_from_ids([truth[i] for i in ids], [predicted[i] for i in ids])


def load_results(store: Path) -> list[Result]:
    """The results a study saved in ``store`` (a JSON list), none when it is not there yet."""
    return [Result(**r) for r in json.loads(store.read_text(encoding="utf-8"))] if store.is_file() else []


def save_results(store: Path, results: Sequence[Result]) -> None:
    atomic_write_text(store, json.dumps([vars(r) for r in results], indent=1) + "\n")


def run_resumable(store: Path, jobs: Sequence[tuple[str, int]], run_one: Callable[[str, int], Result],
                  label: str) -> list[Result]:
    """Run the (name, seed) ``jobs`` that ``store`` (a JSON list of results) does not hold yet, saving it after
    each one, so an interrupted run finishes where it stopped; returns every result in the store."""
    done = {(r.name, r.seed): r for r in load_results(store)}
    for name, seed in jobs:
        if (name, seed) in done:
            continue
        print(f"[{label}] {name} seed {seed} ...", flush=True)
        result = run_one(name, seed)
        print(f"[{label}] {name} seed {seed}: test mean_f1 {result.mean_f1:.4f} ({result.seconds:.0f} s)",
              flush=True)
        done[(name, seed)] = result
        save_results(store, list(done.values()))
    return list(done.values())


def markdown_table(results: Sequence[Result]) -> str:
    """Test mean-F1 per variant (mean over seeds, with the spread) and its difference to the baseline.

    Step costs are not in this table: runs here share the machine with whatever else runs, so their wall clock is
    no measure of a trick's cost; ``tools/benchmark_step.py`` measures that on a fixed batch.
    """
    by_name: dict[str, list[Result]] = {}
    for result in results:
        by_name.setdefault(result.name, []).append(result)
    tricks = {v.name: v for v in VARIANTS}

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    base = by_name.get("baseline")
    base_f1 = mean([r.mean_f1 for r in base]) if base else None
    lines = ["| variant | trick | config | test mean-F1 | vs baseline |", "|---|---|---|---:|---:|"]
    for name in (n for n in VARIANT_NAMES if n in by_name):
        rows, variant = by_name[name], tricks[name]
        f1 = mean([r.mean_f1 for r in rows])
        seeds = f" (±{(max(r.mean_f1 for r in rows) - min(r.mean_f1 for r in rows)) / 2:.3f}, {len(rows)} seeds)" \
            if len(rows) > 1 else ""
        delta = f"{f1 - base_f1:+.3f}" if base_f1 is not None and name != "baseline" else ""
        config = " ".join(f"`{o}`" for o in (*variant.overrides, *variant.predict_args)) or "-"
        if variant.predict_args:
            config = f"predict {config}"
        lines.append(f"| {name} | {variant.trick} | {config} | {f1:.4f}{seeds} | {delta} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml", help="Base config (default configs/demo.yaml).")
    parser.add_argument("--data", default="data/synthetic", help="Dataset root with test_truth.csv (make demo).")
    parser.add_argument("--out", default="runs/ablation", help="Where runs, predictions and the tables go.")
    parser.add_argument("--only", nargs="+", choices=VARIANT_NAMES, metavar="NAME",
                        help=f"Variants to run (default all): {', '.join(VARIANT_NAMES)}.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42], help="Seeds per variant (default 42).")
    args = parser.parse_args(argv)
    if not (Path(args.data) / "annotations" / "test_truth.csv").is_file():
        raise UserError(f"{args.data}: no annotations/test_truth.csv; build the synthetic dataset first (make demo)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = {v.name: v for v in VARIANTS if not args.only or v.name in args.only}
    done = run_resumable(out / "ablation.json", [(name, seed) for name in variants for seed in args.seeds],
                         lambda name, seed: run_variant(variants[name], seed, args), "ablate")
    table = markdown_table(done)
    atomic_write_text(out / "ablation.md", table)
    print(table)
    return 0
