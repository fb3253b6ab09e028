"""Shared fixtures: small fake experiments (no TensorFlow) and an AppTest factory pointed at them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.fake import make_fake_experiment

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "dashboard" / "app.py"


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root with a binary (two eval sets), a 7-class and a one-model experiment."""
    root = tmp_path_factory.mktemp("artifacts")
    make_fake_experiment(root, "binary", n_samples=300, n_models=3, n_classes=2, seed=1,
                         eval_sets=("test", "uncropped"))
    make_fake_experiment(root, "multi7", n_samples=420, n_models=2, n_classes=7, seed=2)
    make_fake_experiment(root, "single", n_samples=200, n_models=1, n_classes=2, seed=3)
    return root


@pytest.fixture(scope="session")
def broken_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root with one good experiment, one with bad JSON, and one with a bad model."""
    root = tmp_path_factory.mktemp("broken")
    make_fake_experiment(root, "good", n_samples=150, n_models=2, seed=4)
    bad = make_fake_experiment(root, "bad_json", n_samples=60, n_models=1, seed=5)
    (bad / "experiment.json").write_text('{"name": "bad_json", "task": ', encoding="utf-8")
    mixed = make_fake_experiment(root, "bad_model", n_samples=150, n_models=3, seed=6)
    # Truncate one model's predictions and corrupt another model's history and config values.
    preds = mixed / "models" / "ResNet50" / "predictions.parquet"
    preds.write_bytes(preds.read_bytes()[:200])
    cfg_path = mixed / "models" / "EfficientNetB0" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["params"] = "many"
    cfg_path.write_text(json.dumps(cfg))
    (mixed / "models" / "EfficientNetB0" / "history.csv").write_bytes(b"\x00\x01garbage\n\xff")
    return root


@pytest.fixture()
def artifacts_env(monkeypatch: pytest.MonkeyPatch):
    """Point the dashboard at an artifacts root: `artifacts_env(root)`."""
    def _set(root: Path) -> Path:
        monkeypatch.setenv("MEDCOMPARE_ARTIFACTS", str(root))
        return root
    return _set
