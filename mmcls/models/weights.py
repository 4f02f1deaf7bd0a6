"""Reading local weight files and loading them strictly, with errors that name the config key and the file.

Library loaders tend to log missing keys and carry on with random weights; here a checkpoint that does not fit the
module it is meant for is a :class:`~mmcls.errors.ConfigError`, raised before any training starts.
"""

from __future__ import annotations

import json
import shlex
import warnings
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from mmcls.errors import ConfigError
from mmcls.models.temporal import pad_widened_stems

# Checkpoint wrappers written by common trainers (open_clip, timm, accelerate ...): the weights sit under one key.
_WRAPPER_KEYS = ("state_dict", "model", "module")
_SHOWN_KEYS = 3  # example keys quoted in an error message


def read_state_dict(path: str | Path, key: str, trust_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a local ``.safetensors`` / ``.pt`` / ``.pth`` / ``.bin`` file (``key`` names the config option).

    Pickled files are read with ``weights_only=True``. A TorchScript archive (OpenAI's CLIP ``.pt`` files) runs the
    code it holds when loaded, so it is read (its module's state dict) only with ``trust_torchscript``, which only
    ``model.vision.trust_torchscript=true`` sets; otherwise it is a ConfigError saying how to opt in or convert it.
    Unwraps ``{"state_dict": ...}``-style checkpoints and strips the ``module.`` prefix of DDP-wrapped models.
    """
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{key}: {path} is a folder; give the weights file in it (a .safetensors, .pt, .pth or "
                          ".bin file)")
    if not path.is_file():
        raise ConfigError(f"{key}: weights file not found: {path}")
    if path.name.endswith(".index.json"):
        return _read_shards(path, key, trust_torchscript)
    if path.suffix != ".safetensors" and not trust_torchscript and _is_torchscript(path):
        raise ConfigError(torchscript_refusal(path, key))
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path), device="cpu")
        else:
            checkpoint = _torch_load(path)
    except Exception as exc:  # any reader failure is the file's fault: report it as one line
        if path.suffix != ".safetensors":  # torch's own text may advise weights_only=False: never right here
            raise ConfigError(f"{key}: {path} is not a weights file that loads without running code (expected "
                              "safetensors, or tensors saved with torch.save)") from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"{key}: cannot read weights from {path}: {first}") from None
    while isinstance(checkpoint, Mapping) and not _is_tensor_dict(checkpoint):
        inner = next((checkpoint[k] for k in _WRAPPER_KEYS if isinstance(checkpoint.get(k), Mapping)), None)
        if inner is None:
            break
        checkpoint = inner
    if not isinstance(checkpoint, Mapping) or not _is_tensor_dict(checkpoint) or not checkpoint:
        raise ConfigError(f"{key}: {path} holds no state dict of tensors")
    state = {str(k): v for k, v in checkpoint.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    return state


def _read_shards(index: Path, key: str, trust_torchscript: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a sharded checkpoint (``model.safetensors.index.json`` and the shard files it names)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError(f"{key}: {index} is not a shard index (a JSON object with a weight_map)") from None
    state: dict[str, torch.Tensor] = {}
    for shard in shards:
        if Path(shard).name != shard:
            raise ConfigError(f"{key}: {index} names a shard outside its folder: {shard!r}")
        state.update(read_state_dict(index.parent / shard, key, trust_torchscript))
    return state


def weights_in_folder(folder: str | Path, key: str, names: Sequence[str]) -> Path:
    """The weights file of a model folder: the first of ``names`` present, a sharded one by its ``.index.json``
    (read by :func:`read_state_dict`); ConfigError naming ``key`` and the files looked for otherwise."""
    folder = Path(folder)
    for name in names:
        for candidate in (folder / name, folder / f"{name}.index.json"):
            if candidate.is_file():
                return candidate
    raise ConfigError(f"{key}: {folder} has no weights file (looked for {', '.join(names)}, or a sharded "
                      "*.index.json of one)")


TRUST_TORCHSCRIPT_KEY = "model.vision.trust_torchscript"


def torchscript_refusal(path: Path, key: str) -> str:
    """Why a TorchScript archive given to ``key`` is not read, and what to do instead."""
    convert = ("python -c \"import sys, torch; from safetensors.torch import save_file; "
               "save_file({k: v.clone().contiguous() for k, v in "
               "torch.jit.load(sys.argv[1], map_location='cpu').state_dict().items()}, sys.argv[2])\" "
               f"{shlex.quote(str(path))} {shlex.quote(str(path.with_suffix('.safetensors')))}")
    opt_in = f"set {TRUST_TORCHSCRIPT_KEY}=true if you trust it, or " if key == "model.vision.pretrained" else ""
    return (f"{key}: {path} is a TorchScript archive (e.g. OpenAI's CLIP .pt), and loading one runs the code inside "
            f"it; {opt_in}convert it once to safetensors: {convert}")


def _torch_load(path: Path) -> object:
    """``torch.load`` without unpickling code; a TorchScript archive (OpenAI's CLIP ``.pt`` files: the caller has
    opted in, see :func:`read_state_dict`) via jit.load."""
    if _is_torchscript(path):
        with warnings.catch_warnings():  # jit is deprecated, but these files exist and only it reads them
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").state_dict()
    return torch.load(path, map_location="cpu", weights_only=True)


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive is a zip whose records include ``constants.pkl`` (plain checkpoints have none)."""
    try:
        if not zipfile.is_zipfile(path):
            return False
        with zipfile.ZipFile(path) as archive:
            return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):  # a broken zip: torch.load reports it
        return False


def _is_tensor_dict(obj: Mapping) -> bool:
    return any(isinstance(v, torch.Tensor) for v in obj.values())


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Entries under ``prefix`` (e.g. ``visual.`` of a whole CLIP model) with the prefix removed."""
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def load_exact(module: nn.Module, state: Mapping[str, torch.Tensor], key: str, path: str | Path) -> None:
    """Load ``state`` into ``module``; every parameter and buffer must be present with its exact shape.

    Raises ConfigError quoting a few missing, unexpected or mis-shaped keys, so a checkpoint of another model (or
    of another size) never loads silently into random weights. The 3-channel weight of a stem widened for frame
    differences (``model.temporal.frame_diff``) loads with zeros for the new channels.
    """
    state = pad_widened_stems(module, dict(state))
    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and state[k].shape != v.shape]
    raise_on_mismatch(key, path, missing, unexpected, mis_shaped)
    module.load_state_dict(dict(state), strict=True)


def raise_on_mismatch(key: str, path: str | Path, missing: Sequence[str], unexpected: Sequence[str],
                      mis_shaped: Sequence[str] = ()) -> None:
    """One ConfigError quoting a few of each kind of key problem between a weights file and its model (none: no
    error): the one message of every strict load."""
    problems = []
    for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mis_shaped)):
        if keys:
            shown = ", ".join(keys[:_SHOWN_KEYS]) + (" ..." if len(keys) > _SHOWN_KEYS else "")
            problems.append(f"{len(keys)} {name} ({shown})")
    if problems:
        raise ConfigError(f"{key}: weights in {path} do not match the model: {'; '.join(problems)}")


@contextmanager
def quiet_transformers_load() -> Iterator[None]:
    """Silence transformers' load report and progress bar while a strict load runs: its missing / unexpected keys
    become the one error of :func:`raise_on_mismatch`, and the report would only repeat it at length."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
