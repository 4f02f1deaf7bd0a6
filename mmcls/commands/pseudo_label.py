"""Pseudo-label unlabelled videos: keep the confident predictions of a model or ensemble and write them as an
annotation file (hard labels, or soft ones with --soft) to train on with data.pseudo=....

Examples:
    python tools/predict.py --model 'runs/kfold/fold*/best' --split unlabeled \\
        --logits runs/kfold/unlabeled_logits.npy --output runs/kfold/unlabeled.csv
    python tools/pseudo_label.py --logits runs/kfold/unlabeled_logits.npy \\
        --annotations data/synthetic/annotations/unlabeled.json --threshold 0.8 --top-k-per-class 40 --soft \\
        --out data/synthetic/annotations/pseudo.json
    python finetune/train.py --config configs/demo.yaml data.pseudo=annotations/pseudo.json output_dir=runs/pseudo

The annotation file must hold the videos the logits are for (their text is copied); every logits id must be in it.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logits", required=True, help="Logits bundle of the unlabelled videos (predict --logits).")
    parser.add_argument("--annotations", required=True, help="Annotation file of those videos (text is copied).")
    parser.add_argument("--out", required=True, help="Pseudo-labelled annotation file to write (.json or .jsonl).")
    parser.add_argument("--threshold", type=float, help="Keep videos whose top probability is at least this.")
    parser.add_argument("--top-k-per-class", type=int, help="Keep at most this many videos per predicted class, "
                        "the most confident first.")
    parser.add_argument("--soft", action="store_true", help="Also write category_probs (soft labels).")
    parser.add_argument("--temperature", type=float, default=1.0, help="Softmax temperature (default 1).")
    parser.add_argument("--truth", help="Optional labels of these videos (CSV or annotation file): prints the "
                        "accuracy of the kept pseudo-labels.")
    args = parser.parse_args(argv)
    from mmcls.data.records import frame_folder_name, load_records, save_records
    from mmcls.errors import UserError
    from mmcls.logits import load_logits
    from mmcls.workflow.ensemble import read_labels
    from mmcls.workflow.pseudo import pseudo_records, select_confident

    bundle = load_logits(args.logits)
    by_id = {r.id: r for r in load_records(args.annotations, labelled=False)}
    missing = [i for i in bundle.ids if i not in by_id]
    if missing:
        raise UserError(f"{args.annotations}: {len(missing)} ids of {args.logits} are not in it (first: "
                        f"{missing[0]!r})")
    if not 0 < args.temperature < float("inf"):  # also NaN
        raise UserError(f"--temperature: must be a finite number > 0, got {args.temperature}")
    probs = bundle.probabilities(args.temperature)
    keep = select_confident(probs, args.threshold, args.top_k_per_class)
    if keep.size == 0:
        raise UserError("no video passes the filter; lower --threshold")
    records = pseudo_records([by_id[i] for i in bundle.ids], probs, bundle.classes, keep, soft=args.soft)
    save_records(records, args.out)
    per_class = Counter(r.category_id for r in records)
    print(f"kept {len(records)} of {len(bundle.ids)} videos ({len(per_class)} of {len(bundle.classes)} classes; "
          f"mean confidence {probs[keep].max(axis=1).mean():.3f}) -> {args.out}")
    print(f"train on them with: data.pseudo={args.out} data.pseudo_frames={frame_folder_name(args.annotations)}")
    if args.truth:
        labels = read_labels(args.truth)
        scored = [r for r in records if r.id in labels]
        correct = sum(labels[r.id] == r.category_id for r in scored)
        print(f"pseudo-label accuracy {correct / max(1, len(scored)):.4f} on {len(scored)} videos with a known label")
    return 0
