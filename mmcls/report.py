"""``RUN/report.html``: one self-contained page (images inlined) with a run's result, plots, per-class scores,
metrics and config, for a finished or a running finetuning run."""

from __future__ import annotations

import base64
import csv
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from mmcls.errors import UserError
from mmcls.io import atomic_write_text
from mmcls.metrics import METRIC_KEYS, per_class_report
from mmcls.plots import validation_predictions, write_run_plots
from mmcls.rundir import RESULT_FILE, TEMPORAL_FILE

REPORT_FILE = "report.html"
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:.5em 0 1.5em}th,td{border:1px solid #ccc;padding:3px 8px}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}img{max-width:100%;margin:.5em 0}
pre{background:#f7f7f7;padding:1em;overflow:auto;font-size:12px}.muted{color:#777}"""


def _table(rows: Sequence[Mapping[str, object]], columns: Sequence[str]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f'<td class="n">{value:.4f}</td>'
        text = html.escape("" if value is None else str(value))
        numeric = text.replace(".", "", 1).replace("-", "", 1).replace("e", "", 1).isdigit()
        return f'<td class="n">{text}</td>' if numeric else f"<td>{text}</td>"

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def per_class_rows(run: Path) -> list[dict]:
    """Level-2 per-class scores of the best weights on the validation split (empty without the files)."""
    validation = validation_predictions(run)
    if validation is None:
        return []
    categories, truth, pred = validation
    counts = categories.get("counts", {})
    return [{**row, "train_videos": counts.get(row["id"], 0)}
            for row in per_class_report(truth, pred, categories["lv1_of"])]


def temporal_section(run: Path, top: int = 15) -> list[str]:
    """The HTML of ``RUN/temporal.json`` (tools/time_diagnostic.py): the change share and mean-F1 per perturbation
    and the classes that change most; nothing when the file is not there, one line when it cannot be read."""
    from mmcls.workflow.temporal import format_direction

    path = run / TEMPORAL_FILE
    if not path.is_file():
        return []
    head = "<h2>Does the model use time? (temporal diagnostic)</h2>"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        rows, classes = list(data["rows"]), list(data.get("classes", []))
        base = rows[0].get("mean_f1")
        table = [{"perturbation": row["name"],
                  "changed": None if row["name"] == "original" else f"{row['changed']:.1%}",
                  "changed (2+ frames)": None if row["name"] == "original" else f"{row['changed_multi_frame']:.1%}",
                  "mean_f1": row.get("mean_f1"),
                  "delta": None if row.get("mean_f1") is None or base is None or row["name"] == "original"
                  else f"{row['mean_f1'] - base:+.4f}",
                  **({"not the swapped prediction": f"{row['changed_vs_flipped']:.1%}"}
                     if "changed_vs_flipped" in row else {})} for row in rows]
        columns = list(dict.fromkeys(key for row in table for key in row))
        names = [row["name"] for row in rows[1:]]
        class_rows = [{"class": entry["id"], "videos": entry["videos"],
                       **{name: f"{entry['changed'][name]:.1%}" for name in names if name in entry["changed"]},
                       "reversed to": entry.get("reversed_to")} for entry in classes[:top]]
        intro = (f"<p>{html.escape(str(data.get('model', '')))} on split <code>{html.escape(str(data['split']))}"
                 f"</code>: {int(data['videos'])} videos, {int(data['multi_frame_videos'])} with 2+ frames, "
                 f"{int(data['labelled'])} labelled. <i>changed</i>: the share of predictions that differ from the "
                 "unperturbed ones; an order-blind model changes none under reverse and shuffle.</p>")
        skipped = "".join(f"<p class='muted'>{html.escape(name)} skipped: {html.escape(str(why))}</p>"
                          for name, why in data.get("skipped", {}).items())
        direction = "".join(f"<p>{html.escape(line.strip())}</p>"
                            for line in format_direction(data.get("direction") or {}))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        return [head, f"<p class='muted'>{html.escape(TEMPORAL_FILE)} cannot be read: {html.escape(repr(exc))}</p>"]
    weights = run / "best" / "model.safetensors"
    if weights.is_file() and weights.stat().st_mtime > path.stat().st_mtime:
        skipped += (f"<p class='muted'>{TEMPORAL_FILE} is older than best/: rerun tools/time_diagnostic.py "
                    "--model RUN/best for the current weights.</p>")
    if data.get("flip_pairs"):
        skipped += (f"<p class='muted'>hflip is scored against the labels the model's flip map swaps "
                    f"({int(data['flip_pairs'])} category pairs).</p>")
    skipped += direction
    parts = [head, intro, _table(table, columns), skipped]
    if class_rows:
        by = html.escape(str(data.get("classes_by", "truth")))
        parts += [f"<h3>Classes (by {by}) whose predictions change most under {html.escape(names[0])}</h3>",
                  _table(class_rows, ["class", "videos", *names, "reversed to"])]
    return parts


def build_report(run_dir: str | Path) -> Path:
    """Redraw the plots and write ``RUN/report.html``; returns its path. UserError when ``run_dir`` is not a run."""
    run = Path(run_dir)
    if not (run / "metrics.csv").is_file() and not (run / "config.yaml").is_file():
        raise UserError(f"{run}: not a run directory (no metrics.csv or config.yaml)")
    plots = write_run_plots(run)
    parts = [f"<!doctype html><meta charset='utf-8'><title>mmcls run {html.escape(run.name)}</title>",
             f"<style>{STYLE}</style><h1>Run <code>{html.escape(str(run))}</code></h1>"]
    result_path = run / RESULT_FILE
    if result_path.is_file():
        result = json.loads(result_path.read_text(encoding="utf-8"))
        row = {k: result.get(k) for k in (*METRIC_KEYS, "update", "seconds", "train_videos_per_s", "skipped_updates")}
        parts += ["<h2>Best validation scores</h2>", _table([row], list(row))]
    else:
        parts.append("<p class='muted'>No result.json: the run has not finished (figures so far below).</p>")
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(_image(path) for path in plots))
    classes = per_class_rows(run)
    if classes:
        parts += ["<h2>Level-2 classes on validation (best weights)</h2>",
                  _table(classes, ["id", "lv1", "train_videos", "support", "predicted", "correct", "precision",
                                   "recall", "f1"])]
    parts += temporal_section(run)
    if (run / "metrics.csv").is_file():
        with (run / "metrics.csv").open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            metrics, columns = list(reader), list(reader.fieldnames or [])
        parts += ["<h2>metrics.csv</h2>", _table(metrics, columns)]
    if (run / "config.yaml").is_file():
        config = (run / "config.yaml").read_text(encoding="utf-8")
        parts += ["<h2>config.yaml</h2>", f"<pre>{html.escape(config)}</pre>"]
    out = run / REPORT_FILE
    atomic_write_text(out, "\n".join(parts) + "\n")
    return out
