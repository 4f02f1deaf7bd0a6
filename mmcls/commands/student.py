"""Teacher to student: a fold ensemble's soft labels teach a smaller model that meets a speed budget.

Stages, each through the commands a user runs (resumable: rerun the same command after a kill; finished trainings
are skipped, the speeds are measured again every time):

  1. teacher     tools/kfold.py with --config, predicting test and unlabeled (skipped when --teacher holds them)
  2. soft labels tools/pseudo_label.py --soft on the teacher ensemble's logits of the unlabelled and the test videos
  3. student     finetuning of --config + --student (fewer frames, a smaller tower, shorter text ...) on the
                 labelled videos plus both soft-labelled sets (data.pseudo), distilled from the teacher's
                 out-of-fold logits on the labelled ones (train.distill)
  4. plain       the same student config on the labelled videos alone (what distillation is worth)
  5. export      both students as ONNX graphs (tools/export.py)
  6. measure     test mean-F1 (with --truth) and end-to-end videos/s of the teacher ensemble and of one of its
                 folds (torch), and of both exported students (ONNX Runtime), each against --budget

Example:
    python tools/student.py --config configs/demo.yaml --student configs/student_demo.yaml --budget 300 \\
        --out runs/student --truth data/synthetic/annotations/test_truth.csv data.root=data/synthetic

Results: OUT/student.json and OUT/student.md (the table of docs/WORKFLOW.md "Teacher to student").
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from mmcls.cli import add_precision_argument, flags


@flags(budget="--budget")
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="Config of the teacher's folds (and base of the student's).")
    parser.add_argument("--student", required=True, help="Config layered over --config for the student.")
    parser.add_argument("--budget", type=float, required=True, metavar="VIDEOS_PER_S",
                        help="The speed the submission must reach, end to end on this machine.")
    parser.add_argument("--out", required=True, help="Folder of every stage and the results.")
    parser.add_argument("--teacher", help="An existing tools/kfold.py folder that predicted test and unlabeled "
                        "(default: OUT/teacher, trained here).")
    parser.add_argument("--k", type=int, default=5, help="Folds of the teacher when trained here (default 5).")
    parser.add_argument("--alpha", type=float, default=0.5,
                        help="train.distill.alpha of the student: weight of the hard labels (default 0.5).")
    parser.add_argument("--threshold", type=float, default=0.0,
                        help="Soft labels only for videos whose top teacher probability reaches this (default 0: "
                        "every unlabelled and test video).")
    parser.add_argument("--truth", help="Test truth CSV (id,category_id) to score every model (synthetic data).")
    parser.add_argument("--export-precision", default="fp32", choices=["fp32", "fp16", "int8"],
                        help="Precision of the students' export (default fp32).")
    add_precision_argument(parser)
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="Overrides for every stage.")
    args = parser.parse_intermixed_args(argv)
    from mmcls.workflow.student import StudentPlan, run_student

    plan = StudentPlan(config=Path(args.config), student=Path(args.student), budget=args.budget, out=Path(args.out),
                       teacher=Path(args.teacher) if args.teacher else None, k=args.k, alpha=args.alpha,
                       threshold=args.threshold, truth=Path(args.truth) if args.truth else None,
                       export_precision=args.export_precision, precision=args.precision,
                       overrides=list(args.overrides))
    table = run_student(plan)
    print(table)
    return 0
