"""Bad text and bad numbers never kill or fool a run (issue 19, items 8-12): lone surrogates in annotations,
non-finite models, NaN and inf in configs and ensemble weights, integers longer than Python reads."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from mmcls.cli import run_main
from mmcls.config import build_config, config_reference, load_config
from mmcls.data.records import load_records
from mmcls.errors import ConfigError, DataError
from tests.helpers import tiny_overrides

ROOT = Path(__file__).resolve().parents[1]
DEMO = ["--config", str(ROOT / "configs" / "demo.yaml")]
SURROGATE = "\\ud83d"  # how a JSON file spells half an emoji: json.loads turns it into a lone surrogate
LONG_INT = "7" * 5000  # over Python's 4300-digit limit for int(str)


@contextlib.contextmanager
def captured(caplog, name: str):
    """``caplog`` on logger ``name`` even when a run folder's logging stopped its propagation to the root."""
    logger = logging.getLogger(name)
    propagate, logger.propagate = logger.propagate, False  # the handler sees each record once
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.WARNING, logger=name):
            yield
    finally:
        logger.removeHandler(caplog.handler)
        logger.propagate = propagate


def write_dataset(root: Path, records_json: str, tokenizer=None) -> Path:
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "labeled.json").write_text(records_json, encoding="utf-8")
    if tokenizer is not None:
        tokenizer.save_pretrained(root / "tokenizer")
    return root


# --- item 8: lone surrogates ----------------------------------------------------------------------------------------
def test_lone_surrogates_in_text_are_replaced_counted_and_tokenize(tmp_path, caplog, tiny_tokenizer):
    from mmcls.config import DataConfig
    from mmcls.data.text import TextEncoder

    path = tmp_path / "a.jsonl"
    path.write_text(
        f'{{"id": "1", "title": "cat {SURROGATE} dog", "asr": "{SURROGATE}", '
        f'"ocr": [{{"time": 0, "text": "x{SURROGATE}"}}]}}\n'
        '{"id": "2", "title": "fine \\ud83d\\ude00 pair"}\n', encoding="utf-8")
    with captured(caplog, "mmcls.data"):
        first, second = load_records(path)
    assert (first.title, first.asr, first.ocr) == ("cat \ufffd dog", "\ufffd", [(0, "x\ufffd")])
    assert second.title == "fine \U0001F600 pair"  # an escaped pair is one emoji, kept as it is
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "3 text field(s) of 1 record(s)" in warnings[0]
    assert "first: line 1 field 'title'" in warnings[0]
    cfg = DataConfig(max_text_len=32)
    assert len(TextEncoder(tiny_tokenizer, cfg).encode(first)) > 3  # a tokenizer takes it (a surrogate crashes it)


def test_check_data_cleans_text_and_refuses_an_invalid_id(tmp_path, capsys, caplog, tiny_tokenizer):
    from mmcls.commands import check_data

    records = [{"id": str(i), "title": "cat dog \ud83d", "category_id": "0101"} for i in range(4)]
    good = write_dataset(tmp_path / "good", json.dumps(records), tiny_tokenizer)  # written as "\\ud83d" escapes
    with captured(caplog, "mmcls.data"):  # a command without a run folder prints it on stderr
        assert run_main(check_data.main, [str(good), "--no-videos", "data.max_text_len=32"]) == 0
    assert "text tokens per field" in capsys.readouterr().out
    assert "4 text field(s) of 4 record(s)" in caplog.text
    bad = write_dataset(tmp_path / "bad", f'[{{"id": "1", "category_id": "0101"}},\n'
                                          f' {{"id": "v{SURROGATE}", "category_id": "0101"}}]')
    assert run_main(check_data.main, [str(bad), "--no-videos"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {bad / 'annotations' / 'labeled.json'}: record 1: field 'id'")
    assert "lone surrogate U+D83D at character 1" in err[0]


def test_a_submission_never_dies_on_an_invalid_id(tmp_path):
    from mmcls.metrics import write_submission

    with pytest.raises(DataError, match=r"record 1: field 'id'.*cannot be written as UTF-8"):
        write_submission(tmp_path / "out.csv", ["a", "b\ud83d"], ["0101", "0101"])
    assert not (tmp_path / "out.csv").exists()


# --- item 9: a model that is NaN or untrained is never best/ ------------------------------------------------------
def test_a_nan_model_is_not_exported_and_the_run_fails(synthetic_root, tmp_path, capsys):
    from mmcls.commands import finetune

    run = tmp_path / "run"
    code = run_main(finetune.main, [*DEMO, *tiny_overrides(synthetic_root, run, "train.lr=1e308",
                                                              "train.max_steps=3")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: no model was exported: at every validation (the last at update 3) "
                                        "the weights are not finite")
    assert not (run / "best").exists() and not (run / "val_logits.npy").exists()
    assert not (run / "result.json").exists()


def test_a_run_without_a_finite_update_is_an_error(synthetic_root, tmp_path, monkeypatch, capsys):
    from mmcls.commands import finetune
    from mmcls.engine.losses import Criterion

    original = Criterion.__call__

    def nan_loss(self, *args, **kwargs):
        losses = original(self, *args, **kwargs)
        losses["loss"] = losses["loss"] * torch.tensor(math.nan)
        return losses

    monkeypatch.setattr(Criterion, "__call__", nan_loss)
    run = tmp_path / "run"
    code = run_main(finetune.main, [*DEMO, *tiny_overrides(synthetic_root, run, "train.max_steps=2",
                                                              "train.max_nonfinite_updates=0", "train.eval_every=1")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "no update had a finite gradient yet (2 of 2 skipped)" in err
    assert not (run / "best").exists()


def test_zero_updates_is_an_error(synthetic_root, tmp_path, capsys):
    from mmcls.commands import finetune

    run = tmp_path / "run"
    assert run_main(finetune.main, [*DEMO, *tiny_overrides(synthetic_root, run, "train.batch_size=500")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: train.batch_size: ") and "so no update would be made" in err
    assert not (run / "best").exists()


def test_a_pretraining_run_without_a_finite_update_is_an_error(synthetic_root, tmp_path, monkeypatch, capsys):
    from mmcls.commands import pretrain
    from mmcls.engine.pretrain import PretrainObjective

    original = PretrainObjective.losses

    def nan_loss(self, *args, **kwargs):  # every update's gradient is NaN; validation stays finite (untrained)
        losses, outputs = original(self, *args, **kwargs)
        return {**losses, "loss": losses["loss"] * torch.tensor(math.nan)}, outputs

    monkeypatch.setattr(PretrainObjective, "losses", nan_loss)
    run = tmp_path / "pre"
    configs = [*DEMO, "--config", str(ROOT / "configs" / "pretrain_demo.yaml")]
    code = run_main(pretrain.main, [*configs, *tiny_overrides(synthetic_root, run, "pretrain.holdout=16",
                                                                 "train.max_steps=2", "train.eval_every=1",
                                                                 "train.max_nonfinite_updates=0")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and err.startswith("error: no model was exported: at every validation (the last at update 2) "
                                        "no update had a finite gradient yet (2 of 2 skipped)")
    assert not (run / "best").exists()


# --- item 10: NaN and inf in the config -----------------------------------------------------------------------------
FLOAT_KEYS = [key for key, tp, _, _ in config_reference() if "float" in tp and "list" not in tp and "dict" not in tp]


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_every_float_key_rejects_nan_and_inf(value):
    assert len(FLOAT_KEYS) > 40
    accepted = []
    for key in FLOAT_KEYS:
        try:
            build_config({}, [f"{key}={value}"])
        except ConfigError as exc:
            assert str(exc).startswith(f"{key}: "), exc  # the message names the key
        else:
            accepted.append(key)
    assert accepted == []
    with pytest.raises(ConfigError, match=r"^train\.max_grad_norm: expected a finite number, got -?(nan|inf) \(NaN"):
        build_config({}, [f"train.max_grad_norm={value}"])


def test_nan_is_refused_in_yaml_lists_mappings_and_on_the_command_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("train:\n  max_grad_norm: .nan\n")
    with pytest.raises(ConfigError, match=r"^train\.max_grad_norm: expected a finite number, got nan"):
        load_config(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=r"^data\.train_crop_scale\[1\]: expected a finite number, got nan"):
        build_config({}, ["data.train_crop_scale=[0.5, .nan]"])
    with pytest.raises(ConfigError, match=r"^model\.vision\.overrides\.drop_path_rate: expected a finite number"):
        build_config({}, ["model.vision.overrides={drop_path_rate: .inf}"])
    with pytest.raises(ConfigError, match=r"^train\.lr: expected a finite number, got an integer of 401 digits"):
        build_config({}, ["train.lr=1" + "0" * 400])
    with pytest.raises(ConfigError, match=r"^train\.epochs: an integer of more than 4300 digits"):
        build_config({}, [f"train.epochs={LONG_INT}"])
    (tmp_path / "long.yaml").write_text(f"train:\n  epochs: {LONG_INT}\n")
    with pytest.raises(ConfigError, match=r"long\.yaml: invalid YAML: an integer of more than 4300 digits"):
        load_config(tmp_path / "long.yaml")
    assert build_config({}, ["data.root=.nan"]).data.root == ".nan"  # a string key keeps the text
    from mmcls.commands import finetune

    assert run_main(finetune.main, [*DEMO, "train.lr=.nan"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: train.lr: expected a finite number, got nan (NaN and infinities are not accepted)"]


# --- item 11: ensemble weights and NaN logits -----------------------------------------------------------------------
def test_non_finite_ensemble_weights_are_refused_naming_the_flag(tmp_path, capsys):
    from mmcls.commands import ensemble, predict
    from mmcls.logits import save_logits

    for name in ("a", "b"):
        save_logits(tmp_path / f"{name}.npy", ["v0", "v1"], np.eye(2), ["0101", "0102"])
    bundles = ["--test", str(tmp_path / "a.npy"), "--test", str(tmp_path / "b.npy"), "--output",
               str(tmp_path / "out.csv")]
    for weights in (["nan", "1"], ["inf", "1"]):
        assert run_main(ensemble.main, [*bundles, "--weights", *weights]) == 2
        assert capsys.readouterr().err.strip().splitlines() == [
            f"error: --weights: need 2 finite, non-negative weights with a positive sum, got {' '.join(weights)}"]
    assert not (tmp_path / "out.csv").exists()
    models = ["--model", str(tmp_path), "--model", str(tmp_path), "--output", str(tmp_path / "out.csv")]
    assert run_main(predict.main, [*models, "--weights", "1", "nan", "--precision", "no"]) == 2
    assert capsys.readouterr().err.strip() == ("error: --weights: need 2 finite, non-negative weights with a positive "
                                               "sum, got 1 nan")
    assert run_main(predict.main, [*models[2:], "--model", str(tmp_path), "--logit-adjust", "nan"]) == 2
    assert capsys.readouterr().err.strip() == "error: --logit-adjust: must be a finite number, got nan"


def test_a_nan_model_predicts_with_a_warning_counting_the_rows(synthetic_root, tmp_path, caplog):
    from mmcls.data.categories import CategorySpace, read_category_file
    from mmcls.data.tokenizer import load_tokenizer
    from mmcls.model_folder import save_portable
    from mmcls.models import build_model
    from mmcls.workflow.predict import predict

    cfg = build_config({}, tiny_overrides(synthetic_root, tmp_path / "run"))
    categories = CategorySpace.build(read_category_file(synthetic_root / "category_ids.txt"))
    tokenizer = load_tokenizer(synthetic_root / "tokenizer")
    model = build_model(cfg, categories.num_lv2, categories.num_lv1, tokenizer)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(math.nan)
    save_portable(tmp_path / "nan", model, cfg, categories, tokenizer)
    with captured(caplog, "mmcls"):
        prediction = predict([tmp_path / "nan"], mixed_precision="no")
    rows = len(prediction.ids)
    warnings = [r.getMessage() for r in caplog.records if "not finite" in r.getMessage()]
    assert warnings == [f"{tmp_path / 'nan'}: {rows} of {rows} rows of logits are not finite (NaN or inf); their "
                        "predictions are meaningless (the model's weights are probably not finite)"]


# --- item 12: integers longer than Python reads ---------------------------------------------------------------------
def test_an_integer_of_thousands_of_digits_is_a_one_line_annotation_error(tmp_path, capsys):
    pretty = tmp_path / "pretty.json"
    pretty.write_text(f'[\n {{"id": "1", "category_id": "0101"}},\n {{"id": "2",\n  "category_id": {LONG_INT}}}\n]')
    with pytest.raises(DataError, match=r"pretty\.json: line 4: malformed JSON: an integer of 5000 digits "
                                        r"\(at most 4300 can be read\)$"):
        load_records(pretty)
    lines = tmp_path / "lines.jsonl"
    lines.write_text(f'{{"id": "1"}}\n{{"id": {LONG_INT}}}\n')
    with pytest.raises(DataError, match=r"lines\.jsonl: line 2: malformed JSON: an integer of 5000 digits"):
        load_records(lines)
    long_time = tmp_path / "time.json"
    long_time.write_text(f'[{{"id": "1", "ocr": [{{"time": 1{"0" * 400}, "text": "x"}}]}}]')
    with pytest.raises(DataError, match=r"field 'ocr\[0\]\.time': expected a finite number, got an integer of 401 "
                                        r"digits$"):
        load_records(long_time)
    from mmcls.data.folds import read_folds

    (tmp_path / "folds.csv").write_text(f"id,fold\n1,{LONG_INT}\n")
    with pytest.raises(DataError, match=r"folds\.csv: line 2: expected 'id,fold' with an integer fold"):
        read_folds(tmp_path / "folds.csv")
    from mmcls.commands import check_data

    root = write_dataset(tmp_path / "root", f'[{{"id": "1", "category_id": {LONG_INT}}}]')
    assert run_main(check_data.main, [str(root), "--no-videos"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {root / 'annotations' / 'labeled.json'}: line 1: malformed JSON: an integer of 5000 digits "
        "(at most 4300 can be read)"]
