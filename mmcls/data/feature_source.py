"""Cached frame features as a frame source: ``feats/<split>.zip`` holding ``<id>.npy`` float16 ``[n_frames, dim]``
per video (written by the extract-features command; the README's "Data format"), with a manifest of the tower
that made it."""

from __future__ import annotations

import io
import json
import logging
import os
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from mmcls.config import DataConfig
from mmcls.data.frame_source import FrameSource, is_macos_junk, video_limits
from mmcls.data.sampling import SamplingMode
from mmcls.data.transforms import resolve_resize_size
from mmcls.data.video_error import VideoError

FEATS_MANIFEST = "__mmcls__.json"  # member of a feature zip describing how it was made (not a video)

logger = logging.getLogger("mmcls.data")


class FeatsFrameSource(FrameSource):
    """``<root>/feats/<split>.zip`` of ``<id>.npy`` ``[n_frames, dim]``; the zip is opened once per process.

    Every video has the same ``dim`` (:meth:`feature_dim`: ``feat_dim``, or probed from the zip); a member of
    another width, or a non-float one, is ``corrupt``. Features come out as float16 whatever float type they were
    stored as; a value outside the float16 range (or NaN) makes the member ``corrupt``.
    """

    name = "feats"
    default_dir = "feats"
    PROBE_MEMBERS: ClassVar[int] = 64
    PROBE_VOTES: ClassVar[int] = 5

    def __init__(self, root: str | Path, split: str, max_frames: int, resize_size: int | None = None,
                 frame_dir: str | None = None, feat_dim: int | None = None, **limits: int) -> None:
        super().__init__(root, split, max_frames, resize_size, frame_dir, **limits)
        if feat_dim is not None and feat_dim < 1:
            raise ValueError(f"feat_dim must be >= 1, got {feat_dim}")
        self.feat_dim = feat_dim
        self._probed_dim: int | None = None
        self._probed = False
        self._zip: zipfile.ZipFile | None = None
        self._pid: int | None = None

    @classmethod
    def from_config(cls, cfg: DataConfig, split: str) -> FrameSource:
        return cls(cfg.root, split, cfg.max_frames, resolve_resize_size(cfg), cfg.frame_dir,
                   cfg.feat_dim, **video_limits(cfg))

    @property
    def zip_path(self) -> Path:
        return self.base / f"{self.split}.zip"

    @property
    def location(self) -> Path:
        return self.zip_path

    def path(self, video_id: str) -> Path:
        return self.zip_path

    def manifest(self) -> dict[str, Any] | None:
        """The zip's ``__mmcls__.json`` (written by tools/extract_features.py: which tower made the features), or
        None when the zip has none or cannot be read."""
        try:
            with zipfile.ZipFile(self.zip_path) as zf:
                return json.loads(zf.read(FEATS_MANIFEST))
        except (OSError, KeyError, zipfile.BadZipFile, ValueError):
            return None

    def feature_dim(self) -> int | None:
        """The feature width: ``feat_dim`` when given, else probed once per process from the zip.

        The probe takes the most common width among the first :attr:`PROBE_VOTES` ``.npy`` members that load as
        2-D arrays (a single odd member first in the zip cannot mask every video), looking at no more than
        :attr:`PROBE_MEMBERS`. ``None`` (never an exception) when the zip is missing or unreadable, or no member
        qualifies.
        """
        if self.feat_dim is not None:
            return self.feat_dim
        if not self._probed:
            try:
                handle = self._handle("<probe>")
            except (VideoError, OSError):
                return None
            self._probed_dim, self._probed = self._probe_dim(handle), True
        return self._probed_dim

    def _probe_dim(self, zf: zipfile.ZipFile) -> int | None:
        names = [m.filename for m in zf.infolist() if m.filename.endswith(".npy") and not is_macos_junk(m.filename)
                 and not (self.max_video_bytes and m.file_size > self.max_video_bytes)]  # over the cap: not read
        widths: Counter[int] = Counter()
        for member in names[:self.PROBE_MEMBERS]:
            try:
                array = np.load(io.BytesIO(zf.read(member)), allow_pickle=False)
            except Exception:  # a broken member: the next one decides
                continue
            if array.ndim == 2 and array.shape[1] > 0:
                widths[int(array.shape[1])] += 1
                if widths.total() == self.PROBE_VOTES:
                    break
        if not widths:
            logger.warning("feats %s: no .npy member of shape [n_frames, dim] among the first %d; feature width "
                           "unknown (set data.feat_dim)", self.zip_path, self.PROBE_MEMBERS)
            return None
        dim = widths.most_common(1)[0][0]  # ties: the width seen first
        logger.debug("feats %s: feature dim %d (probed: %s)", self.zip_path, dim, dict(widths))
        return dim

    def _handle(self, video_id: str) -> zipfile.ZipFile:
        """This process's handle on the split zip, opened on first use and reopened after a fork.

        No lock guards it (a lock held by another thread at fork time would deadlock the child); two threads racing
        on the first read at worst open the zip twice. ``ZipFile.read`` itself is thread-safe.
        """
        if self._zip is None or self._pid != os.getpid():
            self._check_file(video_id, self.zip_path)
            try:
                handle = zipfile.ZipFile(self.zip_path)
            except zipfile.BadZipFile as exc:
                raise VideoError(video_id, f"{self.zip_path}: bad zip: {exc}", "corrupt") from None
            self._zip, self._pid = handle, os.getpid()
        return self._zip

    def _load(self, video_id: str) -> np.ndarray:
        """The whole ``[n_frames, dim]`` array of ``video_id``, checked against :meth:`feature_dim`."""
        member = f"{video_id}.npy"
        handle = self._handle(video_id)
        try:
            info = handle.getinfo(member)
        except KeyError:
            raise VideoError(video_id, f"{member} not in {self.zip_path}", "missing") from None
        self._check_bytes(video_id, info.file_size, f"{self.zip_path}: {member}")  # uncompressed, before reading
        array = np.load(io.BytesIO(handle.read(info)), allow_pickle=False)
        if array.ndim == 2:
            self._check_frames(video_id, array.shape[0], f"{self.zip_path}: {member}")
        if array.ndim != 2:
            raise VideoError(video_id, f"{member}: expected [n_frames, dim], got shape {array.shape}", "corrupt")
        if not np.issubdtype(array.dtype, np.floating):
            raise VideoError(video_id, f"{member}: expected float features, got {array.dtype}", "corrupt")
        if array.shape[0] == 0:
            raise VideoError(video_id, f"{member} has no frames", "empty")
        dim = self.feature_dim()
        if dim is not None and array.shape[1] != dim:
            raise VideoError(video_id, f"{member}: feature dim {array.shape[1]}, expected {dim}", "corrupt")
        return array

    def _read(self, video_id: str, mode: SamplingMode, rng: np.random.Generator | None, offset: int) -> torch.Tensor:
        array = self._load(video_id)
        rows = self._indices(array.shape[0], mode, rng, offset)
        with np.errstate(over="ignore"):
            feats = array[rows].astype(np.float16)  # a native-endian, contiguous copy
        if not np.isfinite(feats).all():
            raise VideoError(video_id, f"{video_id}.npy: NaN, inf or values beyond the float16 range", "corrupt")
        return torch.from_numpy(feats)

    def _count(self, video_id: str) -> int:
        return int(self._load(video_id).shape[0])  # members are small (<= 32 x 768 float16 in WBDC)

    def reset(self) -> None:
        self._zip = None  # a hung reader may still use the old handle: drop it, do not close it

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_zip"], state["_pid"] = None, None  # handles never travel to another process (the probed dim does)
        return state
