"""Config: precedence, strictness, dump/reload round trip, CLI error lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mmcls.config import Config, DataConfig, build_config, dump_config, load_config, parse_yaml, save_config
from mmcls.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_then_yaml_then_overrides(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", "seed: 7\ndata:\n  max_frames: 16\n  frame_size: 112\n")
    cfg = load_config(cfg_file, ["data.max_frames=4"])
    assert cfg.seed == 7  # yaml over default
    assert cfg.data.max_frames == 4  # override over yaml
    assert cfg.data.frame_size == 112  # yaml kept where not overridden
    assert cfg.data.max_text_len == DataConfig().max_text_len  # default kept where not set


def test_nested_dict_override_keeps_siblings():
    cfg = build_config({}, ["data.text_budgets.title=10"])
    assert cfg.data.text_budgets == {"title": 10, "asr": 96, "ocr": 96}


def test_string_keys_keep_text_and_null_works():
    cfg = build_config({}, ["data.root=2022", "data.val=null", "output_dir=runs/x"])
    assert cfg.data.root == "2022" and isinstance(cfg.data.root, str)
    assert cfg.data.val is None and cfg.output_dir == "runs/x"


def test_int_widens_to_float_but_not_the_reverse():
    assert build_config({}, ["data.val_fraction=0"]).data.val_fraction == 0.0
    with pytest.raises(ConfigError, match=r"^data\.max_frames: expected an integer"):
        build_config({}, ["data.max_frames=2.5"])


@pytest.mark.parametrize(
    ("values", "overrides", "message"),
    [
        ({"data": {"max_frame": 8}}, [], r"^data\.max_frame: unknown config key"),
        ({"sed": 1}, [], r"^sed: unknown config key"),
        ({}, ["data.nope=1"], r"^data\.nope: unknown config key"),
        ({}, ["data.root.x=1"], r"^data\.root\.x: unknown config key"),
        ({"data": {"max_frames": "many"}}, [], r"^data\.max_frames: expected an integer, got 'many'"),
        ({"data": {"pin_memory": "yes"}}, [], r"^data\.pin_memory: expected true or false"),
        ({}, ["data.frame_source=avi"], r"^data\.frame_source: expected one of 'zip', 'mp4', 'jpeg', 'feats'"),
        ({}, ["data.text_truncation.asr=middle"], r"^data\.text_truncation\.asr: expected one of"),
        ({}, ["data.text_budgets.summary=3"], r"^data\.text_budgets\.summary: unknown text field"),
        ({}, ["data.max_frames=0"], r"^data\.max_frames: must be >= 1"),
        ({"data": 3}, [], r"^data: expected a mapping"),
        ({}, ["seed"], r"^seed: overrides look like key\.sub=value"),
    ],
)
def test_errors_name_the_key(values, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config(values, overrides)


def test_dump_and_reload_is_identical(tmp_path):
    cfg = build_config({"seed": 3}, ["data.text_fields=[ocr, title]", "data.train_crop_scale=[0.5, 0.9]"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert dump_config(again) == dump_config(cfg)
    assert load_config(None) == Config()


def test_missing_and_invalid_yaml_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = write(tmp_path / "bad.yaml", "data:\n  max_frames: [1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml \(line \d+\): invalid YAML"):
        load_config(bad)


def test_every_field_is_documented():
    import dataclasses

    for cls in (Config, DataConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text"


def test_shipped_configs_load():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)


def test_cli_turns_config_errors_into_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_data.py"), str(tmp_path), "data.max_frame=3"],
        capture_output=True, text=True, cwd=ROOT,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: data.max_frame: unknown config key"), proc.stderr


def test_cross_key_checks_run_on_the_final_config(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", "data:\n  resize_size: 200\n")
    cfg = load_config(cfg_file, ["data.frame_size=128"])  # invalid after the YAML layer, valid at the end
    assert (cfg.data.resize_size, cfg.data.frame_size) == (200, 128)
    with pytest.raises(ConfigError, match=r"^data\.resize_size: must be >= frame_size \(224\)"):
        load_config(cfg_file)


def test_exponent_floats_read_as_numbers(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", "data:\n  val_fraction: 5e-2\n")
    assert load_config(cfg_file).data.val_fraction == 0.05
    assert build_config({}, ["data.val_fraction=1E-1"]).data.val_fraction == 0.1
    assert build_config({}, ["data.root=1e3"]).data.root == "1e3"  # strings stay strings


def test_mappings_merge_in_yaml_and_overrides_alike(tmp_path):
    cfg_file = write(tmp_path / "c.yaml", "data:\n  text_budgets: {title: 5}\n")
    expected = {"title": 5, "asr": 96, "ocr": 96}
    assert load_config(cfg_file).data.text_budgets == expected
    assert build_config({}, ["data.text_budgets={title: 5}"]).data.text_budgets == expected


@pytest.mark.parametrize(("override", "message"), [
    ("data.root=", r"^data\.root: must not be empty"),
    ("data.color_jitter=1.5", r"^data\.color_jitter: must be in \[0, 1\]"),
    ("data.feat_dim=0", r"^data\.feat_dim: must be >= 1"),
    ("data.worker_start=thread", r"^data\.worker_start: expected one of"),
    ("seed=-1", r"^seed: must be in \[0, 2\*\*32\)"),
    ("data.decode_timeout=.nan", r"^data\.decode_timeout: expected a finite number, got nan"),  # as every float key
    ("data.decode_timeout=.inf", r"^data\.decode_timeout: expected a finite number, got inf"),
    ("model.dropout_samples=0", r"^model\.dropout_samples: must be >= 1"),
    ("model.init_parts=[]", r"^model\.init_parts: must be a non-empty list without repeats"),
    ("model.init_parts=[bert,bert]", r"^model\.init_parts: must be a non-empty list without repeats"),
    ("model.init_parts=[heads]", r"^model\.init_parts\[0\]: expected one of"),
    ("train.layer_decay=0", r"^train\.layer_decay: must be in \(0, 1\]"),
    ("train.momentum=1.5", r"^train\.momentum: must be in \[0.0, 1.0\]"),
    ("train.cycles=0", r"^train\.cycles: must be >= 1"),
    ("train.optimizer=lamb", r"^train\.optimizer: expected one of"),
    ("train.ema.decay=1.0", r"^train\.ema\.decay: must be in \[0.0, 1.0\)"),
    ("train.adversarial.steps=0", r"^train\.adversarial\.steps: must be >= 1"),
    ("train.adversarial.epsilon=-1", r"^train\.adversarial\.epsilon: must be >= 0"),
    ("train.loss.label_smoothing=1", r"^train\.loss\.label_smoothing: must be in \[0.0, 1.0\)"),
    ("train.loss.class_weights=sqrt", r"^train\.loss\.class_weights: expected one of"),
    ("train.mix.prob=2", r"^train\.mix\.prob: must be in \[0.0, 1.0\]"),
    ("train.swa.count=0", r"^train\.swa\.count: must be >= 1"),
    ("train.freeze.towers=[audio]", r"^train\.freeze\.towers\[0\]: expected one of"),
    ("train.early_stopping_patience=-1", r"^train\.early_stopping_patience: must be >= 0"),
])
def test_value_checks(override, message):
    with pytest.raises(ConfigError, match=message):
        build_config({}, [override])


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.sam_rho=0.05", "train.grad_accum_steps=2"], r"^train\.sam_rho: SAM needs train\.grad_accum_steps=1"),
    (["train.sam_rho=0.05", "train.mixed_precision=fp16"], r"^train\.sam_rho: SAM does not work with fp16"),
    (["train.mix.mixup_alpha=0.4", "model.mode=text"], r"^train\.mix: mixup/CutMix mix frames"),
    (["train.mix.cutmix_alpha=1", "data.frame_source=feats"], r"^train\.mix\.cutmix_alpha: CutMix cuts pixels"),
])
def test_recipe_cross_key_checks(overrides, message):
    with pytest.raises(ConfigError, match=message):
        build_config({}, overrides)
    build_config({}, overrides[:1])  # each switch alone is fine


def test_config_reference_is_current_and_complete():
    import dataclasses

    from mmcls.config import config_reference

    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "config_docs.py"), "--check"], capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    keys = {row[0] for row in config_reference()}
    assert {f"data.{f.name}" for f in dataclasses.fields(DataConfig)} <= keys
    assert {"output_dir", "seed"} <= keys
    text = (ROOT / "docs" / "CONFIG.md").read_text(encoding="utf-8")
    assert all(f"`{key}`" in text for key in keys)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1).filter(str.strip))
def test_any_string_value_survives_dump_and_reload(text):
    cfg = build_config({"output_dir": text, "data": {"root": text}})
    assert build_config(parse_yaml(dump_config(cfg))) == cfg


def test_config_files_layer_in_order(tmp_path):
    base = write(tmp_path / "base.yaml", "data:\n  max_frames: 4\n  text_budgets: {title: 5}\nseed: 1\n")
    top = write(tmp_path / "top.yaml", "data:\n  text_budgets: {asr: 7}\nseed: 2\n")
    cfg = load_config([base, top], ["seed=3"])
    assert cfg.data.max_frames == 4 and cfg.seed == 3
    assert cfg.data.text_budgets == {"title": 5, "asr": 7, "ocr": 96}  # mappings merge across files
    bad = write(tmp_path / "bad.yaml", "data:\n  max_frame: 4\n")
    with pytest.raises(ConfigError, match=r"^data\.max_frame: unknown config key"):
        load_config([base, bad])
    shipped = load_config([ROOT / "configs" / "demo.yaml", ROOT / "configs" / "pretrain_demo.yaml"])
    assert shipped.output_dir == "runs/pretrain_demo" and shipped.model.text.hidden_size == 128


def test_a_bare_no_is_the_word_where_a_choice_expects_it(tmp_path):
    """YAML 1.1 reads ``no`` as false; a choice that spells ``no`` gets the word back (and a file reads the same)."""
    assert build_config({}, ["train.mixed_precision=no"]).train.mixed_precision == "no"
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  mixed_precision: no\n", encoding="utf-8")
    assert load_config(path).train.mixed_precision == "no"
    with pytest.raises(ConfigError, match=r"^data\.frame_source: expected one of"):
        build_config({}, ["data.frame_source=no"])  # no choice is spelled "no": still an error


def test_a_mapping_can_be_emptied_from_the_command_line():
    demo = ROOT / "configs" / "demo.yaml"
    assert load_config(demo).model.vision.overrides  # the demo's tiny CLIP tower
    for empty in ("model.vision.overrides=~", "model.vision.overrides={}", "model.vision.overrides=null"):
        assert load_config(demo, [empty]).model.vision.overrides == {}
    refilled = load_config(demo, ["model.vision.overrides={}", "model.vision.overrides.width=8"])
    assert refilled.model.vision.overrides == {"width": 8}  # emptied, then filled key by key
    budgets = load_config(demo, ["data.text_budgets={title: 8}"]).data.text_budgets
    assert budgets["title"] == 8 and len(budgets) == 3  # a non-empty mapping still merges


def test_switching_the_vision_kind_drops_the_other_kinds_overrides(caplog):
    """The README's timm one-liner on top of the shipped configs: their open_clip overrides (width, quick_gelu
    ...) never reach timm.create_model, and the error that remains is the real one (the weights path)."""
    from mmcls.models import build_vision_tower

    readme = ["model.vision.kind=timm", "model.vision.name=resnet18",
              "model.vision.pretrained=weights/none.safetensors"]
    for config in ("demo.yaml", "base.yaml"):
        with caplog.at_level("WARNING", logger="mmcls"):
            cfg = load_config(ROOT / "configs" / config, readme)
        assert cfg.model.vision.overrides == {} and "dropping the clip overrides" in caplog.text
        caplog.clear()
        with pytest.raises(ConfigError, match=r"model.vision.pretrained: weights file not found: weights/none"):
            build_vision_tower(cfg.model.vision, cfg.data.frame_size)
    kept = load_config(ROOT / "configs" / "demo.yaml", [*readme[:2], "model.vision.overrides={drop_rate: 0.1}"])
    assert kept.model.vision.overrides == {"drop_rate": 0.1}  # the command line's own overrides apply to timm


def test_a_config_file_that_switches_the_vision_kind_starts_its_overrides_afresh(tmp_path):
    """A tower family's config layered over base.yaml: base's open_clip overrides (quick_gelu) do not reach the new
    kind, the family file's own do; a file of the same kind still merges key by key."""
    family = tmp_path / "family.yaml"
    family.write_text("model:\n  vision:\n    kind: timm\n    name: resnet18\n    overrides: {drop_rate: 0.1}\n")
    cfg = load_config([ROOT / "configs" / "base.yaml", family])
    assert (cfg.model.vision.kind, cfg.model.vision.overrides) == ("timm", {"drop_rate": 0.1})
    same = tmp_path / "same.yaml"
    same.write_text("model:\n  vision:\n    kind: clip\n    overrides: {width: 64}\n")
    assert load_config([ROOT / "configs" / "base.yaml", same]).model.vision.overrides == \
        {"quick_gelu": True, "width": 64}
