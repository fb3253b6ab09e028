"""Experiment config parsing: defaults, validation messages naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import load_config, parse_config, with_overrides

BASE = {"experiment": {"name": "x"}, "dataset": {"layout": "class_folders", "root": "data"}}


def test_defaults_and_paths():
    cfg = parse_config(BASE)
    assert cfg.experiment_dir == Path("artifacts/x")
    assert cfg.split.fractions == (0.7, 0.15, 0.15) and cfg.train.weights == "none"


@pytest.mark.parametrize(
    "patch, match",
    [
        ({"dataset": {"layout": "folders", "root": "d"}}, r"`dataset.layout`.*Received: 'folders'"),
        ({"split": {"fractions": [0.5, 0.5, 0.5]}}, r"`split.fractions`.*summing to 1"),
        ({"train": {"backbones": ["ResNet5"]}}, r"`backbone`.*'ResNet5'"),
        ({"train": {"epochs": 0}}, r"`train.epochs`.*positive integer"),
        ({"train": {"augment": ["flip", "warp"]}}, r"`train.augment`.*\['warp'\]"),
        ({"train": {"epoch": 3}}, r"`train`.*\['epoch'\]"),
        ({"dataset": {"layout": "npz", "root": "x", "image_size": 4}}, r"`dataset.image_size`"),
        ({"eval_sets": [{"name": "test", "layout": "npz", "root": "x"}]}, r"eval_sets\[0\].name"),
    ],
)
def test_errors_name_the_key(patch, match):
    with pytest.raises(ValueError, match=match):
        parse_config({**BASE, **patch})


def test_example_configs_parse():
    root = Path(__file__).resolve().parents[1] / "configs"
    files = sorted(root.glob("*.toml"))
    assert len(files) >= 2
    for f in files:
        cfg = load_config(f)
        assert cfg.train.backbones


def test_overrides():
    cfg = with_overrides(parse_config(BASE), backbones=["resnet50", "SmallCNN"], epochs=None)
    assert cfg.train.backbones == ("ResNet50", "SmallCNN") and cfg.train.epochs == 10


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="argument `config`"):
        load_config(tmp_path / "nope.toml")


def test_tta_defaults_to_the_flips_each_model_was_trained_with():
    from pipeline.predict import resolve_tta

    base = {"experiment": {"name": "x"}, "dataset": {"layout": "npz", "root": "x.npz"}}
    assert parse_config(base).predict.tta == "auto"
    assert parse_config({**base, "predict": {"tta": ["vflip", "hflip"]}}).predict.tta == ("vflip", "hflip")
    assert parse_config({**base, "predict": {"tta": False}}).predict.tta is False
    for bad in ("yes", ["rot90"], 1):
        with pytest.raises(ValueError, match=r"`predict.tta`.*auto"):
            parse_config({**base, "predict": {"tta": bad}})
    assert resolve_tta("auto", ("flip", "rotate")) == ("hflip",)
    assert resolve_tta("auto", ("vflip", "flip")) == ("hflip", "vflip")
    assert resolve_tta("auto", ("rotate", "zoom")) == ()
    assert resolve_tta("auto", None) == ()  # an imported model: its augmentation is unknown
    assert resolve_tta(True, None) == ("hflip",) and resolve_tta(False, ("flip",)) == ()
    assert resolve_tta(["vflip"], ("flip",)) == ("vflip",)  # an explicit choice wins
