"""Dataset, collate and DataLoader: records -> batches of token ids, uint8 frames, masks and labels.

A sample whose video cannot be read keeps its text and gets an empty video (all-zero frame mask); the failure
reason travels with the batch (``video_errors``) so the training loop can count failures per epoch, whichever
worker process hit them. Nothing here ever substitutes another sample.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler

from mmcls.config import DataConfig
from mmcls.data.categories import CategorySpace
from mmcls.data.flips import FlipLabelMap
from mmcls.data.frames import FrameLoader
from mmcls.data.records import VideoRecord
from mmcls.data.sampling import sampling_mode
from mmcls.data.soft_targets import SoftTargets
from mmcls.data.splits import AnnotationSet
from mmcls.data.text import TextEncoder
from mmcls.data.transforms import build_video_transform
from mmcls.labels import IGNORE_INDEX


class VideoTextDataset(Dataset):
    """Samples of one split: text token ids, frames (uint8 ``[T,3,H,W]``) or features, labels, failure reason."""

    def __init__(self, records: Sequence[VideoRecord], text_encoder: TextEncoder | None,
                 frame_loader: FrameLoader | None, transform: Callable | None,
                 categories: CategorySpace | None, train: bool, sampling: str = "uniform",
                 sampling_offset: int = 0, seed: int = 0, soft_targets: SoftTargets | None = None,
                 flip_map: FlipLabelMap | None = None) -> None:
        self.records = list(records)
        self.soft_targets = soft_targets
        self.flip_map = flip_map  # labels a horizontal flip swaps (training; data.flip_label_map)
        self.seed = seed
        # Shared memory, so persistent workers see set_epoch too; a torch tensor (not multiprocessing.Value) so the
        # dataset still pickles and deep-copies, and shares through fork, forkserver and spawn alike.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self.text_encoder = text_encoder
        self.frame_loader = frame_loader
        self.transform = transform
        self.categories = categories
        self.train = train
        self.sampling = sampling
        self.sampling_offset = sampling_offset

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations :meth:`__getitem__` draws (call before iterating the loader)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch.fill_(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def sample_seed(self, index: int) -> int:
        """Random state of one sample: a function of (seed, epoch, index) only.

        So frames and augmentations are the same with 0 or N workers, with or without persistent workers, and
        when a run resumes mid-epoch.
        """
        return int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, dtype=np.uint64)[0])

    def _labels(self, record: VideoRecord, flipped: bool = False) -> tuple[int, int]:
        if self.categories is None or record.category_id is None or record.category_id not in self.categories:
            return IGNORE_INDEX, IGNORE_INDEX
        category = self.flip_map.category(record.category_id) if flipped else record.category_id
        return self.categories.lv2_index(category), self.categories.lv1_index(category)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        rng = np.random.default_rng(self.sample_seed(index))
        frames, error, flipped = None, None, False
        if self.frame_loader is not None:
            frames, error = self.frame_loader.load(record.id, self.sampling, rng, offset=self.sampling_offset)
            if frames is not None and self.transform is not None:
                if self.flip_map is not None and hasattr(self.transform, "with_flip"):
                    frames, flipped = self.transform.with_flip(frames, rng)
                else:
                    frames = self.transform(frames, rng)
        input_ids = self.text_encoder.encode(record) if self.text_encoder is not None else []
        label, label_lv1 = self._labels(record, flipped)
        soft = self.soft_targets(record) if self.soft_targets is not None and label != IGNORE_INDEX else None
        if soft is not None and flipped:
            soft = self.flip_map.permute(soft)
        return {"id": record.id, "input_ids": input_ids, "frames": frames, "video_error": error,
                "label": label, "label_lv1": label_lv1, "soft_target": soft}


class Collator:
    """Pads a list of samples into a batch with fixed ``max_frames`` (static shapes help kernels and compile).

    Output: ``ids`` list[str]; ``input_ids`` / ``attention_mask`` long ``[B, L]`` (L = longest in the batch);
    ``frames`` uint8 ``[B, T, 3, H, W]`` (or float16 ``[B, T, D]`` for features) zero-padded; ``frame_mask`` bool
    ``[B, T]``; ``labels`` / ``labels_lv1`` long ``[B]`` (-100 when unlabelled); ``video_errors`` list[str | None].
    """

    def __init__(self, pad_id: int, max_frames: int, frame_shape: tuple[int, ...] | None,
                 frame_dtype: torch.dtype = torch.uint8) -> None:
        self.pad_id = pad_id
        self.max_frames = max_frames
        self.frame_shape = frame_shape
        self.frame_dtype = frame_dtype

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch_size = len(samples)
        length = max(1, max(len(s["input_ids"]) for s in samples))
        input_ids = torch.full((batch_size, length), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, length), dtype=torch.long)
        for i, sample in enumerate(samples):
            n = len(sample["input_ids"])
            input_ids[i, :n] = torch.as_tensor(sample["input_ids"], dtype=torch.long)
            attention_mask[i, :n] = 1
        batch: dict[str, Any] = {
            "ids": [s["id"] for s in samples],
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": torch.tensor([s["label"] for s in samples], dtype=torch.long),
            "labels_lv1": torch.tensor([s["label_lv1"] for s in samples], dtype=torch.long),
            "video_errors": [s["video_error"] for s in samples],
        }
        soft = [s.get("soft_target") for s in samples]
        width = next((len(t) for t in soft if t is not None), None)
        if width is not None:
            batch["soft_targets"] = torch.stack([torch.as_tensor(t, dtype=torch.float32) if t is not None
                                                 else torch.zeros(width) for t in soft])  # [B, C]
            batch["soft_mask"] = torch.tensor([t is not None for t in soft])
        shape = self.frame_shape or next((tuple(s["frames"].shape[1:]) for s in samples if s["frames"] is not None),
                                         None)
        if shape is None:  # no frame source at all (text-only)
            return batch
        frames = torch.zeros((batch_size, self.max_frames, *shape), dtype=self.frame_dtype)
        frame_mask = torch.zeros((batch_size, self.max_frames), dtype=torch.bool)
        for i, sample in enumerate(samples):
            video = sample["frames"]
            if video is None:
                continue
            t = min(len(video), self.max_frames)
            frames[i, :t] = video[:t]
            frame_mask[i, :t] = True
        batch["frames"], batch["frame_mask"] = frames, frame_mask
        return batch


def frame_shape(cfg: DataConfig, loader: FrameLoader | None) -> tuple[tuple[int, ...] | None, torch.dtype]:
    """Per-frame shape and dtype of a batch: ``(3, S, S)`` uint8 for pixels, ``(D,)`` float16 for features."""
    if loader is None:
        return None, torch.uint8
    if cfg.reads_features:
        dim = loader.source.feature_dim()
        return ((dim,) if dim else None), torch.float16
    return (3, cfg.frame_size, cfg.frame_size), torch.uint8


def worker_start_method(cfg: DataConfig) -> str | None:
    """Multiprocessing start method for DataLoader workers (None: the platform default).

    decord is not fork-safe: once a reader has run in the parent (an evaluation with 0 workers, a check), forked
    workers can hang in its thread pool. ``auto`` therefore starts mp4 workers with forkserver.
    """
    if cfg.worker_start == "auto":
        return "forkserver" if cfg.frame_source == "mp4" else None
    return cfg.worker_start


def build_dataset(cfg: DataConfig, split: AnnotationSet, tokenizer: Any, categories: CategorySpace | None, train: bool,
                  with_frames: bool = True, with_text: bool = True, sampling_offset: int = 0,
                  seed: int = 0, soft_targets: SoftTargets | None = None,
                  flip_map: FlipLabelMap | None = None) -> VideoTextDataset:
    """A dataset over ``split`` with the config's text encoder, frame source and transforms (and soft targets and
    the labels a flip swaps, ``data.flip_label_map``, for training)."""
    loader = FrameLoader.from_config(cfg, split.folder) if with_frames else None
    transform = build_video_transform(cfg, train) if with_frames else None
    encoder = TextEncoder(tokenizer, cfg) if with_text else None
    return VideoTextDataset(split.records, encoder, loader, transform, categories, train,
                            sampling=sampling_mode(cfg, train), sampling_offset=sampling_offset, seed=seed,
                            soft_targets=soft_targets, flip_map=flip_map if train else None)


class EpochShuffle(Sampler[int]):
    """The training order: a permutation of the dataset drawn from (seed, epoch) alone (``dataset.epoch``, set by
    the loop before each epoch).

    The DataLoader's own shuffle draws from the generator it also draws worker seeds from, once per iterator, and
    a persistent-worker iterator is made once per run: a run resumed mid-way (a new iterator) would see another
    order than the run it continues. This order needs no state beyond the epoch, on any number of workers and
    processes (every process draws the same permutation; accelerate shards its batches).
    """

    def __init__(self, dataset: VideoTextDataset | ConcatVideoDataset, seed: int) -> None:
        self.dataset, self.seed = dataset, int(seed)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self):
        state = np.random.SeedSequence([self.seed, self.dataset.epoch]).generate_state(1, dtype=np.uint64)[0]
        generator = torch.Generator().manual_seed(int(state) & (2**63 - 1))
        return iter(torch.randperm(len(self.dataset), generator=generator).tolist())


class ForkSafeDataLoader(DataLoader):
    """A DataLoader that collects the parent's garbage before starting workers.

    A decord reader left as uncollected garbage (in a reference cycle) in the parent would otherwise be destroyed
    in a forked worker, where its destructor joins decoder threads that do not exist after a fork: the worker
    hangs for ever. Collecting first destroys such readers in the parent, where that is safe; :func:`init_worker`
    then freezes whatever the worker inherited.
    """

    def _get_iterator(self):
        if self.num_workers > 0:
            gc.collect()
        return super()._get_iterator()


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: freeze inherited objects (see :class:`ForkSafeDataLoader`) and seed NumPy /
    Python from torch's per-worker seed."""
    import random

    from mmcls.data.worker_signals import serve_through_sigterm

    serve_through_sigterm()  # a SIGTERM to the whole process group leaves the loader to the loop (engine/loop.py)
    gc.freeze()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


class ConcatVideoDataset(ConcatDataset):
    """Several :class:`VideoTextDataset` (e.g. one per annotation file, each with its own frame folder) as one.

    :meth:`set_epoch` reaches every part; the loader's text and frame settings come from the first part (all parts
    are built from the same config).
    """

    def __init__(self, parts: Sequence[VideoTextDataset]) -> None:
        if not parts:
            raise ValueError("ConcatVideoDataset needs at least one dataset")
        super().__init__(parts)
        self.parts = list(parts)

    def set_epoch(self, epoch: int) -> None:
        for part in self.parts:
            part.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return self.parts[0].epoch

    @property
    def text_encoder(self) -> Any:
        return self.parts[0].text_encoder

    @property
    def frame_loader(self) -> Any:
        return self.parts[0].frame_loader


def build_dataloader(dataset: VideoTextDataset | ConcatVideoDataset, cfg: DataConfig, batch_size: int,
                     shuffle: bool = False, sampler: Sampler | None = None, drop_last: bool = False,
                     pad_id: int | None = None, generator: torch.Generator | None = None,
                     seed: int = 0) -> DataLoader:
    """DataLoader with the config's workers, pinned memory, persistent workers and prefetching; ``shuffle``
    orders each epoch by :class:`EpochShuffle` from ``seed`` and the dataset's epoch.

    A loader draws its workers' base seed from ``generator`` each time it makes an iterator (once per run with
    persistent workers, once per epoch without); without a generator of its own it would draw from the global torch
    RNG, and a resumed run, which makes its iterators at other times, would see another dropout stream.
    """
    if shuffle and sampler is None:
        sampler = EpochShuffle(dataset, seed)
    if generator is None:
        generator = torch.Generator().manual_seed(seed)
    if pad_id is None:
        pad_id = dataset.text_encoder.pad_id if dataset.text_encoder is not None else 0
    shape, dtype = frame_shape(cfg, dataset.frame_loader)
    workers = cfg.num_workers
    return ForkSafeDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=workers,
        collate_fn=Collator(pad_id, cfg.max_frames, shape, dtype),
        pin_memory=cfg.pin_memory and torch.cuda.is_available(),
        persistent_workers=cfg.persistent_workers and workers > 0,
        prefetch_factor=cfg.prefetch_factor if workers > 0 else None,
        worker_init_fn=init_worker if workers > 0 else None,
        multiprocessing_context=worker_start_method(cfg) if workers > 0 else None,
        generator=generator,
    )
