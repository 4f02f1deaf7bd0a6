"""The pretrainer: the encoder (:mod:`mmcls.models.encoder`) with the heads of the pretraining tasks, all in one
forward call.

::

    frames ─► [order_perm] ─► frame_features (once) ─┬─► [itm_perm] ─► zero MFM-masked frames ─┐
                                                     │                                         ├─► encode ─┐
    masked text ─────────────────────────────────────┼─────────────────────────────────────────┘           │
                                                     │          text positions ─► MLM ◄────────────────────┤
                                                     │          frame positions ─► MFM ◄───────────────────┤
                                                     │          pooled ─► ITM, order ◄─────────────────────┘
                                                     └─► frames-only encode ─► ITC ◄─ text-only encode (optional)

Tasks (switched on by their weights in ``cfg.pretrain``; a head exists only for a switched-on task):

- ``mlm``: masked language modelling, decoder tied to the word embeddings;
- ``mfm``: masked frame modelling: each masked frame's output must pick its own (clean) input feature among all
  valid frames of the batch (NCE);
- ``itm``: video-text matching: some samples get another sample's video; a binary head on the pooled fused sequence;
- ``itc``: video-text contrastive: a text-only and a frames-only pass of the fusion encoder, symmetric InfoNCE;
- ``order``: does the clip play forward, reversed or shuffled (:func:`mmcls.engine.masking.order_frames`): a 3-way
  head on the pooled fused sequence (the vector the classifier's heads read, so finetuning starts from features that
  say direction; with the text beside the frames, a text that names a direction can be checked against the motion).

The order task permutes the input ``frames`` (pixels or cached features) before the vision tower, the one tensor
every task sees: no second vision pass, and temporal modelling inside the tower (frame differences, temporal shift)
sees the clip as it is played, not features computed in the true order and moved afterwards (which would leak the
answer). So MLM, MFM, ITM and ITC see the permuted clips too: MFM's targets are the features of the frames where
they are shown, ITM's swap carries each clip's order label with it, ITC contrasts the text with the clip as shown.
A clip counts only with >= 2 valid frames that MFM left visible.

The module is what DDP wraps, so every task runs inside :meth:`MultimodalPretrainer.forward`, and a task whose
batch has nothing to predict still returns a zero loss connected to its head: every process builds the same graph.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mmcls.labels import IGNORE_INDEX
from mmcls.models.encoder import MultimodalEncoder, parameter_groups
from mmcls.models.fusion import POOLERS, masked_mean

PRETRAIN_TASKS = ("mlm", "mfm", "itm", "itc", "order")
# Submodules of each task (outside the encoder, so in the ``heads`` parameter group; saved apart from the encoder).
TASK_HEADS: dict[str, tuple[str, ...]] = {
    "mlm": ("mlm_head",),
    "mfm": ("mfm_head",),
    "itm": ("itm_head",),
    "itc": ("itc_text", "itc_video"),
    "order": ("order_head",),
}
PRETRAIN_HEADS = tuple(name for names in TASK_HEADS.values() for name in names)
MFM_TEMPERATURE = 0.1  # MFM scores are cosine similarities / this: bounded, so no fp16 overflow
NUM_ORDER_CLASSES = 3  # forward, reverse, shuffle (mmcls.engine.masking.ORDER_CLASSES)


class MLMHead(nn.Module):
    """BERT's LM head: Linear + GELU + LayerNorm, then a decoder tied to the word embeddings (only a bias here)."""

    def __init__(self, hidden_size: int, vocab_size: int, layer_norm_eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden_size, hidden_size)
        self.act = nn.GELU()
        self.norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, hidden: torch.Tensor, word_embeddings: torch.Tensor) -> torch.Tensor:
        """``[N, H]`` and the embedding table ``[V, H]`` -> logits ``[N, V]``."""
        return F.linear(self.norm(self.act(self.dense(hidden))), word_embeddings, self.bias)


class ContrastiveProjection(nn.Module):
    """Linear, then BatchNorm without affine parameters over the batch (as in SimCLR's projection head).

    The normalisation removes what every sample's embedding shares. Mean-pooled outputs of a freshly initialised
    encoder are nearly parallel (cosine ~0.98 between the texts of a batch), which leaves InfoNCE at chance for
    hundreds of updates; centred, they are distinct from the first step (measured: one batch of the synthetic set
    fits to a loss of 0.13 in 50 updates with it, 2.0 without).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features)
        self.norm = nn.BatchNorm1d(out_features, affine=False)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``[k, in]`` -> ``[k, out]``; needs k >= 2 in training (batch statistics)."""
        return self.norm(self.linear(pooled))


def _full_precision(like: torch.Tensor) -> torch.autocast:
    """A region without autocast on ``like``'s device: the contrastive scores stay float32 under bf16/fp16 runs."""
    return torch.autocast(device_type=like.device.type, enabled=False)


def _mean_loss(total: torch.Tensor, count: int) -> torch.Tensor:
    """A summed loss over ``count`` items as a mean; an empty sum stays 0 and connected to the graph."""
    return total / max(count, 1)


def _accuracy(correct: torch.Tensor) -> torch.Tensor:
    """Fraction of true values (detached, for the log); 0 when there is nothing to score."""
    return correct.float().sum().detach() / max(correct.numel(), 1)


class MultimodalPretrainer(nn.Module):
    """``encoder`` (:class:`MultimodalEncoder`, the classifier's: its weights transfer) with the heads of ``tasks``.

    Only ``mode="fusion"`` exists: every task needs both the text and the frames.
    """

    def __init__(self, encoder: MultimodalEncoder, *, tasks: Sequence[str] = PRETRAIN_TASKS, pooling: str = "mean"
                 ) -> None:
        super().__init__()
        if encoder.mode != "fusion":
            raise ValueError(f"pretraining needs both text and frames: mode must be 'fusion', got {encoder.mode!r}")
        unknown = sorted(set(tasks) - set(PRETRAIN_TASKS))
        if unknown or not tasks:
            raise ValueError(f"tasks must be a non-empty subset of {PRETRAIN_TASKS}, got {tuple(tasks)}")
        if pooling not in POOLERS:
            raise ValueError(f"pooling must be one of {sorted(POOLERS)}, got {pooling!r}")
        self.pooling = pooling
        self.encoder = encoder
        config = encoder.text.config
        hidden, feat_dim = encoder.hidden_size, encoder.frame_dim
        self.tasks = tuple(task for task in PRETRAIN_TASKS if task in tasks)
        self.mlm_head = MLMHead(hidden, config.vocab_size, config.layer_norm_eps) if "mlm" in tasks else None
        self.mfm_head = nn.Linear(hidden, feat_dim) if "mfm" in tasks else None
        self.itm_head = nn.Linear(hidden, 1) if "itm" in tasks else None
        self.itc_text = ContrastiveProjection(hidden, hidden) if "itc" in tasks else None
        self.itc_video = ContrastiveProjection(hidden, hidden) if "itc" in tasks else None
        self.order_head = nn.Linear(hidden, NUM_ORDER_CLASSES) if "order" in tasks else None

    @property
    def mode(self) -> str:
        return self.encoder.mode

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """See :func:`mmcls.models.encoder.parameter_groups`."""
        return parameter_groups(self)

    def _needs(self, task: str) -> None:
        if task not in self.tasks:
            raise ValueError(f"inputs for the {task!r} task were given but the pretrainer was built without it "
                             f"(tasks {self.tasks})")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frames: torch.Tensor,
                frame_mask: torch.Tensor, mlm_labels: torch.Tensor | None = None, mfm_mask: torch.Tensor | None = None,
                itm_perm: torch.Tensor | None = None, itm_matched: torch.Tensor | None = None, itc: bool = False,
                itc_temperature: float = 0.07, order_perm: torch.Tensor | None = None,
                order_labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Losses (and accuracies) of the tasks whose inputs are given, from one fused pass.

        - ``input_ids`` ``[B, L]``: the text with MLM masking applied; ``mlm_labels`` ``[B, L]``: original ids at
          masked tokens, -100 elsewhere -> ``loss_mlm``, ``mlm_accuracy``;
        - ``frames``: pixels ``[B, T, 3, S, S]`` or features ``[B, T, D]``, ``frame_mask`` bool ``[B, T]``;
        - ``mfm_mask`` bool ``[B, T]``: frames to mask, in the order of ``frames`` (a mask travels with its video
          under ``itm_perm``; invalid frames are ignored) -> ``loss_mfm``, ``mfm_accuracy``;
        - ``itm_perm`` long ``[B]``: sample i is fused with video ``itm_perm[i]``, ``itm_matched`` bool ``[B]``
          whether that is its own -> ``loss_itm``, ``itm_accuracy``;
        - ``itc``: contrast the (masked) text alone with the clean videos, samples without frames left out ->
          ``loss_itc``;
        - ``order_perm`` long ``[B, T]``: position t of video b shows its frame ``order_perm[b, t]`` (applied to
          ``frames`` first, so every task sees the permuted clips), ``order_labels`` long ``[B]``: forward 0,
          reverse 1, shuffle 2, -100 ignored; a label travels with its video under ``itm_perm`` -> ``loss_order``,
          ``order_accuracy``.
        """
        if (itm_perm is None) != (itm_matched is None):
            raise ValueError("itm_perm and itm_matched go together")
        if (order_perm is None) != (order_labels is None):
            raise ValueError("order_perm and order_labels go together")
        for task, given in (("mlm", mlm_labels), ("mfm", mfm_mask), ("itm", itm_perm), ("itc", itc or None),
                            ("order", order_perm)):
            if given is not None:
                self._needs(task)
        frame_mask = frame_mask.to(device=input_ids.device, dtype=torch.bool)
        if order_perm is not None:  # before the tower: one vision pass, and the tower sees the clip as played
            order_perm = order_perm.to(device=frames.device, dtype=torch.long)
            frames = frames[torch.arange(frames.shape[0], device=frames.device).unsqueeze(1), order_perm]
        feats = self.encoder.frame_features(frames, frame_mask)  # [B, T, D], zeros at invalid frames
        # index of each frame among the batch's valid frames (the MFM targets), -1 at invalid ones
        target_index = (frame_mask.reshape(-1).cumsum(0) - 1).view(frame_mask.shape)  # [B, T]
        fused_feats, fused_mask, masked = feats, frame_mask, mfm_mask
        if order_labels is not None:
            order_labels = order_labels.to(device=input_ids.device, dtype=torch.long)
        if itm_perm is not None:
            fused_feats, fused_mask, target_index = feats[itm_perm], frame_mask[itm_perm], target_index[itm_perm]
            masked = mfm_mask[itm_perm] if mfm_mask is not None else None
            order_labels = order_labels[itm_perm] if order_labels is not None else None
        if masked is not None:
            masked = masked.to(device=fused_mask.device, dtype=torch.bool) & fused_mask  # [B, T]
            fused_feats = fused_feats.masked_fill(masked.unsqueeze(-1), 0.0)
        fused = self.encoder.encode(input_ids, attention_mask, frame_mask=fused_mask, features=fused_feats)

        out: dict[str, torch.Tensor] = {}
        if mlm_labels is not None:
            out.update(self._mlm(fused.hidden[:, :fused.num_text], mlm_labels))
        if masked is not None:
            # [N, D] clean features of every valid frame in the original order: a video that itm_perm gives to two
            # samples is still one set of candidates
            targets = feats[frame_mask].detach()
            out.update(self._mfm(fused.hidden[:, fused.num_text:], masked, targets, target_index))
        needs_pooled = itm_perm is not None or order_labels is not None
        pooled = POOLERS[self.pooling](fused.hidden, fused.mask) if needs_pooled else None
        if itm_perm is not None:
            has_video = frame_mask.any(dim=1)  # [B]
            out.update(self._itm(pooled, itm_matched, has_video & has_video[itm_perm]))
        if order_labels is not None:
            visible = fused_mask & ~masked if masked is not None else fused_mask  # [B, T] frames the fusion sees
            out.update(self._order(pooled, order_labels, visible.sum(dim=1) >= 2))
        if itc:
            out["loss_itc"] = self._itc(input_ids, attention_mask, feats, frame_mask, itc_temperature)
        return out

    def _mlm(self, text_hidden: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy over the masked tokens only (the vocabulary projection of the others is never computed)."""
        selected = labels != IGNORE_INDEX  # [B, L]
        targets = labels[selected]  # [n]
        logits = self.mlm_head(text_hidden[selected], self.encoder.text.word_embeddings)  # [n, V]
        loss = _mean_loss(F.cross_entropy(logits.float(), targets, reduction="sum"), targets.numel())
        return {"loss_mlm": loss, "mlm_accuracy": _accuracy(logits.argmax(-1) == targets)}

    def _mfm(self, frame_hidden: torch.Tensor, masked: torch.Tensor, targets: torch.Tensor,
             target_index: torch.Tensor) -> dict[str, torch.Tensor]:
        """NCE: each masked frame's prediction scored against every valid frame of the batch, its own is right."""
        pred = self.mfm_head(frame_hidden[masked])  # [n, D]
        labels = target_index[masked]  # [n]
        with _full_precision(pred):  # autocast would compute the scores in bf16/fp16
            pred_n, targets_n = F.normalize(pred.float(), dim=-1), F.normalize(targets.float(), dim=-1)
            logits = pred_n @ targets_n.T / MFM_TEMPERATURE  # [n, N] cosine scores
        loss = _mean_loss(F.cross_entropy(logits, labels, reduction="sum"), labels.numel())
        hits = logits.argmax(-1) == labels if labels.numel() else labels.bool()  # no valid frame: argmax undefined
        return {"loss_mfm": loss, "mfm_accuracy": _accuracy(hits)}

    def _itm(self, pooled: torch.Tensor, matched: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Binary cross-entropy of "is this the sample's own video" on the pooled fused sequence, over the samples
        whose own and fused videos both have frames (``valid``; others carry no signal)."""
        logits = self.itm_head(pooled).squeeze(-1).float()  # [B]
        target = matched.to(device=logits.device, dtype=logits.dtype)
        valid = valid.to(logits.device)
        loss = _mean_loss(F.binary_cross_entropy_with_logits(logits[valid], target[valid], reduction="sum"),
                          int(valid.sum()))
        return {"loss_itm": loss, "itm_accuracy": _accuracy(((logits > 0) == target.bool())[valid])}

    def _order(self, pooled: torch.Tensor, labels: torch.Tensor, countable: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cross-entropy of forward / reverse / shuffle on the pooled fused sequence, over the labelled samples
        with >= 2 visible frames (``countable``; with fewer there is no order to see)."""
        logits = self.order_head(pooled).float()  # [B, 3]
        valid = (labels != IGNORE_INDEX) & countable.to(labels.device)  # [B]
        loss = _mean_loss(F.cross_entropy(logits[valid], labels[valid], reduction="sum"), int(valid.sum()))
        return {"loss_order": loss, "order_accuracy": _accuracy((logits.argmax(-1) == labels)[valid])}

    def _itc(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, feats: torch.Tensor,
             frame_mask: torch.Tensor, temperature: float) -> torch.Tensor:
        """Symmetric InfoNCE between the text alone and the frames alone, each through the fusion encoder, over the
        samples that have frames.

        The video side is :meth:`MultimodalEncoder.encode_frames`, so its embedding sees frame order (a mean of
        per-frame features could not tell a video from its reversal); the frame features are reused, the vision
        tower does not run again.
        """
        text = self.encoder.encode(input_ids, attention_mask)  # text alone through the same transformer
        video = self.encoder.encode_frames(feats, frame_mask)  # frames alone
        has_video = frame_mask.any(dim=1)  # [B]
        text_pooled = masked_mean(text.hidden, text.mask)[has_video]  # [k, H]
        video_pooled = masked_mean(video.hidden, video.mask)[has_video]  # [k, H]
        if text_pooled.shape[0] < 2:  # no pair to contrast (and no batch statistics): a zero loss on the graph
            return (self.itc_text.linear(text_pooled).sum() + self.itc_video.linear(video_pooled).sum()) * 0.0
        text_proj, video_proj = self.itc_text(text_pooled), self.itc_video(video_pooled)  # [k, P]
        with _full_precision(text_proj):
            text_emb, video_emb = F.normalize(text_proj.float(), dim=-1), F.normalize(video_proj.float(), dim=-1)
            logits = text_emb @ video_emb.T / temperature  # [k, k]
        labels = torch.arange(logits.shape[0], device=logits.device)
        total = F.cross_entropy(logits, labels, reduction="sum") + F.cross_entropy(logits.T, labels, reduction="sum")
        return _mean_loss(total / 2, labels.numel())
