"""The teacher-to-student stage behind ``tools/student.py`` (its docstring lists the stages).

Every stage runs a command in its own process, as a user would (kfold, pseudo_label, finetune, export), with its
output in ``OUT/<stage>.log``; a finished training (``result.json``) or export (``export.json``) is not run again.
The measurements (test mean-F1, end-to-end videos/s against the budget) are made in this process, every time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from safetensors import safe_open

from mmcls.cli import child_env, command_argv
from mmcls.config import load_config
from mmcls.data.splits import data_path, frame_folder_name
from mmcls.deploy.spec import ExportSpec, is_export_folder
from mmcls.errors import ArgumentError, UserError
from mmcls.io import atomic_write_text
from mmcls.metrics import mean_f1_from_ids, read_submission
from mmcls.model_folder import MODEL_FILE
from mmcls.workflow.predict import predict
from mmcls.workflow.steps import finished, run_step

TEACHER_FILES = ("oof_logits.npy", "test_logits.npy", "unlabeled_logits.npy")


@dataclass
class StudentPlan:
    """What :func:`run_student` does (the command's arguments)."""

    config: Path
    student: Path
    budget: float
    out: Path
    teacher: Path | None = None
    k: int = 5
    alpha: float = 0.5
    threshold: float = 0.0
    truth: Path | None = None
    export_precision: str = "fp32"
    precision: str = "auto"
    overrides: list[str] = field(default_factory=list)


@dataclass
class Row:
    """One line of the result table."""

    model: str
    folders: list[str]
    mean_f1: float | None
    videos_per_s: float
    passes: bool
    parameters: int
    frames: int


def _command(name: str, *args: str) -> list[str]:
    return [sys.executable, *command_argv(name, *args)]


def count_parameters(folders: list[Path]) -> int:
    """Tensor elements in the model folders' weights (an export folder counts its source's)."""
    total = 0
    for folder in folders:
        if is_export_folder(folder):
            folder = Path(ExportSpec.load(folder).source)
        with safe_open(str(folder / MODEL_FILE), "pt") as weights:
            for key in weights.keys():  # noqa: SIM118 - safe_open has keys(), not iteration
                shape = weights.get_slice(key).get_shape()
                count = 1
                for size in shape:
                    count *= size
                total += count
    return total


def teacher_folder(plan: StudentPlan) -> Path:
    """The teacher's kfold folder, trained here (``OUT/teacher``) unless ``plan.teacher`` already holds it."""
    if plan.teacher is not None:
        missing = [name for name in TEACHER_FILES if not (plan.teacher / name).is_file()]
        if missing:
            raise UserError(f"--teacher {plan.teacher}: missing {', '.join(missing)}; it must be a tools/kfold.py "
                            "folder run with --predict test --predict unlabeled")
        return plan.teacher
    teacher = plan.out / "teacher"
    run_step(_command("kfold", "--config", str(plan.config), "--k", str(plan.k), "--out", str(teacher),
                      "--predict", "test", "--predict", "unlabeled", *plan.overrides), plan.out / "teacher.log")
    return teacher


def soft_labels(plan: StudentPlan, teacher: Path) -> tuple[list[Path], list[str]]:
    """The teacher ensemble's soft labels of the unlabelled and the test videos (files, their frame folders)."""
    data = load_config(plan.config, plan.overrides).data
    files, folders = [], []
    for split in ("unlabeled", "test"):
        annotations = data_path(data, getattr(data, split))
        out = plan.out / f"soft_{split}.json"
        run_step(_command("pseudo_label", "--logits", str(teacher / f"{split}_logits.npy"), "--annotations",
                          str(annotations), "--soft", "--threshold", str(plan.threshold), "--out", str(out)),
                 plan.out / f"soft_{split}.log")
        files.append(out)
        folders.append(frame_folder_name(annotations))
    return files, folders


def train_and_export(plan: StudentPlan, name: str, extra: list[str]) -> Path:
    """Finetune the student config (unless finished) and export it; returns the export folder."""
    run = plan.out / name
    if not finished(run):
        run_step(_command("finetune", "--config", str(plan.config), "--config", str(plan.student),
                          f"output_dir={run}", *plan.overrides, *extra), plan.out / f"{name}.log")
    export = run / "onnx"
    if not is_export_folder(export):
        run_step(_command("export", "--model", str(run / "best"), "--out", str(export), "--precision",
                          plan.export_precision, *plan.overrides), plan.out / f"{name}.export.log")
    return export


def speed_check(plan: StudentPlan, models: list[Path], log: Path) -> tuple[float, str]:
    """``tools/speed_check.py`` on ``models`` in a process of its own (each measurement starts from the same
    state: no loader, thread pool or session of an earlier one is around): videos/s and the engines it ran."""
    figures = log.with_suffix(".json")
    command = _command("speed_check", *[a for m in models for a in ("--model", str(m))], "--budget",
                       str(plan.budget), "--precision", plan.precision, "--json", str(figures), *plan.overrides)
    with log.open("w", encoding="utf-8") as handle:
        code = subprocess.run(command, env=child_env(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1"), stdout=handle,
                              stderr=subprocess.STDOUT, check=False).returncode
    if code not in (0, 1) or not figures.is_file():  # 1: below the budget, still measured
        raise UserError(f"the speed check of {models[0]} failed (exit code {code}); see {log}")
    speed = json.loads(figures.read_text(encoding="utf-8"))
    return speed["videos_per_s"], ", ".join(speed["engines"])


def _score(models: list[Path], truth: Path | None, overrides: list[str], precision: str) -> float | None:
    if truth is None:
        return None
    result = predict(models, "test", overrides=overrides, mixed_precision=precision)
    expected = read_submission(truth)
    predicted = dict(zip(result.ids, result.category_ids, strict=True))
    ids = [i for i in expected if i in predicted]
    if len(ids) != len(expected):
        raise UserError(f"{truth}: {len(expected) - len(ids)} of its ids are not in data.test")
    return mean_f1_from_ids([expected[i] for i in ids], [predicted[i] for i in ids])["mean_f1"]


def run_student(plan: StudentPlan) -> str:
    """Run every stage and measure; writes ``OUT/student.json`` and ``OUT/student.md``; returns the table."""
    if not plan.budget > 0:
        raise ArgumentError("budget", f"must be a positive number of videos per second, got {plan.budget}")
    # absolute paths: the stages' config keys (data.pseudo, train.distill.teacher) are read relative to data.root
    plan = replace(plan, out=plan.out.resolve(), teacher=plan.teacher.resolve() if plan.teacher else None)
    plan.out.mkdir(parents=True, exist_ok=True)
    teacher = teacher_folder(plan)
    files, folders = soft_labels(plan, teacher)
    distill = [f"data.pseudo=[{','.join(map(str, files))}]", f"data.pseudo_frames=[{','.join(folders)}]",
               f"train.distill.teacher={teacher / 'oof_logits.npy'}", f"train.distill.alpha={plan.alpha}"]
    students = {"student, distilled": train_and_export(plan, "student", distill),
                "student, labels only": train_and_export(plan, "student_plain", [])}
    folds = sorted(teacher.glob("fold*/best"))
    rows = []
    entries = [(f"teacher: {len(folds)}-fold ensemble", folds), ("teacher: its first fold alone", folds[:1]),
               *[(k, [v]) for k, v in students.items()]]
    for index, (what, models) in enumerate(entries):
        speed, engines = speed_check(plan, models, plan.out / f"speed{index}.log")
        cfg = load_config(models[0] / "config.yaml")
        rows.append(Row(f"{what} ({engines})", [str(m) for m in models],
                        _score(models, plan.truth, plan.overrides, plan.precision), speed, speed >= plan.budget,
                        count_parameters(models), cfg.data.max_frames))
    table = markdown(rows, plan.budget)
    atomic_write_text(plan.out / "student.json", json.dumps([asdict(r) for r in rows], indent=1) + "\n")
    atomic_write_text(plan.out / "student.md", table)
    return table


def markdown(rows: list[Row], budget: float) -> str:
    lines = [f"| model | test mean-F1 | videos/s, end to end | >= {budget:g} videos/s | parameters | frames |",
             "|---|---:|---:|---|---:|---:|"]
    for r in rows:
        score = f"{r.mean_f1:.4f}" if r.mean_f1 is not None else "-"
        lines.append(f"| {r.model} | {score} | {r.videos_per_s:,} | {'pass' if r.passes else 'fail'} | "
                     f"{r.parameters / 1e6:.2f} M | {r.frames} |")
    return "\n".join(lines) + "\n"
