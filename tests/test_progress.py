"""The training progress bar shows the running loss, the learning rate and the videos/s of all processes."""

from __future__ import annotations

import io
import time

from tqdm import tqdm

from mmcls.engine.loop import show_progress


def test_training_bar_shows_loss_lr_and_videos_per_second():
    stream = io.StringIO()
    bar = tqdm(total=10, file=stream, mininterval=0, smoothing=0)
    show_progress(bar, 1.23456, 2e-4, videos_per_batch=64)  # no rate yet: a dash, not a made-up number
    assert bar.postfix == "loss=1.2346, lr=2.00e-04, videos_s=-"
    for _ in range(3):
        time.sleep(0.1)
        bar.update(1)
    show_progress(bar, 1.0, 1e-4, videos_per_batch=64)
    rate = bar.format_dict["n"] / bar.format_dict["elapsed"]  # smoothing off: the average rate
    shown = float(bar.postfix.split("videos_s=")[1])
    assert bar.postfix.startswith("loss=1.0000, lr=1.00e-04, videos_s=") and rate > 0
    assert abs(shown - rate * 64) <= 0.05 * rate * 64 + 0.1  # the same rate, read a moment later
    bar.refresh()
    assert "videos_s=" in stream.getvalue()
    bar.close()


def test_a_resumed_bar_counts_only_the_batches_of_this_process():
    bar = tqdm(total=500, initial=400, file=io.StringIO(), mininterval=0, smoothing=0)
    for _ in range(2):
        time.sleep(0.1)
        bar.update(1)
    show_progress(bar, 1.0, 1e-4, videos_per_batch=10)
    shown = float(bar.postfix.split("videos_s=")[1])
    assert 0 < shown <= 2 * 10 / 0.2 * 1.1  # ~100 videos/s from 2 batches in 0.2 s, not 402 batches' worth
    bar.close()
