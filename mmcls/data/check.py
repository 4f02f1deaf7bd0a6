"""Dataset checks behind ``tools/check_data.py``: per-split loading, class and text statistics, a video scan."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset
from tqdm import tqdm

from mmcls.config import DataConfig
from mmcls.data.categories import CategorySpace, read_category_file
from mmcls.data.dataset import ForkSafeDataLoader, init_worker
from mmcls.data.frames import FrameLoader
from mmcls.data.records import VideoRecord, frame_folder_name, load_records
from mmcls.data.splits import AnnotationSet, data_path
from mmcls.data.text import TextEncoder, allocate_budgets
from mmcls.data.timeout import call_with_timeout
from mmcls.data.video_error import VideoError

DEFAULT_SPLITS = ("train", "val", "test", "unlabeled")


@dataclass
class SplitReport:
    """One annotation file of the config (``which`` is the config key: train, val, test, unlabeled)."""

    which: str
    relative: str
    split: AnnotationSet

    @property
    def records(self) -> list[VideoRecord]:
        return self.split.records

    @property
    def num_labelled(self) -> int:
        return sum(r.category_id is not None for r in self.records)

    @classmethod
    def load(cls, which: str, cfg: DataConfig, path: Path) -> SplitReport:
        """Load with the same validation training applies (labels required and known in train/val)."""
        labelled = which in ("train", "val")
        known = set(read_category_file(data_path(cfg, cfg.category_file))) if cfg.category_file and labelled else None
        records = load_records(path, labelled=True if labelled else None, categories=known)
        return cls(which, str(getattr(cfg, which)), AnnotationSet(frame_folder_name(path), records))


def category_summary(categories: CategorySpace, counts: Counter) -> str:
    """Class counts: level-1 totals, the spread of level-2 counts, the largest and smallest classes."""
    per_class = [counts.get(c, 0) for c in categories.lv2_ids]
    nonzero = sorted(n for n in per_class if n)
    lines = [f"categories: {categories.num_lv2} level-2 in {categories.num_lv1} level-1; "
             f"per class min {nonzero[0]} / median {nonzero[len(nonzero) // 2]} / max {nonzero[-1]} "
             f"(max/min {nonzero[-1] / nonzero[0]:.1f}x)"]
    empty = [c for c, n in zip(categories.lv2_ids, per_class, strict=True) if n == 0]
    if empty:
        lines.append(f"  {len(empty)} categories without labelled samples: {', '.join(empty[:10])}"
                     + (" ..." if len(empty) > 10 else ""))
    lv1 = Counter()
    for c, n in zip(categories.lv2_ids, per_class, strict=True):
        lv1[categories.lv1_of[c]] += n
    lines.append("  level 1: " + ", ".join(f"{k} {lv1[k]}" for k in categories.lv1_ids))
    ranked = [f"{c} {n}" for c, n in sorted(zip(categories.lv2_ids, per_class, strict=True),
                                             key=lambda item: (-item[1], item[0]))]
    shown = ", ".join(ranked) if len(ranked) <= 12 else ", ".join(ranked[:6]) + " ... " + ", ".join(ranked[-6:])
    lines.append("  level 2 (largest first): " + shown)
    return "\n".join(lines)


def text_length_summary(cfg: DataConfig, tokenizer: Any, records: Sequence[VideoRecord]
                        ) -> list[tuple[str, list[int], float]]:
    """Per field and in total: untruncated token counts and the fraction of samples where the field is cut."""
    encoder = TextEncoder(tokenizer, cfg)
    lengths: dict[str, list[int]] = {name: [] for name in encoder.fields}
    cut = Counter()
    totals = []
    for record in records:
        per_field = encoder.field_lengths(record)
        keep = allocate_budgets(list(per_field.values()), encoder.budgets, encoder.capacity)
        for (name, n), k in zip(per_field.items(), keep, strict=True):
            lengths[name].append(n)
            cut[name] += k < n
        totals.append(sum(per_field.values()) + 1 + len(encoder.fields))
        cut["total"] += totals[-1] > cfg.max_text_len
    rows = [(name, values, cut[name] / max(1, len(records))) for name, values in lengths.items()]
    rows.append(("total", totals, cut["total"] / max(1, len(records))))
    return rows


@dataclass
class VideoScan:
    """Result of reading every (or every k-th) video of a split."""

    checked: int = 0
    frame_counts: list[int] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


class _ScanDataset(Dataset):
    """Counts the frames of a video and decodes its evaluation sample; returns ``(id, count, error)``."""

    def __init__(self, loader: FrameLoader, ids: Sequence[str], timeout: float) -> None:
        self.loader, self.ids, self.timeout = loader, list(ids), timeout

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> tuple[str, int | None, str | None]:
        video_id = self.ids[index]
        error = self.loader.load(video_id, "uniform").error
        if error is not None:
            return video_id, None, error
        try:
            count = call_with_timeout(lambda: self.loader.source.count_frames(video_id), self.timeout)
        except (VideoError, TimeoutError) as exc:
            return video_id, None, str(exc)
        return video_id, count, None


def scan_split(cfg: DataConfig, split: AnnotationSet, max_videos: int = 0, progress: bool = True) -> VideoScan:
    """Read the videos of ``split`` with the config's frame source (in ``num_workers`` processes)."""
    ids = [r.id for r in split.records]
    if max_videos and len(ids) > max_videos:
        step = len(ids) / max_videos
        ids = [ids[int(i * step)] for i in range(max_videos)]
    loader = FrameLoader.from_config(cfg, split.folder)
    dataset = _ScanDataset(loader, ids, cfg.decode_timeout)
    batches = ForkSafeDataLoader(dataset, batch_size=16, num_workers=cfg.num_workers, collate_fn=list,
                         worker_init_fn=init_worker if cfg.num_workers > 0 else None)
    scan = VideoScan()
    for batch in tqdm(batches, desc=f"videos {split.folder}", unit="batch", disable=not progress, leave=False):
        for video_id, count, error in batch:
            scan.checked += 1
            if error is not None:
                scan.failures[video_id] = error
            else:
                scan.frame_counts.append(count)
    return scan
