"""Loader throughput: what the DataLoader delivers per frame source and worker count (record -> token ids, frame
decode, sampling, augmentation, collate), in steady state.

The workers run ahead of the consumer: ``num_workers * prefetch_factor`` batches are requested at any time, and
while the clock is stopped they get decoded. Timing from there would count batches decoded before the clock
started (38,000 "videos/s" from two workers that decode 400). So after the warm-up batch the clock starts, the
batches already requested are taken without being counted, and only the batches requested after the clock
started are counted: every counted video was decoded inside the timed window, so the figure cannot exceed what
the workers can decode."""

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
    """Time ``batches`` batches of the training split (cycling when it runs out) after the ones already in flight
    (module docstring) and return the figures."""
    dataset, loader = _shuffled_loader(cfg, batch_size, train,
                                       [f"data.frame_source={source}", f"data.num_workers={workers}"])
    if len(loader) < max(1, workers) + 1:
        raise UserError(f"the training split ({len(dataset)} videos) has too few batches of {batch_size} to time the "
                        f"loader with {workers} workers")
    iterator = iter(loader)

    def take() -> dict[str, Any]:
        nonlocal iterator
        try:
            return next(iterator)
        except StopIteration:  # cycle: a new epoch's workers start again inside the window (counted against us)
            iterator = iter(loader)
            return next(iterator)

    take()  # warm-up: the workers have started, and have batches in flight
    in_flight = workers * (loader.prefetch_factor or 0) if workers else 0
    frames = videos = failures = 0
    start = time.perf_counter()
    for _ in range(in_flight):  # requested before the clock started: taken, not counted
        take()
    for _ in range(batches):
        batch = take()
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
