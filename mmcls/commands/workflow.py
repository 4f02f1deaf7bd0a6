"""A whole competition on the synthetic dataset, with the test mean-F1 of every stage (docs/WORKFLOW.md).

Stages, each through the same commands a user runs (tools/kfold.py, tools/predict.py, tools/ensemble.py,
tools/pseudo_label.py, tools/evaluate.py's scoring):

  1. folds       5-fold run of the config (model A); every fold predicts test and unlabeled; fold ensemble
  2. tta         the fold ensemble of stage 1 with test-time augmentation (2 frame grids x flip)
  3. model B     a second, different 5-fold run on the same folds ([CLS] pooling, label smoothing, another seed)
  4. ensemble    A + B: equal weights, then weights (and a per-class bias) searched on their out-of-fold logits
  5. pseudo      the A + B ensemble labels the unlabelled videos; the confident ones (soft labels) are kept
  6. A + pseudo  model A retrained on labelled + pseudo-labelled videos (same folds)
  7. distill     model A retrained on pseudo-labels + self-distillation from the A + B out-of-fold ensemble
  8. final       ensemble of every round's out-of-fold logits

Example:
    python tools/workflow.py --data data/synthetic --out runs/workflow   # about 1.5 hours on 2 CPU cores
    python tools/workflow.py --data data/synthetic --out /tmp/wf --k 2 train.max_steps=3   # a smoke run

Every step is resumable: rerun the same command after a kill and finished folds are skipped. Results go to
OUT/workflow.json and OUT/workflow.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from mmcls.cli import child_env, command_argv

MODEL_B = ["model.pooling=cls", "train.loss.label_smoothing=0.1", "seed=7"]


def run(command: Sequence[str]) -> None:
    """Run one tool (this Python), echoing the command; a failure stops the workflow."""
    command = [sys.executable, *command_argv(*command)]
    print(f"\n$ {shlex.join(command)}", flush=True)
    if subprocess.run(command, check=False, env=child_env()).returncode != 0:
        from mmcls.errors import UserError

        raise UserError(f"step failed: {shlex.join(command)}")


def score_csv(pred_csv: Path, truth_csv: Path) -> float:
    """Mean-F1 of a submission against the truth CSV."""
    from mmcls.metrics import mean_f1_from_ids, read_submission

    truth = read_submission(truth_csv)
    pred = read_submission(pred_csv, expected_ids=list(truth))
    return mean_f1_from_ids([truth[i] for i in truth], [pred[i] for i in truth])["mean_f1"]


def write_unlabeled_truth(data: Path, out: Path) -> Path | None:
    """The hidden labels of the unlabelled synthetic videos (oracle.json), to measure pseudo-label accuracy."""
    oracle = data / "oracle.json"
    if not oracle.is_file():
        return None
    labels = json.loads(oracle.read_text(encoding="utf-8")).get("unlabeled", {})
    path = out / "unlabeled_truth.csv"
    path.write_text("".join(f"{i},{v['category_id']}\n" for i, v in labels.items()), encoding="utf-8")
    return path


def kfold(args: argparse.Namespace, out: Path, extra: Sequence[str], folds: Path | None = None,
          splits: Sequence[str] = ("test",)) -> Path:
    """One K-fold round of the config with ``extra`` overrides; returns its folder."""
    command = ["kfold", "--config", args.config, "--k", str(args.k), "--out", str(out),
               *[a for split in splits for a in ("--predict", split)], f"data.root={args.data}",
               *args.overrides, *extra]
    if folds is not None:
        command += ["--folds", str(folds)]
    run(command)
    return out


def round_scores(folder: Path, k: int, truth: Path) -> dict:
    """Out-of-fold, per-fold test and fold-ensemble test mean-F1 of a K-fold round."""
    summary = json.loads((folder / "kfold.json").read_text(encoding="utf-8"))
    folds = [score_csv(folder / f"fold{f}" / "test.csv", truth) for f in range(k)]
    return {"oof": summary["oof"]["mean_f1"], "fold_test": folds, "best_fold_test": max(folds),
            "test": score_csv(folder / "test.csv", truth)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/synthetic", help="Synthetic dataset root (tools/make_synthetic.py).")
    parser.add_argument("--out", default="runs/workflow", help="Folder of every round and the results.")
    parser.add_argument("--config", default="configs/demo.yaml", help="Config of model A (default the demo).")
    parser.add_argument("--k", type=int, default=5, help="Folds (default 5).")
    parser.add_argument("--threshold", type=float, default=0.7, help="Pseudo-label confidence threshold.")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value", help="Overrides for every round.")
    args = parser.parse_intermixed_args(argv)
    data, out = Path(args.data).resolve(), Path(args.out).resolve()
    args.data, args.config = str(data), str(Path(args.config).resolve())  # the tools run from the repository root
    out.mkdir(parents=True, exist_ok=True)
    truth = data / "annotations" / "test_truth.csv"
    labelled = data / "annotations" / "labeled.json"
    results: dict[str, dict] = {}

    def save() -> None:
        (out / "workflow.json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        (out / "workflow.md").write_text(markdown(results), encoding="utf-8")

    # 1-2: folds of model A, then the same fold ensemble with test-time augmentation
    a = kfold(args, out / "a", [], splits=("test", "unlabeled"))
    folds = a / "folds.csv"
    results["1 folds (model A)"] = round_scores(a, args.k, truth)
    run(["predict", "--model", str(a / "fold*" / "best"), "--output", str(a / "test_tta.csv"),
         "--tta-offsets", "2", "--tta-hflip", f"data.root={data}", *args.overrides])
    results["2 fold ensemble + TTA"] = {"test": score_csv(a / "test_tta.csv", truth)}
    save()

    # 3-4: a second model on the same folds, and the weighted ensemble of both
    b = kfold(args, out / "b", MODEL_B, folds, splits=("test", "unlabeled"))
    results["3 folds (model B)"] = round_scores(b, args.k, truth)
    ens = out / "ensemble_ab"
    common = ["ensemble", "--oof", str(a / "oof_logits.npy"), "--oof", str(b / "oof_logits.npy"),
              "--truth", str(labelled)]
    run([*common, "--test", str(a / "test_logits.npy"), "--test", str(b / "test_logits.npy"), "--no-search",
         "--output", str(ens / "test_equal.csv"), "--report", str(ens / "ensemble_equal.json")])
    fit_equal = json.loads((ens / "ensemble_equal.json").read_text(encoding="utf-8"))
    results["4a ensemble A + B (equal weights)"] = {"oof": fit_equal["score"],
                                                    "test": score_csv(ens / "test_equal.csv", truth)}
    run([*common, "--test", str(a / "test_logits.npy"), "--test", str(b / "test_logits.npy"),
         "--output", str(ens / "test.csv"), "--oof-logits", str(ens / "oof_logits.npy"),
         "--report", str(ens / "ensemble.json")])
    fit = json.loads((ens / "ensemble.json").read_text(encoding="utf-8"))
    results["4 ensemble A + B (searched weights)"] = {"oof": fit["score"], "test": score_csv(ens / "test.csv", truth),
                                                      "weights": fit["weights"]}
    run([*common, "--test", str(a / "test_logits.npy"), "--test", str(b / "test_logits.npy"), "--class-bias",
         "--output", str(ens / "test_bias.csv"), "--report", str(ens / "ensemble_bias.json")])
    fit_bias = json.loads((ens / "ensemble_bias.json").read_text(encoding="utf-8"))
    results["4b ensemble A + B + class bias"] = {"oof": fit_bias["score"],
                                                 "test": score_csv(ens / "test_bias.csv", truth)}
    save()

    # 5: pseudo-labels from the A + B ensemble on the unlabelled videos
    run([*common, "--test", str(a / "unlabeled_logits.npy"), "--test", str(b / "unlabeled_logits.npy"),
         "--weights", *[str(w) for w in fit["weights"]], "--output", str(ens / "unlabeled.csv"),
         "--logits", str(ens / "unlabeled_logits.npy")])
    pseudo = out / "pseudo.json"
    unlabeled_truth = write_unlabeled_truth(data, out)
    run(["pseudo_label", "--logits", str(ens / "unlabeled_logits.npy"), "--annotations",
         str(data / "annotations" / "unlabeled.json"), "--threshold", str(args.threshold), "--soft",
         "--out", str(pseudo), *(["--truth", str(unlabeled_truth)] if unlabeled_truth else [])])
    kept = json.loads(pseudo.read_text(encoding="utf-8"))
    note = {"kept": len(kept)}
    if unlabeled_truth:
        from mmcls.workflow.ensemble import read_labels

        labels = read_labels(unlabeled_truth)
        note["accuracy"] = sum(labels[r["id"]] == r["category_id"] for r in kept) / max(1, len(kept))
    results["5 pseudo-labels"] = note

    # 6-7: model A again with the pseudo-labels, then also distilled from the A + B out-of-fold ensemble
    c = kfold(args, out / "a_pseudo", [f"data.pseudo={pseudo}"], folds)
    results["6 folds (model A + pseudo-labels)"] = round_scores(c, args.k, truth)
    d = kfold(args, out / "a_pseudo_distill", [f"data.pseudo={pseudo}",
                                               f"train.distill.teacher={ens / 'oof_logits.npy'}",
                                               "train.distill.alpha=0.5"], folds)
    results["7 folds (model A + pseudo-labels + self-distillation)"] = round_scores(d, args.k, truth)
    save()

    # 8: every round in one ensemble
    rounds = [a, b, c, d]
    final = out / "ensemble_all"
    run(["ensemble", *[x for r in rounds for x in ("--oof", str(r / "oof_logits.npy"))],
         *[x for r in rounds for x in ("--test", str(r / "test_logits.npy"))], "--truth", str(labelled),
         "--output", str(final / "test.csv"), "--report", str(final / "ensemble.json")])
    fit_all = json.loads((final / "ensemble.json").read_text(encoding="utf-8"))
    results["8 ensemble of all rounds"] = {"oof": fit_all["score"], "test": score_csv(final / "test.csv", truth),
                                           "weights": fit_all["weights"]}
    save()
    print(markdown(results))
    return 0


def markdown(results: dict[str, dict]) -> str:
    """The results as a markdown table (test mean-F1, out-of-fold mean-F1, notes)."""
    lines = ["| stage | test mean-F1 | out-of-fold mean-F1 | notes |", "|---|---:|---:|---|"]
    for stage, r in results.items():
        notes = []
        if "best_fold_test" in r:
            notes.append(f"single folds {min(r['fold_test']):.4f}-{r['best_fold_test']:.4f}")
        if "weights" in r:
            notes.append("weights " + ", ".join(f"{w:.2f}" for w in r["weights"]))
        if "kept" in r:
            notes.append(f"{r['kept']} videos kept" + (f", {r['accuracy']:.1%} correct" if "accuracy" in r else ""))
        test = f"{r['test']:.4f}" if "test" in r else ""
        oof = f"{r['oof']:.4f}" if "oof" in r else ""
        lines.append(f"| {stage} | {test} | {oof} | {'; '.join(notes)} |")
    return "\n".join(lines) + "\n"
