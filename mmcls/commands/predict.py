"""Predict a split with one model or a weighted ensemble and write the submission CSV.

Examples:
    python tools/predict.py --model runs/demo/best --output result.csv
    python tools/predict.py --model runs/a/best --model runs/b/best --weights 2 1 --output result.csv \\
        --logits result_logits.npy data.root=/data/wbdc data.test=annotations/test_b.json
    accelerate launch tools/predict.py --model runs/base/best --output result.csv
    python tools/predict.py --model runs/demo/best --logit-adjust 0.5 --output result.csv   # favour rare classes
    python tools/predict.py --model runs/demo/best --tta-offsets 2 --tta-hflip --output result.csv   # 4 views
    python tools/predict.py --model 'runs/kfold/fold*/best' --output result.csv   # every fold of tools/kfold.py
    python -m mmcls predict --model runs/demo/best --output result.csv   # installed, from any folder

--logits X.npy writes the bundle X.npy (float32 [videos, classes]), X.ids.txt and X.classes.txt that
tools/ensemble.py, tools/pseudo_label.py and train.distill.teacher read.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mmcls.accelerators import inference_accelerator
from mmcls.cli import add_precision_argument, flags
from mmcls.data.splits import ANNOTATION_KEYS


@flags(offsets="--tta-offsets", hflip="--tta-hflip", models="--model")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True,
                        help="A RUN/best folder (repeat for an ensemble; a quoted glob such as 'runs/kfold/fold*/best' "
                        "adds every match).")
    parser.add_argument("--weights", nargs="+", type=float, help="Ensemble weights, one per --model (default equal).")
    parser.add_argument("--split", default="test", choices=ANNOTATION_KEYS,
                        help="Which annotation file of the config to predict (default test = data.test).")
    parser.add_argument("--output", "--out", required=True, help="Submission CSV to write (atomically).")
    parser.add_argument("--logits", help="Also save logits as .npy (ids in the same order in <name>.ids.txt).")
    parser.add_argument("--batch-size", type=int, help="Videos per batch per process (default train.eval_batch_size).")
    add_precision_argument(parser)
    parser.add_argument("--logit-adjust", type=float, default=0.0, metavar="TAU",
                        help="Subtract TAU * log(class prior) from the logits (prior from the training counts of "
                        "the first model): raises rare classes, which helps macro-F1. Default 0 = off.")
    parser.add_argument("--tta-offsets", type=int, default=1, metavar="K",
                        help="Test-time augmentation: also predict the frame grids starting 1 ... K-1 frames later "
                        "inside the sampling stride (n_frames // max_frames), and average (default 1 = the official "
                        "grid only; no effect on videos with fewer than 2 * max_frames frames).")
    parser.add_argument("--tta-hflip", action="store_true",
                        help="Test-time augmentation: also predict every view with mirrored frames, and average "
                        "(a mirrored view's scores of the category pairs in the model's flip_label_map.json, from "
                        "data.flip_label_map, are swapped first: left/right direction classes).")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Config overrides for every model, e.g. data.root=... data.test=...")
    args = parser.parse_intermixed_args(argv)
    accelerator = inference_accelerator(args.precision)
    from mmcls.io import expand_globs
    from mmcls.workflow.predict import TestTimeAugmentation, predict, write_prediction

    tta = TestTimeAugmentation(offsets=args.tta_offsets, hflip=args.tta_hflip)
    prediction = predict(expand_globs(args.model, "--model"), args.split, args.weights, args.overrides,
                         args.batch_size, accelerator=accelerator, logit_adjust=args.logit_adjust, tta=tta)
    if accelerator.is_main_process:
        write_prediction(prediction, args.output, args.logits)
        print(f"wrote {len(prediction.ids)} predictions -> {args.output}"
              + (f" ({prediction.video_failures} videos unreadable: predicted without their frames)"
                 if prediction.video_failures else ""))
    return 0
