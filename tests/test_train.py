"""The training loop: the compiled step's loss is Keras's class-weighted cross-entropy, it learns an easy
task, early stopping restores the best epoch, and parallel training (jobs=2) builds complete models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts as art
from pipeline.config import TrainConfig


def _easy_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class 1 = a bright square in the centre, class 0 = none; noise everywhere."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, (n, 24, 24, 3)).astype(np.uint8)
    y = rng.integers(0, 2, n)
    x[y == 1, 8:16, 8:16] = 230
    return x, y


def test_train_step_loss_is_class_weighted_cross_entropy():
    import keras

    from pipeline.train import make_train_step

    keras.utils.set_random_seed(0)
    # no dropout, so the training-mode forward pass is the same in the step and here; BN batch statistics
    inp = keras.Input((24, 24, 3))
    h = keras.layers.Conv2D(4, 3)(keras.layers.Rescaling(1 / 255)(inp))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.BatchNormalization()(h))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    x, _ = _easy_set(8, 1)
    y = np.array([0, 1, 2, 0, 1, 2, 2, 2], np.int32)
    cw = {0: 0.5, 1: 2.0, 2: 1.0}
    # The step returns the loss of the weights *before* its update: compute the expectation first.
    probs = np.clip(model(x.astype(np.float32), training=True).numpy(), 1e-7, 1 - 1e-7)
    expected = np.mean(-np.log(probs[np.arange(8), y]) * np.array([cw[c] for c in y]))
    step = make_train_step(model, keras.optimizers.SGD(0.0), cw, 3)  # lr 0: BN in training mode, weights fixed
    loss_times_n, correct = step(x.astype(np.float32), y, np.float32(0.0), np.float32(0.0))
    assert float(loss_times_n) / 8 == pytest.approx(expected, rel=1e-4)
    assert float(correct) == float(np.sum(probs.argmax(1) == y))


@pytest.mark.parametrize("ema_epochs", [0.0, 1.0])
def test_training_learns_and_restores_the_best_epoch(ema_epochs):
    """What was judged is what is kept: also with the weight average, whose judged model is the average."""
    from pipeline.train import _evaluate, class_weights, select_best_epoch, train_backbone

    train, val = _easy_set(192, 2), _easy_set(64, 3)
    cfg = TrainConfig(
        backbones=("SmallCNN",),
        epochs=6,
        batch_size=32,
        learning_rate=3e-3,
        patience=2,
        augment=("flip",),
        ema_epochs=ema_epochs,
    )
    result = train_backbone("SmallCNN", train, val, 2, 24, cfg)
    h = result.history
    assert len(h) >= 3 and list(h["epoch"]) == list(range(1, len(h) + 1))
    assert h["val_accuracy"].max() >= 0.9, h
    assert h["loss"].iloc[-1] < h["loss"].iloc[0]
    # the returned model is the selected epoch (best val AUC, ties to the lower weighted val loss),
    # whatever epoch training stopped at
    best = result.info["best_epoch"]
    assert best == select_best_epoch(h, "auc", from_epoch=3) and best >= 3
    again = _evaluate(result.model, val, 32, class_weights(train[1], 2))
    row = h.set_index("epoch").loc[best]
    assert again["loss_weighted"] == pytest.approx(row["val_loss_weighted"], rel=1e-3)
    assert again["auc"] == pytest.approx(row["val_auc"], abs=1e-6)


def test_jobs_must_be_a_positive_integer(tmp_path):
    from pipeline.config import load_config
    from pipeline.experiment import run_experiment

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "demo-histology.toml")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match=r"argument `jobs`.*Expected an integer >= 1.*Received"):
            run_experiment(cfg, jobs=bad)


def test_schedule_puts_expensive_backbones_first():
    from pipeline.experiment import schedule_order

    assert schedule_order(["SmallCNN", "MobileNetV2", "DenseNet121"]) == ["DenseNet121", "MobileNetV2", "SmallCNN"]
    assert schedule_order(["SmallCNN", "EfficientNetB7"])[0] == "EfficientNetB7"  # unknown counts as expensive


@pytest.mark.slow
def test_parallel_training_builds_complete_models(tmp_path):
    from pipeline.config import load_config
    from pipeline.experiment import run_experiment
    from pipeline.synthetic import make_histology

    data = make_histology(tmp_path / "data", n_patients=10, images_per_patient=4, size=32, seed=7)
    cfg_path = tmp_path / "par.toml"
    cfg_path.write_text(f"""
[experiment]
name = "par"
output = "{tmp_path / "artifacts"}"
[dataset]
layout = "patient_class_folders"
root = "{data}"
image_size = 32
[split]
seed = 1
[train]
backbones = ["SmallCNN", "MobileNetV2"]
epochs = 1
batch_size = 16
""")
    cfg = load_config(cfg_path)
    logs: list[str] = []
    exp_dir = run_experiment(cfg, log=logs.append, progress=False, jobs=2)
    assert sorted(art.list_models(exp_dir)) == ["MobileNetV2", "SmallCNN"]
    assert [p for p in art.validate_experiment(exp_dir) if p.severity == "error"] == []
    assert not list(exp_dir.glob(".decoded.*")), "the shared decoded-image file must be removed"
    assert any(line.startswith("SmallCNN: 1 epochs") for line in logs)
    exp = art.load_experiment(exp_dir)
    for model in ("SmallCNN", "MobileNetV2"):
        preds = art.read_predictions(exp, model)
        assert len(preds) == int(exp.samples["eval_set"].notna().sum())
        assert art.read_model_config(exp_dir, model)["status"] == "complete"
    # a worker's failure reaches the caller with the model's name
    broken = replace(
        cfg, train=replace(cfg.train, backbones=("SmallCNN", "MobileNetV2"), augment=("nope",)), name="broken"
    )
    with pytest.raises((RuntimeError, ValueError), match="nope|training .* failed"):
        run_experiment(broken, log=lambda s: None, progress=False, jobs=2)
