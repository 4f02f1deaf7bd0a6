"""Why did the model predict that? Grad-CAM over a video's frames and gradient x input over its text tokens.

- **Frames (Grad-CAM).** Every spatial activation of the vision tower is captured: patch tokens ``[n, L, D]``
  (open_clip and timm ViTs) or square feature maps ``[n, C, h, w]`` (convnets), attention internals excluded. The
  score of the explained class is backpropagated, and the map is read from the LAST of them whose positions got a
  gradient: the last feature map of a convnet; for a ViT that pools its class token, the tokens entering the last
  attention (the ones leaving it do not reach the output). Each position's map is ``relu(sum_c act * grad)``, read
  on the token grid after dropping the class/register tokens, upsampled to the frame and normalised over the whole
  video, so frames can be compared.
- **Text (gradient x input).** The attribution of each token is ``sum_d emb * d score / d emb`` on BERT's word
  embeddings. Positive values support the class, negative ones speak against it.

The explained class is the prediction unless one is asked for. Only the model's own inputs are used: the video's
frames as the model sampled them (eval transforms) and its tokenised text.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmcls.errors import ArgumentError
from mmcls.logits import predicted_classes
from mmcls.model_folder import LoadedModel


@dataclass
class Explanation:
    """What :func:`explain_video` found for one video."""

    video_id: str
    category: str  # the explained level-2 class
    predicted: str
    probability: float  # of the explained class
    frames: np.ndarray | None = None  # uint8 [T, H, W, 3]: the frames the model saw (valid ones)
    heatmaps: np.ndarray | None = None  # float [T, H, W] in [0, 1]
    tokens: list[tuple[str, float]] = field(default_factory=list)  # (token, attribution) in text order


def _grid_tokens(length: int) -> tuple[int, int] | None:
    """(prefix tokens, grid side) when ``length`` = prefix + side^2 with side >= 2 and at most 8 prefix tokens."""
    for prefix in range(0, 9):
        side = math.isqrt(length - prefix) if length > prefix else 0
        if side >= 2 and side * side == length - prefix:
            return prefix, side
    return None


class SpatialCapture:
    """Forward hooks on every module of a vision backbone; keeps every spatial output of the pass (tokens on a
    square grid, or 4-D feature maps) with its gradient retained, in the order the modules finish."""

    def __init__(self, backbone: torch.nn.Module, frames: int) -> None:
        self.frames = frames
        self.outputs: list[torch.Tensor] = []
        self.chosen: torch.Tensor | None = None  # the activation the last maps() read
        # attention internals (per-head queries, keys, score matrices) are 4-D too: never read them as frames
        self.handles = [module.register_forward_hook(self._hook) for name, module in backbone.named_modules()
                        if name and not any(part in name.lower() for part in ("attn", "attention"))]

    def _hook(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return
        spatial = (output.ndim == 4 and output.shape[0] == self.frames and output.shape[2] == output.shape[3] > 1) or (
            output.ndim == 3 and self.frames in output.shape[:2] and _grid_tokens(
                output.shape[1] if output.shape[0] == self.frames else output.shape[0]) is not None)
        if spatial:
            output.retain_grad()
            self.outputs.append(output)

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()

    def _positions(self, tensor: torch.Tensor) -> torch.Tensor:
        """``[n, positions, channels]`` of a captured tensor (patch tokens only, or flattened feature maps)."""
        if tensor.ndim == 4:  # [n, C, h, w]
            return tensor.flatten(2).transpose(1, 2)
        if tensor.shape[0] != self.frames:  # [L, n, D] -> [n, L, D]
            tensor = tensor.transpose(0, 1)
        prefix, _ = _grid_tokens(tensor.shape[1])
        return tensor[:, prefix:]

    def maps(self) -> torch.Tensor:
        """Grad-CAM ``[n, h, w]`` (not yet normalised) of the LAST captured activation whose spatial positions got a
        gradient. In a ViT that pools its class token, the patch tokens leaving the last block do not reach the
        output (zero gradient); the last ones that do are those entering the last attention, the usual ViT choice."""
        for tensor in reversed(self.outputs):
            if tensor.grad is None:
                continue
            act, grad = self._positions(tensor.detach().float()), self._positions(tensor.grad.float())
            if grad.abs().max() == 0:
                continue
            self.chosen = tensor
            cam = F.relu((act * grad).sum(dim=-1))  # [n, positions]
            if tensor.ndim == 4:
                return cam.reshape(-1, *tensor.shape[2:])
            side = math.isqrt(cam.shape[1])
            return cam.reshape(-1, side, side)
        raise RuntimeError("no spatial activation of the vision tower received a gradient")


def explain_video(loaded: LoadedModel, batch: dict[str, Any], category: str | None = None) -> Explanation:
    """Explain the model's score of ``category`` (default: its prediction) for the single video in ``batch``."""
    model, categories = loaded.model.eval(), loaded.categories
    device = next(model.parameters()).device
    if len(batch["ids"]) != 1:
        raise ValueError(f"explain one video at a time, got a batch of {len(batch['ids'])}")
    frames, frame_mask = batch.get("frames"), batch.get("frame_mask")
    encoder = model.encoder
    pixels = frames is not None and encoder.vision is not None and not encoder.reads_features
    valid = int(frame_mask[0].sum()) if frame_mask is not None else 0
    capture = SpatialCapture(encoder.vision.backbone, valid) if pixels and valid else None
    embeddings: dict[str, torch.Tensor] = {}

    def keep_embeddings(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        output.retain_grad()
        embeddings["words"] = output

    handle = encoder.text.word_embedding_layer.register_forward_hook(keep_embeddings)
    try:
        with torch.enable_grad():
            inputs = {"input_ids": batch["input_ids"].to(device), "attention_mask": batch["attention_mask"].to(device),
                      "frames": frames.to(device) if frames is not None else None,
                      "frame_mask": frame_mask.to(device) if frame_mask is not None else None}
            logits = model(**inputs)["logits"][0].float()  # [C]
            probs = logits.softmax(-1)
            predicted = predicted_classes(logits.detach().cpu().numpy()[None], categories.lv2_ids)[0]
            target = predicted if category is None else category
            if target not in categories.lv2_ids:
                raise ArgumentError("category", f"{target!r} is not a class of {loaded.path}")
            index = categories.lv2_ids.index(target)
            model.zero_grad(set_to_none=True)
            logits[index].backward()
    finally:
        handle.remove()
        if capture is not None:
            capture.close()
    result = Explanation(batch["ids"][0], target, predicted, float(probs[index].detach()))
    words = embeddings["words"]
    ids = batch["input_ids"][0].tolist()
    if words.grad is not None and words.shape[1] == len(ids):  # video mode feeds [CLS] [SEP] instead of the text
        scores = (words.detach() * words.grad).sum(-1)[0].float()  # [L]
        mask = batch["attention_mask"][0].bool().tolist()
        result.tokens = [(loaded.tokenizer.convert_ids_to_tokens(i), float(s))
                         for i, s, m in zip(ids, scores.tolist(), mask, strict=True) if m]
    cams = None
    if capture is not None:
        try:
            cams = capture.maps()  # [valid, h, w]
        except RuntimeError as exc:  # a layout the capture does not know (e.g. NHWC maps): text only
            logging.getLogger("mmcls").warning("%s: no frame heatmap (%s)", result.video_id, exc)
    if cams is not None:
        size = frames.shape[-2:]
        cams = F.interpolate(cams.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
        cams = cams / cams.max().clamp_min(1e-12)  # one scale for the whole video
        shown = frames[0][frame_mask[0].bool()]  # [valid, 3, H, W] uint8
        result.frames = shown.permute(0, 2, 3, 1).cpu().numpy()
        result.heatmaps = cams.cpu().numpy()
    return result


def top_tokens(tokens: list[tuple[str, float]], k: int) -> list[tuple[str, float]]:
    """The ``k`` tokens with the largest attribution magnitude, special tokens left out."""
    content = [(t, s) for t, s in tokens if not (t.startswith("[") and t.endswith("]"))]
    return sorted(content, key=lambda item: -abs(item[1]))[:k]


CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "SimHei", "Microsoft YaHei", "PingFang SC", "Heiti SC")


def _cjk_font() -> str | None:
    """An installed font with Chinese glyphs, if any (matplotlib's default DejaVu Sans has none)."""
    from matplotlib import font_manager

    installed = {font.name for font in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONTS if name in installed), None)


def token_label(token: str, readable: bool) -> str:
    """The token as drawn: itself, or its code points when no installed font can draw it."""
    if readable or token.isascii():
        return token
    return " ".join(f"U+{ord(ch):04X}" if not ch.isascii() else ch for ch in token)


def render(explanation: Explanation, path: Any, k: int = 12) -> None:
    """A PNG: the frames with their heatmaps (top row: frames, bottom row: overlay) and the top text tokens."""
    import matplotlib

    font = _cjk_font()
    with matplotlib.rc_context({"font.sans-serif": [font, "DejaVu Sans"] if font else ["DejaVu Sans"]}):
        _render(explanation, path, k, readable=font is not None)


def _render(explanation: Explanation, path: Any, k: int, readable: bool) -> None:
    from matplotlib.figure import Figure

    frames = explanation.frames
    count = 0 if frames is None else len(frames)
    columns = max(count, 2)
    figure = Figure(figsize=(2.0 * columns, 6.2))
    grid = figure.add_gridspec(3, columns, height_ratios=[1, 1, 1.2])
    for i in range(count):
        top, bottom = figure.add_subplot(grid[0, i]), figure.add_subplot(grid[1, i])
        top.imshow(frames[i])
        bottom.imshow(frames[i])
        bottom.imshow(explanation.heatmaps[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
        top.set_title(f"frame {i}", fontsize=8)
        for ax in (top, bottom):
            ax.axis("off")
    bars = figure.add_subplot(grid[2, :])
    best = top_tokens(explanation.tokens, k)
    if best:
        names, values = [token_label(t, readable) for t, _ in best][::-1], [s for _, s in best][::-1]
        bars.barh(range(len(best)), values, color=["tab:green" if v > 0 else "tab:red" for v in values])
        bars.set_yticks(range(len(best)), names, fontsize=8)
        bars.axvline(0, color="black", linewidth=0.8)
    bars.set_xlabel("gradient x input (green supports the class, red speaks against it)" + (
        "" if readable else "; no CJK font installed: Chinese tokens shown as code points"))
    figure.suptitle(f"video {explanation.video_id}: class {explanation.category} (p={explanation.probability:.3f}); "
                    f"predicted {explanation.predicted}" + ("" if count else "; no readable frames"), fontsize=10)
    figure.savefig(path, dpi=110, bbox_inches="tight")
