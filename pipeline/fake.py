"""Prediction-only experiments with known structure, for dashboard tests and benchmarks at scale.

Writes a valid artifact folder (experiment.json, samples, thumbnails, per-model predictions, config and
history) without training anything; probabilities come from a latent-score model so that models differ
in quality. No TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from pipeline import artifacts as art

FAKE_BACKBONES = (
    "MobileNetV2",
    "ResNet50",
    "EfficientNetB0",
    "DenseNet121",
    "VGG16",
    "InceptionV3",
    "ResNet101",
    "VGG19",
    "DenseNet201",
    "EfficientNetB1",
    "SmallCNN",
    "EfficientNetB2",
)


def _thumb(rng: np.random.Generator, label: int, n_classes: int, size: int = 32) -> bytes:
    hue = int(180 * label / max(n_classes, 1))
    hsv = np.full((size, size, 3), (hue, 80, 200), np.uint8)
    img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    c = rng.integers(8, size - 8, 2)
    cv2.circle(img, (int(c[0]), int(c[1])), int(rng.integers(3, 8)), (60, 20, 90), -1)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return buf.tobytes()


def make_fake_experiment(
    root: Path | str,
    name: str = "fake",
    n_samples: int = 2000,
    n_models: int = 4,
    n_classes: int = 2,
    seed: int = 0,
    eval_sets: tuple[str, ...] = ("test",),
    thumbnails: bool = True,
    group_size: int = 3,
    runs: int = 1,
) -> Path:
    """Write a prediction-only experiment with `n_samples` test samples per eval set and `n_models` models.

    `runs` > 1 adds runs `<model>@s<r>` per model (seeds, as `pipeline.runs` names them) whose skill varies a
    little from run to run, like retraining does.
    """
    if n_classes < 2:
        raise ValueError(f"Invalid value for argument `n_classes`. Expected >= 2. Received: {n_classes}")
    if not 1 <= n_models <= len(FAKE_BACKBONES):
        raise ValueError(
            f"Invalid value for argument `n_models`. Expected 1..{len(FAKE_BACKBONES)}. Received: {n_models}"
        )
    rng = np.random.default_rng(seed)
    exp_dir = Path(root) / name
    exp_dir.mkdir(parents=True, exist_ok=True)
    class_names = ["benign", "malignant"] if n_classes == 2 else [f"class_{i}" for i in range(n_classes)]
    prior = np.linspace(3, 1, n_classes) ** 1.5
    prior /= prior.sum()
    rows = []
    for es in eval_sets:
        n_groups = max(n_samples // group_size, 2)
        group_label = rng.choice(n_classes, size=n_groups, p=prior)
        group_of = rng.integers(0, n_groups, n_samples)
        labels = group_label[group_of]
        rows.append(
            pd.DataFrame(
                {
                    "sample_id": [f"{es}-{i:07d}" for i in range(n_samples)],
                    "path": [f"fake/{es}/{i:07d}.png" for i in range(n_samples)],
                    "label": labels.astype(np.int64),
                    "split": es if es in ("test", "val") else "eval",
                    "group": [f"p{g:06d}" for g in group_of],
                    "eval_set": es,
                    "age": rng.integers(20, 90, n_samples),
                    "sex": rng.choice(["female", "male"], n_samples),
                }
            )
        )
    samples = pd.concat(rows, ignore_index=True)
    samples["label_name"] = np.array(class_names)[samples["label"].to_numpy()]
    art.write_experiment_meta(
        exp_dir,
        {
            "name": name,
            "task": "binary" if n_classes == 2 else "multiclass",
            "class_names": class_names,
            "positive_class": class_names[1] if n_classes == 2 else None,
            "dataset": {"layout": "fake", "fingerprint": f"fake-{seed}-{n_samples}", "n_samples": len(samples)},
            "split": {"seed": seed, "policy": "fake"},
        },
    )
    art.write_samples(exp_dir, samples)
    if thumbnails:
        art.write_thumbnails(
            exp_dir,
            pd.DataFrame(
                {
                    "sample_id": samples["sample_id"],
                    "png": [_thumb(rng, int(lab), n_classes) for lab in samples["label"]],
                }
            ),
        )
    y = samples["label"].to_numpy()
    onehot = np.eye(n_classes)[y]
    # Samples share a per-group difficulty so that grouped resampling matters.
    group_codes = pd.factorize(samples["group"])[0]
    group_noise = rng.normal(0, 0.6, group_codes.max() + 1)[group_codes][:, None]
    for m in range(n_models):
        for r in range(runs):
            _fake_model(exp_dir, samples, m, r, n_models, n_classes, seed, rng, onehot, group_noise, runs)
    return exp_dir


def _fake_model(
    exp_dir: Path,
    samples: pd.DataFrame,
    m: int,
    r: int,
    n_models: int,
    n_classes: int,
    seed: int,
    rng: np.random.Generator,
    onehot: np.ndarray,
    group_noise: np.ndarray,
    runs: int,
) -> None:
    backbone = FAKE_BACKBONES[m]
    model = backbone if r == 0 else f"{backbone}@s{r}"
    y = samples["label"].to_numpy()
    skill = 0.6 + 2.2 * (m + 1) / (n_models + 1) + (rng.normal(0, 0.15) if r else 0.0)
    es_shift = (samples["eval_set"] != "test").to_numpy()[:, None] * -0.8
    logits = (skill + es_shift) * onehot + rng.normal(0, 1.0, (len(y), n_classes)) + group_noise * onehot
    temp = 0.5 + m % 3 * 0.5  # different calibration per model
    z = logits / temp
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    preds = pd.DataFrame(p.astype(np.float64), columns=art.prob_columns(n_classes))
    preds.insert(0, "eval_set", samples["eval_set"].to_numpy())
    preds.insert(0, "sample_id", samples["sample_id"].to_numpy())
    if runs > 1:
        preds["run_id"] = f"s{r}"
    mdir = art.model_dir(exp_dir, model)
    mdir.mkdir(parents=True, exist_ok=True)
    art.write_predictions(exp_dir, model, preds, n_classes)
    epochs = 8
    loss = 0.7 * np.exp(-np.arange(epochs) / (3 + m)) + 0.2
    art.atomic_write_csv(
        mdir / art.HISTORY_FILE,
        pd.DataFrame(
            {
                "epoch": np.arange(1, epochs + 1),
                "loss": loss,
                "val_loss": loss + 0.05 + 0.01 * np.arange(epochs),
                "accuracy": 1 - loss / 1.5,
                "val_accuracy": 1 - loss / 1.4,
            }
        ),
    )
    run_fields = {"backbone": backbone, "run_id": f"s{r}", "seed": seed + r} if runs > 1 else {"seed": seed}
    art.write_model_config(
        exp_dir,
        model,
        {
            "input_size": 64,
            "weights": "fake",
            "epochs": epochs,
            **run_fields,
            "params": int(1e6 * (m + 1) ** 1.5),
            "model_bytes": int(4e6 * (m + 1) ** 1.5),
            "train_seconds": 30.0 * (m + 1),
            "train_images_per_s": 200.0 / (m + 1),
            "infer_ms_per_image": 2.0 * (m + 1),
            "preprocessing": "fake",
            "fake": True,
        },
    )
