"""The training protocol: one fair, strong recipe for every backbone (README, "How models are trained").

AdamW with linear warm-up then cosine (or step) decay over the budget, optional label smoothing,
class-weighted cross-entropy, augmentation that keeps the meaning of gray levels, precise-BN when
training from scratch, checkpoint selection on validation AUC (macro one-vs-rest for multiclass, ties
broken by the class-weighted validation loss), early stopping that cannot fire before `min_epochs`, and
a budget in epochs and/or minutes that every backbone gets alike. The history, epochs run, best epoch,
why the run stopped and the CPU seconds it used are recorded. `deterministic` makes a rebuild
bit-identical on the same machine; on a GPU, mixed precision with a float32 output layer.
"""

from __future__ import annotations

import contextlib
import functools
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.backbones import build_classifier, get_backbone, nested_backbone, parse_weights
from pipeline.config import TrainConfig

SELECTION_MEASURES = ("auc", "loss", "loss_unweighted")
STOP_REASONS = ("max_epochs", "patience", "budget")


@dataclass
class TrainResult:
    """A trained model with its per-epoch history and timing facts."""

    model: Any
    history: pd.DataFrame
    info: dict[str, Any]


# ---------------------------------------------------------------- protocol pieces (plain functions)


def class_weights(labels: np.ndarray, n_classes: int, policy: str = "balanced") -> dict[int, float] | None:
    """Weights n / (k * count_c) per class ('balanced'), None for 'none'; absent classes get weight 1."""
    if policy == "none":
        return None
    if policy != "balanced":
        raise ValueError(f"Invalid value for argument `policy`. Expected 'balanced' or 'none'. Received: {policy!r}")
    counts = np.bincount(np.asarray(labels, int), minlength=n_classes).astype(float)
    n = counts.sum()
    return {c: float(n / (n_classes * counts[c])) if counts[c] else 1.0 for c in range(n_classes)}


def learning_rate_at(
    step: int, *, base: float, warmup_steps: int, total_steps: int, kind: str = "cosine", final_fraction: float = 0.01
) -> float:
    """Learning rate at optimizer step `step` (0-based): linear warm-up to `base`, then the decay `kind`.

    cosine: from `base` at the end of warm-up to `base * final_fraction` at the last step (`total_steps - 1`);
    step: x0.1 at 50% and again at 75% of the run (the MedMNIST v2 recipe); constant: `base` throughout.
    """
    if kind not in ("cosine", "step", "constant"):
        raise ValueError(
            f"Invalid value for argument `kind`. Expected 'cosine', 'step' or 'constant'. Received: {kind!r}"
        )
    total_steps = max(int(total_steps), 1)
    warmup_steps = min(max(int(warmup_steps), 0), total_steps - 1)
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    if kind == "constant":
        return base
    if kind == "step":
        frac = step / total_steps
        return base * (0.01 if frac >= 0.75 else 0.1 if frac >= 0.5 else 1.0)
    span = max(total_steps - 1 - warmup_steps, 1)
    progress = min(max((step - warmup_steps) / span, 0.0), 1.0)
    low = base * final_fraction
    return low + (base - low) * 0.5 * (1.0 + math.cos(math.pi * progress))


def auto_min_epochs(epochs: int) -> int:
    """Fewest epochs before early stopping may fire: 60% of the budget, at least 3 (or all epochs).

    With a decaying learning rate the best checkpoints come late (SmallCNN on BreastMNIST: validation AUC
    flat from epoch 4 to 20 of 30, best in the last third); stopping on a noisy plateau before the decay
    has done its work left seed 1 at epoch 7 of 12 with test AUC 0.76 against 0.84-0.87 for full runs.
    """
    return min(epochs, max(3, math.ceil(0.6 * epochs)))


def auto_patience(epochs: int) -> int:
    """Epochs without improvement that end a run: a quarter of the budget, at least 3."""
    return max(3, math.ceil(epochs / 4))


def selection_score(row: Mapping[str, float], measure: str) -> tuple[float, float]:
    """Sort key of one epoch's validation row, larger is better: (primary, tie-break)."""
    if measure == "auc":
        auc = row.get("val_auc", float("nan"))
        primary = -math.inf if auc is None or not np.isfinite(auc) else round(float(auc), 6)
        return primary, -float(row["val_loss_weighted"])
    if measure == "loss":
        return -float(row["val_loss_weighted"]), 0.0
    if measure == "loss_unweighted":
        return -float(row["val_loss"]), 0.0
    raise ValueError(
        f"Invalid value for argument `measure`. Expected one of {list(SELECTION_MEASURES)}. Received: {measure!r}"
    )


def ema_decay_at(step: int, *, steps_per_epoch: int, ema_epochs: float) -> float:
    """Decay of the weight average after optimizer step `step` (0-based): horizon `ema_epochs` epochs.

    1 - 1 / (ema_epochs * steps_per_epoch), so the average spans the same share of the data on any set
    size, capped by (1 + step) / (10 + step) early on so the random initial weights fade out quickly
    (the warm-up of TensorFlow's ExponentialMovingAverage `num_updates`). 0 when `ema_epochs` is 0 (off).
    """
    if ema_epochs < 0 or steps_per_epoch < 1:
        raise ValueError(
            "Invalid value for argument `ema_epochs`/`steps_per_epoch`. Expected ema_epochs >= 0 and "
            f"steps_per_epoch >= 1. Received: {ema_epochs!r} and {steps_per_epoch!r}"
        )
    if ema_epochs == 0:
        return 0.0
    horizon = max(ema_epochs * steps_per_epoch, 1.0)
    return min(1.0 - 1.0 / horizon, (1.0 + step) / (10.0 + step))


def swap_variables(a: Sequence[Any], b: Sequence[Any]) -> None:
    """Exchange the values of two equally long lists of variables (live weights <-> their average)."""
    for va, vb in zip(a, b, strict=True):
        held = np.array(va.numpy())
        va.assign(vb.numpy())
        vb.assign(held)


def first_candidate(planned_epochs: int) -> int:
    """First epoch that may be selected: the third (models of epochs 1-2 have not learned yet), or the last."""
    return max(1, min(3, planned_epochs))


def select_best_epoch(history: pd.DataFrame, measure: str, *, from_epoch: int = 1) -> int:
    """The epoch (1-based, as in `history['epoch']`) with the best selection score, from `from_epoch` on.

    The first of equal scores wins (the earlier model saw less of the training data's noise).
    """
    rows = history[history["epoch"] >= from_epoch]
    if rows.empty:
        rows = history
    scores = [selection_score(r, measure) for r in rows.to_dict("records")]
    best = max(range(len(scores)), key=lambda i: (scores[i], -i))
    return int(rows["epoch"].iloc[best])


def validation_metrics(y: np.ndarray, probs: np.ndarray, weights: Mapping[int, float] | None) -> dict[str, float]:
    """Validation loss (unweighted and class-weighted as in training), accuracy, balanced accuracy and AUC.

    AUC is the binary ROC AUC, or the macro one-vs-rest AUC over the classes present for multiclass;
    NaN when fewer than two classes are present.
    """
    from pipeline import metrics as mt

    y = np.asarray(y, int)
    p = np.clip(np.asarray(probs, np.float64), 1e-7, 1.0)
    n_classes = p.shape[1]
    nll = -np.log(p[np.arange(len(y)), y])
    w = np.array([weights.get(c, 1.0) if weights else 1.0 for c in range(n_classes)])[y]
    pred = p.argmax(1)
    present = [c for c in range(n_classes) if np.any(y == c)]
    recalls = [float(np.mean(pred[y == c] == c)) for c in present]
    aucs = []
    if len(present) >= 2:
        for c in present if n_classes > 2 else [1]:
            aucs.append(mt.roc_auc(y == c, p[:, c]))
    return {
        "loss": float(nll.mean()),
        "loss_weighted": float((nll * w).mean()),
        "accuracy": float(np.mean(pred == y)),
        "balanced_accuracy": float(np.mean(recalls)) if recalls else 0.0,
        "auc": float(np.mean(aucs)) if aucs else float("nan"),
    }


def precision_policy(gpus: Sequence[Any], setting: str = "auto") -> str:
    """Keras dtype policy for the devices found: 'mixed_float16' on a GPU unless turned off, else 'float32'."""
    if setting not in ("auto", "on", "off"):
        raise ValueError(f"Invalid value for argument `setting`. Expected 'auto', 'on' or 'off'. Received: {setting!r}")
    if setting == "off" or not gpus:
        return "float32"
    return "mixed_float16"


@contextlib.contextmanager
def accelerator_setup(cfg: TrainConfig, gpus: Sequence[Any] | None = None) -> Iterator[dict[str, Any]]:
    """Configure devices for one training run and restore the global state afterwards.

    GPU: memory growth, `mixed_float16` (the classifier's output layer stays float32), XLA when
    `cfg.xla`. CPU: nothing changes except Grappler being skipped (see `_cpu_graph_options`).
    Yields what was chosen, for the model's config.json.
    """
    import keras
    import tensorflow as tf

    if gpus is None:
        gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        with contextlib.suppress(RuntimeError, ValueError, TypeError):  # already initialised / fake device
            tf.config.experimental.set_memory_growth(gpu, True)
    policy = precision_policy(gpus, cfg.mixed_precision)
    saved_policy = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        with _cpu_graph_options(bool(gpus)):
            yield {
                "device": "GPU" if gpus else "CPU",
                "n_gpus": len(gpus),
                "dtype_policy": policy,
                "xla": bool(cfg.xla and gpus),
            }
    finally:
        keras.mixed_precision.set_global_policy(saved_policy)


@contextlib.contextmanager
def _cpu_graph_options(on_gpu: bool | None = None) -> Iterator[None]:
    """On CPU-only machines, skip Grappler's graph rewrites for the functions built inside.

    Measured on 2 cores: Grappler took 25 s to optimise a DenseNet121 train step before its first run,
    against 6 s without, and the steps then ran no slower (0.5 vs 0.7 s). On a GPU its layout rewrites
    pay off, so there nothing changes.
    """
    import tensorflow as tf

    if on_gpu is None:
        on_gpu = bool(tf.config.list_physical_devices("GPU"))

    if on_gpu:
        yield
        return
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options(
            {"disable_meta_optimizer": saved.get("disable_meta_optimizer", False)}
        )


@contextlib.contextmanager
def determinism(enabled: bool, seed: int) -> Iterator[dict[str, Any]]:
    """Seed every generator; with `enabled`, TensorFlow op determinism and fixed thread counts.

    Thread counts can only be fixed before TensorFlow starts its runtime (as the `--jobs` workers do);
    otherwise the current counts are kept, which is enough for the same result on the same machine.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    facts: dict[str, Any] = {"deterministic": bool(enabled)}
    if not enabled:
        yield facts
        return
    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(
            tf.config.threading.get_intra_op_parallelism_threads() or 1
        )
        tf.config.threading.set_inter_op_parallelism_threads(
            tf.config.threading.get_inter_op_parallelism_threads() or 1
        )
    facts["intra_op_threads"] = tf.config.threading.get_intra_op_parallelism_threads()
    facts["inter_op_threads"] = tf.config.threading.get_inter_op_parallelism_threads()
    was_on = (
        tf.config.experimental.is_op_determinism_enabled()
        if hasattr(tf.config.experimental, "is_op_determinism_enabled")
        else False
    )
    tf.config.experimental.enable_op_determinism()
    try:
        yield facts
    finally:
        if not was_on:
            from tensorflow.python.framework import config as tf_config

            with contextlib.suppress(AttributeError):
                tf_config.disable_op_determinism()


# ---------------------------------------------------------------- the compiled step and the epoch loop


def make_train_step(
    model: Any,
    optimizer: Any,
    class_weight: dict[int, float] | None,
    n_classes: int,
    *,
    label_smoothing: float = 0.0,
    jit_compile: bool = False,
    ema: Sequence[Any] | None = None,
) -> Any:
    """A compiled train step: (images, labels, learning rate, EMA decay) -> (summed weighted loss, correct count).

    Our own step instead of `model.fit`: Keras's fit machinery cost 40-50 s more than this step to trace
    and start per model on 2 CPU cores (DenseNet121 first epoch 71 s vs 31 s), which was most of the
    demo build. The loss is class-weighted cross-entropy against (optionally smoothed) one-hot targets,
    averaged over the batch, with Keras's clipping of probabilities to [1e-7, 1 - 1e-7]. The learning
    rate is an input, so the schedule is the plain function `learning_rate_at`, not a second copy in TF.
    With `ema` (one variable per trainable variable), the step also updates the exponential moving
    average of the weights with the given decay (`ema_decay_at`), inside the same compiled function.
    """
    import tensorflow as tf

    cw = tf.constant([class_weight.get(c, 1.0) if class_weight else 1.0 for c in range(n_classes)], tf.float32)
    smooth = float(label_smoothing)
    variables = model.trainable_variables
    optimizer.build(variables)  # slot variables made eagerly, not inside the trace
    # A fixed signature with a free batch size: one trace, also for the partial last batch (a retrace
    # there cost as much as the first trace, ~50 s for DenseNet121 on one core).
    spec = (
        tf.TensorSpec([None, *tuple(model.input_shape)[1:]], tf.float32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([], tf.float32),
        tf.TensorSpec([], tf.float32),
    )
    scale_loss = getattr(optimizer, "scale_loss", None)

    @tf.function(input_signature=spec, jit_compile=jit_compile)
    def step(x: Any, y: Any, lr: Any, decay: Any) -> tuple[Any, Any]:
        optimizer.learning_rate.assign(lr)
        with tf.GradientTape() as tape:
            probs = tf.cast(model(x, training=True), tf.float32)
            target = tf.one_hot(y, n_classes) * (1.0 - smooth) + smooth / n_classes
            nll = -tf.reduce_sum(target * tf.math.log(tf.clip_by_value(probs, 1e-7, 1.0 - 1e-7)), axis=-1)
            loss = tf.reduce_mean(nll * tf.gather(cw, y))
            if model.losses:
                loss += tf.add_n([tf.cast(v, tf.float32) for v in model.losses])
            scaled = scale_loss(loss) if scale_loss is not None else loss
        optimizer.apply(tape.gradient(scaled, variables), variables)
        for avg, var in zip(ema or (), variables):
            avg.assign(decay * avg + (1.0 - decay) * tf.cast(tf.convert_to_tensor(var), avg.dtype))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), y), tf.float32))
        return loss * tf.cast(tf.shape(y)[0], tf.float32), correct

    return step


def run_epoch(
    step: Any,
    train_ds: Any,
    *,
    lr_for: Callable[[int], float] | None = None,
    decay_for: Callable[[int], float] | None = None,
    start_step: int = 0,
) -> dict[str, float]:
    """One pass of `step` over `train_ds` at `lr_for(step)` and EMA decay `decay_for(step)`: mean loss, accuracy."""
    import tensorflow as tf

    loss_sum = correct = n = 0.0
    i = start_step
    for x, y in train_ds:
        lr = lr_for(i) if lr_for is not None else 1e-3
        decay = decay_for(i) if decay_for is not None else 0.0
        batch_loss, batch_correct = step(x, y, tf.constant(lr, tf.float32), tf.constant(decay, tf.float32))
        loss_sum += float(batch_loss)
        correct += float(batch_correct)
        n += int(y.shape[0])
        i += 1
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "steps": i - start_step}


def recalibrate_batchnorm(model: Any, images: np.ndarray) -> None:
    """Set every BatchNorm layer's moving statistics to their value on `images` ("precise BN").

    Trained from scratch on a few hundred images, the running averages lag far behind the weights,
    and the model in inference mode predicts nearly one class (seen: validation accuracy stuck at the
    majority rate while the training-mode outputs ranked well). One large forward pass in training
    mode with momentum 0 replaces the stale averages with population statistics.
    """
    import keras

    bns = [layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)]
    if not bns or len(images) == 0:
        return
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.momentum = 0.0
    try:
        model(np.asarray(images, np.float32), training=True)
    finally:
        for bn, m in zip(bns, saved):
            bn.momentum = m


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _evaluate(
    model: Any, val: tuple[np.ndarray, np.ndarray], batch_size: int, weights: Mapping[int, float] | None = None
) -> dict[str, float]:
    """`validation_metrics` of the model in inference mode on the validation arrays."""
    from pipeline.predict import predict_array

    x, y = val
    return validation_metrics(y, predict_array(model, x, batch_size), weights)


@dataclass
class _Plan:
    """The epoch budget of one stage; `planned` shrinks when the minutes budget will not fit `max_epochs`."""

    max_epochs: int
    planned: int
    steps_per_epoch: int
    warmup_steps: int
    deadline: float | None  # clock value after which no new epoch starts


def _fit(
    model: Any,
    optimizer: Any,
    train_ds: Any,
    val: tuple[np.ndarray, np.ndarray],
    plan: _Plan,
    cfg: TrainConfig,
    weights: dict[int, float] | None,
    calib: np.ndarray | None,
    stage: str,
    base_lr: float,
    clock: Callable[[], float],
    verbose: int = 0,
    jit_compile: bool = False,
    budget_clock: Callable[[], float] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Epoch loop: scheduled learning rate, weight average, precise BN, validation, early stopping, restore.

    With `cfg.ema_epochs`, every epoch is judged (and a selected model returned) with the moving average
    of the weights in place, its BatchNorm statistics recomputed for those weights (precise BN); the
    live weights go on training.
    """
    import tensorflow as tf

    live = list(model.trainable_variables)
    ema = [tf.Variable(np.array(v.numpy()), trainable=False) for v in live] if cfg.ema_epochs > 0 else None
    step = make_train_step(
        model,
        optimizer,
        weights,
        int(model.output_shape[-1]),
        label_smoothing=cfg.label_smoothing,
        jit_compile=jit_compile,
        ema=ema,
    )
    decay_for = (
        functools.partial(ema_decay_at, steps_per_epoch=plan.steps_per_epoch, ema_epochs=cfg.ema_epochs)
        if ema is not None
        else None
    )
    judged_weights = None  # with EMA: the weights last judged (the average), if no epoch was a candidate
    budget_clock = budget_clock or clock  # what `plan.deadline` is measured in
    spent: list[float] = []  # each epoch's duration on the budget clock
    min_epochs = cfg.min_epochs if cfg.min_epochs is not None else auto_min_epochs(plan.max_epochs)
    patience = cfg.patience if cfg.patience is not None else auto_patience(plan.max_epochs)
    rows: list[dict[str, Any]] = []
    best_score: tuple[float, float] | None = None
    best_weights, best_epoch, waited, reason, global_step = None, 0, 0, "max_epochs", 0
    epoch = 0
    while epoch < plan.planned:
        t0, b0 = clock(), budget_clock()
        lr_total = plan.planned * plan.steps_per_epoch
        row: dict[str, Any] = {
            "lr": learning_rate_at(
                global_step, base=base_lr, warmup_steps=plan.warmup_steps, total_steps=lr_total, kind=cfg.schedule
            )
        }
        out = run_epoch(
            step,
            train_ds,
            start_step=global_step,
            lr_for=functools.partial(
                learning_rate_at,
                base=base_lr,
                warmup_steps=plan.warmup_steps,
                total_steps=lr_total,
                kind=cfg.schedule,
            ),
            decay_for=decay_for,
        )
        global_step += int(out.pop("steps"))
        row.update(out)
        if ema is not None:
            swap_variables(live, ema)  # judge the average; the live weights wait in `ema`
        if calib is not None:
            recalibrate_batchnorm(model, calib)
        row.update({f"val_{k}": v for k, v in _evaluate(model, val, cfg.batch_size, weights).items()})
        epoch += 1
        if epoch >= first_candidate(plan.planned):
            score = selection_score(row, cfg.select_on)
            if best_score is None or score > best_score:
                best_score, best_weights, best_epoch, waited = score, model.get_weights(), epoch, 0
            else:
                waited += 1
        if ema is not None:
            judged_weights = model.get_weights() if best_weights is None else None
            swap_variables(live, ema)
        row["seconds"] = clock() - t0
        spent.append(budget_clock() - b0)
        rows.append(row)
        if verbose:
            print(f"{stage} epoch {epoch}/{plan.planned}: " + ", ".join(f"{k}={v:.4g}" for k, v in row.items()))
        if epoch >= min_epochs and waited >= patience and epoch < plan.planned:
            reason = "patience"
            break
        if plan.deadline is not None and epoch < plan.planned:
            remaining = plan.deadline - budget_clock()
            if epoch == 1:
                # The first epoch carries the tracing (ResNet50: 33-40 CPU-s against 26 for later epochs);
                # planning on it cut 12 planned epochs to 7 inside a budget that fits 11. So the plan is made
                # from the second epoch on, on the median steady epoch; after the first, only an exhausted
                # budget stops the run.
                fits = plan.planned if remaining > 0 else epoch
            else:
                fits = epoch + int(max(remaining, 0.0) // max(float(np.median(spent[1:])), 1e-9))
            if fits < plan.planned:
                plan.planned = max(fits, epoch)
                if plan.planned == epoch:
                    reason = "budget"
                    break
    if reason == "max_epochs" and plan.planned < plan.max_epochs:
        reason = "budget"  # the budget re-planned the run to fewer epochs, and it ran them
    if best_weights is not None and (best_epoch != epoch or ema is not None):  # the selected model, not the last
        model.set_weights(best_weights)
    elif judged_weights is not None:  # stopped before any candidate epoch: the average last judged
        model.set_weights(judged_weights)
    df = pd.DataFrame(rows)
    df.insert(0, "epoch", np.arange(1, len(df) + 1))
    df["stage"] = stage
    df["selected"] = df["epoch"] == (best_epoch or epoch)
    return df, reason


# ---------------------------------------------------------------- one backbone, end to end


def train_backbone(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    n_classes: int,
    image_size: int,
    cfg: TrainConfig,
    verbose: int = 0,
    *,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
    gpus: Sequence[Any] | None = None,
) -> TrainResult:
    """Train backbone `name` on decoded (images, labels) arrays under the protocol; returns the selected model.

    `clock` (wall) and `cpu_clock` (process CPU) measure the run and its minutes budget, which counts
    `cfg.budget_clock`'s time (tests pass fake clocks); `gpus` overrides device discovery.
    """
    import keras
    import tensorflow as tf

    from pipeline.tfdata import training_dataset

    backbone = get_backbone(name)
    size = backbone.input_size(image_size, cfg.input_policy)
    x_train, y_train = _resize_batch(train[0], size), np.asarray(train[1])
    x_val, y_val = _resize_batch(val[0], size), np.asarray(val[1])
    if len(y_train) == 0 or len(y_val) == 0:
        raise ValueError(
            f"Invalid value for argument `train`/`val`. Expected non-empty splits. "
            f"Received: {len(y_train)} train and {len(y_val)} val samples"
        )
    cpu0, start = cpu_clock(), clock()
    budget_clock = cpu_clock if cfg.budget_clock == "cpu" else clock
    deadline = budget_clock() + 60.0 * cfg.budget_minutes if cfg.budget_minutes else None
    with determinism(cfg.deterministic, cfg.seed) as det, accelerator_setup(cfg, gpus) as device:
        weights = parse_weights(cfg.weights)
        model = build_classifier(name, size, n_classes, weights=weights, zero_head=cfg.zero_head)
        train_ds = training_dataset(
            x_train, y_train, cfg.batch_size, cfg.augment, cfg.seed, deterministic=cfg.deterministic
        )
        cw = class_weights(y_train, n_classes, cfg.class_weights)
        fine_tune = cfg.fine_tune_epochs > 0 and weights is not None
        features = nested_backbone(model)
        # With pretrained weights, first train only the head so large gradients do not wreck the features.
        features.trainable = not fine_tune
        # Precise BN only when training from scratch: pretrained statistics are better than a few hundred images.
        calib = (
            x_train[np.random.default_rng(cfg.seed).permutation(len(x_train))[:256]]
            if weights is None and cfg.precise_bn
            else None
        )
        steps = math.ceil(len(y_train) / cfg.batch_size)
        plan = _Plan(cfg.epochs, cfg.epochs, steps, round(cfg.warmup_epochs * steps), deadline)
        jit = bool(device["xla"])
        history, reason = _fit(
            model,
            _optimizer(cfg, cfg.learning_rate),
            train_ds,
            (x_val, y_val),
            plan,
            cfg,
            cw,
            calib,
            "head" if fine_tune else "full",
            cfg.learning_rate,
            clock,
            verbose,
            jit,
            budget_clock,
        )
        histories = [history]
        if fine_tune and reason != "budget":
            features.trainable = True
            n_frozen = int(len(features.layers) * (1 - cfg.fine_tune_fraction))
            for layer in features.layers[:n_frozen]:
                layer.trainable = False
            for layer in features.layers:  # BatchNorm statistics stay as pretrained
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
            ft_plan = _Plan(
                cfg.fine_tune_epochs, cfg.fine_tune_epochs, steps, round(cfg.warmup_epochs * steps), deadline
            )
            ft, reason = _fit(
                model,
                _optimizer(cfg, cfg.fine_tune_learning_rate),
                train_ds,
                (x_val, y_val),
                ft_plan,
                cfg,
                cw,
                None,
                "fine_tune",
                cfg.fine_tune_learning_rate,
                clock,
                verbose,
                jit,
                budget_clock,
            )
            ft["epoch"] += len(history)
            histories.append(ft)
    wall = clock() - start
    cpu = cpu_clock() - cpu0
    history = pd.concat(histories, ignore_index=True)
    best = history[history["selected"]].iloc[-1]  # the last stage's selected epoch is the model returned
    best_epoch = int(best["epoch"])
    info = {
        "backbone": backbone.name,
        "input_size": size,
        "image_size": image_size,
        "weights": cfg.weights,
        "epochs_run": int(len(history)),
        "epochs_max": cfg.epochs + (cfg.fine_tune_epochs if fine_tune else 0),
        "best_epoch": int(best_epoch),
        "stop_reason": reason,
        "selected_on": f"val_{cfg.select_on}" if cfg.select_on != "loss" else "val_loss_weighted",
        "best_val_loss": float(best["val_loss"]),
        "best_val_auc": _finite_or_none(best["val_auc"]),
        "best_val_loss_weighted": float(best["val_loss_weighted"]),
        "fine_tuned": fine_tune,
        "seed": cfg.seed,
        "batch_size": cfg.batch_size,
        "learning_rate": cfg.learning_rate,
        "optimizer": cfg.optimizer,
        "weight_decay": cfg.weight_decay,
        "schedule": cfg.schedule,
        "warmup_epochs": cfg.warmup_epochs,
        "label_smoothing": cfg.label_smoothing,
        "ema_epochs": cfg.ema_epochs,
        "clip_norm": cfg.clip_norm,
        "zero_head": cfg.zero_head,
        "precise_bn": calib is not None,
        "min_epochs": cfg.min_epochs if cfg.min_epochs is not None else auto_min_epochs(cfg.epochs),
        "patience": cfg.patience if cfg.patience is not None else auto_patience(cfg.epochs),
        "budget_minutes": cfg.budget_minutes,
        "budget_clock": cfg.budget_clock,
        "input_policy": cfg.input_policy,
        "augment": list(cfg.augment),
        "class_weights": None if cw is None else {str(k): v for k, v in cw.items()},
        "train_seconds": round(wall, 3),
        "cpu_seconds": round(cpu, 3),
        "gpu_seconds": round(wall, 3) if device["device"] == "GPU" else 0.0,
        "train_images_per_s": round(len(y_train) * len(history) / max(wall, 1e-9), 2),
        "n_train": int(len(y_train)),
        "n_val": int(len(y_val)),
        "params": int(model.count_params()),
        "preprocessing": backbone.preprocess_mode,
        "preprocess_function": backbone.preprocess_function,
        "cam_layer": backbone.cam_layer,
        **device,
        **det,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
    }
    return TrainResult(model, history, info)


def _optimizer(cfg: TrainConfig, lr: float) -> Any:
    """AdamW (decoupled weight decay, not on biases/BN/normalisation) or plain Adam; loss-scaled under fp16."""
    import keras

    clip = {"global_clipnorm": cfg.clip_norm} if cfg.clip_norm else {}
    if cfg.optimizer == "adamw":
        opt = keras.optimizers.AdamW(lr, weight_decay=cfg.weight_decay, **clip)
        # Decay only kernels: the usual practice (and what keeps BN's scale free to follow the data).
        opt.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "moving_"])
    elif cfg.optimizer == "adam":
        opt = keras.optimizers.Adam(lr, **clip)
    else:
        raise ValueError(
            f"Invalid value for argument `optimizer`. Expected 'adamw' or 'adam'. Received: {cfg.optimizer!r}"
        )
    if keras.mixed_precision.global_policy().name == "mixed_float16":
        opt = keras.optimizers.LossScaleOptimizer(opt)
    return opt


def _finite_or_none(x: Any) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 batch to size x size when it differs (backbones with a larger minimum input)."""
    if images.shape[1] == size:
        return images
    from pipeline.preprocess import resize_square

    return (
        np.stack([resize_square(im, size) for im in images]) if len(images) else np.zeros((0, size, size, 3), np.uint8)
    )
