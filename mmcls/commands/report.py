"""Render a finetuning run into one HTML page: best scores, plots, per-class F1, metrics and config.

Redraws RUN/plots/*.png (training curves, level-1 confusion matrix, per-class F1 against frequency, class
distribution) from the run's files and writes RUN/report.html with the images inlined, so the page can be mailed
or opened anywhere. Works on a running run too (whatever metrics.csv holds so far).

Example:
    python tools/report.py runs/demo            # -> runs/demo/report.html
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", nargs="+", help="Run directories (output_dir of finetune/train.py).")
    args = parser.parse_args(argv)
    from mmcls.report import build_report

    for run in args.run:
        print(f"wrote {build_report(run)}")
    return 0
