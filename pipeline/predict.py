"""Batch inference of a trained classifier over files on disk, with optional test-time augmentation."""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

TTA_MODES = ("hflip", "vflip")
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> {tta: step}


@dataclass
class PredictResult:
    """Class probabilities per input, which inputs decoded, and how long it took."""

    probs: np.ndarray  # (n, K) float32; rows of failed decodes are NaN
    ok: np.ndarray  # (n,) bool
    seconds: float

    @property
    def images_per_s(self) -> float:
        """Throughput over the whole run, decode included."""
        return len(self.ok) / self.seconds if self.seconds > 0 else float("nan")


def parse_tta(tta: bool | str | Sequence[str]) -> tuple[str, ...]:
    """Normalise the `tta` option: False -> (), True -> ('hflip',), or a list of modes."""
    if tta is False or tta is None:
        return ()
    if tta is True:
        return ("hflip",)
    modes = (tta,) if isinstance(tta, str) else tuple(tta)
    bad = [m for m in modes if m not in TTA_MODES]
    if bad:
        raise ValueError(f"Invalid value for argument `tta`. Expected True/False or modes among {list(TTA_MODES)} "
                         f"('auto' only with the model's training augmentation: resolve_tta). Received: {bad}")
    return modes


# training augmentation -> the test-time view that undoes it (flips only: they lose no pixels)
TTA_FOR_AUGMENT = {"flip": "hflip", "vflip": "vflip"}


def resolve_tta(tta: bool | str | Sequence[str], augment: Sequence[str] | None) -> tuple[str, ...]:
    """The TTA views a model predicts with: 'auto' = the flips it was trained with (none when unknown).

    Measured on BreastMNIST (bench/RESULTS.md, "Training protocol"): the flip a model was trained with
    raised mean validation AUC by 0.028 (MobileNetV2), 0.017 (EfficientNetB0) and 0.003 (DenseNet121) and
    left ResNet50 and SmallCNN level. A model whose training augmentation is unknown (an imported one) gets
    no TTA under 'auto'; an explicit setting is used as given.
    """
    if isinstance(tta, str) and tta == "auto":
        return tuple(TTA_FOR_AUGMENT[a] for a in TTA_FOR_AUGMENT if a in set(augment or ()))
    return parse_tta(tta)


def numpy_views(x: np.ndarray, tta: Sequence[str]) -> list[np.ndarray]:
    """The identity and TTA views of an (n, H, W, C) NumPy batch, in `predict_step`'s order."""
    return [x] + ([x[:, :, ::-1]] if "hflip" in tta else []) + ([x[:, ::-1]] if "vflip" in tta else [])


def predict_step(model: Any, tta: Sequence[str] = ()) -> Any:
    """A compiled function: float32 image batch -> mean softmax over the identity and TTA views.

    Traced once per (model, TTA modes), for every batch size, and reused by later calls. A new function per
    call, traced again for the partial last batch, cost seconds per `predict_paths` call (a MobileNetV2
    trace is ~2.5 CPU-s; see bench/RESULTS.md).
    """
    import tensorflow as tf

    tta = tuple(tta)
    try:
        per_model = _STEPS.setdefault(model, {})
    except TypeError:  # not weak-referenceable: no sharing, still one trace per function
        per_model = {}
    if tta in per_model:
        return per_model[tta]
    ref = weakref.ref(model)  # the cache must not keep the model alive
    spec = tf.TensorSpec([None, *tuple(model.input_shape)[1:]], tf.float32)

    @tf.function(input_signature=[spec])
    def step(x: Any) -> Any:
        net = ref()
        views = [x]
        if "hflip" in tta:
            views.append(tf.reverse(x, axis=[2]))
        if "vflip" in tta:
            views.append(tf.reverse(x, axis=[1]))
        outs = [net(v, training=False) for v in views]
        return tf.add_n(outs) / float(len(outs))

    per_model[tta] = step
    return step


def predict_paths(model: Any, paths: Sequence[str], batch_size: int = 64, tta: bool | Sequence[str] = False,
                  crop: str = "none") -> PredictResult:
    """Predict every file in `paths` (decoded in parallel, overlapped with inference via prefetch)."""
    from pipeline.tfdata import decoded_batches

    size = int(model.input_shape[1])
    n_classes = int(model.output_shape[-1])
    step = predict_step(model, parse_tta(tta))
    step.get_concrete_function()  # trace (first call for this model only), outside the timed loop
    probs = np.full((len(paths), n_classes), np.nan, np.float32)
    ok = np.zeros(len(paths), bool)
    start = time.perf_counter()
    for offset, x, flag in decoded_batches(paths, size, batch_size, crop=crop, as_float=True):
        probs[offset:offset + len(flag)] = step(x).numpy()
        ok[offset:offset + len(flag)] = flag
    seconds = time.perf_counter() - start
    probs[~ok] = np.nan
    return PredictResult(probs, ok, seconds)


def predict_array(model: Any, images: np.ndarray, batch_size: int = 64, tta: bool | Sequence[str] = False) -> np.ndarray:
    """Predict an in-memory uint8/float batch of images already at the model's input size."""
    step = predict_step(model, parse_tta(tta))
    outs = [step(np.asarray(images[i:i + batch_size], np.float32)).numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(outs) if outs else np.zeros((0, int(model.output_shape[-1])), np.float32)
