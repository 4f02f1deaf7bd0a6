"""The temporal diagnostic: the frame perturbations (padding and masks kept right), an order-blind and an
order-aware stub model, and the command end to end on a tiny model folder, with its section in report.html."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from mmcls.cli import run_main
from mmcls.errors import UserError
from mmcls.workflow.temporal import (
    ORIGINAL,
    PERTURBATIONS,
    hflip_frames,
    one_frame,
    perturb,
    predict_perturbed,
    reverse_frames,
    shuffle_frames,
    summarize,
)
from tests.helpers import tiny_overrides


def numbered(lengths: list[int], frames: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``[B, T, 3, 2, 2]`` whose every pixel is the frame's number 1 ... n (0 for padding), and the mask."""
    mask = torch.zeros(len(lengths), frames, dtype=torch.bool)
    pixels = torch.zeros(len(lengths), frames, 3, 2, 2, dtype=torch.uint8)
    for b, n in enumerate(lengths):
        mask[b, :n] = True
        pixels[b, :n] = torch.arange(1, n + 1, dtype=torch.uint8)[:, None, None, None]
    return pixels, mask


def order(pixels: torch.Tensor) -> list[list[int]]:
    return pixels[:, :, 0, 0, 0].tolist()


def test_reverse_and_shuffle_permute_only_the_valid_frames():
    pixels, mask = numbered([5, 3, 1, 0])
    out, out_mask = reverse_frames(pixels, mask)
    assert order(out) == [[5, 4, 3, 2, 1], [3, 2, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert torch.equal(out_mask, mask) and out_mask is not mask
    assert torch.equal(out[1, 0], pixels[1, 2])  # whole frames move, not single values
    assert order(pixels)[0] == [1, 2, 3, 4, 5]  # the input is left alone
    features = pixels[:, :, :, 0, 0].float()  # cached frame features [B, T, D] permute the same way
    assert reverse_frames(features, mask)[0][:, :, 0].tolist() == order(out)

    shuffled, shuffled_mask = shuffle_frames(pixels, mask, seed=0, keys=["a", "b", "c", "d"])
    assert torch.equal(shuffled_mask, mask)
    rows = order(shuffled)
    assert sorted(rows[0]) == [1, 2, 3, 4, 5] and rows[0] != [1, 2, 3, 4, 5]
    assert sorted(rows[1][:3]) == [1, 2, 3] and rows[1][3:] == [0, 0]  # padding stays at the end
    assert rows[2:] == [[1, 0, 0, 0, 0], [0] * 5]
    # fixed by (seed, video id): the same order in another batch, another order under another seed
    again, _ = shuffle_frames(pixels[:1], mask[:1], seed=0, keys=["a"])
    assert order(again)[0] == rows[0]
    orders = {tuple(order(shuffle_frames(pixels[:1], mask[:1], seed=s, keys=["a"])[0])[0]) for s in range(6)}
    assert len(orders) > 2


def test_one_frame_keeps_the_first_or_the_middle_valid_frame():
    pixels, mask = numbered([5, 4, 1, 0])
    first, first_mask = one_frame(pixels, mask, "first")
    middle, middle_mask = one_frame(pixels, mask, "middle")
    assert order(first) == [[1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0] * 5]
    assert order(middle) == [[3, 0, 0, 0, 0], [3, 0, 0, 0, 0], [1, 0, 0, 0, 0], [0] * 5]
    expected = [[True, False, False, False, False]] * 3 + [[False] * 5]
    assert first_mask.tolist() == expected and middle_mask.tolist() == expected
    assert torch.equal(perturb("middle_frame", pixels, mask)[0], middle)


def test_hflip_mirrors_the_width_axis_only():
    pixels = torch.arange(2 * 3 * 2 * 3, dtype=torch.uint8).view(1, 2, 3, 2, 3)
    mask = torch.tensor([[True, False]])
    out, out_mask = hflip_frames(pixels, mask)
    assert torch.equal(out, pixels.flip(-1)) and torch.equal(out_mask, mask)
    assert out[0, 0, 0, 0].tolist() == [2, 1, 0]


def test_an_unknown_perturbation_is_an_error_naming_the_flag(capsys):
    from mmcls.commands import time_diagnostic

    with pytest.raises(Exception, match="unknown perturbation 'sideways'"):
        perturb("sideways", *numbered([2]))
    assert tuple(time_diagnostic.PERTURBATIONS) == PERTURBATIONS  # the command's choices (kept import-free)
    with pytest.raises(SystemExit):
        time_diagnostic.main(["--model", "x", "--perturbations", "sideways"])
    assert "invalid choice: 'sideways'" in capsys.readouterr().err


class Brightness(nn.Module):
    """A stub with the classifier's forward: 4 classes by the mean brightness of the valid frames (order-blind:
    integer sums, so a permutation gives exactly the same logits)."""

    def forward(self, input_ids, attention_mask, frames=None, frame_mask=None):
        per_frame = frames.long().sum(dim=(2, 3, 4)) * frame_mask  # [B, T]
        mean = per_frame.sum(dim=1).double() / frame_mask.sum(dim=1).clamp(min=1) / frames[0, 0].numel()
        centers = torch.tensor([30.0, 90.0, 150.0, 210.0], dtype=torch.double)
        return {"logits": -(mean[:, None] - centers) ** 2}


class Direction(nn.Module):
    """A stub whose prediction is the direction of time: class 1 when the last valid frame is brighter than the
    first, else class 0."""

    def forward(self, input_ids, attention_mask, frames=None, frame_mask=None):
        per_frame = frames.float().mean(dim=(2, 3, 4))  # [B, T]
        last = frame_mask.sum(dim=1).clamp(min=1) - 1
        rising = per_frame.gather(1, last[:, None])[:, 0] > per_frame[:, 0]
        return {"logits": torch.stack([(~rising).float(), rising.float()], dim=1)}


def ramp_batches(videos: int = 24, frames: int = 6) -> list[dict]:
    """Batches of videos whose brightness ramps up or down over 3 ... 6 frames (the level says the bucket)."""
    g = torch.Generator().manual_seed(0)
    batches = []
    for start in range(0, videos, 8):
        size = min(8, videos - start)
        mask = torch.zeros(size, frames, dtype=torch.bool)
        pixels = torch.zeros(size, frames, 3, 4, 4, dtype=torch.uint8)
        labels = torch.zeros(size, dtype=torch.long)
        for b in range(size):
            n = 3 + (start + b) % 4
            level = int(torch.randint(20, 230, (1,), generator=g))
            steps = torch.arange(n) * 4 * (1 if (start + b) % 2 else -1)
            mask[b, :n] = True
            pixels[b, :n] = (level + steps - steps.float().mean()).clamp(0, 255).to(torch.uint8)[:, None, None, None]
            labels[b] = (start + b) % 2
        batches.append({"ids": [f"v{start + b}" for b in range(size)], "input_ids": torch.ones(size, 3),
                        "attention_mask": torch.ones(size, 3), "frames": pixels, "frame_mask": mask,
                        "labels": labels})
    return batches


def test_an_order_blind_model_changes_nothing_under_reverse_and_shuffle():
    result = predict_perturbed(Brightness(), ramp_batches())
    report = summarize(result, ["a", "b", "c", "d"], [0, 0, 1, 1], model="stub", split="val")
    rows = {row["name"]: row for row in report.rows}
    assert list(rows) == [ORIGINAL, *PERTURBATIONS]
    assert len(set(result.predictions[ORIGINAL].tolist())) >= 3  # the stub predicts several classes
    assert rows["reverse"]["changed"] == rows["shuffle"]["changed"] == 0.0
    assert rows["hflip"]["changed"] == 0.0  # uniform frames: mirroring changes no pixel sum
    assert rows["reverse"]["mean_f1"] == rows[ORIGINAL]["mean_f1"]
    assert rows["first_frame"]["changed"] > 0  # one frame of a ramp is darker or brighter than its mean
    assert report.videos == 24 and report.multi_frame_videos == 24 and report.labelled == 24


def test_an_order_aware_model_changes_every_prediction_under_reverse(capsys):
    result = predict_perturbed(Direction(), ramp_batches())
    report = summarize(result, ["left", "right"], [0, 1], model="stub", split="val")
    rows = {row["name"]: row for row in report.rows}
    assert rows[ORIGINAL]["mean_f1"] == 1.0  # the labels are the direction
    assert rows["reverse"]["changed"] == 1.0 and rows["reverse"]["changed_multi_frame"] == 1.0
    assert rows["reverse"]["mean_f1"] == 0.0
    assert 0 < rows["shuffle"]["changed"] < 1
    assert rows["first_frame"]["changed"] == 0.5  # one frame: always "not rising", right for the falling half
    assert {entry["id"]: entry["reversed_to"] for entry in report.classes} == {"left": "right", "right": "left"}
    assert all(entry["changed"]["reverse"] == 1.0 for entry in report.classes)
    from mmcls.workflow.temporal import format_report

    text = format_report(report)
    assert "reverse" in text and "100.0%" in text and "order matters for 100.0% of the videos" in text
    blind = format_report(summarize(predict_perturbed(Brightness(), ramp_batches()), list("abcd"), [0, 0, 1, 1]))
    assert "order-blind" in blind


def test_with_a_flip_map_hflip_is_scored_against_the_swapped_labels():
    """A model that mirrors its direction classes exactly: every prediction of pair (1, 2) changes under hflip,
    none is inconsistent with the map, and the mean-F1 against the swapped labels is the unperturbed one."""
    import numpy as np

    from mmcls.workflow.temporal import TemporalPredictions, format_report

    labels = np.array([0, 1, 2, 1, 2, 0, 1])
    original = np.array([0, 1, 2, 2, 2, 0, 1])  # one mistake
    swap = np.array([0, 2, 1])
    result = TemporalPredictions([f"v{i}" for i in range(7)], {ORIGINAL: original, "hflip": swap[original]}, labels,
                                 np.full(7, 4))
    rows = {row["name"]: row for row in summarize(result, ["still", "left", "right"], [0, 1, 1]).rows}
    blind = {row["name"]: row for row in summarize(result, ["still", "left", "right"], [0, 1, 1],
                                                   flip_lv2=swap).rows}
    assert rows["hflip"]["changed"] == blind["hflip"]["changed"] == pytest.approx(5 / 7)
    assert "changed_vs_flipped" not in rows["hflip"] and blind["hflip"]["changed_vs_flipped"] == 0.0
    assert blind["hflip"]["mean_f1"] == pytest.approx(blind[ORIGINAL]["mean_f1"])
    assert rows["hflip"]["mean_f1"] < rows[ORIGINAL]["mean_f1"]  # without the map the mirrored videos look wrong
    report = summarize(result, ["still", "left", "right"], [0, 1, 1], flip_lv2=swap)
    assert report.flip_pairs == 1 and "flip map (1 pair)" in format_report(report)


def test_the_direction_summary_counts_right_directions_among_right_shapes_and_who_reverses():
    """Classes: 0 still, 1/2 a left/right pair (the flip map). Of the four labelled videos of the pair with 2+ frames
    (a one-frame video shows no direction and does not count), three have the right shape and two of those the right
    direction; under reverse the three pair predictions of 2+ frames move to the partner, and one of the three other
    videos changes."""
    import numpy as np

    from mmcls.workflow.temporal import TemporalPredictions, format_report

    swap = np.array([0, 2, 1])
    labels = np.array([1, 1, 2, 2, 0, 0, 1])
    original = np.array([1, 2, 2, 0, 0, 0, 1])
    reverse = np.array([2, 1, 1, 0, 1, 0, 1])
    frames = np.array([4, 4, 4, 4, 4, 4, 1])
    result = TemporalPredictions([f"v{i}" for i in range(7)], {ORIGINAL: original, "reverse": reverse}, labels,
                                 frames)
    report = summarize(result, ["still", "left", "right"], [0, 1, 1], flip_lv2=swap)
    direction = report.direction
    assert direction["pair_videos"] == 4 and direction["pairs"] == 1 and direction["source"] == "flip map"
    assert direction["right_shape"] == 3 and direction["right_direction"] == pytest.approx(2 / 3)
    assert direction["reverse_changed_directional"] == 1.0 and direction["reverse_to_pair"] == 1.0
    assert direction["reverse_changed_others"] == pytest.approx(1 / 3)
    text = format_report(report)
    assert "right direction for 66.7% of the 3 videos of a pair with the right shape (of 4 labelled, 2+ frames)" in text
    assert "the flip map names only the left/right pairs" in text
    assert "100.0% of the videos predicted as a directional class change (100.0% of the paired ones to the " \
           "partner), 33.3% of the others" in text
    assert summarize(result, ["still", "left", "right"], [0, 1, 1]).direction == {}  # no map, no pairs


def test_a_reverse_map_names_the_directional_classes_and_a_bad_one_is_refused(tmp_path):
    """Classes: still, rise, fall (a pair), spin (directional, no partner). A reverse map counts spin as
    directional, so its change under reverse is expected; the flip map alone would count it among the others."""
    import numpy as np

    from mmcls.data.categories import CategorySpace
    from mmcls.workflow.temporal import TemporalPredictions, read_reverse_map

    categories = CategorySpace.build(["0101", "0102", "0103", "0204"])
    path = tmp_path / "reverse.json"
    path.write_text(json.dumps({"0102": "0103", "0103": "0102", "0204": None}), encoding="utf-8")
    classes = read_reverse_map(path, categories)
    assert classes.partner.tolist() == [-1, 2, 1, -1] and classes.directional.tolist() == [False, True, True, True]
    original = np.array([0, 1, 2, 3, 3])
    reverse = np.array([0, 2, 1, 0, 3])
    result = TemporalPredictions([f"v{i}" for i in range(5)], {ORIGINAL: original, "reverse": reverse},
                                 np.array([0, 1, 2, 3, 3]), np.full(5, 4))
    direction = summarize(result, categories.lv2_ids, [0, 0, 0, 1], direction_classes=classes).direction
    assert direction["source"] == "reverse map" and direction["directional_classes"] == 3
    assert direction["right_direction"] == 1.0 and direction["pair_videos"] == 2
    assert direction["reverse_changed_directional"] == pytest.approx(3 / 4)
    assert direction["reverse_to_pair"] == 1.0 and direction["reverse_changed_others"] == 0.0
    for bad, message in (({"0102": "0999", "0999": "0102"}, "unknown category '0999'"),
                         ({"0102": "0103"}, "'0103', which is not listed"),
                         ({"0102": "0103", "0103": "0101", "0101": "0103"}, "'0102' plays backwards as '0103', but"),
                         ({"0102": "0103", "0103": None}, "but '0103' as null"),
                         ({"0102": ["0103"]}, "must map to a category id or null, got"),
                         ({"0102": "0102"}, "plays backwards as itself"),
                         ([1, 2], "expected a JSON object")):
        path.write_text(json.dumps(bad), encoding="utf-8")
        with pytest.raises(UserError, match=message):
            read_reverse_map(path, categories)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(UserError, match="cannot read it"):
        read_reverse_map(path, categories)


@pytest.fixture(scope="module")
def tiny_run(synthetic_root, tmp_path_factory):
    from mmcls.config import build_config
    from mmcls.engine.finetune import finetune

    run = tmp_path_factory.mktemp("temporal") / "run"
    finetune(build_config({}, tiny_overrides(synthetic_root, run, "train.max_steps=2")))
    return run


def test_the_command_writes_the_json_and_the_report_shows_it(tiny_run, synthetic_root, capsys):
    from mmcls.commands import time_diagnostic
    from mmcls.report import build_report

    assert run_main(time_diagnostic.main, ["--model", str(tiny_run / "best"), "--precision", "no"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tiny_run / 'temporal.json'}" in out and "reverse" in out and "middle_frame" in out
    data = json.loads((tiny_run / "temporal.json").read_text(encoding="utf-8"))
    assert [row["name"] for row in data["rows"]] == [ORIGINAL, *PERTURBATIONS]
    assert data["split"] == "val" and data["videos"] == data["labelled"] > 0
    # split val is the run's own validation hold-out: the unperturbed score is the run's best validation score
    result = json.loads((tiny_run / "result.json").read_text(encoding="utf-8"))
    assert data["rows"][0]["mean_f1"] == pytest.approx(result["mean_f1"], abs=1e-6)
    assert all(0.0 <= row["changed"] <= 1.0 for row in data["rows"])

    page = build_report(tiny_run).read_text(encoding="utf-8")
    assert "Does the model use time?" in page and "middle_frame" in page and "reversed to" in page

    truth = synthetic_root / "annotations" / "test_truth.csv"
    out_json = tiny_run / "temporal_test.json"
    argv = ["--model", str(tiny_run / "best"), "--split", "test", "--truth", str(truth), "--out", str(out_json),
            "--perturbations", "reverse", "--precision", "no"]
    reverse_map = synthetic_root / "reverse_label_map.json"
    assert run_main(time_diagnostic.main, [*argv, "--reverse-map", str(reverse_map), "--top", "0"]) == 0
    assert "direction (reverse map: " in capsys.readouterr().out
    test = json.loads(out_json.read_text(encoding="utf-8"))
    assert [row["name"] for row in test["rows"]] == [ORIGINAL, "reverse"]
    assert test["labelled"] == test["videos"] and test["rows"][0]["mean_f1"] is not None
    listed = json.loads(reverse_map.read_text(encoding="utf-8"))
    assert test["direction"]["source"] == "reverse map" and test["direction"]["directional_classes"] == len(listed)
    assert "reverse_changed_others" in test["direction"]

    capsys.readouterr()
    bad = tiny_run / "bad_truth.csv"
    bad.write_text(truth.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    assert run_main(time_diagnostic.main, [*argv[:4], "--truth", str(bad), "--precision", "no"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {bad}") and "ids are missing" in err and len(err.splitlines()) == 1


def test_the_report_section_reads_the_json_and_survives_a_broken_one(tmp_path):
    import numpy as np

    from mmcls.report import temporal_section
    from mmcls.workflow.temporal import DirectionClasses, write_report

    assert temporal_section(tmp_path) == []  # no diagnostic, no section
    result = predict_perturbed(Direction(), ramp_batches())
    report = summarize(result, ["left", "right"], [0, 1], model="m", split="val")
    write_report(report, tmp_path / "temporal.json")
    page = "".join(temporal_section(tmp_path))
    assert "<td>reverse</td>" in page and "100.0%" in page and "<td>right</td>" in page  # left is reversed to right
    assert "right direction for" not in page  # no map: no direction figures
    classes = DirectionClasses(np.array([1, 0]), np.array([True, True]), "reverse map")
    write_report(summarize(result, ["left", "right"], [0, 1], direction_classes=classes), tmp_path / "temporal.json")
    page = "".join(temporal_section(tmp_path))  # a reverse map and no flip map: the direction lines are there
    assert "direction (reverse map: 2 directional classes, 1 pair)" in page and "under reverse: 100.0%" in page
    (tmp_path / "temporal.json").write_text("{not json", encoding="utf-8")
    assert "cannot be read" in "".join(temporal_section(tmp_path))
