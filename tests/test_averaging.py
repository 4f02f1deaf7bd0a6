"""Weight averaging: state-dict means, SWA snapshots (last-N / top-k), and tools/average_checkpoints.py."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from mmcls.cli import run_main
from mmcls.data.categories import CategorySpace
from mmcls.engine.averaging import WeightAverager, average_state_dicts
from mmcls.model_folder import load_portable, save_portable
from mmcls.models import build_model
from tests.helpers import NUM_LV1, NUM_LV2, make_cfg

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "average_checkpoints.py"
LV2_IDS = ["0101", "0102", "0103", "0201", "0202", "0301", "0302"]  # 7 level-2 classes under 3 level-1 ones


def load_tool():
    return importlib.import_module("mmcls.commands.average_checkpoints")


# ----------------------------------------------------------------------------------------------------------------
# average_state_dicts


def test_average_of_known_tensors():
    a = {"w": torch.tensor([1.0, 2.0]), "b": torch.tensor(0.0)}
    b = {"w": torch.tensor([3.0, 6.0]), "b": torch.tensor(1.0)}
    out = average_state_dicts([a, b])
    assert torch.equal(out["w"], torch.tensor([2.0, 4.0])) and torch.equal(out["b"], torch.tensor(0.5))


def test_weights_are_normalised():
    a, b = {"w": torch.tensor([0.0, 4.0])}, {"w": torch.tensor([3.0, 1.0])}
    assert torch.equal(average_state_dicts([a, b], weights=[1, 2])["w"], torch.tensor([2.0, 2.0]))
    assert torch.equal(average_state_dicts([a, b], weights=[0, 5])["w"], b["w"])


@pytest.mark.parametrize("weights", [[1.0], [1.0, -1.0], [0.0, 0.0], [1.0, float("nan")]])
def test_bad_weights(weights):
    with pytest.raises(ValueError, match="weights"):
        average_state_dicts([{"w": torch.zeros(1)}, {"w": torch.ones(1)}], weights)


def test_dtype_is_kept_and_the_mean_is_exact():
    # a bfloat16 running sum loses the small terms (256 + 1 = 256) and gives 64.5; the float64 mean is 65 (exact)
    states = [{"w": torch.tensor([v], dtype=torch.bfloat16)} for v in (256.0, 1.0, 1.0, 2.0)]
    assert (sum(s["w"] for s in states) / 4).item() == 64.5
    out = average_state_dicts(states)
    assert out["w"].dtype == torch.bfloat16 and out["w"].item() == 65.0


def test_integer_buffers_come_from_the_last_state():
    ids = torch.arange(4)
    a, b = {"ids": ids, "w": torch.zeros(2)}, {"ids": ids.clone(), "w": torch.ones(2)}
    out = average_state_dicts([a, b])
    assert torch.equal(out["ids"], ids) and out["ids"].dtype == torch.int64
    # BatchNorm's num_batches_tracked differs between snapshots of one run: the latest count is kept, no error
    tracked = [{"bn.num_batches_tracked": torch.tensor(n), "w": torch.ones(1)} for n in (10, 20, 30)]
    assert average_state_dicts(tracked)["bn.num_batches_tracked"].item() == 30


def test_different_keys_or_shapes_name_the_key():
    a = {"w": torch.zeros(2), "v": torch.zeros(1)}
    with pytest.raises(ValueError, match="state 1: missing key 'v'"):
        average_state_dicts([a, {"w": torch.zeros(2)}])
    with pytest.raises(ValueError, match="state 1: unexpected key 'x'"):
        average_state_dicts([a, {**a, "x": torch.zeros(1)}])
    with pytest.raises(ValueError, match=r"w: shape \(3,\) in state 1"):
        average_state_dicts([a, {"w": torch.zeros(3), "v": torch.zeros(1)}])


# ----------------------------------------------------------------------------------------------------------------
# WeightAverager


def snapshot(value: float) -> nn.Module:
    """A tiny model whose every weight is ``value`` (plus an integer buffer that must survive averaging)."""
    model = nn.Linear(2, 2)
    nn.init.constant_(model.weight, value)
    nn.init.constant_(model.bias, -value)
    model.register_buffer("steps", torch.tensor([3, 4]))
    return model


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_last_keeps_exactly_the_last_offers(tmp_path):
    averager = WeightAverager(tmp_path, "last", count=2, write=True)
    for update in (10, 20, 30):
        assert averager.offer(snapshot(update), update=update, score=None)
    assert [e["update"] for e in averager.kept] == [20, 30]
    assert files(tmp_path) == ["update_00000020.safetensors", "update_00000030.safetensors"]
    assert torch.equal(load_file(tmp_path / "update_00000030.safetensors")["weight"], torch.full((2, 2), 30.0))
    average = averager.average()
    assert torch.equal(average["weight"], torch.full((2, 2), 25.0))
    assert torch.equal(average["bias"], torch.full((2,), -25.0))
    assert torch.equal(average["steps"], torch.tensor([3, 4]))


def test_topk_keeps_the_best_and_deletes_the_rest(tmp_path):
    averager = WeightAverager(tmp_path, "topk", count=2, write=True)
    offers = [(1, 0.50, True), (2, 0.70, True), (3, 0.60, True), (4, 0.55, False), (5, 0.80, True), (6, 0.60, False)]
    for update, score, kept in offers:
        assert averager.offer(snapshot(update), update=update, score=score) is kept, update
    assert [(e["update"], e["score"]) for e in averager.kept] == [(2, 0.70), (5, 0.80)]
    assert files(tmp_path) == ["update_00000002.safetensors", "update_00000005.safetensors"]
    manual = (snapshot(2).weight + snapshot(5).weight) / 2
    assert torch.equal(averager.average()["weight"], manual.detach())
    with pytest.raises(ValueError, match="score"):
        averager.offer(snapshot(7), update=7, score=None)


def test_processes_that_do_not_write_keep_the_same_bookkeeping(tmp_path):
    writer = WeightAverager(tmp_path / "swa", "topk", count=2, write=True)
    reader = WeightAverager(tmp_path / "swa", "topk", count=2, write=False)
    for update, score in [(1, 0.3), (2, 0.1), (3, 0.2)]:
        assert writer.offer(snapshot(update), update=update, score=score) == \
            reader.offer(snapshot(update), update=update, score=score)
    assert reader.kept == writer.kept and len(files(tmp_path / "swa")) == 2
    assert torch.equal(reader.average()["weight"], torch.full((2, 2), 2.0))  # reads the writer's files
    assert WeightAverager(tmp_path / "none", "last", count=1, write=False).average() is None


def test_state_dict_round_trip_resumes_the_bookkeeping(tmp_path):
    averager = WeightAverager(tmp_path, "topk", count=2, write=True)
    for update, score in [(1, 0.3), (2, 0.9), (3, 0.5)]:
        averager.offer(snapshot(update), update=update, score=score)
    resumed = WeightAverager(tmp_path, "topk", count=2, write=True)
    resumed.load_state_dict(averager.state_dict())
    assert resumed.kept == averager.kept
    assert not resumed.offer(snapshot(4), update=4, score=0.4)  # worse than both kept: (2, 0.9), (3, 0.5)
    assert resumed.offer(snapshot(5), update=5, score=0.6)
    assert files(tmp_path) == ["update_00000002.safetensors", "update_00000005.safetensors"]
    with pytest.raises(ValueError, match="mode"):
        WeightAverager(tmp_path, "last", count=2, write=False).load_state_dict(averager.state_dict())


# ----------------------------------------------------------------------------------------------------------------
# tools/average_checkpoints.py


def save_tiny(path: Path, tokenizer, seed: int, mode: str = "fusion") -> Path:
    cfg = make_cfg(mode=mode)
    torch.manual_seed(seed)
    model = build_model(cfg, NUM_LV2, NUM_LV1, tokenizer)
    save_portable(path, model, cfg, CategorySpace.build(LV2_IDS), tokenizer)
    return path


@pytest.fixture(scope="module")
def portable(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("portable")
    return [save_tiny(root / f"m{seed}", tiny_tokenizer, seed) for seed in (1, 2)]


def test_tool_writes_the_weighted_mean(portable, tmp_path, capsys):
    tool = load_tool()
    out = tmp_path / "avg"
    assert tool.main([*map(str, portable), "--output", str(out), "--weights", "1", "3"]) == 0
    assert capsys.readouterr().out.strip() == f"averaged 2 models -> {out}"
    a, b = (load_portable(p).model.state_dict() for p in portable)
    averaged = load_portable(out)
    assert averaged.categories.lv2_ids == LV2_IDS
    state = averaged.model.state_dict()
    assert state.keys() == a.keys()
    for key, value in state.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (a[key] + 3 * b[key]) / 4, rtol=0, atol=1e-6, msg=key)
        else:
            assert torch.equal(value, a[key]), key
    assert not torch.equal(state["heads.lv2.weight"], a["heads.lv2.weight"])


def run_tool(argv: list[str], capsys) -> tuple[int, str]:
    code = run_main(load_tool().main, argv)
    return code, capsys.readouterr().err


def test_tool_refuses_mismatched_models(portable, tmp_path, tiny_tokenizer, capsys):
    text_only = save_tiny(tmp_path / "text", tiny_tokenizer, seed=3, mode="text")
    code, err = run_tool([str(portable[0]), str(text_only), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"error: {text_only}: not the same architecture as {portable[0]}: missing key")
    assert not (tmp_path / "out").exists()


def test_tool_refuses_other_categories(portable, tmp_path, capsys):
    other = tmp_path / "other"
    loaded = load_portable(portable[1])
    save_portable(other, loaded.model, loaded.cfg, CategorySpace.build([*LV2_IDS[:-1], "0399"]), loaded.tokenizer)
    code, err = run_tool([str(portable[0]), str(other), "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and err == f"error: {other}: not the same categories as {portable[0]}\n"


@pytest.mark.parametrize(("extra", "message"), [
    ([], "need at least 2 models to average, got 1"),
    (["MODEL", "--weights", "1", "2", "3"], "weights: expected 2 (one per model), got 3"),
    (["MODEL", "--weights", "0", "0"], "weights: must be finite, >= 0 and not all 0"),
])
def test_tool_argument_errors_are_one_line(portable, tmp_path, capsys, extra, message):
    extra = [str(portable[1]) if arg == "MODEL" else arg for arg in extra]
    code, err = run_tool([str(portable[0]), *extra, "--output", str(tmp_path / "out")], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"error: {message}")


def test_tool_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        load_tool().main(["--help"])
    assert "tools/average_checkpoints.py runs/seed1/best runs/seed2/best --output" in capsys.readouterr().out


# ----------------------------------------------------------------------------------------------------------------
# corrupt or mismatched model folders: one line naming the file, in tools/predict.py and tools/average_checkpoints.py


def _truncate(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:len(data) // 2])


def _edit_config(folder: Path, old: str, new: str) -> None:
    text = (folder / "config.yaml").read_text()
    assert old in text
    (folder / "config.yaml").write_text(text.replace(old, new, 1))


CORRUPTIONS = {
    "truncated weights": (_truncate, r"cannot read weights from {folder}/model.safetensors: .*deserializing header"),
    "garbage weights": (lambda f: (f / "model.safetensors").write_bytes(b"junk"),
                        r"cannot read weights from {folder}/model.safetensors"),
    "config of another width": (lambda f: _edit_config(f, "width: 32", "width: 64"),
                                r"weights in {folder}/model.safetensors do not match the model: \d+ wrong shape "
                                r"\(encoder.vision.backbone.*; the model is built from config.yaml and "
                                r"bert_config.json"),
    "config of another mode": (lambda f: _edit_config(f, "mode: fusion", "mode: text"),
                               r"do not match the model: \d+ unexpected \(encoder.frame_embedder"),
    "categories of another count": (lambda f: CategorySpace.build(LV2_IDS[:-1]).save(f / "categories.json"),
                                    r"{folder}/categories.json: 6 level-2 categories, but the weights in "
                                    r"{folder}/model.safetensors score 7"),
    "no categories": (lambda f: (f / "categories.json").unlink(), r"{folder}: .*missing categories.json"),
    "bad bert_config value": (lambda f: (f / "bert_config.json").write_text(
        (f / "bert_config.json").read_text().replace('"hidden_size": 32', '"hidden_size": "wide"')),
        r"cannot read {folder}/bert_config.json: .*hidden_size"),
    "bert_config of another depth": (lambda f: (f / "bert_config.json").write_text(
        (f / "bert_config.json").read_text().replace('"num_hidden_layers": 2', '"num_hidden_layers": 1')),
        r"do not match the model: \d+ unexpected \(encoder.text.bert.encoder.layer.1"),
    "bad vision_config": (lambda f: (f / "vision_config.json").write_text("[1]"),
                          r"{folder}/vision_config.json does not hold a JSON object"),
    "unknown config key": (lambda f: _edit_config(f, "seed: 42", "seed: 42\nsead: 1"),
                           r"{folder}/config.yaml: sead: unknown config key"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_a_corrupt_model_folder_is_one_line_naming_the_file(portable, tmp_path, capsys, case):
    """predict and average_checkpoints read a model folder through load_portable: each corruption is exit code 2
    and one line naming the file and the mismatch (a traceback before)."""
    import re
    import shutil

    from mmcls.commands import predict

    corrupt, expected = CORRUPTIONS[case]
    folder = tmp_path / "best"
    shutil.copytree(portable[0], folder)
    corrupt(folder)
    pattern = "^error: .*" + expected.format(folder=re.escape(str(folder)))
    code, err = run_tool([str(portable[1]), str(folder), "--output", str(tmp_path / "avg")], capsys)
    assert code == 2 and err.count("\n") == 1 and re.search(pattern, err), err
    assert not (tmp_path / "avg").exists()
    code = run_main(predict.main, ["--model", str(folder), "--output", str(tmp_path / "r.csv"), "--precision", "no"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and re.search(pattern, err), err
