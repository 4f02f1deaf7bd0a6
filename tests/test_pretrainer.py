"""The pretrainer: MLM (tied decoder), MFM (NCE over the batch's frames), ITM, ITC, order, all in one forward call.

Masks are built by hand here (the masking functions have their own tests); models are tiny and random.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcls.errors import ConfigError
from mmcls.models import (
    PRETRAIN_HEADS,
    MultimodalClassifier,
    MultimodalEncoder,
    MultimodalPretrainer,
    build_encoder,
    build_pretrainer,
    parameter_groups,
)
from mmcls.models.fusion import masked_mean
from mmcls.models.pretrainer import ContrastiveProjection
from tests.helpers import FRAMES, make_batch, make_cfg

FEAT_DIM = 16
BATCH = 4


def make_pretrainer(tokenizer, feats: bool = True, itc: bool = True, **weights: float) -> MultimodalPretrainer:
    """A tiny pretrainer on frame features (``feats``) or pixels; ``weights`` like ``mlm_weight=0``."""
    cfg = make_cfg("clip")
    if feats:
        cfg.data.frame_source, cfg.data.feat_dim = "feats", FEAT_DIM
    cfg.pretrain.itc_weight = 1.0 if itc else 0.0
    for key, value in weights.items():
        setattr(cfg.pretrain, key, value)
    torch.manual_seed(0)
    return build_pretrainer(cfg, tokenizer).eval()


def make_inputs(tokenizer, feats: bool = True, seed: int = 0) -> dict:
    """Every task's inputs for 4 samples: sample 0 has a short video and padded text, sample 3 no video.

    Tokens 2 and 4 are masked for MLM; frames (0, 1), (1, 0) and (2, 3) for MFM; samples 0 and 1 swap videos.
    """
    batch = make_batch(tokenizer, batch=BATCH, seed=seed)
    if feats:
        batch["frames"] = torch.randn(BATCH, FRAMES, FEAT_DIM, generator=torch.Generator().manual_seed(seed))
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, [2, 4]] = batch["input_ids"][:, [2, 4]]
    batch["input_ids"] = batch["input_ids"].clone()
    batch["input_ids"][:, [2, 4]] = tokenizer.mask_token_id
    mfm_mask = torch.zeros(BATCH, FRAMES, dtype=torch.bool)
    mfm_mask[0, 1] = mfm_mask[1, 0] = mfm_mask[2, 3] = True
    perm = torch.tensor([1, 0, 2, 3])
    return {**batch, "mlm_labels": labels, "mfm_mask": mfm_mask, "itm_perm": perm,
            "itm_matched": perm == torch.arange(BATCH), "itc": True}


LOSSES = ("loss_mlm", "loss_mfm", "loss_itm", "loss_itc")
ACCURACIES = ("mlm_accuracy", "mfm_accuracy", "itm_accuracy")


@pytest.mark.parametrize("feats", [True, False])
def test_outputs_are_finite_scalars(tiny_tokenizer, feats):
    model = make_pretrainer(tiny_tokenizer, feats=feats)
    assert not hasattr(model, "heads") and not hasattr(model, "video_head")  # no classification heads
    assert (model.encoder.vision is None) == feats
    out = model(**make_inputs(tiny_tokenizer, feats=feats))
    assert set(out) == {*LOSSES, *ACCURACIES}
    assert all(v.shape == () and torch.isfinite(v) for v in out.values())
    assert all(out[k] > 0 for k in LOSSES)
    assert all(0 <= out[k] <= 1 for k in ACCURACIES)


def test_only_the_given_tasks_run(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer)
    inputs = make_inputs(tiny_tokenizer)
    base = {k: inputs[k] for k in ("input_ids", "attention_mask", "frames", "frame_mask")}
    assert set(model(**base, mlm_labels=inputs["mlm_labels"])) == {"loss_mlm", "mlm_accuracy"}
    assert set(model(**base, itc=True)) == {"loss_itc"}
    with pytest.raises(ValueError, match="itm_perm and itm_matched"):
        model(**base, itm_perm=inputs["itm_perm"])


def test_heads_exist_only_for_switched_on_tasks(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer, itc=False, mfm_weight=0.0)
    assert model.tasks == ("mlm", "itm")
    assert model.mfm_head is None and model.itc_text is None and model.itc_video is None
    inputs = make_inputs(tiny_tokenizer)
    del inputs["itc"]
    with pytest.raises(ValueError, match="'mfm' task"):
        model(**inputs)


def test_mlm_decoder_is_tied_to_the_word_embeddings(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer)
    embeddings = model.encoder.text.word_embeddings
    assert dict(model.mlm_head.named_parameters()).keys() == {"dense.weight", "dense.bias", "norm.weight",
                                                              "norm.bias", "bias"}
    assert model.mlm_head.bias.shape == (embeddings.shape[0],)
    inputs = make_inputs(tiny_tokenizer)
    absent = next(i for i in range(len(tiny_tokenizer)) if i not in inputs["input_ids"])  # not an input token
    loss = model(**inputs)["loss_mlm"]
    loss.backward()
    assert embeddings.grad[absent].abs().sum() > 0  # only the decoder reads that row
    with torch.no_grad():
        embeddings[absent] = 3 * torch.randn(embeddings.shape[1])
    assert not torch.allclose(model(**inputs)["loss_mlm"], loss)


def _train(model: MultimodalPretrainer, inputs: dict, steps: int = 20) -> tuple[dict, dict]:
    """Losses before and after ``steps`` AdamW updates on one fixed batch (dropout off: a deterministic target)."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = {}
    for step in range(steps + 1):
        out = model(**inputs)
        losses = {k: out[k] for k in LOSSES}
        if step == 0:
            first = {k: float(v.detach()) for k, v in losses.items()}
        if step == steps:
            break
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    return first, {k: float(v.detach()) for k, v in losses.items()}


def test_every_task_learns_a_fixed_batch(tiny_tokenizer):
    torch.manual_seed(0)
    model = make_pretrainer(tiny_tokenizer)
    first, last = _train(model, make_inputs(tiny_tokenizer), steps=30)
    for key in LOSSES:
        assert last[key] < 0.5 * first[key], (key, first[key], last[key])


def test_permutation_moves_each_video_with_its_frame_mask(tiny_tokenizer):
    """Swapping videos via ``itm_perm`` equals feeding the swapped videos (and their MFM masks) directly."""
    model = make_pretrainer(tiny_tokenizer, itc=False)
    inputs = make_inputs(tiny_tokenizer)
    perm = inputs["itm_perm"]
    del inputs["itc"]
    swapped = dict(inputs, frames=inputs["frames"][perm], frame_mask=inputs["frame_mask"][perm],
                   mfm_mask=inputs["mfm_mask"][perm], itm_perm=torch.arange(BATCH))
    ref, out = model(**inputs), model(**swapped)
    for key in ("loss_mlm", "loss_mfm", "loss_itm"):
        torch.testing.assert_close(out[key], ref[key])


def test_mfm_zeroes_masked_frames_and_ignores_invalid_ones(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer, itc=False)
    inputs = make_inputs(tiny_tokenizer)
    del inputs["itc"]
    projected = []  # the fused pass's projected frames [B, T, H]
    model.encoder.frame_embedder.register_forward_hook(lambda module, args, output: projected.append(args[0].detach()))
    fused = []
    encode = model.encoder.encode
    model.encoder.encode = lambda *args, **kwargs: fused.append(encode(*args, **kwargs)) or fused[-1]
    ref = model(**inputs)["loss_mfm"]
    # masked frames stay in the attention mask: only their input is hidden
    assert torch.equal(fused[0].mask[:, fused[0].num_text:], inputs["frame_mask"][inputs["itm_perm"]])
    bias = model.encoder.frame_embedder.proj.bias
    # sample 1 holds video 0, whose frame 1 is masked: zero features, so the projection is the bias alone
    torch.testing.assert_close(projected[0][1, 1], bias)
    assert not torch.allclose(projected[0][1, 0], bias)
    invalid = dict(inputs, mfm_mask=inputs["mfm_mask"].clone())
    invalid["mfm_mask"][3, 0] = True  # sample 3 has no frames: nothing to mask there
    torch.testing.assert_close(model(**invalid)["loss_mfm"], ref)


def test_nothing_to_predict_gives_connected_zero_losses(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer, order_weight=1.0).train()
    inputs = make_inputs(tiny_tokenizer)
    inputs["mlm_labels"] = torch.full_like(inputs["mlm_labels"], -100)
    inputs["mfm_mask"] = torch.zeros_like(inputs["mfm_mask"])
    inputs["frame_mask"] = torch.zeros_like(inputs["frame_mask"])  # no video at all: nothing for ITC
    inputs["order_perm"], inputs["order_labels"] = torch.arange(FRAMES).expand(BATCH, FRAMES), torch.arange(BATCH) % 3
    out = model(**inputs)
    for key in ("loss_mlm", "loss_mfm", "loss_itc", "loss_itm", "loss_order"):  # ITM, order: no video to judge
        assert out[key] == 0 and out[key].requires_grad, key
    sum(out[k] for k in (*LOSSES, "loss_order")).backward()
    for name in PRETRAIN_HEADS:  # DDP needs every parameter in the graph, even with zero gradients
        for pname, param in getattr(model, name).named_parameters():
            assert param.grad is not None, f"{name}.{pname}"


def test_itc_is_the_symmetric_infonce_of_the_samples_with_frames(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer)
    inputs = make_inputs(tiny_tokenizer)
    base = {k: inputs[k] for k in ("input_ids", "attention_mask", "frames", "frame_mask")}
    loss = model(**base, itc=True, itc_temperature=0.1)["loss_itc"]
    with torch.no_grad():
        text = model.encoder.encode(base["input_ids"], base["attention_mask"])
        t = F.normalize(model.itc_text(masked_mean(text.hidden, text.mask)[:3]), dim=-1)  # sample 3: no video
        empty = torch.tensor([[model.encoder.cls_id, model.encoder.sep_id]]).expand(len(base["input_ids"]), 2)
        video = model.encoder.encode(empty, torch.ones_like(empty), base["frames"], base["frame_mask"])
        v = F.normalize(model.itc_video(masked_mean(video.hidden, video.mask)[:3]), dim=-1)
        logits = t @ v.T / 0.1
        expected = (F.cross_entropy(logits, torch.arange(3)) + F.cross_entropy(logits.T, torch.arange(3))) / 2
    torch.testing.assert_close(loss, expected)
    other_text = dict(base, input_ids=base["input_ids"].clone())
    other_text["input_ids"][3, 1:6] = tiny_tokenizer.mask_token_id  # the video-less sample is left out
    torch.testing.assert_close(model(**other_text, itc=True, itc_temperature=0.1)["loss_itc"], loss)
    reversed_video = dict(base, frames=base["frames"].clone())
    reversed_video["frames"][1] = base["frames"][1].flip(0)  # sample 1 has all its frames: same set, other order
    assert not torch.allclose(model(**reversed_video, itc=True, itc_temperature=0.1)["loss_itc"], loss)


def test_parameter_groups_put_the_task_heads_in_heads(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer, feats=False, order_weight=1.0)
    groups = parameter_groups(model)
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    heads = {id(p) for p in groups["heads"]}
    assert heads == {id(p) for name in PRETRAIN_HEADS for p in getattr(model, name).parameters()}
    assert all(groups[name] for name in ("vision", "text", "fusion"))


def test_fusion_only(tiny_tokenizer):
    with pytest.raises(ConfigError, match=r"model.mode"):
        build_pretrainer(make_cfg("clip", mode="text"), tiny_tokenizer)
    model = make_pretrainer(tiny_tokenizer)
    with pytest.raises(ValueError, match="fusion"):
        MultimodalPretrainer(MultimodalEncoder(model.encoder.text, None, mode="video", frame_dim=FEAT_DIM))


def test_the_encoder_alone_encodes_and_a_classifier_needs_classes(tiny_tokenizer):
    encoder = build_encoder(make_cfg("clip"), tiny_tokenizer).eval()
    batch = make_batch(tiny_tokenizer)
    assert encoder.encode(**batch).hidden.shape == (3, 10 + FRAMES, 32)
    with pytest.raises(ValueError, match="num_lv2"):
        MultimodalClassifier(encoder, num_lv2=0)


def test_itm_scores_only_samples_whose_both_videos_have_frames(tiny_tokenizer):
    """Sample 3 has no video: matched to it or swapped onto it, its input would not depend on the label."""
    model = make_pretrainer(tiny_tokenizer)
    inputs = make_inputs(tiny_tokenizer)
    inputs["itm_perm"] = torch.tensor([3, 0, 2, 1])  # 0 gets the empty video, 3 keeps its own (empty)
    inputs["itm_matched"] = inputs["itm_perm"] == torch.arange(BATCH)
    logits = []
    model.itm_head.register_forward_hook(lambda module, args, out: logits.append(out.squeeze(-1)))
    out = model(**inputs)
    valid = torch.tensor([False, True, True, False])
    expected = F.binary_cross_entropy_with_logits(logits[0][valid].float(), inputs["itm_matched"][valid].float())
    torch.testing.assert_close(out["loss_itm"], expected)


def test_mfm_is_the_nce_of_the_cosine_scores(tiny_tokenizer):
    """Reference value: each masked frame's prediction against every valid frame of the batch (a video given to two
    samples by the ITM map counts once), its own frame being the answer."""
    model = make_pretrainer(tiny_tokenizer, itc=False)
    inputs = {**make_inputs(tiny_tokenizer), "itc": False}
    inputs["itm_perm"] = torch.tensor([1, 1, 2, 3])  # samples 0 and 1 both see video 1
    inputs["itm_matched"] = inputs["itm_perm"] == torch.arange(BATCH)
    hidden = []
    model.mfm_head.register_forward_hook(lambda module, args, out: hidden.append(out))
    out = model(**inputs)
    frame_mask = inputs["frame_mask"]
    targets = F.normalize(inputs["frames"][frame_mask].float(), dim=-1)  # [N, D] valid frames, original order
    index = (frame_mask.reshape(-1).cumsum(0) - 1).view(frame_mask.shape)[inputs["itm_perm"]]
    masked = inputs["mfm_mask"][inputs["itm_perm"]] & frame_mask[inputs["itm_perm"]]
    scores = F.normalize(hidden[0].float(), dim=-1) @ targets.T / 0.1
    torch.testing.assert_close(out["loss_mfm"], F.cross_entropy(scores, index[masked]))


def test_contrastive_projection_removes_what_the_batch_shares():
    """Nearly parallel inputs (as a fresh encoder's pooled outputs are) come out centred and far from parallel in
    training; evaluation uses the running statistics."""
    torch.manual_seed(0)
    head = ContrastiveProjection(8, 8).train()
    pooled = torch.randn(8) * 10 + torch.randn(6, 8) * 0.1  # [6, 8], pairwise cosine ~1
    out = head(pooled)
    torch.testing.assert_close(out.mean(dim=0), torch.zeros(8), atol=1e-5, rtol=0)
    cosine = F.normalize(out, dim=-1) @ F.normalize(out, dim=-1).T
    assert cosine[~torch.eye(6, dtype=torch.bool)].abs().mean() < 0.5
    head.eval()
    assert not torch.allclose(head(pooled).mean(dim=0), torch.zeros(8), atol=1e-3)


def _order_inputs(tokenizer, videos: int = 2) -> dict:
    """Each of ``videos`` random 4-frame videos (features) three times, with the same text: forward, reversed and
    shuffled. The three copies hold the same frames, so only their order tells the labels apart."""
    batch = make_batch(tokenizer, batch=videos)
    frames = torch.randn(videos, FRAMES, FEAT_DIM, generator=torch.Generator().manual_seed(1))
    orders = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2]])
    return {"input_ids": batch["input_ids"].repeat_interleave(3, 0),
            "attention_mask": batch["attention_mask"].repeat_interleave(3, 0),
            "frames": frames.repeat_interleave(3, 0), "frame_mask": torch.ones(3 * videos, FRAMES, dtype=torch.bool),
            "order_perm": orders.repeat(videos, 1), "order_labels": torch.arange(3).repeat(videos)}


def test_the_order_head_learns_what_only_the_frame_order_tells(tiny_tokenizer):
    """Without the permutation (or blind to order) the three copies are one input with three labels: loss >= ln 3."""
    model = make_pretrainer(tiny_tokenizer, itc=False, order_weight=1.0)
    assert model.tasks[-1] == "order" and model.order_head.out_features == 3
    inputs = _order_inputs(tiny_tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        out = model(**inputs)
        first = float(out["loss_order"].detach()) if first is None else first
        optimizer.zero_grad()
        out["loss_order"].backward()
        optimizer.step()
    out = model(**inputs)
    last = float(out["loss_order"].detach())
    assert first > 0.9 and last < 0.3, (first, last)
    assert out["order_accuracy"] == 1.0


def test_order_permutes_the_pixels_before_the_tower_and_labels_travel_with_itm(tiny_tokenizer):
    model = make_pretrainer(tiny_tokenizer, feats=False, itc=False, order_weight=1.0)
    inputs = make_inputs(tiny_tokenizer, feats=False)  # samples 0 and 1 swap videos; video 0 has 2 frames
    del inputs["itc"]
    inputs["order_perm"] = torch.tensor([[1, 0, 2, 3], [3, 2, 1, 0], [0, 1, 2, 3], [0, 1, 2, 3]])
    inputs["order_labels"] = torch.tensor([1, 1, 0, -100])
    seen = []
    model.encoder.vision.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    logits = []
    model.order_head.register_forward_hook(lambda module, args, out: logits.append(out.float()))
    out = model(**inputs)
    rows = torch.arange(BATCH).unsqueeze(1)
    permuted = inputs["frames"][rows, inputs["order_perm"]]
    direct = model(**dict(inputs, frames=permuted, order_perm=torch.arange(FRAMES).expand(BATCH, FRAMES)))
    for key in ("loss_mlm", "loss_mfm", "loss_itm", "loss_order"):  # permuting inside = feeding the permuted clips
        torch.testing.assert_close(out[key], direct[key])
    model(**{k: v for k, v in inputs.items() if not k.startswith("order")})
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[0], seen[2])  # the tower saw the permuted pixels
    # sample 0 shows video 1 (label 1, frame 0 masked: 3 visible); sample 1 shows video 0 with its frame 1 masked
    # (1 visible: no order to see); sample 2 its own (label 0); sample 3 no video
    expected = F.cross_entropy(logits[0][[0, 2]], torch.tensor([1, 0]))
    torch.testing.assert_close(out["loss_order"], expected)
    with pytest.raises(ValueError, match="order_perm and order_labels"):
        model(**dict(inputs, order_labels=None))
