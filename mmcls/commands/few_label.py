"""Does pretraining help? Finetune on a few labels from scratch and from a pretrained model, several seeds each.

Every arm is a real run: finetune/train.py with the demo config and configs/few_label.yaml (10% of the labelled
training split) in its own process, then tools/predict.py on the test split, scored with the WBDC mean-F1 on the
test truth. The arms:

- ``scratch``: random towers, as the demo trains;
- ``pretrained``: ``model.init_from=PRETRAINED`` (its BERT, vision tower and frame layers);
- ``pretrained_vision``: the same folder, but only its vision tower and frame layers
  (``model.init_parts=[vision,frame_embedder]``); the BERT starts fresh.

A seed picks the labelled subset and the initialisation, and every arm of a seed sees the same subset. Writes
``few_label.json`` and ``few_label.md`` into --out and skips (arm, seed) pairs already there, so an interrupted
run finishes where it stopped.

Examples:
    python pretrain/train.py --config configs/demo.yaml --config configs/pretrain_demo.yaml   # runs/pretrain_demo
    python tools/few_label.py --pretrained runs/pretrain_demo/best
    python tools/few_label.py --pretrained runs/pretrain_demo/best --seeds 42 --arms scratch pretrained_vision
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from mmcls.cli import command_argv
from mmcls.commands.ablate import Result, predict_and_score, run_resumable, train_speed
from mmcls.errors import UserError
from mmcls.io import atomic_write_text
from mmcls.workflow.steps import run_step

ARMS: dict[str, tuple[str, ...]] = {
    "scratch": (),
    "pretrained": ("model.init_from={pretrained}",),
    "pretrained_vision": ("model.init_from={pretrained}", "model.init_parts=[vision,frame_embedder]"),
}


def run_arm(arm: str, seed: int, args: argparse.Namespace) -> Result:
    """Finetune one arm with one seed, predict the test split, score it."""
    out, data = Path(args.out), Path(args.data)
    tag = f"{arm}-s{seed}"
    overrides = [o.format(pretrained=args.pretrained) for o in ARMS[arm]]
    start = time.perf_counter()
    run_step([sys.executable, *command_argv("finetune"), "--config", args.config, "--config", args.few_label,
              f"data.root={data}", f"output_dir={out / tag}", f"seed={seed}", *overrides, *args.overrides],
             out / f"{tag}.train.log")
    scores = predict_and_score(out / tag / "best", data, out / tag)
    return Result(arm, seed, scores["mean_f1"], scores, train_speed(out / tag), time.perf_counter() - start)


def markdown_table(results: Sequence[Result], seeds: Sequence[int]) -> str:
    """Test mean-F1 per arm and seed, the mean over seeds and the difference to ``scratch``."""
    by_arm = {arm: {r.seed: r.mean_f1 for r in results if r.name == arm} for arm in ARMS}
    means = {arm: statistics.mean(f1s.values()) for arm, f1s in by_arm.items() if f1s}
    lines = ["| start | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | vs scratch |",
             "|---|" + "---:|" * (len(seeds) + 2)]
    for arm, mean in means.items():
        cells = " | ".join(f"{by_arm[arm][s]:.3f}" if s in by_arm[arm] else "-" for s in seeds)
        delta = f"{mean - means['scratch']:+.3f}" if "scratch" in means and arm != "scratch" else ""
        lines.append(f"| {arm} | {cells} | **{mean:.3f}** | {delta} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True,
                        help="A pretrained model folder (RUN/best of pretrain/train.py).")
    parser.add_argument("--config", default="configs/demo.yaml", help="Base config (default configs/demo.yaml).")
    parser.add_argument("--few-label", default="configs/few_label.yaml",
                        help="Config layered over --config (default configs/few_label.yaml: 10%% of the labels).")
    parser.add_argument("--data", default="data/synthetic", help="Dataset root with test_truth.csv (make demo).")
    parser.add_argument("--out", default="runs/few_label", help="Where runs, predictions and the tables go.")
    parser.add_argument("--arms", nargs="+", choices=tuple(ARMS), default=list(ARMS), metavar="ARM",
                        help=f"Starts to compare (default all): {', '.join(ARMS)}.")
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44], help="Seeds (default 42 43 44).")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="Config overrides for every arm.")
    args = parser.parse_intermixed_args(argv)
    if not (Path(args.data) / "annotations" / "test_truth.csv").is_file():
        raise UserError(f"{args.data}: no annotations/test_truth.csv; build the synthetic dataset first (make demo)")
    if not (Path(args.pretrained) / "model.safetensors").is_file():
        raise UserError(f"--pretrained: {args.pretrained} holds no model.safetensors; pretrain first "
                        "(python pretrain/train.py --config configs/demo.yaml --config configs/pretrain_demo.yaml)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    done = run_resumable(out / "few_label.json", [(arm, seed) for seed in args.seeds for arm in args.arms],
                         lambda arm, seed: run_arm(arm, seed, args), "few-label")
    table = markdown_table([r for r in done if r.seed in args.seeds], args.seeds)
    atomic_write_text(out / "few_label.md", table)
    print(table)
    return 0
