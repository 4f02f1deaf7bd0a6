"""Which temporal switches learn direction: the demo pipeline with each switch of ``model.temporal``, with and
without the order pretraining task, over several seeds, scored on the synthetic test split.

Every variant and seed is the pipeline of ``make demo``, each step a real run in its own process: pretraining
(``--pretrain-config`` layered over ``--config``, ``--pretrain-epochs`` epochs, ``pretrain.order_weight`` 0 or
``--order-weight``), finetuning from its frame encoder, prediction of the test split, and the temporal diagnostic
of the model on the test split with its truth. Writes ``time_study.json`` and ``time_study.md`` (the table of
README "Results") into --out and skips what is already there (rerun after an interruption to finish).

The table's direction figures are the diagnostic's with the data's ``reverse_label_map.json`` (mmcls/workflow/
temporal.py, ``direction_summary``): of the test videos of a class pair told apart only by the direction of motion
(rise/fall, grow/shrink, left/right) predicted with the right shape, the share with the right direction; and under
frame reversal, the share of predictions that change among videos predicted as a directional class (ideally all)
and among the others (stripes, ring: ideally none).

Examples:
    python tools/time_study.py                                    # every variant, seeds 42 43 44
    python tools/time_study.py --only none grey grey+order --seeds 42
    python tools/time_study.py --out runs/time_study_10 train.epochs=10   # shorter finetunings (--pretrain-epochs)
    python tools/time_study.py --rescore                          # the direction figures again, no training
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mmcls.cli import command_argv
from mmcls.commands.ablate import (
    Result,
    load_results,
    predict_and_score,
    run_resumable,
    save_results,
    train_speed,
)
from mmcls.errors import UserError
from mmcls.io import atomic_write_text
from mmcls.synthetic.plan import REVERSE_MAP_FILE
from mmcls.workflow.steps import finished, run_step

ORDER = "+order"
DIRECTION_KEYS = ("right_direction", "reverse_changed_directional", "reverse_changed_others")


@dataclass(frozen=True)
class Switch:
    """One setting of ``model.temporal`` (applied to pretraining and finetuning alike)."""

    name: str
    what: str
    overrides: tuple[str, ...] = ()


OFF = ("model.temporal.frame_diff=none", "model.temporal.shift=0")  # every switch sets both: the config may set one

SWITCHES: tuple[Switch, ...] = (
    Switch("none", "no temporal switch", OFF),
    Switch("rgb", "frame differences, 3 channels", ("model.temporal.frame_diff=rgb", OFF[1])),
    Switch("grey", "frame differences, 1 channel", ("model.temporal.frame_diff=grey", OFF[1])),
    Switch("shift", "temporal shift 1/8", (OFF[0], "model.temporal.shift=0.125")),
    Switch("grey_shift", "grey differences and shift 1/8",
           ("model.temporal.frame_diff=grey", "model.temporal.shift=0.125")),
)
VARIANT_NAMES = tuple(name for switch in SWITCHES for name in (switch.name, switch.name + ORDER))


def split_variant(name: str) -> tuple[Switch, bool]:
    """The switch of a variant name (``grey``, ``grey+order``) and whether the order task is on."""
    order = name.endswith(ORDER)
    base = name[: -len(ORDER)] if order else name
    switch = next((s for s in SWITCHES if s.name == base), None)
    if switch is None:
        raise UserError(f"unknown variant {name!r}; expected one of {', '.join(VARIANT_NAMES)}")
    return switch, order


def diagnose(run: Path, data: Path) -> dict[str, float]:
    """The temporal diagnostic of ``run``/best on the test split (written to ``run``/temporal.json): its direction
    figures."""
    from mmcls.workflow.temporal import temporal_diagnostic, write_report

    report = temporal_diagnostic(run / "best", split="test", overrides=[f"data.root={data}"],
                                 truth=data / "annotations" / "test_truth.csv", mixed_precision="no",
                                 reverse_map=data / REVERSE_MAP_FILE)
    write_report(report, run / "temporal.json")
    return {key: report.direction[key] for key in DIRECTION_KEYS if report.direction.get(key) is not None}


def rescore(store: Path, args: argparse.Namespace) -> list[Result]:
    """The stored results with the direction figures measured again on their models (after the diagnostic
    changed), without training; a result whose model is gone keeps its figures."""
    results = load_results(store)
    for result in results:
        run = Path(args.out) / f"{result.name}-s{result.seed}" / "finetune"
        if (run / "best").is_dir():
            print(f"[time study] rescoring {result.name} seed {result.seed} ...", flush=True)
            result.scores.update(diagnose(run, Path(args.data)))
    save_results(store, results)
    return results


def run_variant(name: str, seed: int, args: argparse.Namespace) -> Result:
    """Pretrain, finetune from it, predict and score the test split, and diagnose the model's use of time."""
    switch, order = split_variant(name)
    out = Path(args.out)
    tag = f"{name}-s{seed}"
    pretrained, run = out / tag / "pretrain", out / tag / "finetune"
    # the user's overrides first: the study's own keys (switch, epochs, order weight) must win
    common = [*args.overrides, f"data.root={args.data}", f"seed={seed}", *switch.overrides]
    start = time.perf_counter()
    if not finished(pretrained):  # a study restarted after an interruption keeps the runs that had finished
        run_step([sys.executable, *command_argv("pretrain"), "--config", args.config, "--config",
                  args.pretrain_config, f"output_dir={pretrained}", *common, f"train.epochs={args.pretrain_epochs}",
                  f"pretrain.order_weight={args.order_weight if order else 0.0}"], out / f"{tag}.pretrain.log")
    if not finished(run):
        run_step([sys.executable, *command_argv("finetune"), "--config", args.config, f"output_dir={run}", *common,
                  f"model.init_from={pretrained / 'best'}", "model.init_parts=[vision,frame_embedder]"],
                 out / f"{tag}.train.log")
    scores = predict_and_score(run / "best", Path(args.data), out / tag)
    scores.update(diagnose(run, Path(args.data)))
    return Result(name, seed, scores["mean_f1"], scores, train_speed(run), time.perf_counter() - start)


def markdown_table(results: Sequence[Result]) -> str:
    """Per variant, the mean over its seeds (with half the spread for mean-F1) of the test scores."""
    by_name: dict[str, list[Result]] = {}
    for result in results:
        by_name.setdefault(result.name, []).append(result)

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value:.1%}"

    def score(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = ["| variant | temporal switch | order task | test mean-F1 | lv2 macro-F1 | right direction | "
             "reverse changes: directional / others | seeds |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for name in (n for n in VARIANT_NAMES if n in by_name):
        rows = by_name[name]
        switch, order = split_variant(name)
        f1 = [r.mean_f1 for r in rows]
        spread = f" ±{(max(f1) - min(f1)) / 2:.3f}" if len(rows) > 1 else ""
        figure = {key: mean([r.scores[key] for r in rows if key in r.scores])
                  for key in ("lv2_macro_f1", *DIRECTION_KEYS)}
        config = " ".join(f"`{o}`" for o in switch.overrides if o not in OFF) or "both off"
        lines.append(f"| {name} | {switch.what} ({config}) | {'yes' if order else 'no'} | {mean(f1):.4f}{spread} | "
                     f"{score(figure['lv2_macro_f1'])} | {pct(figure['right_direction'])} | "
                     f"{pct(figure['reverse_changed_directional'])} / {pct(figure['reverse_changed_others'])} | "
                     f"{len(rows)} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/demo.yaml", help="Finetuning config (default configs/demo.yaml).")
    parser.add_argument("--pretrain-config", default="configs/pretrain_demo.yaml",
                        help="Layered over --config for pretraining (default configs/pretrain_demo.yaml).")
    parser.add_argument("--pretrain-epochs", type=int, default=3, help="Pretraining epochs (default 3, as make demo).")
    parser.add_argument("--order-weight", type=float, default=1.0,
                        help="pretrain.order_weight of the +order variants (default 1.0, the other tasks' weight).")
    parser.add_argument("--data", default="data/synthetic", help="Dataset root with test_truth.csv (make demo).")
    parser.add_argument("--out", default="runs/time_study", help="Where runs, predictions and the tables go.")
    parser.add_argument("--only", nargs="+", choices=VARIANT_NAMES, metavar="NAME",
                        help=f"Variants to run (default all): {', '.join(VARIANT_NAMES)}.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44], help="Seeds (default 42 43 44).")
    parser.add_argument("--rescore", action="store_true",
                        help="Measure the direction figures of the stored results again on their models (no "
                        "training), then print the table.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Config overrides of every pretraining and finetuning run, under the study's own "
                        "keys (train.epochs sets the finetunings' epochs; --pretrain-epochs the pretrainings').")
    args = parser.parse_args(argv)
    if args.pretrain_epochs < 1:
        raise UserError(f"--pretrain-epochs: must be at least 1, got {args.pretrain_epochs}")
    if not (Path(args.data) / "annotations" / "test_truth.csv").is_file():
        raise UserError(f"{args.data}: no annotations/test_truth.csv; build the synthetic dataset first (make demo)")
    if not (Path(args.data) / REVERSE_MAP_FILE).is_file():
        raise UserError(f"{args.data}: no {REVERSE_MAP_FILE} (a dataset from an older generator); make it again "
                        "(tools/make_synthetic.py, or make demo)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = [name for name in VARIANT_NAMES if not args.only or name in args.only]
    if args.rescore:
        done = rescore(out / "time_study.json", args)
    else:  # seed by seed, so an interrupted study has every variant at the same number of seeds
        done = run_resumable(out / "time_study.json", [(name, seed) for seed in args.seeds for name in names],
                             lambda name, seed: run_variant(name, seed, args), "time study")
    table = markdown_table(done)
    atomic_write_text(out / "time_study.md", table)
    print(table)
    return 0
