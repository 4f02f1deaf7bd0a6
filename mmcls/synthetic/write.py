"""Writing the synthetic dataset in the WBDC layout: annotations, zips, mp4s, faults, oracle and spec files."""

from __future__ import annotations

import io
import json
import multiprocessing
import os
import shutil
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from mmcls.errors import UserError
from mmcls.io import atomic_write_text
from mmcls.synthetic.plan import (
    FAULT_SOURCES,
    FAULTS_FILE,
    FLIP_MAP_FILE,
    ORACLE_FILE,
    REVERSE_MAP_FILE,
    SPEC_FILE,
    ZIP_DATE,
    ClassInfo,
    SamplePlan,
    SyntheticSpec,
    class_table,
    flip_label_map,
    plan_dataset,
    reverse_label_map,
)
from mmcls.synthetic.render import render_frames
from mmcls.synthetic.text import make_record


def zip_path(root: str | Path, split: str, video_id: str) -> Path:
    """``<root>/zip_frames/<split>/<id[-3:]>/<id>.zip``."""
    return Path(root) / "zip_frames" / split / video_id[-3:] / f"{video_id}.zip"


def mp4_path(root: str | Path, split: str, video_id: str) -> Path:
    """``<root>/videos/<split>/<id>.mp4``."""
    return Path(root) / "videos" / split / f"{video_id}.mp4"


def _zip_bytes(members: Sequence[tuple[str, bytes]]) -> bytes:
    """A stored (uncompressed) zip with fixed timestamps, so equal members give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _jpeg_bytes(frame: np.ndarray, quality: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _frames_zip(frames: np.ndarray, quality: int) -> bytes:
    return _zip_bytes([(f"{i:04d}.jpg", _jpeg_bytes(frame, quality)) for i, frame in enumerate(frames)])


@lru_cache(maxsize=1)
def mp4_codec() -> str:
    """The encoder used for mp4 files: H.264 (libx264) when PyAV has it, else MPEG-4 part 2."""
    import av

    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # any failure means "not available"
            continue
    raise UserError("PyAV has neither a libx264 nor an mpeg4 encoder; write no mp4 files (write_mp4=false, --no-mp4 "
                    "of make_synthetic)")


def write_mp4(path: str | Path, frames: np.ndarray, fps: int) -> None:
    """Encode RGB frames ``[T, H, W, 3]`` (H, W even) into an mp4 with PyAV, one frame per input frame."""
    import av

    codec = mp4_codec()
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = int(frames.shape[2]), int(frames.shape[1])
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.options = {"preset": "veryfast", "crf": "18"}
        else:
            stream.codec_context.bit_rate = 2_000_000
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _write_zip_file(path: Path, frames: np.ndarray, quality: int, fault: str | None) -> None:
    """Write a frames zip, or its faulty stand-in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fault == "empty_zip":
        data = b""
    elif fault == "no_members_zip":
        data = _zip_bytes([])
    elif fault == "not_jpeg_zip":
        data = _zip_bytes([(f"{i:04d}.jpg", f"frame {i}: this is not a JPEG\n".encode()) for i in range(len(frames))])
    else:
        data = _frames_zip(frames, quality)
        if fault == "truncated_zip":
            data = data[: len(data) // 2]
    path.write_bytes(data)


def _write_mp4_file(path: Path, frames: np.ndarray, fps: int, fault: str | None) -> None:
    """Write an mp4, or its faulty stand-in."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fault == "empty_mp4":
        path.write_bytes(b"")
        return
    write_mp4(path, frames, fps)
    if fault == "truncated_mp4":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def write_video(root: str | Path, spec: SyntheticSpec, plan: SamplePlan) -> int:
    """Render one sample and write its zip and/or mp4 (or their faulty stand-ins); return bytes written."""
    breaks = FAULT_SOURCES.get(plan.fault or "", frozenset())
    if plan.fault == "missing_video" or not (spec.write_zip or spec.write_mp4):
        return 0
    frames = render_frames(spec, plan)
    written = 0
    if spec.write_zip:
        path = zip_path(root, plan.split, plan.id)
        _write_zip_file(path, frames, spec.jpeg_quality, plan.fault if "zip" in breaks else None)
        written += path.stat().st_size
    if spec.write_mp4:
        path = mp4_path(root, plan.split, plan.id)
        _write_mp4_file(path, frames, spec.fps, plan.fault if "mp4" in breaks else None)
        written += path.stat().st_size
    return written


def _write_video_job(job: tuple[str, dict[str, Any], SamplePlan]) -> int:
    """Pool entry point (top-level so it pickles)."""
    root, spec_dict, plan = job
    return write_video(root, SyntheticSpec(**spec_dict), plan)


def _worker_count(spec: SyntheticSpec, jobs: int) -> int:
    if spec.workers:
        return min(spec.workers, max(jobs, 1))
    return max(1, min(os.cpu_count() or 1, 8, jobs // 50 or 1))


def _run_jobs(root: Path, spec: SyntheticSpec, plans: list[SamplePlan], progress: bool) -> int:
    """Write all videos (in worker processes when useful) with an optional progress bar; return total bytes."""
    from tqdm.auto import tqdm

    spec_dict = asdict(spec)
    jobs = [(str(root), spec_dict, plan) for plan in plans]
    workers = _worker_count(spec, len(jobs))
    with tqdm(total=len(jobs), desc="videos", unit="video", disable=not progress) as bar:
        if workers == 1:
            results: Iterator[int] = map(_write_video_job, jobs)
            return sum(_tick(bar, r) for r in results)
        with multiprocessing.get_context().Pool(workers) as pool:
            results = pool.imap_unordered(_write_video_job, jobs, chunksize=8)
            return sum(_tick(bar, r) for r in results)


def _tick(bar: Any, value: int) -> int:
    bar.update(1)
    return value


def _json_list(records: Sequence[dict[str, Any]]) -> str:
    """A JSON list with one record per line (valid JSON, easy to diff)."""
    return "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]\n"


def _prepare_out_dir(root: Path) -> None:
    """Create ``root``; clear a previous synthetic dataset there; refuse to write into any other non-empty folder."""
    if root.exists() and not root.is_dir():
        raise UserError(f"{root}: exists and is not a directory")
    if root.is_dir() and any(root.iterdir()):
        if not (root / SPEC_FILE).is_file():
            raise UserError(f"{root}: folder is not empty and holds no synthetic dataset ({SPEC_FILE}); "
                            "choose another output folder")
        for name in ("annotations", "zip_frames", "videos"):
            shutil.rmtree(root / name, ignore_errors=True)
        for name in (SPEC_FILE, FAULTS_FILE, ORACLE_FILE, FLIP_MAP_FILE, REVERSE_MAP_FILE, "category_ids.txt",
                     "README.txt"):
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def _readme(spec: SyntheticSpec, table: list[ClassInfo], faults: dict[str, dict[str, str]],
            flips: dict[str, str]) -> str:
    """The text of ``README.txt``."""
    lines = [
        "mmcls synthetic short-video dataset (WBDC 2022 layout)",
        "",
        "Generated by mmcls.synthetic.make_synthetic / tools/make_synthetic.py.",
        f"seed={spec.seed} sizes: labeled={spec.num_labeled} unlabeled={spec.num_unlabeled} test={spec.num_test}",
        f"frames: {spec.min_frames}..{spec.max_frames} per video, {spec.size}x{spec.size} px, JPEG quality "
        f"{spec.jpeg_quality}; zip={spec.write_zip} mp4={spec.write_mp4} ({mp4_codec() if spec.write_mp4 else '-'})",
        "",
        f"{len(table)} level-2 classes = (text concept, video concept) pairs: each text concept is seen with "
        f"{spec.video_concepts_per_text} of {spec.num_video_concepts} motions;",
        "level-1 = first two digits = (text + motion) mod #text concepts, so neither modality alone determines",
        "either level.",
        "Text concepts are Chinese/English keyword sets that appear in title/asr/ocr only with some probability.",
        "Video concepts rise/fall, grow/shrink and left_to_right/right_to_left are time reversals of each other:",
        "frame order matters.",
        "The horizontal slide (a cross moving left_to_right or right_to_left) is one motion with two classes per text",
        "concept, one per direction, in the same level-1 group. They are mirror images too: a horizontally flipped",
        "left_to_right video is a right_to_left one, so a flip must swap those labels. The pairs are in",
        f"{FLIP_MAP_FILE} ({{\"category_id\": \"category_id of the mirror class\"}}, listed both ways; a flip leaves",
        "every other class alone): use it as data.flip_label_map, or train without flips (data.hflip=0).",
        f"{REVERSE_MAP_FILE} lists every class that plays backwards as another ({{\"category_id\": \"category_id",
        "of the reversed class\"}, or null where the reversal is no class here): tools/time_diagnostic.py",
        "--reverse-map.",
        f"Class frequencies: Zipf with exponent {spec.zipf_exponent}.",
        "",
        "category_id lv1 text_concept video_concept share hflip_to",
    ]
    lines += [f"{c.category_id} {c.lv1_id} {c.text_concept} {c.video_concept} {c.frequency:.4f} "
              f"{flips.get(c.category_id, '-')}" for c in table]
    lines += ["", "Faulty samples (also in faults.json; video faults break the sources named there):"]
    for split, items in faults.items():
        lines += [f"  {split} {vid} {kind}" for vid, kind in items.items()]
    if not any(faults.values()):
        lines.append("  none")
    lines += ["", "oracle.json holds each sample's category, text concept, video concept and frame count",
              "(the video concept says the direction of motion)."]
    return "\n".join(lines) + "\n"


def _write_annotations(root: Path, spec: SyntheticSpec, plans: dict[str, list[SamplePlan]]) -> None:
    """Write the annotation files, the test truth, the category list and the oracle."""
    ann = root / "annotations"
    for split, items in plans.items():
        if not items:  # an empty annotation file is an error for the loader: leave the split out instead
            continue
        records = [make_record(spec, plan, labeled=split == "labeled") for plan in items]
        atomic_write_text(ann / f"{split}.json", _json_list(records))
    atomic_write_text(ann / "test_truth.csv", "".join(f"{p.id},{p.category_id}\n" for p in plans["test"]))
    atomic_write_text(root / "category_ids.txt", "".join(f"{c.category_id}\n" for c in class_table(spec)))
    oracle = {split: {p.id: {"category_id": p.category_id, "text_concept": p.text_concept,
                             "video_concept": p.video_concept, "num_frames": p.num_frames} for p in items}
              for split, items in plans.items()}
    atomic_write_text(root / ORACLE_FILE, json.dumps(oracle, ensure_ascii=False, indent=1) + "\n")


def make_synthetic(out_dir: str | Path, spec: SyntheticSpec | None = None, progress: bool = True) -> dict:
    """Write the dataset; return a summary dict (counts per split, num classes, faults, seconds)."""
    start = time.perf_counter()
    spec = spec or SyntheticSpec()
    plans = plan_dataset(spec)
    root = Path(out_dir)
    _prepare_out_dir(root)
    if spec.write_mp4:
        mp4_codec()  # fail early, before any work, if there is no encoder
    _write_annotations(root, spec, plans)
    video_bytes = _run_jobs(root, spec, [p for items in plans.values() for p in items], progress)
    faults = {split: {p.id: p.fault for p in items if p.fault} for split, items in plans.items()}
    table = class_table(spec)
    flips = flip_label_map(spec)
    atomic_write_text(root / FAULTS_FILE, json.dumps(faults, indent=1) + "\n")
    atomic_write_text(root / FLIP_MAP_FILE, json.dumps(flips, indent=1) + "\n")
    atomic_write_text(root / REVERSE_MAP_FILE, json.dumps(reverse_label_map(spec), indent=1) + "\n")
    atomic_write_text(root / "README.txt", _readme(spec, table, faults, flips))
    content_spec = {k: v for k, v in asdict(spec).items() if k != "workers"}  # workers do not change the output
    atomic_write_text(root / SPEC_FILE, json.dumps(content_spec, indent=1) + "\n")
    labeled_counts: dict[str, int] = {c.category_id: 0 for c in table}
    for plan in plans["labeled"]:
        labeled_counts[plan.category_id] += 1
    return {
        "out_dir": str(root),
        "splits": {split: len(items) for split, items in plans.items()},
        "num_classes": len(table),
        "num_lv1": len({c.lv1_id for c in table}),
        "flip_label_map": flips,
        "labeled_class_counts": labeled_counts,
        "num_frames": sum(p.num_frames for items in plans.values() for p in items),
        "faults": faults,
        "video_bytes": video_bytes,
        "codec": mp4_codec() if spec.write_mp4 else None,
        "seconds": round(time.perf_counter() - start, 3),
    }


# ----------------------------------------------------------------------------------------------------------------
# Reading back
# ----------------------------------------------------------------------------------------------------------------

def load_faults(root: str | Path) -> dict[str, dict[str, str]]:
    """``faults.json`` of a generated dataset: ``{split: {id: kind}}``."""
    return json.loads((Path(root) / FAULTS_FILE).read_text(encoding="utf-8"))


def load_flip_label_map(root: str | Path) -> dict[str, str]:
    """``flip_label_map.json``: ``{category_id: category_id}`` of the classes a horizontal flip swaps, both ways."""
    return json.loads((Path(root) / FLIP_MAP_FILE).read_text(encoding="utf-8"))


def load_oracle(root: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``oracle.json``: ``{split: {id: {category_id, text_concept, video_concept, num_frames}}}``."""
    return json.loads((Path(root) / ORACLE_FILE).read_text(encoding="utf-8"))


def load_spec(root: str | Path) -> SyntheticSpec:
    """The spec a dataset was generated with (``synthetic_spec.json``; ``workers`` is not stored)."""
    return SyntheticSpec.from_dict(json.loads((Path(root) / SPEC_FILE).read_text(encoding="utf-8")))
