"""Time inside the vision tower: frame differences as extra input channels, and the temporal shift (TSM).

The encoder runs the vision tower on one flat batch of the valid frames of every video (``[n, 3, S, S]``, videos
one after the other, frames in time order). :class:`FrameLayout` says, for each row, whether the row before / after
it is the neighbouring frame of the same video; the encoder gives it to the tower
(:meth:`mmcls.models.towers.VisionTower.forward`), so both switches work **within each video's valid frames**:
padding frames and broken videos never reach the tower, so nothing of theirs can leak into a real frame, and no
compute is spent on them. Neighbours are consecutive valid frames (a masked frame inside a video, which the data
pipeline does not produce, joins its two sides). A tower called without a layout treats every row as a one-frame
video (no neighbours).

``model.temporal.frame_diff`` (TSN's RGB difference, as in TSN / TDN): each frame gets its difference to the next
frame, ``x[t + 1] - x[t]`` of the normalised pixels (``rgb``: 3 channels) or of their channel mean (``grey``: 1),
zero for the last frame of a video. The differences are extra input channels of the tower's stem (open_clip
``conv1``, timm's ``pretrained_cfg["first_conv"]``, transformers' patch-embedding convolution, any first 3-channel
convolution), which :func:`widen_stem` widens with **zero** weights for the new channels: a pretrained tower starts
exactly as it was (the stem computes the old convolution plus one of the differences, which is exactly zero at
start, so even the rounding is the same), and learns how much motion to let in. Chosen over a separate difference
stream (a second tower on the differences, as TSN's two streams) because it costs one more stem convolution instead
of a second tower, and keeps one set of pretrained weights. The widened stem keeps its parameter name (depth 0 of
the depth map) and its weight ``[out, 3 + e, k, k]``: a 3-channel weight (a plain pretrained file, a model folder
or pretraining folder made without the switch) loads with zeros padded in (:meth:`WidenedConv2d.pad_state`).

``model.temporal.shift`` (TSM, Lin et al. 2019): in every block of the tower, a fraction of the channels of the
residual branch's input comes from the previous frame and as many from the next one (zeros at a video's ends); the
block's skip connection is left unshifted ("residual shift"), so spatial features survive. It is a forward pre-hook
on the block's first layer: ``ln_1`` (open_clip ViT), ``norm1`` (timm ViT / Swin / DINOv2 ...), ``layer_norm1`` /
``layernorm_before`` (transformers CLIP / SigLIP / ViT), ``conv1`` of a residual block (ResNet: open_clip's
ModifiedResNet, timm) or ``conv_dw`` (ConvNeXt, EfficientNet). No parameters, so nothing changes in the weights or
the depth map; a tower with none of these blocks is a ConfigError naming ``model.temporal.shift``. The layout of the
last forward stays set on the tower, so gradient checkpointing recomputes blocks with it in the backward pass; a
block whose batch does not match it raises.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
from torch import nn

from mmcls.errors import ConfigError

FRAME_DIFF_CHANNELS = {"none": 0, "rgb": 3, "grey": 1}
# The first layer of a block's residual branch, by its name in the block (see the module docstring)
_BRANCH_NORMS = ("ln_1", "norm1", "layer_norm1", "layernorm_before")
_BRANCH_CONVS = ("conv1", "conv_dw")


@dataclass(frozen=True)
class FrameLayout:
    """Which rows of a flat batch of frames ``[n, ...]`` have a neighbouring frame of the same video before them
    (``has_prev``, bool ``[n]``) and after them (``has_next``)."""

    has_prev: torch.Tensor
    has_next: torch.Tensor

    @property
    def size(self) -> int:
        return int(self.has_prev.shape[0])

    @classmethod
    def of_positions(cls, positions: torch.Tensor, frames: int, blank_tail: bool = False) -> FrameLayout:
        """The layout of the valid frames at flat ``positions`` (ascending, in ``[0, B * T)``) of ``[B, T]``; with
        ``blank_tail``, one more row after them, a one-frame video of its own (no branch on ``n``: a traced graph
        gets it right for ``n = 0`` too)."""
        video = torch.div(positions, frames, rounding_mode="floor")  # [n]
        if blank_tail:
            video = torch.cat([video, video.new_full((1,), -1)])  # [n + 1]: -1 is nobody's video
        same = video[1:] == video[:-1]  # [rows - 1]: row i + 1 is the next frame of row i's video
        no = torch.zeros(1, dtype=torch.bool, device=positions.device)
        return cls(torch.cat([no, same]), torch.cat([same, no]))

    @classmethod
    def of_mask(cls, frame_mask: torch.Tensor) -> FrameLayout:
        """The layout of the valid frames of bool ``frame_mask`` ``[B, T]`` (as the encoder flattens them)."""
        positions = frame_mask.reshape(-1).nonzero().squeeze(1)
        return cls.of_positions(positions, frame_mask.shape[1])

    @classmethod
    def single(cls, n: int, device: torch.device | str | None = None) -> FrameLayout:
        """``n`` one-frame videos."""
        no = torch.zeros(n, dtype=torch.bool, device=device)
        return cls(no, no)


def _rows(mask: torch.Tensor, like: torch.Tensor, batch_dim: int = 0) -> torch.Tensor:
    """bool ``[n]`` shaped to broadcast over ``like`` along ``batch_dim``."""
    shape = [1] * like.ndim
    shape[batch_dim] = mask.shape[0]
    return mask.view(shape)


def frame_differences(pixels: torch.Tensor, layout: FrameLayout, mode: str) -> torch.Tensor:
    """``x[t + 1] - x[t]`` of normalised ``pixels`` ``[n, 3, H, W]`` within each video (``rgb``: ``[n, 3, H, W]``;
    ``grey``: of the channel means, ``[n, 1, H, W]``), zero where the next frame is not of the same video."""
    source = pixels.mean(dim=1, keepdim=True) if mode == "grey" else pixels
    following = torch.cat([source[1:], torch.zeros_like(source[:1])])  # row i + 1 at row i
    zero = torch.zeros((), dtype=source.dtype, device=source.device)
    return torch.where(_rows(layout.has_next, source), following - source, zero)


def shift_channels(x: torch.Tensor, fold: int, layout: FrameLayout, channel_dim: int, batch_dim: int = 0
                   ) -> torch.Tensor:
    """TSM's shift: channels ``[0, fold)`` of each frame from the previous frame of its video, ``[fold, 2 fold)``
    from the next one (zeros where there is none), the others unchanged."""
    last = x.ndim - 1  # dims as non-negative numbers: an exported Transpose takes no negative ones
    batch_dim, channel_dim = batch_dim % x.ndim, channel_dim % x.ndim
    moved = x.movedim((batch_dim, channel_dim), (0, last))  # [n, ..., C]
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    head = moved[..., :2 * fold]
    pad = torch.zeros_like(head[:1])
    from_prev = torch.cat([pad, head[:-1]])[..., :fold]
    from_next = torch.cat([head[1:], pad])[..., fold:]
    from_prev = torch.where(_rows(layout.has_prev, from_prev), from_prev, zero)
    from_next = torch.where(_rows(layout.has_next, from_next), from_next, zero)
    out = torch.cat([from_prev, from_next, moved[..., 2 * fold:]], dim=-1)
    return out.movedim((0, last), (batch_dim, channel_dim))


# ----------------------------------------------------------------------------------------------------------------
# frame differences: the widened stem


class WidenedConv2d(nn.Conv2d):
    """A stem convolution taking ``base`` image channels plus ``extra`` new ones, the new weights zero-initialised.

    One weight ``[out, base + extra, k, k]`` under the original name; the forward pass convolves the image channels
    and the extra ones separately and adds them, so with zero extra weights the output is bit for bit the original
    convolution's (same FLOPs as one wide convolution). A ``base``-channel weight loads with zeros padded in.
    """

    def __init__(self, conv: nn.Conv2d, extra: int) -> None:
        if conv.groups != 1:
            raise ValueError("a grouped stem convolution cannot be widened")
        super().__init__(conv.in_channels + extra, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                         conv.dilation, 1, conv.bias is not None, conv.padding_mode,
                         device=conv.weight.device, dtype=conv.weight.dtype)
        self.base = conv.in_channels
        with torch.no_grad():
            self.weight.zero_()
            self.weight[:, :self.base].copy_(conv.weight)
            if conv.bias is not None:
                self.bias.copy_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self._conv_forward(x[:, :self.base], self.weight[:, :self.base], self.bias)
        return base + self._conv_forward(x[:, self.base:], self.weight[:, self.base:], None)

    def pad_state(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        """In place: a ``base``-channel ``{prefix}weight`` in ``state`` gets zero weights for the extra channels."""
        key = f"{prefix}weight"
        weight = state.get(key)
        if weight is not None and weight.ndim == 4 and weight.shape[1] == self.base < self.in_channels:
            pad = weight.new_zeros((weight.shape[0], self.in_channels - self.base, *weight.shape[2:]))
            state[key] = torch.cat([weight, pad], dim=1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        self.pad_state(state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, base_channels={self.base}"


def pad_widened_stems(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (for ``module``) with 3-channel weights of its widened stems padded (a copy when any is)."""
    out = state
    for name, sub in module.named_modules():
        if isinstance(sub, WidenedConv2d):
            out = dict(out) if out is state else out
            sub.pad_state(out, f"{name}." if name else "")
    return out


def _stem_name(backbone: nn.Module) -> str | None:
    """The name of the backbone's first 3-channel convolution: timm's ``pretrained_cfg["first_conv"]`` (also of an
    open_clip tower's timm ``trunk``) when it names one, else the first in module order."""
    modules = dict(backbone.named_modules())
    for prefix, model in (("", backbone), ("trunk.", getattr(backbone, "trunk", None))):
        first = (getattr(model, "pretrained_cfg", None) or {}).get("first_conv") if model is not None else None
        first = first[0] if isinstance(first, (list, tuple)) and first else first
        if isinstance(first, str) and isinstance(modules.get(prefix + first), nn.Conv2d):
            return prefix + first
    return next((name for name, m in modules.items() if isinstance(m, nn.Conv2d) and m.in_channels == 3), None)


def widen_stem(backbone: nn.Module, extra: int, what: str) -> str:
    """Replace the backbone's stem convolution with a :class:`WidenedConv2d` of ``extra`` more input channels;
    returns its name. ConfigError (naming ``model.temporal.frame_diff``) when it has none that can be widened."""
    name = _stem_name(backbone)
    conv = backbone.get_submodule(name) if name is not None else None
    if conv is None or conv.in_channels != 3 or conv.groups != 1:
        raise ConfigError(f"model.temporal.frame_diff: the {what} has no 3-channel stem convolution to widen "
                          "(transformers' NaFlex models cut patches before a linear layer); set it to none")
    parent_name, _, attr = name.rpartition(".")
    parent = backbone.get_submodule(parent_name) if parent_name else backbone
    setattr(parent, attr, WidenedConv2d(conv, extra))
    if getattr(parent, "num_channels", None) == 3:  # transformers' ViT / DINOv2 patch embeddings check it
        parent.num_channels = 3 + extra
    return name


# ----------------------------------------------------------------------------------------------------------------
# the temporal shift


def _shift_targets(backbone: nn.Module) -> list[tuple[str, nn.Module, int]]:
    """``(name, module, batch dim)`` of the first layer of every block's residual branch (module docstring)."""
    targets = []
    for name, module in backbone.named_modules():
        parent_name, _, leaf = name.rpartition(".")
        if not parent_name:
            continue  # a stem layer (ResNet's conv1), not a block's
        parent = backbone.get_submodule(parent_name)
        is_norm = leaf in _BRANCH_NORMS and isinstance(module, (nn.LayerNorm, nn.modules.batchnorm._BatchNorm,
                                                                nn.GroupNorm))
        is_conv = (leaf in _BRANCH_CONVS and isinstance(module, nn.Conv2d)
                   and (leaf == "conv_dw" or hasattr(parent, "conv2")))
        if is_norm or is_conv:
            batch_dim = 0
            blocks = parent_name.rpartition(".")[0]  # open_clip's Transformer may run sequence-first
            holder = backbone.get_submodule(blocks.rpartition(".")[0]) if "." in blocks else backbone
            if getattr(holder, "batch_first", True) is False:
                batch_dim = 1
            targets.append((name, module, batch_dim))
    return targets


class TemporalShift(nn.Module):
    """TSM's shift as forward pre-hooks on the tower's blocks (no parameters); :attr:`layout` is set by the tower
    before each forward and kept for recomputation under gradient checkpointing."""

    def __init__(self, backbone: nn.Module, fraction: float, what: str) -> None:
        super().__init__()
        self.fraction = float(fraction)
        self.layout: FrameLayout | None = None
        targets = _shift_targets(backbone)
        if not targets:
            raise ConfigError(f"model.temporal.shift: the {what} has no blocks a temporal shift can hook (ViT "
                              "blocks, ResNet or ConvNeXt blocks); set it to 0")
        self.targets = [name for name, _, _ in targets]
        for _, module, batch_dim in targets:
            # a partial of a bound method: a deep copy of the model (EMA, SWA) hooks its own copy of this module
            module.register_forward_pre_hook(functools.partial(self._hook, batch_dim=batch_dim))

    def fold(self, channels: int) -> int:
        return int(channels * self.fraction)

    def _hook(self, module: nn.Module, args: tuple, batch_dim: int) -> tuple:
        x = args[0]
        channel_dim = 1
        if isinstance(module, nn.LayerNorm) and x.shape[-1] == module.normalized_shape[-1]:
            channel_dim = -1
        layout = self.layout
        n = x.shape[batch_dim]
        if layout is None:
            layout = FrameLayout.single(n, x.device)
        elif layout.size != n:
            raise RuntimeError(f"temporal shift: the block sees {n} frames but the tower was given a layout of "
                               f"{layout.size}")
        fold = self.fold(x.shape[channel_dim])
        return (shift_channels(x, fold, layout, channel_dim, batch_dim), *args[1:])

    def extra_repr(self) -> str:
        return f"fraction={self.fraction}, blocks={len(self.targets)}"


def check_shift_width(tower: nn.Module, fraction: float) -> None:
    """ConfigError when ``fraction`` of the narrowest shifted layer's channels is less than one channel."""
    shift = getattr(tower, "shift", None)
    if shift is None:
        return
    widths = []
    for name in shift.targets:
        module = tower.backbone.get_submodule(name)
        widths.append(int(module.normalized_shape[-1]) if isinstance(module, nn.LayerNorm) else
                      int(getattr(module, "num_features", 0) or getattr(module, "num_channels", 0)
                          or getattr(module, "in_channels", 0)))
    narrowest = min(widths)
    if int(narrowest * fraction) < 1:
        raise ConfigError(f"model.temporal.shift: {fraction} of {narrowest} channels (the narrowest block of the "
                          "tower) is less than one channel; raise it or set 0")


__all__ = ["FRAME_DIFF_CHANNELS", "FrameLayout", "TemporalShift", "WidenedConv2d", "check_shift_width",
           "frame_differences", "pad_widened_stems", "shift_channels", "widen_stem"]
