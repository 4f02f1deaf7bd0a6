"""Does the model use time? Its predictions with the frames reversed, shuffled, cut to one frame, flipped.

For every perturbation: the share of videos whose prediction changes against the unperturbed one, and the mean-F1
when the split has labels (data.val, the run's validation hold-out, or --truth for a test split); then the classes
whose predictions change most under reversal (direction classes should; others should not), and with a reverse
map (or the model's flip map) how often the direction is right and who changes under reversal. An order-blind model
changes nothing under reverse and shuffle. Writes the numbers as JSON (default RUN/temporal.json beside RUN/best,
which tools/report.py then shows in RUN/report.html) and prints a table.

Examples:
    python tools/time_diagnostic.py --model runs/demo/best          # validation split -> runs/demo/temporal.json
    python tools/time_diagnostic.py --model runs/demo/best --split test \\
        --truth data/synthetic/annotations/test_truth.csv --reverse-map data/synthetic/reverse_label_map.json \\
        --out runs/demo/temporal_test.json
    python tools/time_diagnostic.py --model runs/demo/best --perturbations reverse shuffle data.root=/data/wbdc
    python -m mmcls time_diagnostic --model runs/demo/best                   # installed, from any folder
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mmcls.cli import add_precision_argument
from mmcls.data.splits import ANNOTATION_KEYS

PERTURBATIONS = ("reverse", "shuffle", "first_frame", "middle_frame", "hflip")  # mmcls.workflow.temporal's


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="A trained model folder (RUN/best).")
    parser.add_argument("--split", default="val", choices=ANNOTATION_KEYS,
                        help="Which annotation file of the config to diagnose (default val: data.val, or without "
                        "one the run's own validation hold-out of data.train).")
    parser.add_argument("--truth", help="An id,category_id CSV with the split's labels (for a split whose "
                        "annotations have none, e.g. annotations/test_truth.csv): adds the mean-F1 columns.")
    parser.add_argument("--reverse-map", help="A JSON object {category_id: category_id or null} of every class that "
                        "plays backwards as another (null: no such class), for the direction figures (the synthetic "
                        "dataset writes reverse_label_map.json); default: the model's flip map, if any.")
    parser.add_argument("--out", "--output", dest="out",
                        help="JSON to write (default RUN/temporal.json, beside the model folder RUN/best).")
    parser.add_argument("--perturbations", nargs="+", default=list(PERTURBATIONS), choices=PERTURBATIONS,
                        metavar="NAME", help=f"Which perturbations (default all: {' '.join(PERTURBATIONS)}).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the shuffled frame orders (default 0).")
    parser.add_argument("--top", type=int, default=10, help="Classes to print (default 10; 0: none; the JSON has all).")
    parser.add_argument("--batch-size", type=int, help="Videos per batch (default train.eval_batch_size).")
    add_precision_argument(parser)
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value",
                        help="Config overrides, e.g. data.root=... data.test=...")
    args = parser.parse_intermixed_args(argv)
    from mmcls.accelerators import inference_accelerator
    from mmcls.workflow.temporal import default_output, format_report, temporal_diagnostic, write_report

    accelerator = inference_accelerator(args.precision)
    report = temporal_diagnostic(args.model, args.split, args.overrides, args.batch_size, args.perturbations,
                                 args.seed, args.truth, accelerator=accelerator, reverse_map=args.reverse_map)
    if accelerator.is_main_process:
        out = args.out or default_output(args.model)
        write_report(report, out)
        print(format_report(report, args.top))
        print(f"wrote {out}")
    return 0
