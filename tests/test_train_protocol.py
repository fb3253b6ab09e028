"""The training protocol (issue 11): schedule, early stopping floor, checkpoint selection, determinism,
the minutes budget (fake clock), the mixed-precision switch and the config keys that drive them."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pipeline.config import TrainConfig, parse_config
from pipeline.train import (
    auto_min_epochs,
    auto_patience,
    first_candidate,
    learning_rate_at,
    precision_policy,
    select_best_epoch,
    selection_score,
    validation_metrics,
)


def _easy_set(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 90, (n, size, size, 3)).astype(np.uint8)
    y = rng.integers(0, 2, n)
    x[y == 1, 4:12, 4:12] = 230
    return x, y


# ---------------------------------------------------------------- learning-rate schedule


def test_warmup_reaches_the_base_rate_and_cosine_ends_at_the_floor():
    kw = dict(base=1e-3, warmup_steps=10, total_steps=110)
    assert learning_rate_at(0, **kw) == pytest.approx(1e-4)  # 1/10 of the way up
    assert learning_rate_at(9, **kw) == pytest.approx(1e-3)  # last warm-up step: the base rate
    assert learning_rate_at(10, **kw) == pytest.approx(1e-3)  # cosine starts at the top
    assert learning_rate_at(109, **kw) == pytest.approx(1e-5)  # last step: base * final_fraction
    assert learning_rate_at(59.5, **kw) == pytest.approx(1e-5 + (1e-3 - 1e-5) * 0.5)  # half way: the mean
    lrs = [learning_rate_at(s, **kw) for s in range(10, 110)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_step_and_constant_schedules():
    kw = dict(base=1e-3, warmup_steps=0, total_steps=100)
    assert [learning_rate_at(s, kind="step", **kw) for s in (0, 49, 50, 74, 75, 99)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5]
    )
    assert learning_rate_at(99, kind="constant", **kw) == 1e-3
    with pytest.raises(ValueError, match=r"argument `kind`.*Received: 'linear'"):
        learning_rate_at(0, kind="linear", **kw)


def test_schedule_drives_the_optimizer_in_training():
    from pipeline.train import train_backbone

    cfg = TrainConfig(epochs=3, batch_size=16, learning_rate=2e-3, warmup_epochs=1.0, augment=())
    res = train_backbone("SmallCNN", _easy_set(48, 1), _easy_set(16, 2), 2, 16, cfg)
    steps = 3  # 48 images / 16
    expected = [learning_rate_at(e * steps, base=2e-3, warmup_steps=steps, total_steps=3 * steps) for e in range(3)]
    assert res.history["lr"].tolist() == pytest.approx(expected)


# ---------------------------------------------------------------- early stopping and selection


def test_auto_floor_and_patience_scale_with_the_budget():
    assert [auto_min_epochs(e) for e in (1, 2, 4, 8, 30, 100)] == [1, 2, 3, 5, 18, 60]
    assert [auto_patience(e) for e in (8, 30, 100)] == [3, 8, 25]
    assert [first_candidate(e) for e in (1, 2, 3, 30)] == [1, 2, 3, 3]


def test_selection_picks_the_best_auc_then_the_lower_weighted_loss():
    h = pd.DataFrame(
        {
            "epoch": [1, 2, 3, 4, 5, 6],
            "val_auc": [0.99, 0.70, 0.85, 0.90, 0.90, float("nan")],
            "val_loss_weighted": [0.1, 0.6, 0.5, 0.45, 0.40, 0.01],
            "val_loss": [0.1, 0.6, 0.5, 0.30, 0.41, 0.01],
        }
    )
    assert select_best_epoch(h, "auc") == 1
    assert select_best_epoch(h, "auc", from_epoch=3) == 5  # 0.90 twice: lower weighted loss wins; NaN never
    assert select_best_epoch(h, "loss", from_epoch=3) == 6
    assert select_best_epoch(h, "loss_unweighted", from_epoch=2) == 6
    assert select_best_epoch(h.iloc[:5], "loss_unweighted", from_epoch=2) == 4
    with pytest.raises(ValueError, match=r"argument `measure`.*Received: 'f1'"):
        selection_score(h.iloc[0].to_dict(), "f1")


def test_validation_metrics_match_scikit_learn():
    from sklearn.metrics import balanced_accuracy_score, log_loss, roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    p = rng.dirichlet(np.ones(3), 60)
    m = validation_metrics(y, p, {0: 2.0, 1: 1.0, 2: 0.5})
    assert m["loss"] == pytest.approx(log_loss(y, p))
    assert m["loss_weighted"] == pytest.approx(np.mean(-np.log(p[np.arange(60), y]) * np.array([2.0, 1.0, 0.5])[y]))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p.argmax(1)))
    assert m["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    yb = rng.integers(0, 2, 40)
    pb = rng.dirichlet(np.ones(2), 40)
    assert validation_metrics(yb, pb, None)["auc"] == pytest.approx(roc_auc_score(yb, pb[:, 1]))
    assert math.isnan(validation_metrics(np.zeros(5, int), pb[:5], None)["auc"])


def test_early_stopping_never_fires_before_the_minimum_epochs():
    from pipeline.train import train_backbone

    rng = np.random.default_rng(3)
    x = rng.integers(0, 255, (64, 16, 16, 3)).astype(np.uint8)
    y = rng.integers(0, 2, 64)  # labels unrelated to pixels: validation never improves for long
    cfg = TrainConfig(epochs=12, min_epochs=7, patience=1, batch_size=32, augment=())
    res = train_backbone("SmallCNN", (x[:48], y[:48]), (x[48:], y[48:]), 2, 16, cfg)
    assert res.info["epochs_run"] >= 7
    assert res.info["stop_reason"] in ("patience", "max_epochs")
    assert res.info["best_epoch"] >= 3 and res.history["selected"].sum() == 1


# ---------------------------------------------------------------- budget, determinism, devices


class FakeClock:
    """A clock that advances `tick` seconds every time it is read."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


def test_budget_in_minutes_is_honoured_with_a_fake_clock():
    from pipeline.train import train_backbone

    clock = FakeClock(10.0)  # read 3x per epoch: every epoch "takes" 10-20 s
    cfg = TrainConfig(epochs=50, budget_minutes=1.5, batch_size=32, augment=())
    res = train_backbone("SmallCNN", _easy_set(64, 1), _easy_set(16, 2), 2, 16, cfg, clock=clock)
    assert res.info["stop_reason"] == "budget"
    assert 2 <= res.info["epochs_run"] < 10
    assert res.info["train_seconds"] <= 90 + 30  # the budget plus at most one epoch's overrun
    assert res.info["cpu_seconds"] > 0 and res.info["budget_minutes"] == 1.5


def test_budget_can_count_process_cpu_time_instead_of_wall_time():
    """On a shared machine a wall budget gives a backbone less compute when others load it; CPU time does not."""
    from pipeline.train import train_backbone

    wall, cpu = FakeClock(0.001), FakeClock(10.0)  # the wall clock hardly moves: only CPU time can end the run
    cfg = TrainConfig(epochs=50, budget_minutes=1.5, budget_clock="cpu", batch_size=32, augment=())
    res = train_backbone("SmallCNN", _easy_set(64, 1), _easy_set(16, 2), 2, 16, cfg, clock=wall, cpu_clock=cpu)
    assert res.info["stop_reason"] == "budget" and res.info["budget_clock"] == "cpu"
    assert 2 <= res.info["epochs_run"] < 10
    assert res.info["cpu_seconds"] <= 90 + 30 and res.info["train_seconds"] < 1
    # the same run on the wall clock is not stopped by the CPU time it used
    cfg_wall = replace(cfg, budget_clock="wall", epochs=4)
    res = train_backbone("SmallCNN", _easy_set(64, 1), _easy_set(16, 2), 2, 16, cfg_wall, clock=wall, cpu_clock=cpu)
    assert res.info["stop_reason"] != "budget" and res.info["epochs_run"] == 4


def test_budget_plans_on_the_steady_epoch_not_the_first_one_with_its_tracing(monkeypatch):
    """Epoch 1 costs 60 s (tracing), later ones 20 s: a 300 s budget holds 1 + 240 // 20 = 13 epochs."""
    from pipeline import train as tr

    now = [0.0]
    real_run_epoch = tr.run_epoch

    def charged_run_epoch(*args, **kwargs):
        now[0] += 60.0 if kwargs.get("start_step", 0) == 0 else 20.0
        return real_run_epoch(*args, **kwargs)

    monkeypatch.setattr(tr, "run_epoch", charged_run_epoch)
    cfg = TrainConfig(epochs=50, budget_minutes=5, budget_clock="cpu", batch_size=32, augment=())

    def clock() -> float:
        return now[0]

    res = tr.train_backbone("SmallCNN", _easy_set(64, 1), _easy_set(16, 2), 2, 16, cfg, clock=clock, cpu_clock=clock)
    assert res.info["epochs_run"] == 13 and res.info["cpu_seconds"] == pytest.approx(300.0)
    assert res.info["stop_reason"] == "budget"  # the budget re-planned it to 13 of 50 epochs
    lr = res.history["lr"].to_numpy()
    assert lr[-1] < 0.05 * lr.max()  # and its cosine decay completed inside the budget


def test_deterministic_training_gives_identical_predictions():
    from pipeline.predict import predict_array
    from pipeline.train import train_backbone

    cfg = TrainConfig(epochs=3, batch_size=16, augment=("flip", "rotate"), deterministic=True, seed=5)
    train, val = _easy_set(48, 1), _easy_set(16, 2)
    runs = [train_backbone("SmallCNN", train, val, 2, 16, cfg) for _ in range(2)]
    a, b = (predict_array(r.model, val[0], 16) for r in runs)
    assert np.array_equal(a, b)
    assert runs[0].history.drop(columns="seconds").equals(runs[1].history.drop(columns="seconds"))
    assert runs[0].info["deterministic"] is True


def test_precision_policy_follows_the_devices_found():
    assert precision_policy([], "auto") == "float32"
    assert precision_policy(["GPU:0"], "auto") == "mixed_float16"
    assert precision_policy(["GPU:0"], "off") == "float32"
    assert precision_policy([], "on") == "float32"  # no GPU: float16 would only be slower
    with pytest.raises(ValueError, match=r"argument `setting`.*Received: 'fp16'"):
        precision_policy([], "fp16")


def test_mixed_precision_is_wired_when_a_gpu_is_found():
    import keras

    from pipeline.backbones import build_classifier
    from pipeline.train import _optimizer, accelerator_setup

    cfg = TrainConfig()
    before = keras.mixed_precision.global_policy().name
    with accelerator_setup(cfg, gpus=["fake-gpu"]) as device:  # a fake device list: no real GPU needed
        assert device["dtype_policy"] == "mixed_float16" and device["device"] == "GPU"
        model = build_classifier("SmallCNN", 16, 2)
        assert model.get_layer("predictions").dtype_policy.name == "float32"
        assert model.get_layer("smallcnn").get_layer("conv1").compute_dtype == "float16"
        assert isinstance(_optimizer(cfg, 1e-3), keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.global_policy().name == before
    with accelerator_setup(cfg, gpus=[]) as device:
        assert device["dtype_policy"] == "float32" and not isinstance(
            _optimizer(cfg, 1e-3), keras.optimizers.LossScaleOptimizer
        )


# ---------------------------------------------------------------- config


def _cfg(train: dict) -> TrainConfig:
    raw = {"experiment": {"name": "x"}, "dataset": {"layout": "npz", "root": "x.npz"}, "train": train}
    return parse_config(raw).train


def test_protocol_keys_parse_and_bad_values_name_the_key():
    t = _cfg(
        {
            "optimizer": "adam",
            "schedule": "step",
            "label_smoothing": 0.1,
            "budget_minutes": 5,
            "deterministic": True,
            "select_on": "loss",
            "min_epochs": 4,
            "ema_epochs": 2,
        }
    )
    assert t.ema_epochs == 2.0
    assert (
        t.optimizer,
        t.schedule,
        t.label_smoothing,
        t.budget_minutes,
        t.deterministic,
        t.select_on,
        t.min_epochs,
    ) == ("adam", "step", 0.1, 5.0, True, "loss", 4)
    for bad, match in [
        ({"optimizer": "sgd"}, r"`train.optimizer`.*'sgd'"),
        ({"label_smoothing": 0.9}, r"`train.label_smoothing`.*0.9"),
        ({"budget_minutes": 0}, r"`train.budget_minutes`"),
        ({"deterministic": "yes"}, r"`train.deterministic`.*true or false"),
        ({"min_epochs": 0}, r"`train.min_epochs`.*positive integer"),
        ({"select_on": "f1"}, r"`train.select_on`"),
        ({"clip_norm": 0}, r"`train.clip_norm`.*Received: 0"),
        ({"clip_norm": True}, r"`train.clip_norm`.*Received: True"),
        ({"ema_epochs": -0.5}, r"`train.ema_epochs`.*Received: -0.5"),
        ({"budget_clock": "gpu"}, r"`train.budget_clock`.*'gpu'"),
    ]:
        with pytest.raises(ValueError, match=match):
            _cfg(bad)


def test_clip_norm_false_switches_clipping_off():
    assert _cfg({}).clip_norm == 1.0
    assert _cfg({"clip_norm": 2}).clip_norm == 2.0
    assert _cfg({"clip_norm": False}).clip_norm is None  # TOML has no None


def test_the_step_sets_the_scheduled_rate_on_the_optimizer():
    import keras

    from pipeline.train import _optimizer, make_train_step

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inp)))
    opt = _optimizer(TrainConfig(), 1e-3)
    step = make_train_step(model, opt, None, 2)
    x, y = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32"), np.array([0, 1, 0, 1], "int32")
    step(x, y, np.float32(0.0123), np.float32(0.0))
    assert float(opt.learning_rate.numpy()) == pytest.approx(0.0123)
    before = [v.numpy().copy() for v in model.trainable_variables]
    step(x, y, np.float32(0.0), np.float32(0.0))  # rate 0: neither the gradient nor the decoupled decay moves a weight
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, model.trainable_variables))


def test_ema_decay_spans_the_same_share_of_an_epoch_on_any_set_size():
    from pipeline.train import ema_decay_at

    assert ema_decay_at(10_000, steps_per_epoch=20, ema_epochs=1.0) == pytest.approx(1 - 1 / 20)
    assert ema_decay_at(10_000, steps_per_epoch=2000, ema_epochs=0.5) == pytest.approx(1 - 1 / 1000)
    assert ema_decay_at(0, steps_per_epoch=2000, ema_epochs=1.0) == pytest.approx(0.1)  # warm-up: 1/10
    assert ema_decay_at(5, steps_per_epoch=20, ema_epochs=1.0) == pytest.approx(6 / 15)
    assert ema_decay_at(5, steps_per_epoch=20, ema_epochs=0.0) == 0.0
    with pytest.raises(ValueError, match=r"`ema_epochs`.*Received: -1"):
        ema_decay_at(0, steps_per_epoch=20, ema_epochs=-1)


def test_the_step_updates_the_weight_average_and_swapping_exchanges_values():
    import keras
    import tensorflow as tf

    from pipeline.train import make_train_step, swap_variables

    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(inp)))
    live = model.trainable_variables
    start = [v.numpy().copy() for v in live]
    ema = [tf.Variable(v.numpy() * 0 + 5.0, trainable=False) for v in live]  # a known, different average
    step = make_train_step(model, keras.optimizers.SGD(0.5), None, 2, ema=ema)
    x, y = np.random.default_rng(0).random((4, 8, 8, 3)).astype("float32"), np.array([0, 1, 0, 1], "int32")
    step(x, y, np.float32(0.5), np.float32(0.75))
    after = [v.numpy() for v in live]
    assert not all(np.array_equal(a, b) for a, b in zip(start, after))  # the live weights moved
    for avg, new in zip(ema, after):  # avg <- 0.75 * avg + 0.25 * (weights after this step's update)
        np.testing.assert_allclose(avg.numpy(), 0.75 * 5.0 + 0.25 * new, rtol=1e-6)
    held = [a.numpy().copy() for a in ema]
    swap_variables(live, ema)
    assert all(np.array_equal(v.numpy(), h) for v, h in zip(live, held))
    assert all(np.array_equal(a.numpy(), w) for a, w in zip(ema, after))


def test_fair_input_policy_gives_downsampling_backbones_a_2x2_last_map():
    from pipeline.backbones import BACKBONES, get_backbone

    assert get_backbone("ResNet50").input_size(32, "fair") == 64
    assert get_backbone("ResNet50").input_size(32, "native") == 32
    assert get_backbone("SmallCNN").input_size(32, "fair") == 32
    assert get_backbone("InceptionV3").input_size(32, "fair") == 75
    assert all(b.input_size(224, "fair") == 224 for b in BACKBONES.values())
    with pytest.raises(ValueError, match=r"argument `policy`.*Received: 'big'"):
        get_backbone("ResNet50").input_size(32, "big")


def test_fair_size_is_where_the_valid_padded_backbones_reach_a_2x2_map():
    import keras

    from pipeline.backbones import get_backbone

    densenet = get_backbone("DenseNet121")  # "valid" pooling: the strictest of the registry
    size = densenet.input_size(28, "fair")
    built = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(size, size, 3))
    assert built.output_shape[1:3] == (2, 2)
    smaller = keras.applications.DenseNet121(include_top=False, weights=None, input_shape=(size - 8, size - 8, 3))
    assert smaller.output_shape[1:3] == (1, 1)
