"""Check a model against a speed budget: end-to-end inference of a split on this machine, data loading included.

Loads the model (a RUN/best folder, or an export folder from tools/export.py, run by ONNX Runtime), then predicts
every video of the split exactly as tools/predict.py does (same loader, workers, batch size and precision) and
divides the videos by the wall time of that pass, the loader's worker start-up included. Loading the model and
--warmup untimed passes (default 1) come first: an ONNX Runtime session's creation and the first kernels cost a
large share of a pass over a few hundred videos and nothing over a competition's 25,000 (--warmup 0 counts them).
The last line is ``pass: N videos/s >= BUDGET`` (exit 0) or ``fail: N videos/s < BUDGET`` (exit 1).

Examples:
    python tools/speed_check.py --model runs/demo/best --budget 50 data.root=data/synthetic
    python tools/speed_check.py --model runs/demo/onnx --budget 50 data.root=data/synthetic
    python tools/speed_check.py --model 'runs/kfold/fold*/best' --budget 50   # a fold ensemble
    accelerate launch tools/speed_check.py --model runs/base/onnx_fp16 --budget 70 --batch-size 64   # 2 GPUs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Sequence

from mmcls.cli import add_precision_argument, flags
from mmcls.data.splits import ANNOTATION_KEYS
from mmcls.errors import ArgumentError


@flags(models="--model", budget="--budget")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True,
                        help="A RUN/best folder or an export folder (tools/export.py); repeat (or a quoted glob) for "
                        "an ensemble, which predicts the split once per model, as tools/predict.py does.")
    parser.add_argument("--budget", required=True, type=float, metavar="VIDEOS_PER_S",
                        help="The speed the model must reach, in videos per second (all processes together).")
    parser.add_argument("--split", default="test", choices=ANNOTATION_KEYS, help="The split to predict (default test).")
    parser.add_argument("--batch-size", type=int, help="Videos per batch per process (default train.eval_batch_size).")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed passes over the split first (default 1).")
    parser.add_argument("--json", help="Also write the figures here as JSON (videos_per_s, engines, seconds ...).")
    add_precision_argument(parser)
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Config overrides, e.g. data.root=... data.num_workers=4 data.max_frames=8")
    args = parser.parse_intermixed_args(argv)
    if not (math.isfinite(args.budget) and args.budget > 0):
        raise ArgumentError("budget", f"must be a positive number of videos per second, got {args.budget}")
    from mmcls.accelerators import inference_accelerator
    from mmcls.io import atomic_write_text, expand_globs
    from mmcls.workflow.speed import measure_speed

    accelerator = inference_accelerator(args.precision)
    models = expand_globs(args.model, "--model")
    if args.warmup < 0:
        raise ArgumentError("warmup", f"must be >= 0, got {args.warmup}")
    speed = measure_speed(models, accelerator, args.split, args.overrides, args.batch_size, args.warmup)
    if not accelerator.is_main_process:
        return 0
    print(speed.describe(str(models[0]) if len(models) == 1 else f"ensemble of {len(models)} models", args.split))
    passed = speed.videos_per_s >= args.budget
    if args.json:
        atomic_write_text(args.json, json.dumps({**dataclasses.asdict(speed), "videos_per_s": speed.videos_per_s,
                                                 "budget": args.budget, "passed": passed}, indent=1) + "\n")
    print(f"{'pass' if passed else 'fail'}: {speed.videos_per_s:.1f} videos/s {'>=' if passed else '<'} "
          f"{args.budget:g}")
    return 0 if passed else 1
