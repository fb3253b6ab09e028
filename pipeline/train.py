"""Training one backbone: tf.data input, Keras augmentation layers, class weights, early stopping,
best-checkpoint restore, optional fine-tuning stage; history, wall time and images/s recorded."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

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


def _fit(model: Any, train_ds: Any, val_ds: Any, epochs: int, patience: int, weights: dict | None,
         calib: np.ndarray | None, stage: str, verbose: int) -> pd.DataFrame:
    """Epoch loop with BN recalibration, early stopping on val loss and best-epoch restore."""
    rows: list[dict[str, float]] = []
    best_loss, best_weights, waited = np.inf, None, 0
    for epoch in range(epochs):
        hist = model.fit(train_ds, epochs=1, class_weight=weights, verbose=verbose, shuffle=False)
        if calib is not None:
            recalibrate_batchnorm(model, calib)
        val = model.evaluate(val_ds, verbose=0, return_dict=True)
        row = {k: float(v[-1]) for k, v in hist.history.items()}
        row.update({f"val_{k}": float(v) for k, v in val.items()})
        rows.append(row)
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
    val_ds = training_dataset(x_val, y_val, cfg.batch_size, (), cfg.seed, shuffle=False)
    cw = class_weights(y_train, n_classes, cfg.class_weights)
    fine_tune = cfg.fine_tune_epochs > 0 and weights is not None
    features = nested_backbone(model)
    # With pretrained weights, first train only the head so large gradients do not wreck the features.
    features.trainable = not fine_tune
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    histories = []
    # Precise BN only when training from scratch: pretrained statistics are better than a few hundred images.
    calib = x_train[np.random.default_rng(cfg.seed).permutation(len(x_train))[:128]] if weights is None else None
    start = time.perf_counter()
    histories.append(_fit(model, train_ds, val_ds, cfg.epochs, cfg.patience, cw, calib, "head" if fine_tune else "full", verbose))
    if fine_tune:
        features.trainable = True
        n_frozen = int(len(features.layers) * (1 - cfg.fine_tune_fraction))
        for layer in features.layers[:n_frozen]:
            layer.trainable = False
        for layer in features.layers:  # BatchNorm statistics stay as pretrained
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False
        model.compile(optimizer=keras.optimizers.Adam(cfg.fine_tune_learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        ft = _fit(model, train_ds, val_ds, cfg.fine_tune_epochs, cfg.patience, cw, None, "fine_tune", verbose)
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
