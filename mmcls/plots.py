"""Pictures of a finetuning run, written into ``RUN/plots/`` (headless: matplotlib's object API, no pyplot).

- ``curves.png``: training and validation loss, learning rate, and the four F1 scores with their mean, per update.
- ``confusion_lv1.png``: the level-1 confusion matrix of the best weights on the validation split (rows = truth,
  normalised per row, counts written in the cells).
- ``f1_vs_frequency.png``: level-2 F1 per class against its number of training videos (log scale): where the rare
  classes stand, which is what macro-F1 rewards.
- ``class_distribution.png``: training videos per level-2 class, coloured by level-1 class.

Each plot is drawn from the files the run writes (metrics.csv, val_logits.npy + val_truth.csv,
best/categories.json), so ``tools/report.py`` can redraw them for any run, finished or not.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

from mmcls.logits import load_logits, predicted_classes
from mmcls.metrics import per_class_report, read_submission
from mmcls.rundir import VAL_LOGITS, VAL_TRUTH

PLOTS_DIR = "plots"
F1_COLUMNS = ("lv1_micro_f1", "lv1_macro_f1", "lv2_micro_f1", "lv2_macro_f1", "mean_f1")


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _read_metrics(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _number(text: str | None) -> float | None:
    """A cell as a finite float; None when empty, cut off mid-write (a running run) or not finite."""
    try:
        value = float(text) if text not in (None, "") else None
    except ValueError:
        return None
    return value if value is not None and np.isfinite(value) else None


def _column(rows: Sequence[dict[str, str]], key: str) -> tuple[list[float], list[float]]:
    """(steps, values) of the rows where ``key`` (and the step) has a finite value."""
    pairs = [(_number(r.get("step")), _number(r.get(key))) for r in rows]
    kept = [(step, value) for step, value in pairs if step is not None and value is not None]
    return [p[0] for p in kept], [p[1] for p in kept]


def plot_curves(metrics_csv: Path, out: Path) -> Path:
    """Loss, learning rate and F1 per update from metrics.csv."""
    rows = _read_metrics(metrics_csv)
    figure = Figure(figsize=(13, 3.8))
    loss_ax, lr_ax, f1_ax = figure.subplots(1, 3)
    for key, label in (("train_loss", "train (epoch mean so far)"), ("val_loss", "validation")):
        steps, values = _column(rows, key)
        if steps:
            loss_ax.plot(steps, values, marker="o", markersize=3, label=label)
    loss_ax.set(title="loss", xlabel="update")
    loss_ax.legend()
    steps, values = _column(rows, "lr")
    lr_ax.plot(steps, values, marker="o", markersize=3, color="tab:green")
    lr_ax.set(title="learning rate (fusion + heads)", xlabel="update")
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    for key in F1_COLUMNS:
        steps, values = _column(rows, key)
        if steps:
            f1_ax.plot(steps, values, marker="o", markersize=3, linewidth=2.5 if key == "mean_f1" else 1.2,
                       color="black" if key == "mean_f1" else None, label=key)
    steps, means = _column(rows, "mean_f1")
    if means:
        best = int(np.argmax(means))
        f1_ax.axvline(steps[best], color="grey", linestyle=":", linewidth=1)
        f1_ax.set_title(f"validation F1 (best mean {means[best]:.4f} at update {steps[best]:.0f})")
    else:
        f1_ax.set_title("validation F1")
    f1_ax.set(xlabel="update", ylim=(0, 1))
    f1_ax.legend(fontsize=8, loc="best")
    for ax in (loss_ax, lr_ax, f1_ax):
        ax.grid(alpha=0.3)
    return _save(figure, out)


def _categories(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def confusion_counts(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """``[C, C]`` counts: row = true class, column = predicted class, in the order of ``classes``."""
    index = {c: i for i, c in enumerate(classes)}
    counts = np.zeros((len(classes), len(classes)), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        counts[index[t], index[p]] += 1
    return counts


def plot_confusion_lv1(truth_lv1: Sequence[str], pred_lv1: Sequence[str], classes: Sequence[str], out: Path) -> Path:
    """Row-normalised level-1 confusion matrix with counts."""
    counts = confusion_counts(truth_lv1, pred_lv1, classes)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.55 * len(classes) + 2)
    figure = Figure(figsize=(size + 1, size))
    ax = figure.subplots()
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(len(classes)), classes, rotation=90 if len(classes) > 12 else 0)
    ax.set_yticks(range(len(classes)), classes)
    ax.set(xlabel="predicted level 1", ylabel="true level 1",
           title=f"level-1 confusion on validation ({int(counts.sum())} videos)")
    if len(classes) <= 40:
        for i in range(len(classes)):
            for j in range(len(classes)):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rates[i, j] > 0.5 else "black")
    return _save(figure, out)


def per_class_f1(truth: Sequence[str], pred: Sequence[str], classes: Sequence[str]) -> np.ndarray:
    """F1 of each class in ``classes`` (0 where it is neither true nor predicted anywhere)."""
    f1 = {row["id"]: row["f1"] for row in per_class_report(truth, pred)}
    return np.array([f1.get(c, 0.0) for c in classes])


def plot_f1_vs_frequency(f1: np.ndarray, counts: Sequence[int], classes: Sequence[str], lv1_of: dict[str, str],
                         out: Path, present: Sequence[bool] | None = None) -> Path:
    """Level-2 F1 per class against its training count, one colour per level-1 class; the title's macro-F1 averages
    the ``present`` classes (in the truth or the prediction, as the competition's score does)."""
    figure = Figure(figsize=(7.5, 4.8))
    ax = figure.subplots()
    parents = sorted(set(lv1_of[c] for c in classes))
    colours = {p: f"C{i % 10}" for i, p in enumerate(parents)}
    x = np.maximum(np.asarray(counts, dtype=float), 0.8)  # unseen classes sit at the left edge of the log axis
    for parent in parents:
        mask = np.array([lv1_of[c] == parent for c in classes])
        ax.scatter(x[mask], f1[mask], s=28, color=colours[parent], label=parent, alpha=0.85)
    if len(classes) <= 40:
        for xi, yi, name in zip(x, f1, classes, strict=True):
            ax.annotate(name, (xi, yi), fontsize=6, xytext=(3, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    macro = float(np.mean(f1[np.asarray(present, dtype=bool)])) if present is not None else float(np.mean(f1))
    ax.set(xlabel="training videos of the class (log)", ylabel="level-2 F1 on validation", ylim=(-0.03, 1.03),
           title=f"per-class F1 against frequency (macro-F1 {macro:.3f})")
    ax.grid(alpha=0.3)
    if len(parents) <= 20:
        ax.legend(title="level 1", fontsize=7, ncol=2 if len(parents) > 8 else 1, loc="lower right")
    return _save(figure, out)


def plot_class_distribution(counts: dict[str, int], lv1_of: dict[str, str], out: Path) -> Path:
    """Training videos per level-2 class, sorted by count, coloured by level-1 class."""
    classes = sorted(counts, key=lambda c: (-counts[c], c))
    parents = sorted(set(lv1_of[c] for c in classes))
    colours = {p: f"C{i % 10}" for i, p in enumerate(parents)}
    figure = Figure(figsize=(min(max(6.0, 0.22 * len(classes) + 2), 60.0), 4))  # capped: thousands of classes
    ax = figure.subplots()
    ax.bar(range(len(classes)), [counts[c] for c in classes], color=[colours[lv1_of[c]] for c in classes])
    if len(classes) <= 60:
        ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set(xlabel="level-2 class (sorted by count; colour = level 1)", ylabel="training videos",
           title=f"class distribution: {sum(counts.values())} training videos, {len(classes)} classes, "
           f"max/min {max(counts.values())}/{max(1, min(counts.values()))}")
    ax.grid(axis="y", alpha=0.3)
    return _save(figure, out)


def validation_predictions(run: Path) -> tuple[dict, list[str], list[str]] | None:
    """(categories.json, true level-2 ids, predicted level-2 ids) of the labelled validation videos, from the best
    weights' logits; None when the run has not written them."""
    categories_json = run / "best" / "categories.json"
    if not ((run / VAL_LOGITS).is_file() and (run / VAL_TRUTH).is_file() and categories_json.is_file()):
        return None
    categories = _categories(categories_json)
    bundle = load_logits(run / VAL_LOGITS)
    truth = read_submission(run / VAL_TRUTH, known_categories=categories["lv2_ids"])
    predicted = dict(zip(bundle.ids, predicted_classes(bundle.logits, bundle.classes), strict=True))
    ids = [vid for vid in bundle.ids if vid in truth]
    return categories, [truth[v] for v in ids], [predicted[v] for v in ids]


def write_run_plots(run_dir: str | Path) -> list[Path]:
    """Every plot the run's files allow, into ``run_dir/plots``; returns the written paths."""
    run = Path(run_dir)
    out = run / PLOTS_DIR
    written: list[Path] = []
    if (run / "metrics.csv").is_file() and _read_metrics(run / "metrics.csv"):
        written.append(plot_curves(run / "metrics.csv", out / "curves.png"))
    categories_json = run / "best" / "categories.json"
    if not categories_json.is_file():
        return written
    categories = _categories(categories_json)
    lv1_of, classes = categories["lv1_of"], categories["lv2_ids"]
    counts = {c: int(categories.get("counts", {}).get(c, 0)) for c in classes}
    written.append(plot_class_distribution(counts, lv1_of, out / "class_distribution.png"))
    validation = validation_predictions(run)
    if validation is not None:
        _, truth_lv2, pred_lv2 = validation
        written.append(plot_confusion_lv1([lv1_of[c] for c in truth_lv2], [lv1_of[c] for c in pred_lv2],
                                          categories["lv1_ids"], out / "confusion_lv1.png"))
        f1 = per_class_f1(truth_lv2, pred_lv2, classes)
        seen = set(truth_lv2) | set(pred_lv2)
        written.append(plot_f1_vs_frequency(f1, [counts[c] for c in classes], classes, lv1_of,
                                            out / "f1_vs_frequency.png", [c in seen for c in classes]))
    return written
