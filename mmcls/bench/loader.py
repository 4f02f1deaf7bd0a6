"""Loader throughput: what the DataLoader delivers per frame source and worker count (record -> token ids, frame
decode, sampling, augmentation, collate), timed after a warm-up batch so worker start-up is not counted."""

from __future__ import annotations

import time
from typing import Any

from mmcls.config import Config, build_config, to_dict
from mmcls.data.dataset import build_dataloader, build_dataset
from mmcls.data.splits import build_tokenizer, load_labelled_splits
from mmcls.errors import UserError


def _shuffled_loader(cfg: Config, batch_size: int, train: bool, overrides: list[str]) -> tuple[Any, Any]:
    """(dataset, shuffled DataLoader) over the training split of ``cfg`` with ``overrides``."""
    cfg = build_config(to_dict(cfg), overrides)
    split, _, categories = load_labelled_splits(cfg.data, cfg.seed)
    dataset = build_dataset(cfg.data, split, build_tokenizer(cfg.data, cfg.model.text.pretrained), categories,
                            train=train)
    return dataset, build_dataloader(dataset, cfg.data, batch_size, shuffle=True)


def loader_throughput(cfg: Config, source: str, workers: int, batch_size: int, batches: int,
                      train: bool = True) -> dict[str, Any]:
    """Iterate ``batches`` batches of the training split (cycling when it runs out) and return the figures."""
    dataset, loader = _shuffled_loader(cfg, batch_size, train,
                                       [f"data.frame_source={source}", f"data.num_workers={workers}"])
    if len(loader) < max(1, workers) + 1:
        raise UserError(f"the training split ({len(dataset)} videos) has too few batches of {batch_size} to time the "
                        f"loader with {workers} workers")
    iterator = iter(loader)
    for _ in range(max(1, workers)):  # warm-up: every worker's start-up and first batch
        next(iterator)
    frames = videos = failures = 0
    start = time.perf_counter()
    for _ in range(batches):
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        frames += int(batch["frame_mask"].sum())
        videos += len(batch["ids"])
        failures += sum(e is not None for e in batch["video_errors"])
    seconds = time.perf_counter() - start
    return {"source": source, "workers": workers, "batch_size": batch_size, "videos": videos, "frames": frames,
            "failed_videos": failures, "seconds": round(seconds, 3), "videos_per_s": round(videos / seconds, 1),
            "frames_per_s": round(frames / seconds, 1)}


def loader_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| source | workers | videos/s | frames/s | failed videos |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['source']} | {r['workers']} | {r['videos_per_s']:,} | {r['frames_per_s']:,} | "
              f"{r['failed_videos']} |" for r in rows]
    return "\n".join(lines)


def epoch_start_seconds(cfg: Config, workers: int, batch_size: int, persistent: bool) -> float | None:
    """Seconds from starting the SECOND epoch to its first batch, with ``data.persistent_workers`` on or off (None
    without workers): what keeping the workers alive saves at every epoch boundary."""
    if workers == 0:
        return None
    _, loader = _shuffled_loader(cfg, batch_size, True,
                                 [f"data.num_workers={workers}", f"data.persistent_workers={persistent}"])
    for _ in loader:  # the first epoch: workers start, every batch is read
        pass
    start = time.perf_counter()
    next(iter(loader))
    return time.perf_counter() - start
