"""Live single-image inference (demo day) without Streamlit: load + warm a model, answer one upload.

The page (`app_pages/live.py`) only arranges what this module returns, so every bad upload can be tested
as a plain function call. The path timed for each model is the one a user waits for:

    bytes --decode (once, shared by the models)--> RGB uint8
          --preprocess (resize to the model's input, float32 batch)--> (1, S, S, 3)
          --predict (compiled once per model)--> class probabilities

The backbone's pixel preprocessing (e.g. ``x / 127.5 - 1``) runs inside the model, so it is part of
"predict". TensorFlow and Keras are imported inside the functions that need them, never at import time.
"""

from __future__ import annotations

import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from pipeline import artifacts as art
from pipeline import metrics as mt
from pipeline.errors import invalid_argument
from pipeline.preprocess import DEFAULT_MAX_PIXELS, DecodedImage, ImageDecodeError, decode_image, resize_square

UPLOAD_TYPES = ("png", "jpg", "jpeg", "tif", "tiff", "bmp", "dcm", "dicom")
_LOCK = threading.Lock()


@dataclass(frozen=True, eq=False)
class LiveModel:
    """A loaded, warmed-up classifier with what the page shows about it."""

    name: str
    model: Any  # keras.Model: raw 0..255 RGB in, softmax out
    input_size: int
    n_classes: int
    preprocess_mode: str  # key of pipeline.backbones.PREPROCESS_MODES, or "?" when unknown
    preprocess_function: str
    cam_layer: str | None
    load_seconds: float
    warmup_ms: dict[str, float] = field(default_factory=dict)  # first predict and first Grad-CAM, in ms
    tta: tuple[str, ...] = ()  # the test-time views its stored predictions averaged; live answers do the same


@dataclass(frozen=True)
class ModelAnswer:
    """One model's answer to one image: probabilities, timings, the preprocessing applied, or an error."""

    model: str
    probs: np.ndarray | None = None  # (K,) float32
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, preprocess, predict, total
    preprocessing: tuple[str, ...] = ()
    error: str | None = None

    @property
    def latency_ms(self) -> float:
        """Decode + preprocess + predict, in milliseconds (NaN when the model failed)."""
        return float(self.timings_ms.get("total", float("nan")))


@dataclass(frozen=True)
class LiveResult:
    """The decoded image (or the one-line reason it could not be decoded) and every model's answer."""

    name: str
    image: np.ndarray | None  # HxWx3 uint8 RGB as decoded
    decoded: DecodedImage | None
    decode_ms: float
    answers: dict[str, ModelAnswer]
    error: str | None = None


# ---------------------------------------------------------------- loading


def load_live_model(exp_dir: Path | str, model_name: str, warm_up: bool = True) -> LiveModel:
    """Load `models/<model_name>/model.keras` with Keras safe mode, check it, and warm it up; raises ArtifactError."""
    path = art.model_dir(exp_dir, model_name) / art.MODEL_FILE
    if not path.is_file():
        imported = _imported_live_model(exp_dir, model_name, warm_up)
        if imported is not None:
            return imported
        raise art.ArtifactError(
            path,
            f"model file is missing: {model_name} has predictions only, so it cannot "
            "answer live (re-run the pipeline's train step to save the model)",
        )
    if path.stat().st_size == 0:
        raise art.ArtifactError(path, "model file is empty (0 bytes); the save was interrupted, retrain the model")
    if not zipfile.is_zipfile(path):
        raise art.ArtifactError(
            path,
            "cannot load the Keras model: not a .keras archive (not a valid zip file); "
            "the file may be truncated or overwritten, retrain the model",
        )
    try:
        config = art.read_model_config(exp_dir, model_name)
    except art.ArtifactError:
        config = {}  # the model file is self-contained; config.json only adds labels for the page
    import keras

    from pipeline.backbones import preprocess_layer_class

    preprocess_layer_class()  # registers the custom layer so safe-mode deserialisation finds it
    start = time.perf_counter()
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - zip, JSON, h5 and deserialisation errors all mean "unusable"
        raise art.ArtifactError(
            path,
            f"cannot load the Keras model ({type(exc).__name__}: "
            f"{_one_line(exc)}); the file may be truncated or from an "
            "incompatible Keras version",
        ) from None
    load_seconds = time.perf_counter() - start
    live = _describe(model_name, model, config, path, load_seconds)
    if warm_up:
        live.warmup_ms.update(warm_up_model(live))
    return live


def _imported_live_model(exp_dir: Path | str, model_name: str, warm_up: bool) -> LiveModel | None:
    """An imported ONNX model (run by onnxruntime), None for others; a predictions-only import says it plainly."""
    try:
        config = art.read_model_config(exp_dir, model_name)
    except art.ArtifactError:
        return None
    from pipeline import importers

    if importers.is_predictions_only(config):
        raise art.ArtifactError(
            art.model_dir(exp_dir, model_name),
            f"{model_name} was imported from a table of "
            "predictions (predictions only): live inference and heat maps need a model file "
            "(python -m pipeline add-model)",
        )
    if config.get("format") != "onnx":
        return None
    start = time.perf_counter()
    try:
        clf = importers.onnx_classifier(exp_dir, model_name)
    except (importers.ImportProblem, KeyError, ValueError) as exc:
        raise art.ArtifactError(
            art.model_dir(exp_dir, model_name) / importers.ONNX_FILE, f"cannot load the ONNX model: {_one_line(exc)}"
        ) from None
    live = LiveModel(
        name=model_name,
        model=clf,
        input_size=clf.spec.input_size,
        n_classes=clf.output_shape[1],
        preprocess_mode=str(config.get("preprocessing", "?")),
        preprocess_function=str(config.get("preprocess_function") or ""),
        cam_layer="occlusion sensitivity: ONNX has no gradients here",  # shown where the layer is
        load_seconds=time.perf_counter() - start,
        tta=_config_tta(config, art.model_dir(exp_dir, model_name)),
    )
    if warm_up:
        live.warmup_ms.update(warm_up_model(live))
    return live


def _describe(name: str, model: Any, config: Mapping[str, Any], path: Path, load_seconds: float) -> LiveModel:
    shape = tuple(getattr(model, "input_shape", ()) or ())
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise art.ArtifactError(
            path, f"expected a model taking square RGB images (None, S, S, 3), got input shape {shape}"
        )
    out = tuple(model.output_shape)
    if len(out) != 2 or not out[-1] or out[-1] < 2:
        raise art.ArtifactError(path, f"expected a classifier with (None, K>=2) output, got {out}")
    mode = str(config.get("preprocessing") or _preprocess_mode_in(model) or "?")
    return LiveModel(
        name=name,
        model=model,
        input_size=int(shape[1]),
        n_classes=int(out[-1]),
        preprocess_mode=mode,
        preprocess_function=str(config.get("preprocess_function") or ""),
        cam_layer=str(config["cam_layer"]) if config.get("cam_layer") else None,
        load_seconds=load_seconds,
        tta=_config_tta(config, path),
    )


def _config_tta(config: Mapping[str, Any], path: Path) -> tuple[str, ...]:
    """The TTA views recorded in config.json, or an ArtifactError naming the bad value."""
    from pipeline.predict import parse_tta

    try:
        return parse_tta(config.get("tta") or False)  # absent/false: none; a list: those views
    except (ValueError, TypeError) as exc:
        raise art.ArtifactError(path, f"config.json `tta` is unusable: {_one_line(exc)}") from None


def _preprocess_mode_in(model: Any) -> str | None:
    for layer in getattr(model, "layers", []):
        if hasattr(layer, "mode") and type(layer).__name__ == "ImagePreprocess":
            return str(layer.mode)
    return None


def warm_up_model(live: LiveModel) -> dict[str, float]:
    """One dummy prediction and one Grad-CAM (both trace their compiled functions); their times in ms."""
    dummy = np.full((live.input_size, live.input_size, 3), 128, np.uint8)
    start = time.perf_counter()
    predict_probs(live, dummy)
    predict_ms = (time.perf_counter() - start) * 1000
    start = time.perf_counter()
    cam_ms = float("nan")
    try:
        explain(live, dummy, 0)
        cam_ms = (time.perf_counter() - start) * 1000
    except ValueError:
        pass  # a model without a usable CAM layer still predicts; the page says why the map is missing
    return {"first_predict": predict_ms, "first_grad_cam": cam_ms}


# ---------------------------------------------------------------- predicting


def predict_fn(model: Any, tta: tuple[str, ...] = ()) -> Any:
    """The model's float32 (n, S, S, 3) -> probabilities function (mean over the TTA views, as the stored
    predictions), compiled once per model and views by `pipeline.predict.predict_step`."""
    if getattr(model, "is_onnx", False):  # onnxruntime: already a NumPy batch -> probabilities function
        if not tta:
            return model
        from pipeline.predict import numpy_views

        return lambda x: np.mean([model(v) for v in numpy_views(np.asarray(x, np.float32), tta)], axis=0)
    from pipeline.predict import predict_step

    with _LOCK:  # predict_step caches one traced function per (model, views)
        return predict_step(model, tta)


def prepare_input(live: LiveModel, rgb: np.ndarray) -> np.ndarray:
    """The model's input batch for one RGB image: resized to its input size, float32, shape (1, S, S, 3)."""
    return resize_square(rgb, live.input_size).astype(np.float32)[None]


def predict_probs(live: LiveModel, rgb: np.ndarray) -> np.ndarray:
    """Class probabilities (K,) of one RGB uint8 image."""
    return np.asarray(predict_fn(live.model, live.tta)(prepare_input(live, rgb)))[0].astype(np.float32)


def explain(live: LiveModel, rgb: np.ndarray, class_index: int) -> np.ndarray:
    """Grad-CAM heat map (the image's size, in [0, 1]) of `class_index` on one RGB image."""
    from pipeline.explain import grad_cam

    return grad_cam(live.model, rgb, int(class_index), layer_name=live.cam_layer)


def run_live_inference(
    image_bytes: bytes | None, name: str, models: Mapping[str, LiveModel | str], max_pixels: int = DEFAULT_MAX_PIXELS
) -> LiveResult:
    """Decode `image_bytes` once and let every model answer; a model given as a str is a load error to report."""
    if image_bytes is None:
        return LiveResult(name, None, None, 0.0, {}, "no image: upload a file, pick a sample or take a photo")
    start = time.perf_counter()
    try:
        decoded = decode_image(image_bytes, name=name, max_pixels=max_pixels)
    except (ImageDecodeError, TypeError) as exc:
        return LiveResult(
            name,
            None,
            None,
            (time.perf_counter() - start) * 1000,
            {},
            f"Cannot use {name or 'this file'!r}: {_one_line(exc)}",
        )
    decode_ms = (time.perf_counter() - start) * 1000
    answers = {
        m: answer_one(live, decoded, decode_ms) if isinstance(live, LiveModel) else ModelAnswer(m, error=str(live))
        for m, live in models.items()
    }
    return LiveResult(name, decoded.rgb, decoded, decode_ms, answers)


def answer_one(live: LiveModel, decoded: DecodedImage, decode_ms: float) -> ModelAnswer:
    """One model's answer to an already decoded image, timed (an unexpected failure becomes the error)."""
    steps = preprocessing_steps(live, decoded)
    try:
        start = time.perf_counter()
        x = prepare_input(live, decoded.rgb)
        prep = time.perf_counter()
        probs = np.asarray(predict_fn(live.model, live.tta)(x))[0].astype(np.float32)
        done = time.perf_counter()
    except Exception as exc:  # noqa: BLE001 - one model failing must not take the others down
        return ModelAnswer(
            live.name,
            preprocessing=steps,
            error=f"{live.name} could not predict: {type(exc).__name__}: {_one_line(exc)}",
        )
    if probs.shape != (live.n_classes,) or not np.isfinite(probs).all():
        return ModelAnswer(
            live.name,
            preprocessing=steps,
            error=f"{live.name} returned unusable output (shape {probs.shape}, non-finite values)",
        )
    timings = {"decode": decode_ms, "preprocess": (prep - start) * 1000, "predict": (done - prep) * 1000}
    timings["total"] = sum(timings.values())
    return ModelAnswer(live.name, probs, timings, steps)


def preprocessing_steps(live: LiveModel, decoded: DecodedImage) -> tuple[str, ...]:
    """What was done to the upload before this model saw it, in words."""
    from pipeline.backbones import PREPROCESS_MODES

    height, width = decoded.rgb.shape[:2]
    steps = [f"decoded {decoded.format} {'x'.join(map(str, decoded.original_shape))} {decoded.original_dtype}"]
    steps += list(decoded.notes)
    size = live.input_size
    if (height, width) == (size, size):
        steps.append(f"already {size}x{size}: not resized")
    else:
        how = "area averaging" if size * size < height * width else "bilinear"
        aspect = "" if height == width else ", aspect ratio not kept"
        steps.append(f"resized {width}x{height} -> {size}x{size} ({how}{aspect})")
    text = PREPROCESS_MODES.get(live.preprocess_mode, "as configured")
    fn = f" = {live.preprocess_function}" if live.preprocess_function else ""
    steps.append(f"pixels: mode '{live.preprocess_mode}': {text}{fn} (inside the model)")
    if live.tta:
        names = {"hflip": "left-right mirror", "vflip": "up-down mirror"}
        views = " and ".join(names.get(v, v) for v in live.tta)
        steps.append(f"test-time augmentation: the mean of the image and its {views}, as in the stored predictions")
    return tuple(steps)


# ---------------------------------------------------------------- deciding


def decide(probs: np.ndarray, class_names: Sequence[str], threshold: float | None, pos_index: int) -> int:
    """The predicted class: binary at `threshold` on the positive class, otherwise (or when None) the argmax."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape != (len(class_names),):
        raise invalid_argument("probs", f"shape ({len(class_names)},)", p.shape)
    return int(mt.decide(p, threshold=threshold, pos_index=int(pos_index)))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 240 else text[:237] + "..."
