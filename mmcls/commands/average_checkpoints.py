"""Average the weights of trained models of one architecture (e.g. the folds or seeds of a run) into one model.

The models must share the architecture, categories and tokenizer; the output folder keeps the first model's config.

Examples:
    python tools/average_checkpoints.py runs/seed1/best runs/seed2/best --output runs/averaged
    python tools/average_checkpoints.py runs/a/best runs/b/best runs/c/best --weights 2 1 1 --output runs/avg
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mmcls.accelerators import hub_offline


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="RUN/best folders to average (at least 2).")
    parser.add_argument("--output", "--out", required=True,
                        help="Portable model folder to write (replaced atomically).")
    parser.add_argument("--weights", nargs="+", type=float, help="Weights, one per model (default equal).")
    args = parser.parse_args(argv)
    hub_offline()
    from mmcls.engine.averaging import average_portable

    average_portable(args.models, args.output, args.weights)
    print(f"averaged {len(args.models)} models -> {args.output}")
    return 0
