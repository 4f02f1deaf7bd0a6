"""Label-aware flips (data.flip_label_map): config checks, the training swap, the TTA permutation, the map in best/."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from torch import nn

from mmcls.config import build_config
from mmcls.data.categories import CategorySpace
from mmcls.data.flips import FLIP_MAP_FILE, FlipLabelMap
from mmcls.errors import ConfigError
from mmcls.logits import softmax

SPACE = CategorySpace.build(["0101", "0102", "0105", "0201", "0202"])  # level 1: 01, 02


def _data(root, *overrides):
    return build_config({}, [f"data.root={root}", *overrides]).data


# ----------------------------------------------------------------------------------------------------------------
# config


def test_a_mapping_must_be_symmetric_and_name_known_categories(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.flip_label_map: not symmetric: '0101' maps to '0102' but '0102' "
                                          r"is missing") as info:
        build_config({"data": {"flip_label_map": {"0101": "0102"}}})
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"^data\.flip_label_map: not symmetric: '0101' maps to '0102' but '0102' "
                                          r"maps to '0105'"):
        build_config({"data": {"flip_label_map": {"0101": "0102", "0102": "0105", "0105": "0102"}}})
    cfg = _data(tmp_path, 'data.flip_label_map={"0101": "0999", "0999": "0101"}')
    with pytest.raises(ConfigError, match=r"^data\.flip_label_map: unknown category '0999' \(not among the 5 "):
        FlipLabelMap.from_config(cfg, SPACE)
    flips = FlipLabelMap.from_config(_data(tmp_path, 'data.flip_label_map={"0101": "0201", "0201": "0101", '
                                                     '"0105": "0105"}'), SPACE)
    assert flips.pairs == {"0101": "0201", "0201": "0101"}  # a category mapped to itself stays
    assert flips.permutation.tolist() == [3, 1, 2, 0, 4]
    assert FlipLabelMap.from_config(_data(tmp_path), SPACE) is None


def test_files_relative_to_the_root(tmp_path):
    cfg = _data(tmp_path, "data.flip_label_map=flips.json")
    with pytest.raises(ConfigError, match=r"^data\.flip_label_map: file not found: .*flips\.json$"):
        FlipLabelMap.from_config(cfg, SPACE)
    (tmp_path / "flips.json").write_text(json.dumps({"0101": "0102", "0102": "0101", "0201": "0202"}))
    with pytest.raises(ConfigError, match=r"^data\.flip_label_map: .*flips\.json: not symmetric: '0201' maps to "
                                          r"'0202' but '0202' is missing"):
        FlipLabelMap.from_config(cfg, SPACE)
    (tmp_path / "flips.json").write_text(json.dumps({"0101": "0102", "0102": "0101"}))
    assert FlipLabelMap.from_config(cfg, SPACE).pairs == {"0101": "0102", "0102": "0101"}
    (tmp_path / "flips.txt").write_text("# left / right\n0101 0102\n0201,0202  # comment\n0202 0201\n")
    pairs = FlipLabelMap.from_config(_data(tmp_path, "data.flip_label_map=flips.txt"), SPACE).pairs
    assert pairs == {"0101": "0102", "0102": "0101", "0201": "0202", "0202": "0201"}  # text pairs swap both ways


# ----------------------------------------------------------------------------------------------------------------
# training: the labels of exactly the flipped videos are swapped


def test_the_dataset_swaps_labels_exactly_when_it_flips(synthetic_root):
    from mmcls.data.dataset import build_dataset
    from mmcls.data.soft_targets import SoftTargets
    from mmcls.data.splits import AnnotationSet, build_tokenizer, load_labelled_splits

    base = [f"data.root={synthetic_root}", "data.category_file=category_ids.txt", "data.max_frames=2",
            "data.frame_size=16", "data.max_text_len=16", "data.hflip=0.5", "data.color_jitter=0",
            "data.frame_source=zip"]
    cfg = build_config({}, base).data
    train, _, space = load_labelled_splits(cfg, seed=0)
    pairs = json.loads((synthetic_root / "flip_label_map.json").read_text())
    flips = FlipLabelMap.from_config(build_config({}, [*base, "data.flip_label_map=flip_label_map.json"]).data,
                                     space)
    assert flips is not None and flips.pairs == pairs
    records = [r for r in train.records if r.category_id in pairs][:8] + \
        [r for r in train.records if r.category_id not in pairs][:4]
    train = AnnotationSet(train.folder, records)
    teacher = np.random.default_rng(0).dirichlet(np.ones(space.num_lv2), len(records)).astype(np.float32)
    soft = SoftTargets(space, 0.5, [r.id for r in records], teacher)
    tokenizer = build_tokenizer(cfg)
    aware = build_dataset(cfg, train, tokenizer, space, train=True, soft_targets=soft, flip_map=flips)
    blind = build_dataset(cfg, train, tokenizer, space, train=True, soft_targets=soft)  # the same draws
    unflipped = build_dataset(build_config({}, [*base, "data.hflip=0"]).data, train, tokenizer, space, train=True)
    seen = set()
    for epoch in (0, 1):
        for dataset in (aware, blind, unflipped):
            dataset.set_epoch(epoch)
        for i, record in enumerate(records[:4] if epoch else records):
            got, plain, straight = aware[i], blind[i], unflipped[i]
            if got["frames"] is None:
                continue
            assert torch.equal(got["frames"], plain["frames"])  # per sample: the same (seed, epoch, index) draws
            flipped = not torch.equal(got["frames"], straight["frames"])
            if flipped:
                assert torch.equal(got["frames"], straight["frames"].flip(-1))
            mapped = record.category_id in pairs
            seen.add((flipped, mapped))
            category = pairs[record.category_id] if flipped and mapped else record.category_id
            assert (got["label"], got["label_lv1"]) == (space.lv2_index(category), space.lv1_index(category))
            assert (plain["label"], plain["label_lv1"]) == (space.lv2_index(record.category_id),
                                                            space.lv1_index(record.category_id))
            expected_soft = plain["soft_target"][flips.permutation] if flipped else plain["soft_target"]
            np.testing.assert_array_equal(got["soft_target"], expected_soft)
            if flipped and mapped:  # the soft target moved with the label
                assert got["soft_target"][got["label"]] == plain["soft_target"][plain["label"]]
                assert not np.array_equal(got["soft_target"], plain["soft_target"])
    assert seen == {(True, True), (False, True), (True, False), (False, False)}


# ----------------------------------------------------------------------------------------------------------------
# test-time augmentation


class MirrorStub(nn.Module):
    """Scores class 0 by how much brighter the left half of the frames is than the right, class 1 the opposite:
    a mirrored video scores the other class of the pair, as a direction classifier would."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = SimpleNamespace(reads_features=False, frame_dim=16)
        self.scale = nn.Parameter(torch.tensor(0.2))

    def forward(self, input_ids, attention_mask, frames, frame_mask):
        width = frames.shape[-1]
        pixels = frames.float()
        left, right = pixels[..., : width // 2], pixels[..., width - width // 2:]
        tilt = left.mean(dim=(1, 2, 3, 4)) - right.mean(dim=(1, 2, 3, 4))
        logits = torch.zeros(frames.shape[0], 3)
        logits[:, 0], logits[:, 1] = self.scale * tilt, -self.scale * tilt
        return {"logits": logits}


def test_tta_swaps_the_flipped_views_scores(synthetic_root):
    from mmcls.data.splits import build_tokenizer
    from mmcls.model_folder import LoadedModel
    from mmcls.workflow.predict import TestTimeAugmentation, predict_model

    space = CategorySpace.build(["0101", "0102", "0201"])
    cfg = build_config({}, [f"data.root={synthetic_root}", "data.max_frames=2", "data.frame_size=16",
                            "data.resize_size=16", "data.max_text_len=16", "data.num_workers=0",
                            "train.eval_batch_size=32"])
    flips = FlipLabelMap({"0101": "0102", "0102": "0101"}, space)
    accelerator = Accelerator(cpu=True)
    tokenizer = build_tokenizer(cfg.data)
    results = {}
    for name, flip_map, tta in (("single", flips, TestTimeAugmentation()),
                                ("aware", flips, TestTimeAugmentation(hflip=True)),
                                ("blind", None, TestTimeAugmentation(hflip=True))):
        loaded = LoadedModel(MirrorStub(), cfg, space, tokenizer, synthetic_root, flip_map)
        results[name] = softmax(predict_model(loaded, "test", accelerator, tta=tta)[1])
    single, aware, blind = results["single"], results["aware"], results["blind"]
    assert np.abs(single[:, 0] - single[:, 1]).max() > 0.05  # the stub does tell left from right
    np.testing.assert_allclose(aware, single, atol=1e-5)  # the mirrored view agrees once its pair is swapped back
    np.testing.assert_allclose(blind[:, 0], blind[:, 1], atol=1e-5)  # a label-blind average cancels the direction


# ----------------------------------------------------------------------------------------------------------------
# the map travels with the model


def test_the_map_travels_in_best_and_predict_uses_it(tmp_path, tiny_tokenizer, monkeypatch, capsys):
    from mmcls.cli import run_main
    from mmcls.commands import predict as predict_command
    from mmcls.engine.inference import InferenceResult
    from mmcls.model_folder import load_portable, save_portable
    from mmcls.workflow import predict as predict_module
    from tests.helpers import NUM_LV1, NUM_LV2, build, make_cfg

    data = tmp_path / "data"  # a data root with a flip map file, used for training only
    (data / "annotations").mkdir(parents=True)
    (data / "flips.json").write_text(json.dumps({"0101": "0102", "0102": "0101"}))
    space = CategorySpace.build(["0101", "0102", "0103", "0201", "0202", "0301", "0302"])
    assert (space.num_lv2, space.num_lv1) == (NUM_LV2, NUM_LV1)
    cfg = make_cfg()
    cfg.data.root, cfg.data.flip_label_map = str(data), "flips.json"
    flips = FlipLabelMap.from_config(cfg.data, space)
    best = tmp_path / "best"
    save_portable(best, build(tiny_tokenizer, cfg), cfg, space, tiny_tokenizer, flips)
    assert json.loads((best / FLIP_MAP_FILE).read_text()) == {"0101": "0102", "0102": "0101"}

    (data / "flips.json").unlink()  # gone: the model folder carries the map
    loaded = load_portable(best)
    assert loaded.flip_map is not None and loaded.flip_map.pairs == flips.pairs

    other = tmp_path / "elsewhere"  # the test videos, in another data root without any flip map
    (other / "annotations").mkdir(parents=True)
    videos = [{"id": f"v{i}", "title": "t", "asr": "", "ocr": []} for i in range(4)]
    (other / "annotations" / "test.json").write_text(json.dumps(videos))
    left, right = space.lv2_index("0101"), space.lv2_index("0102")

    def fake_inference(model, loader, accelerator, model_cfg=None, desc="", hflip=False):
        logits = np.zeros((len(videos), NUM_LV2), dtype=np.float32)
        logits[:, right if hflip else left] = 5.0  # every video moves left to right; mirrored, right to left
        return InferenceResult(ids=[v["id"] for v in videos], logits=logits, labels=np.full(len(videos), -100))

    monkeypatch.setattr(predict_module, "run_inference", fake_inference)
    args = ["--model", str(best), "--precision", "no", "--tta-hflip", f"data.root={other}"]
    assert run_main(predict_command.main, [*args, "--out", str(tmp_path / "aware.csv"),
                                           "--logits", str(tmp_path / "aware.npy")]) == 0
    assert (tmp_path / "aware.csv").read_text().split() == [f"v{i},0101" for i in range(4)]
    aware = np.exp(np.load(tmp_path / "aware.npy"))
    assert aware[:, left].min() > 0.9  # both views agree on the unflipped class

    (best / FLIP_MAP_FILE).unlink()  # a model trained without a map: the views disagree
    assert load_portable(best).flip_map is None
    assert run_main(predict_command.main, [*args, "--out", str(tmp_path / "blind.csv"),
                                           "--logits", str(tmp_path / "blind.npy")]) == 0
    blind = np.exp(np.load(tmp_path / "blind.npy"))
    np.testing.assert_allclose(blind[:, left], blind[:, right], rtol=1e-5)
    assert blind[:, left].max() < 0.5
    capsys.readouterr()
