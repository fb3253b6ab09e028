"""Training one backbone: tf.data input, Keras augmentation layers, class weights, early stopping,
best-checkpoint restore, optional fine-tuning stage; history, wall time and images/s recorded."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import pandas as pd

from pipeline.backbones import build_classifier, get_backbone, nested_backbone, parse_weights
from pipeline.config import TrainConfig


@dataclass
class TrainResult:
    """A trained model with its per-epoch history and timing facts."""

    model: Any
    history: pd.DataFrame
    info: dict[str, Any]


def class_weights(labels: np.ndarray, n_classes: int, policy: str = "balanced") -> dict[int, float] | None:
    """Weights n / (k * count_c) per class ('balanced'), None for 'none'; absent classes get weight 1."""
    if policy == "none":
        return None
    if policy != "balanced":
        raise ValueError(f"Invalid value for argument `policy`. Expected 'balanced' or 'none'. Received: {policy!r}")
    counts = np.bincount(np.asarray(labels, int), minlength=n_classes).astype(float)
    n = counts.sum()
    return {c: float(n / (n_classes * counts[c])) if counts[c] else 1.0 for c in range(n_classes)}


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


def make_train_step(model: Any, optimizer: Any, class_weight: dict[int, float] | None, n_classes: int) -> Any:
    """A compiled train step: (images, labels) -> (summed weighted loss, correct count) after one update.

    Our own step instead of `model.fit`: Keras's fit machinery cost 40-50 s more than this step to trace
    and start per model on 2 CPU cores (DenseNet121 first epoch 71 s vs 31 s), which was most of the
    demo build. The loss is Keras's: class-weighted sparse cross-entropy averaged over the batch.
    """
    import keras
    import tensorflow as tf

    cw = tf.constant([class_weight.get(c, 1.0) if class_weight else 1.0 for c in range(n_classes)], tf.float32)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    variables = model.trainable_variables
    optimizer.build(variables)  # slot variables made eagerly, not inside the trace
    # A fixed signature with a free batch size: one trace, also for the partial last batch (a retrace
    # there cost as much as the first trace, ~50 s for DenseNet121 on one core).
    spec = (tf.TensorSpec([None, *tuple(model.input_shape)[1:]], tf.float32), tf.TensorSpec([None], tf.int32))

    @tf.function(input_signature=spec)
    def step(x: Any, y: Any) -> tuple[Any, Any]:
        with tf.GradientTape() as tape:
            probs = model(x, training=True)
            per_sample = loss_fn(y, probs) * tf.gather(cw, y)
            loss = tf.reduce_mean(per_sample)
            if model.losses:
                loss += tf.add_n(model.losses)
        optimizer.apply(tape.gradient(loss, variables), variables)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, -1, output_type=tf.int32), y), tf.float32))
        return loss * tf.cast(tf.shape(y)[0], tf.float32), correct

    return step


def run_epoch(step: Any, train_ds: Any) -> dict[str, float]:
    """One pass of `step` (from `make_train_step`) over `train_ds`: mean training loss and accuracy."""
    loss_sum = correct = n = 0.0
    for x, y in train_ds:
        batch_loss, batch_correct = step(x, y)
        loss_sum += float(batch_loss)
        correct += float(batch_correct)
        n += int(y.shape[0])
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1)}


def _evaluate(model: Any, val: tuple[np.ndarray, np.ndarray], batch_size: int) -> dict[str, float]:
    """Unweighted mean cross-entropy and accuracy on the validation arrays (inference mode)."""
    from pipeline.predict import predict_array

    x, y = val
    probs = np.clip(predict_array(model, x, batch_size), 1e-7, 1.0)
    y = np.asarray(y, int)
    return {"loss": float(-np.mean(np.log(probs[np.arange(len(y)), y]))),
            "accuracy": float(np.mean(probs.argmax(1) == y))}


def _fit(model: Any, optimizer: Any, train_ds: Any, val: tuple[np.ndarray, np.ndarray], epochs: int, patience: int,
         weights: dict | None, calib: np.ndarray | None, stage: str, verbose: int, batch_size: int) -> pd.DataFrame:
    """Epoch loop with BN recalibration, early stopping on val loss and best-epoch restore."""
    step = make_train_step(model, optimizer, weights, int(model.output_shape[-1]))
    rows: list[dict[str, float]] = []
    best_loss, best_weights, waited = np.inf, None, 0
    for epoch in range(epochs):
        row = run_epoch(step, train_ds)
        if calib is not None:
            recalibrate_batchnorm(model, calib)
        val_m = _evaluate(model, val, batch_size)
        row.update({f"val_{k}": v for k, v in val_m.items()})
        rows.append(row)
        if verbose:
            print(f"{stage} epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items()))
        if row["val_loss"] < best_loss - 1e-4:
            best_loss, best_weights, waited = row["val_loss"], model.get_weights(), 0
        else:
            waited += 1
            if waited >= patience:
                break
    if best_weights is not None:  # restore the best epoch, not the last one
        model.set_weights(best_weights)
    df = pd.DataFrame(rows)
    df.insert(0, "epoch", np.arange(1, len(df) + 1))
    df["stage"] = stage
    return df


@contextlib.contextmanager
def _cpu_graph_options() -> Iterator[None]:
    """On CPU-only machines, skip Grappler's graph rewrites for the functions built inside.

    Measured on 2 cores: Grappler took 25 s to optimise a DenseNet121 train step before its first run,
    against 6 s without, and the steps then ran no slower (0.5 vs 0.7 s). On a GPU its layout rewrites
    pay off, so there nothing changes.
    """
    import tensorflow as tf

    if tf.config.list_physical_devices("GPU"):
        yield
        return
    saved = tf.config.optimizer.get_experimental_options()
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": saved.get("disable_meta_optimizer", False)})


def train_backbone(name: str, train: tuple[np.ndarray, np.ndarray], val: tuple[np.ndarray, np.ndarray],
                   n_classes: int, image_size: int, cfg: TrainConfig, verbose: int = 0) -> TrainResult:
    """Train backbone `name` on decoded (images, labels) arrays; returns the best-val-loss model."""
    import keras
    import tensorflow as tf

    from pipeline.tfdata import training_dataset

    backbone = get_backbone(name)
    size = backbone.input_size(image_size)
    x_train, y_train = _resize_batch(train[0], size), train[1]
    x_val, y_val = _resize_batch(val[0], size), val[1]
    if len(y_train) == 0 or len(y_val) == 0:
        raise ValueError(f"Invalid value for argument `train`/`val`. Expected non-empty splits. "
                         f"Received: {len(y_train)} train and {len(y_val)} val samples")
    keras.utils.set_random_seed(cfg.seed)
    weights = parse_weights(cfg.weights)
    model = build_classifier(name, size, n_classes, weights=weights)
    train_ds = training_dataset(x_train, y_train, cfg.batch_size, cfg.augment, cfg.seed)
    cw = class_weights(y_train, n_classes, cfg.class_weights)
    fine_tune = cfg.fine_tune_epochs > 0 and weights is not None
    features = nested_backbone(model)
    # With pretrained weights, first train only the head so large gradients do not wreck the features.
    features.trainable = not fine_tune
    histories = []
    # Precise BN only when training from scratch: pretrained statistics are better than a few hundred images.
    calib = x_train[np.random.default_rng(cfg.seed).permutation(len(x_train))[:128]] if weights is None else None
    start = time.perf_counter()
    with _cpu_graph_options():
        histories.append(_fit(model, keras.optimizers.Adam(cfg.learning_rate), train_ds, (x_val, y_val), cfg.epochs,
                              cfg.patience, cw, calib, "head" if fine_tune else "full", verbose, cfg.batch_size))
        if fine_tune:
            features.trainable = True
            n_frozen = int(len(features.layers) * (1 - cfg.fine_tune_fraction))
            for layer in features.layers[:n_frozen]:
                layer.trainable = False
            for layer in features.layers:  # BatchNorm statistics stay as pretrained
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
            ft = _fit(model, keras.optimizers.Adam(cfg.fine_tune_learning_rate), train_ds, (x_val, y_val),
                      cfg.fine_tune_epochs, cfg.patience, cw, None, "fine_tune", verbose, cfg.batch_size)
            ft["epoch"] += len(histories[0])
            histories.append(ft)
    wall = time.perf_counter() - start
    history = pd.concat(histories, ignore_index=True)
    best = int(history["val_loss"].idxmin())
    info = {
        "backbone": backbone.name, "input_size": size, "image_size": image_size,
        "weights": cfg.weights, "epochs_run": int(len(history)), "epochs_max": cfg.epochs + (cfg.fine_tune_epochs if fine_tune else 0),
        "best_epoch": int(history.loc[best, "epoch"]), "best_val_loss": float(history.loc[best, "val_loss"]),
        "fine_tuned": fine_tune, "seed": cfg.seed, "batch_size": cfg.batch_size, "learning_rate": cfg.learning_rate,
        "augment": list(cfg.augment), "class_weights": cw and {str(k): v for k, v in cw.items()},
        "train_seconds": round(wall, 3), "train_images_per_s": round(len(y_train) * len(history) / wall, 2),
        "n_train": int(len(y_train)), "n_val": int(len(y_val)),
        "params": int(model.count_params()), "preprocessing": backbone.preprocess_mode,
        "preprocess_function": backbone.preprocess_function, "cam_layer": backbone.cam_layer,
        "tensorflow": tf.__version__, "keras": keras.__version__,
    }
    return TrainResult(model, history, info)


def _resize_batch(images: np.ndarray, size: int) -> np.ndarray:
    """Resize a uint8 batch to size x size when it differs (backbones with a larger minimum input)."""
    if images.shape[1] == size:
        return images
    from pipeline.preprocess import resize_square

    return np.stack([resize_square(im, size) for im in images]) if len(images) else np.zeros((0, size, size, 3), np.uint8)
