"""Models from elsewhere: import a Keras or ONNX model file, or a table of predictions, into an experiment.

An imported model becomes an ordinary model folder (`models/<name>/`), so every page opens it:

    Keras (.keras, legacy .h5/.hdf5)  loaded with safe mode, wrapped as raw RGB 0..255 in -> the declared
        preprocessing (one fixed Dense over the channels: scale, mean/std, channel order, gray) -> the
        imported model -> probabilities in the experiment's class order, saved as `model.keras`; predicted
        by `pipeline.predict.predict_paths` like a trained backbone (live inference, Grad-CAM and
        `predict` for new evaluation sets then work unchanged).
    ONNX (.onnx)                      run by onnxruntime only; images come from the same batched decoder
        (`pipeline.tfdata.decoded_batches`); the file is kept as `model.onnx` and `onnx_classifier` rebuilds
        the same predictor for live inference.
    predictions (.csv, .parquet)      validated (every problem listed with examples) and written as
        `predictions.parquet`; `config.json` says `predictions_only: true`.

Model files are untrusted: a size limit, no pickle, no Lambda code (Keras safe mode), SavedModel folders
refused (Keras 3 can only run them as raw TensorFlow graphs). Everything is written into a temporary folder
inside the experiment and renamed into place, `config.json` last, so a bad file leaves the experiment as it was.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from pipeline import artifacts as art
from pipeline.errors import invalid_argument
from pipeline.predict import resolve_tta

__all__ = [
    "ImportProblem",
    "add_model",
    "add_predictions",
    "onnx_classifier",
    "preprocess_affine",
    "PREPROCESSING_CHOICES",
    "DEFAULT_MAX_BYTES",
    "ONNX_FILE",
]

DEFAULT_MAX_BYTES = 2 * 1024**3  # 2 GiB: bigger than any backbone here, small enough to refuse a wrong file
ONNX_FILE = "model.onnx"
PREPROCESSING_CHOICES = ("tf", "caffe", "torch", "unit", "none")
OUTPUT_CHOICES = ("auto", "probabilities", "logits")
KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN, _TORCH_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
_GRAY = (0.299, 0.587, 0.114)  # ITU-R BT.601, as OpenCV's RGB2GRAY
_EXAMPLES = 3
Preprocessing = str | tuple[Any, Any] | None


class ImportProblem(ValueError):
    """A file that cannot be imported; the message names the file and every problem found."""


@dataclass(frozen=True)
class _Spec:
    """What the importer resolved about a model: its input, preprocessing and output."""

    input_size: int
    channels: int
    preprocessing: str  # a PREPROCESSING_CHOICES mode or "mean_std"
    mean: tuple[float, ...] | None
    std: tuple[float, ...] | None
    channel_order: str
    class_order: tuple[str, ...]
    outputs: str  # "probabilities" or "logits" (resolved)
    units: int  # the model's own output width (1 for a single sigmoid/logit)


# ---------------------------------------------------------------- public: models


def add_model(
    exp_dir: Path | str,
    *,
    name: str,
    file: Path | str,
    input_size: int | None = None,
    preprocessing: Preprocessing = None,
    channel_order: str = "rgb",
    class_order: Sequence[str] | None = None,
    outputs: str = "auto",
    max_bytes: int = DEFAULT_MAX_BYTES,
    replace: bool = False,
    batch_size: int | None = None,
    tta: bool | Sequence[str] | None = None,
) -> dict[str, Any]:
    """Import a Keras (.keras/.h5/.hdf5) or ONNX (.onnx) classifier, predict every evaluation set, write its folder.

    `input_size` is needed only when the file accepts any size and the experiment records no `image_size`.
    `preprocessing` is what the model expects its pixels to be (keras.applications modes, or `(mean, std)`
    applied to pixels scaled to [0, 1], as torchvision's Normalize after ToTensor); None uses the pipeline
    default 'unit'. `channel_order` is the order the model expects ('caffe' implies 'bgr'); `class_order`
    names the model's output columns (default: the experiment's class names); `outputs` 'auto' recognises
    logits. Returns the model's config.json. Raises ImportProblem (a ValueError) and leaves the experiment
    unchanged on any problem.
    """
    exp_dir = Path(exp_dir)
    exp = _load_experiment(exp_dir)
    _check_name(exp_dir, name, replace)
    path = Path(file).expanduser()
    kind = _model_kind(path)
    size_bytes = _check_size(path, max_bytes)
    if outputs not in OUTPUT_CHOICES:
        raise invalid_argument("outputs", f"one of {list(OUTPUT_CHOICES)}", repr(outputs))
    if channel_order not in ("rgb", "bgr"):
        raise invalid_argument("channel_order", "'rgb' or 'bgr'", repr(channel_order))
    order = _class_order(exp, class_order)
    settings = _predict_settings(exp, batch_size, tta)
    evaluated = exp.samples[exp.samples["eval_set"].notna()].reset_index(drop=True)
    if evaluated.empty:
        raise ImportProblem(f"{exp_dir}: the experiment has no evaluation samples to predict")
    digest = sha256_of(path)
    with _staging(exp_dir, name, replace) as stage:
        mdir = art.model_dir(stage, name)
        mdir.mkdir(parents=True)
        if kind == "keras":
            model, spec = _import_keras(path, exp, order, input_size, preprocessing, channel_order, outputs, evaluated)
            from pipeline.experiment import save_model_atomic
            from pipeline.predict import PredictResult

            pred: PredictResult = _predict_keras(model, evaluated, settings)
            save_model_atomic(model, mdir / art.MODEL_FILE)
            extra = {"params": int(model.count_params()), "cam_layer": _cam_layer_or_none(model)}
        else:
            clf = _import_onnx(path, exp, order, input_size, preprocessing, channel_order, outputs, evaluated)
            spec = clf.spec
            pred = _predict_onnx(clf, evaluated, settings)
            extra = {"params": clf.params, "cam_layer": None, "onnx_input": clf.input_name, "onnx_layout": clf.layout}
        if not pred.ok.any():
            raise ImportProblem(
                f"{path}: no evaluation image could be decoded ({len(evaluated)} tried); "
                "is the data set still where samples.parquet says?"
            )
        # the original file is kept beside the wrapped model (provenance; its sha256 is in config.json)
        shutil.copyfile(path, mdir / (ONNX_FILE if kind == "onnx" else "source" + _suffix(path)))
        keep = pred.ok
        preds = pd.DataFrame(pred.probs[keep].astype(np.float64), columns=art.prob_columns(len(exp.class_names)))
        preds.insert(0, "eval_set", evaluated.loc[keep, "eval_set"].to_numpy())
        preds.insert(0, "sample_id", evaluated.loc[keep, "sample_id"].to_numpy())
        _check_probs(preds, len(exp.class_names), path)
        art.write_predictions(stage, name, preds, len(exp.class_names))
        config = {
            "source": "imported",
            "format": kind,
            "source_file": path.name,
            "sha256": digest,
            "file_bytes": size_bytes,
            "model_bytes": size_bytes,
            "weights": "imported",
            "input_size": spec.input_size,
            "input_channels": spec.channels,
            "image_size": exp.meta.get("image_size"),
            "preprocessing": spec.preprocessing,
            "preprocess_function": _describe_preprocessing(spec),
            "mean": list(spec.mean) if spec.mean else None,
            "std": list(spec.std) if spec.std else None,
            "channel_order": spec.channel_order,
            "class_order": list(spec.class_order),
            "outputs": spec.outputs,
            "output_units": spec.units,
            "declared": {
                "input_size": input_size,
                "preprocessing": _jsonable(preprocessing),
                "channel_order": channel_order,
                "class_order": list(class_order) if class_order else None,
                "outputs": outputs,
            },
            "predictions_only": False,
            "tta": list(settings["tta"]),
            "n_predicted": int(keep.sum()),
            "n_failed_decode": int((~keep).sum()),
            "infer_ms_per_image": round(1000 * pred.seconds / max(len(evaluated), 1), 3),
            "predict_images_per_s": round(pred.images_per_s, 2),
            "imported_at": art.now_iso(),
            **extra,
        }
        art.write_model_config(stage, name, config)
    return config


def sha256_of(path: Path | str) -> str:
    """Hex sha256 of a file (or of a folder's files, in sorted order)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def preprocess_affine(
    preprocessing: Preprocessing, channel_order: str = "rgb", channels: int = 3
) -> tuple[np.ndarray, np.ndarray, str, tuple[float, ...] | None, tuple[float, ...] | None]:
    """(W (3, C), b (C,), mode, mean, std): the model's input is `rgb_0_255 @ W + b` over the channel axis.

    Every supported preprocessing is per-channel scale and shift, plus a channel permutation (BGR) or a gray
    conversion, so one fixed matrix reproduces it exactly; the same numbers serve Keras (a Dense layer) and
    ONNX (NumPy).
    """
    mode, mean, std = _parse_preprocessing(preprocessing)
    if mode == "caffe" and channel_order != "bgr":
        raise invalid_argument(
            "channel_order",
            "'bgr' with preprocessing 'caffe' (it converts RGB to BGR itself; "
            "for RGB mean subtraction pass (mean, std))",
            repr(channel_order),
        )
    if mode == "tf":
        scale, shift = np.full(3, 1 / 127.5), np.full(3, -1.0)
    elif mode == "unit":
        scale, shift = np.full(3, 1 / 255), np.zeros(3)
    elif mode == "none":
        scale, shift = np.ones(3), np.zeros(3)
    elif mode == "caffe":
        scale, shift = np.ones(3), -np.asarray(_CAFFE_MEAN_BGR[::-1])  # RGB order here, flipped below
    else:  # torch or mean/std: (x / 255 - mean) / std
        m = np.broadcast_to(np.asarray(mean, np.float64), 3)
        s = np.broadcast_to(np.asarray(std, np.float64), 3)
        scale, shift = 1 / (255 * s), -m / s
    w = np.diag(scale)
    b = shift.copy()
    if channel_order == "bgr":
        w, b = w[:, ::-1], b[::-1]
    if channels == 1:  # the model wants one gray channel: BT.601 gray of the pixels, then the first channel's scaling
        w = (np.asarray(_GRAY) * scale[0])[:, None]
        b = shift[:1].copy()
    return w.astype(np.float32), b.astype(np.float32), mode, mean, std


# ---------------------------------------------------------------- public: predictions tables


def add_predictions(
    exp_dir: Path | str,
    *,
    name: str,
    file: Path | str,
    normalise: bool = False,
    eval_sets: Sequence[str] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    replace: bool = False,
) -> dict[str, Any]:
    """Import a CSV/Parquet of probabilities as a predictions-only model; returns its config.json.

    Rows are keyed by `sample_id`, or by a path / file-name column (`path`, `file`, `filename`, `file_name`,
    `image`, `image_path`) matched against the sample table. Class columns: one per class named by class name
    or `prob_<i>`, or for a binary task one score column (`score`, `prob`, `probability`, `y_score`, or the
    positive class's name). Every evaluation set (or those in `eval_sets`) must be covered. Raises
    ImportProblem listing every problem with examples; the experiment is unchanged then.
    """
    exp_dir = Path(exp_dir)
    exp = _load_experiment(exp_dir)
    _check_name(exp_dir, name, replace)
    path = Path(file).expanduser()
    if not path.is_file():
        raise invalid_argument("file", "an existing .csv or .parquet file", repr(str(path)))
    size_bytes = _check_size(path, max_bytes)
    table = _read_table(path)
    wanted = list(exp.eval_sets) if eval_sets is None else list(eval_sets)
    unknown_sets = [e for e in wanted if e not in exp.eval_sets]
    if unknown_sets:
        raise invalid_argument("eval_sets", f"evaluation sets of {exp.name} ({exp.eval_sets})", unknown_sets)
    preds, problems, notes = _validate_predictions(table, exp, wanted, normalise)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ImportProblem(
            f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''} found, nothing was imported:\n{lines}"
        )
    with _staging(exp_dir, name, replace) as stage:
        mdir = art.model_dir(stage, name)
        mdir.mkdir(parents=True)
        art.write_predictions(stage, name, preds, len(exp.class_names))
        config = {
            "source": "imported",
            "format": "predictions",
            "predictions_only": True,
            "source_file": path.name,
            "sha256": sha256_of(path),
            "file_bytes": size_bytes,
            "weights": "imported",
            "normalised": bool(normalise),
            "n_predicted": len(preds),
            "eval_sets": sorted(set(preds["eval_set"])),
            "notes": notes,
            "imported_at": art.now_iso(),
        }
        art.write_model_config(stage, name, config)
    return config


def is_predictions_only(config: dict[str, Any] | None) -> bool:
    """True for a model imported from a predictions table (no model file: no live inference, no heat map)."""
    return bool(config and config.get("predictions_only"))


# ---------------------------------------------------------------- ONNX predictor (also used by live inference)


class OnnxClassifier:
    """An onnxruntime session behind the classifier interface: float32 (n, S, S, 3) RGB 0..255 -> probabilities."""

    is_onnx = True  # explain.grad_cam answers with occlusion sensitivity; live inference calls it directly

    def __init__(self, path: Path | str, spec: _Spec, session: Any = None):
        self.path = Path(path)
        self.spec = spec
        self.session = session if session is not None else _onnx_session(self.path)
        inp = self.session.get_inputs()[0]
        self.input_name = str(inp.name)
        self.layout = _onnx_layout(inp.shape, self.path)
        self.w, self.b, *_ = preprocess_affine(_spec_preprocessing(spec), spec.channel_order, spec.channels)
        self.name = f"onnx_{self.path.stem}"
        self.input_shape = (None, spec.input_size, spec.input_size, 3)
        self.output_shape = (None, len(spec.class_order))
        self.params = _onnx_params(self.path)
        self.layers: list[Any] = []
        self._index = list(range(len(spec.class_order)))

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The model's own output for a float32 RGB 0..255 batch (preprocessing applied here)."""
        z = np.asarray(x, np.float32) @ self.w + self.b
        if self.layout == "nchw":
            z = np.transpose(z, (0, 3, 1, 2))
        out = self.session.run(None, {self.input_name: np.ascontiguousarray(z, np.float32)})[0]
        return np.asarray(out, np.float32).reshape(len(z), -1)

    def __call__(self, x: Any, training: bool = False) -> np.ndarray:
        return _head(self.raw(np.asarray(x)), self.spec, self.class_index)

    @property
    def class_index(self) -> np.ndarray:
        return np.asarray(self._index, np.int64)

    def bind_classes(self, class_names: Sequence[str]) -> OnnxClassifier:
        """Map the model's output columns (spec.class_order) to the experiment's class indices."""
        self._index = [list(class_names).index(c) for c in self.spec.class_order]
        return self

    def predict(self, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Probabilities for an in-memory batch, `batch_size` at a time."""
        outs = [self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs) if outs else np.zeros((0, self.output_shape[1]), np.float32)


def onnx_classifier(exp_dir: Path | str, model: str) -> OnnxClassifier:
    """The predictor of an imported ONNX model folder, rebuilt from its model.onnx and config.json."""
    cfg = art.read_model_config(exp_dir, model)
    meta = art.read_meta(exp_dir)
    path = art.model_dir(exp_dir, model) / ONNX_FILE
    if not path.is_file():
        raise art.ArtifactError(path, "file is missing: this imported ONNX model cannot answer live")
    spec = _Spec(
        int(cfg["input_size"]),
        int(cfg.get("input_channels", 3)),
        str(cfg["preprocessing"]),
        tuple(cfg["mean"]) if cfg.get("mean") else None,
        tuple(cfg["std"]) if cfg.get("std") else None,
        str(cfg.get("channel_order", "rgb")),
        tuple(cfg["class_order"]),
        str(cfg["outputs"]),
        int(cfg["output_units"]),
    )
    return OnnxClassifier(path, spec).bind_classes(meta["class_names"])


# ---------------------------------------------------------------- checks shared by both importers


def _load_experiment(exp_dir: Path) -> art.Experiment:
    try:
        return art.load_experiment(exp_dir)
    except art.ArtifactError as exc:
        raise ImportProblem(f"{exp_dir} is not a usable experiment folder: {exc}") from None


def _check_name(exp_dir: Path, name: str, replace: bool) -> None:
    if (
        not isinstance(name, str)
        or not name.strip()
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or name != name.strip()
    ):
        raise invalid_argument("name", "a folder name without '/', '\\' or a leading dot", repr(name))
    target = art.model_dir(exp_dir, name)
    if target.exists() and not replace:
        raise invalid_argument(
            "name", f"a model name not used in {exp_dir.name} (or replace=True / --replace)", f"{name!r}, which exists"
        )


def _check_size(path: Path, max_bytes: int) -> int:
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
    if size > max_bytes:
        raise invalid_argument(
            "file", f"at most {max_bytes / 1e6:.0f} MB (max_bytes)", f"{path.name} of {size / 1e6:.0f} MB"
        )
    if size == 0:
        raise ImportProblem(f"{path}: the file is empty (0 bytes)")
    return int(size)


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _model_kind(path: Path) -> str:
    if not path.exists():
        raise invalid_argument("file", "an existing model file (.keras, .h5, .hdf5 or .onnx)", repr(str(path)))
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            raise ImportProblem(
                f"{path}: a TensorFlow SavedModel folder cannot be imported: Keras 3 loads it only as a raw "
                "TensorFlow graph (keras.layers.TFSMLayer), which may run any TensorFlow op and is not safe for "
                "untrusted files. Convert it where it was made: tf.keras.models.load_model(folder).save("
                "'model.keras') (TF <= 2.15 / tf-keras), or export ONNX with tf2onnx."
            )
        raise ImportProblem(f"{path}: is a folder; expected a .keras, .h5, .hdf5 or .onnx model file")
    suffix = _suffix(path)
    if suffix in (".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".joblib", ".bin"):
        raise ImportProblem(
            f"{path}: {suffix} checkpoints are Python pickles (loading one runs code) and are not "
            "imported; export the model to ONNX (torch.onnx.export) and import the .onnx file"
        )
    if suffix in KERAS_SUFFIXES:
        return "keras"
    if suffix == ".onnx":
        return "onnx"
    raise invalid_argument("file", "a .keras, .h5, .hdf5 or .onnx model file", repr(path.name))


def _class_order(exp: art.Experiment, class_order: Sequence[str] | None) -> tuple[str, ...]:
    names = exp.class_names
    if class_order is None:
        return tuple(names)
    order = tuple(str(c).strip() for c in class_order)
    if sorted(order) != sorted(names):
        raise invalid_argument("class_order", f"each of the experiment's classes {names} once", list(order))
    return order


def _parse_preprocessing(
    preprocessing: Preprocessing,
) -> tuple[str, tuple[float, ...] | None, tuple[float, ...] | None]:
    if preprocessing is None:
        return "unit", None, None
    if isinstance(preprocessing, str):
        if preprocessing == "torch":
            return "torch", _TORCH_MEAN, _TORCH_STD
        if preprocessing in PREPROCESSING_CHOICES:
            return preprocessing, None, None
        raise invalid_argument(
            "preprocessing", f"one of {list(PREPROCESSING_CHOICES)} or (mean, std)", repr(preprocessing)
        )
    try:
        mean, std = preprocessing
        m = tuple(float(v) for v in np.atleast_1d(np.asarray(mean, np.float64)))
        s = tuple(float(v) for v in np.atleast_1d(np.asarray(std, np.float64)))
    except (TypeError, ValueError):
        raise invalid_argument("preprocessing", "(mean, std) with 1 or 3 numbers each", preprocessing) from None
    if len(m) not in (1, 3) or len(s) not in (1, 3) or any(v <= 0 for v in s) or not np.isfinite(m + s).all():
        raise invalid_argument("preprocessing", "(mean, std) with 1 or 3 numbers each, std > 0", preprocessing)
    return "mean_std", m, s


def _spec_preprocessing(spec: _Spec) -> Preprocessing:
    return (spec.mean, spec.std) if spec.preprocessing == "mean_std" else spec.preprocessing


def _describe_preprocessing(spec: _Spec) -> str:
    if spec.preprocessing in ("mean_std", "torch"):
        return f"(x / 255 - {list(spec.mean or ())}) / {list(spec.std or ())}, {spec.channel_order.upper()}"
    return f"keras.applications '{spec.preprocessing}' mode, {spec.channel_order.upper()}"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def _predict_settings(exp: art.Experiment, batch_size: int | None, tta: bool | Sequence[str] | None) -> dict[str, Any]:
    """The experiment's own prediction settings (batch size, TTA, crop per evaluation set), overridable."""
    cfg = exp.meta.get("config") or {}
    predict = cfg.get("predict") or {}
    dataset = cfg.get("dataset") or {}
    crops = {
        str(ev.get("name")): str(ev.get("crop", "none")) for ev in cfg.get("eval_sets") or [] if isinstance(ev, dict)
    }
    return {
        "batch_size": int(batch_size or predict.get("batch_size") or 64),
        # an imported model's training augmentation is unknown: "auto" means no TTA for it
        "tta": resolve_tta(predict.get("tta", False) if tta is None else tta, None),
        "crop": str(dataset.get("crop", "none")),
        "crops": crops,
    }


def _crops(evaluated: pd.DataFrame, settings: dict[str, Any]) -> np.ndarray:
    crops = evaluated["eval_set"].map(lambda es: settings["crops"].get(es, settings["crop"]))
    return np.asarray(crops.to_numpy(dtype=object), dtype=object)


class _staging:
    """Context manager: a temporary experiment-like folder; on success its model folder is renamed into place."""

    def __init__(self, exp_dir: Path, name: str, replace: bool):
        self.exp_dir, self.name, self.replace = exp_dir, name, replace
        self.root = exp_dir / f".import-{uuid.uuid4().hex[:12]}.tmp"

    def __enter__(self) -> Path:
        self.root.mkdir()
        return self.root

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc_type is None:
                target = art.model_dir(self.exp_dir, self.name)
                target.parent.mkdir(parents=True, exist_ok=True)
                old = None
                if target.exists():
                    if not self.replace:
                        raise invalid_argument("name", "a model name not used yet", repr(self.name))
                    old = self.root / "replaced"
                    os.rename(target, old)
                os.rename(art.model_dir(self.root, self.name), target)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


# ---------------------------------------------------------------- Keras


def _load_keras(path: Path) -> Any:
    suffix = _suffix(path)
    with open(path, "rb") as fh:
        head = fh.read(8)
    if suffix == ".keras" and not zipfile.is_zipfile(path):
        raise ImportProblem(
            f"{path}: not a .keras archive (not a valid zip file); the file may be truncated or "
            "in another format" + (" (it is HDF5: rename it to .h5)" if head == _HDF5_MAGIC else "")
        )
    if suffix in (".h5", ".hdf5") and head != _HDF5_MAGIC:
        raise ImportProblem(
            f"{path}: not an HDF5 file (no HDF5 signature); the file may be truncated or in "
            "another format" + (" (it is a zip: rename it to .keras)" if head[:2] == b"PK" else "")
        )
    import keras

    from pipeline.backbones import preprocess_layer_class

    preprocess_layer_class()  # a model made by this pipeline loads too
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - zip, h5, JSON and deserialisation errors all mean "cannot import"
        text = " ".join(str(exc).split())[:300]
        if "safe_mode" in text or "Lambda" in text or "lambda" in text:
            raise ImportProblem(
                f"{path}: refused by Keras safe mode: the model contains Python code (a Lambda "
                "layer or pickled function), which is not loaded from untrusted files; rebuild "
                f"it without Lambda layers or export it to ONNX ({text})"
            ) from None
        if suffix in (".h5", ".hdf5") and ("model_config" in text or "No model config" in text):
            raise ImportProblem(
                f"{path}: this HDF5 file holds weights only, not a model (save it with "
                "model.save(), not save_weights())"
            ) from None
        raise ImportProblem(
            f"{path}: cannot load the Keras model ({type(exc).__name__}: {text}); the file may be "
            "truncated, weights-only, or use custom layers"
        ) from None
    if not isinstance(model, keras.Model):
        raise ImportProblem(f"{path}: expected a Keras model, got {type(model).__name__}")
    return model


def _input_spec(
    shape: Sequence[Any], input_size: int | None, path: Path, layout: str = "nhwc", fallback: Any = None
) -> tuple[int, int]:
    """(size, channels) from a model input shape, checked against the declared input size; a model that accepts
    any size gets the declared size, else `fallback` (the experiment's image size)."""
    dims = list(shape)
    if len(dims) != 4:
        raise ImportProblem(f"{path}: expected an image input of rank 4, e.g. (None, S, S, 3); received {tuple(dims)}")
    h, w, c = (dims[2], dims[3], dims[1]) if layout == "nchw" else (dims[1], dims[2], dims[3])
    fixed = [d for d in (h, w) if isinstance(d, (int, np.integer)) and int(d) > 0]
    if c not in (1, 3):
        raise ImportProblem(f"{path}: expected 1 or 3 input channels; received input shape {tuple(dims)}")
    if len(fixed) == 2 and int(h) != int(w):
        raise ImportProblem(f"{path}: expected a square input; received input shape {tuple(dims)}")
    if fixed:
        size = int(fixed[0])
        if input_size is not None and int(input_size) != size:
            raise invalid_argument("input_size", f"{size} (the model's fixed input size) or none", input_size)
        return size, int(c)
    if input_size is None and isinstance(fallback, int) and not isinstance(fallback, bool) and fallback >= 8:
        input_size = fallback
    if input_size is None:
        raise invalid_argument("input_size", f"a size in pixels: {path.name} accepts any size, so it cannot tell", None)
    if int(input_size) < 8:
        raise invalid_argument("input_size", "at least 8 pixels", input_size)
    return int(input_size), int(c)


def _last_activation(model: Any) -> str | None:
    """'softmax'/'sigmoid'/'linear' of the last layer when it says so, else None."""
    import keras

    layer = model.layers[-1] if getattr(model, "layers", None) else None
    while isinstance(layer, keras.Model) and layer.layers:
        layer = layer.layers[-1]
    act = getattr(layer, "activation", None)
    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    name = getattr(act, "__name__", None)
    return str(name) if name in ("softmax", "sigmoid", "linear") else None


def _import_keras(
    path: Path,
    exp: art.Experiment,
    order: tuple[str, ...],
    input_size: int | None,
    preprocessing: Preprocessing,
    channel_order: str,
    outputs: str,
    evaluated: pd.DataFrame,
) -> tuple[Any, _Spec]:
    """The wrapped classifier (raw RGB in, experiment-ordered probabilities out) and what was resolved."""
    import keras

    inner = _load_keras(path)
    if len(inner.inputs) != 1 or len(inner.outputs) != 1:
        raise ImportProblem(
            f"{path}: expected one image input and one output; received {len(inner.inputs)} "
            f"inputs and {len(inner.outputs)} outputs"
        )
    size, channels = _input_spec(tuple(inner.input_shape), input_size, path, fallback=exp.meta.get("image_size"))
    units = _check_units(tuple(inner.output_shape), exp, path)
    w, b, mode, mean, std = preprocess_affine(preprocessing, _effective_order(preprocessing, channel_order), channels)
    inp = keras.Input((size, size, 3), name="image")
    pre = keras.layers.Dense(channels, name="import_preprocess", trainable=False, dtype="float32")
    x = pre(inp)
    pre.set_weights([w, b])
    body = keras.Model(inp, inner(x), name="imported_body")
    resolved = _resolve_outputs(
        outputs, _last_activation(inner), lambda: _sample_raw_keras(body, evaluated, size), units, path
    )
    order_eff = _effective_order(preprocessing, channel_order)
    spec = _Spec(size, channels, mode, mean, std, order_eff, order, resolved, units)
    out = body.output
    head_w, head_b, act = _head_matrices(spec, exp.class_names)
    if act:
        out = keras.layers.Activation(act, name="import_activation", dtype="float32")(out)
    head = keras.layers.Dense(len(exp.class_names), name="predictions", trainable=False, dtype="float32")
    out = head(out)
    head.set_weights([head_w, head_b])
    model = keras.Model(inp, out, name="imported_classifier")
    return model, spec


def _effective_order(preprocessing: Preprocessing, channel_order: str) -> str:
    return "bgr" if preprocessing == "caffe" else channel_order


def _check_units(out_shape: Sequence[Any], exp: art.Experiment, path: Path) -> int:
    k = len(exp.class_names)
    dims = [d for d in out_shape[1:] if d != 1] or [1]
    units = int(np.prod([int(d) for d in dims])) if all(isinstance(d, (int, np.integer)) for d in dims) else -1
    if units == k or (units == 1 and k == 2):
        return units
    expected = f"(None, {k}) for the classes {exp.class_names}" + (
        " or (None, 1) for one sigmoid/logit unit" if k == 2 else ""
    )
    raise ImportProblem(
        f"{path}: output shape does not match the experiment: expected {expected}; received {tuple(out_shape)}"
    )


def _resolve_outputs(outputs: str, activation: str | None, sample: Any, units: int, path: Path) -> str:
    """'probabilities' or 'logits': as declared, else from the last activation, else from sample outputs."""
    if outputs != "auto":
        return outputs
    if activation in ("softmax", "sigmoid"):
        return "probabilities"
    raw = np.asarray(sample(), np.float64)
    if not np.isfinite(raw).all():
        raise ImportProblem(f"{path}: the model returned NaN or infinite outputs on the evaluation images")
    outside = raw.size and (raw.min() < -1e-4 or raw.max() > 1 + 1e-4)
    unsummed = units > 1 and raw.size and np.abs(raw.sum(axis=1) - 1).max() > 1e-3
    return "logits" if outside or unsummed or activation == "linear" else "probabilities"


def _sample_raw_keras(body: Any, evaluated: pd.DataFrame, size: int, n: int = 32) -> np.ndarray:
    from pipeline.tfdata import decode_all

    images, ok = decode_all(evaluated["path"].head(n).tolist(), size)
    if not ok.any():
        raise ImportProblem(
            "no evaluation image could be decoded to look at the model's outputs; pass "
            "outputs='probabilities' or 'logits'"
        )
    return np.asarray(body(images[ok].astype(np.float32), training=False)).reshape(int(ok.sum()), -1)


def _head_matrices(spec: _Spec, class_names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, str | None]:
    """(kernel, bias, activation before it): activation, then columns mapped to the experiment's classes."""
    k = len(class_names)
    index = [list(class_names).index(c) for c in spec.class_order]
    if spec.units == 1:  # p = P(class_order[1]); columns [1 - p, p] in class_order, then moved
        kernel = np.zeros((1, k), np.float32)
        bias = np.zeros(k, np.float32)
        kernel[0, index[0]], bias[index[0]] = -1.0, 1.0
        kernel[0, index[1]] = 1.0
        return kernel, bias, "sigmoid" if spec.outputs == "logits" else None
    kernel = np.zeros((k, k), np.float32)
    for j, i in enumerate(index):
        kernel[j, i] = 1.0
    return kernel, np.zeros(k, np.float32), "softmax" if spec.outputs == "logits" else None


def _head(raw: np.ndarray, spec: _Spec, index: np.ndarray) -> np.ndarray:
    """NumPy twin of the Keras head: raw model outputs -> probabilities in the experiment's class order."""
    z = np.asarray(raw, np.float64)
    if spec.units == 1:
        p = 1 / (1 + np.exp(-z[:, 0])) if spec.outputs == "logits" else z[:, 0]
        cols = np.stack([1 - p, p], axis=1)
    else:
        if spec.outputs == "logits":
            z = np.exp(z - z.max(axis=1, keepdims=True))
            z /= z.sum(axis=1, keepdims=True)
        cols = z
    out = np.empty_like(cols)
    out[:, index] = cols
    return out.astype(np.float32)


def _predict_keras(model: Any, evaluated: pd.DataFrame, settings: dict[str, Any]) -> Any:
    """The pipeline's own batched, TTA-capable path, one pass per crop mode."""
    from pipeline.predict import PredictResult, predict_paths

    paths = evaluated["path"].to_numpy()
    crops = _crops(evaluated, settings)
    probs = np.full((len(paths), int(model.output_shape[-1])), np.nan, np.float32)
    ok = np.zeros(len(paths), bool)
    seconds = 0.0
    for mode in pd.unique(crops):
        idx = np.flatnonzero(crops == mode)
        part = predict_paths(model, paths[idx].tolist(), settings["batch_size"], settings["tta"], crop=str(mode))
        probs[idx], ok[idx] = part.probs, part.ok
        seconds += part.seconds
    return PredictResult(probs, ok, seconds)


def _cam_layer_or_none(model: Any) -> str | None:
    try:
        from pipeline.explain import default_cam_layer

        return default_cam_layer(model)
    except (ValueError, AttributeError):
        return None


# ---------------------------------------------------------------- ONNX


def _onnx_session(path: Path) -> Any:
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError:
        raise ImportProblem(
            "ONNX models need onnxruntime: pip install onnxruntime (it is in requirements.txt)"
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, min(4, os.cpu_count() or 1))
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidProtobuf/... types
        text = " ".join(str(exc).split())[:300]
        raise ImportProblem(
            f"{path}: not a loadable ONNX model ({type(exc).__name__}: {text}); the file may be "
            "truncated or in another format"
        ) from None


def _onnx_layout(shape: Sequence[Any], path: Path) -> str:
    dims = list(shape)
    if len(dims) != 4:
        raise ImportProblem(
            f"{path}: expected an image input of rank 4 (N, C, H, W) or (N, H, W, C); received {tuple(dims)}"
        )
    if dims[1] in (1, 3) and dims[3] not in (1, 3):
        return "nchw"
    if dims[3] in (1, 3):
        return "nhwc"
    raise ImportProblem(
        f"{path}: cannot tell where the channels are in input shape {tuple(dims)}; expected "
        "(N, 3, H, W) or (N, H, W, 3)"
    )


def _onnx_params(path: Path) -> int | None:
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        return int(sum(int(np.prod(t.dims)) for t in graph.initializer))
    except Exception:  # noqa: BLE001 - a count for the table only
        return None


def _onnx_last_op(path: Path) -> str | None:
    try:
        import onnx

        graph = onnx.load(str(path), load_external_data=False).graph
        out = graph.output[0].name
        for node in graph.node:
            if out in node.output:
                return {"Softmax": "softmax", "Sigmoid": "sigmoid"}.get(node.op_type, "linear")
    except Exception:  # noqa: BLE001 - only a hint; the outputs are checked on images too
        return None
    return None


def _import_onnx(
    path: Path,
    exp: art.Experiment,
    order: tuple[str, ...],
    input_size: int | None,
    preprocessing: Preprocessing,
    channel_order: str,
    outputs: str,
    evaluated: pd.DataFrame,
) -> OnnxClassifier:
    session = _onnx_session(path)
    inputs, outs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        raise ImportProblem(f"{path}: expected one image input; received {[i.name for i in inputs]}")
    layout = _onnx_layout(inputs[0].shape, path)
    dims = [d if isinstance(d, int) else None for d in inputs[0].shape]
    size, channels = _input_spec(dims, input_size, path, layout, fallback=exp.meta.get("image_size"))
    if "float" not in str(inputs[0].type):
        raise ImportProblem(f"{path}: expected a float32 image input; received {inputs[0].type}")
    out_dims = [d if isinstance(d, int) else None for d in outs[0].shape]
    order_eff = _effective_order(preprocessing, channel_order)
    _, _, mode, mean, std = preprocess_affine(preprocessing, order_eff, channels)
    units = _check_units(out_dims, exp, path) if len(out_dims) >= 2 and out_dims[-1] else 0
    probe = OnnxClassifier(
        path, _Spec(size, channels, mode, mean, std, order_eff, order, "probabilities", max(units, 1)), session
    )
    sample_images = _sample_images(evaluated, size)
    try:
        raw = probe.raw(sample_images)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's own error types
        raise ImportProblem(
            f"{path}: onnxruntime could not run the model on a ({len(sample_images)}, {size}, "
            f"{size}, {channels}) batch: {' '.join(str(exc).split())[:300]}"
        ) from None
    units = _check_units((None, raw.shape[1]), exp, path)
    resolved = _resolve_outputs(outputs, _onnx_last_op(path), lambda: raw, units, path)
    spec = _Spec(size, channels, mode, mean, std, order_eff, order, resolved, units)
    return OnnxClassifier(path, spec, session).bind_classes(exp.class_names)


def _sample_images(evaluated: pd.DataFrame, size: int, n: int = 8) -> np.ndarray:
    from pipeline.tfdata import decode_all

    images, ok = decode_all(evaluated["path"].head(n).tolist(), size)
    if not ok.any():
        raise ImportProblem(
            "no evaluation image could be decoded to try the model on; is the data set still "
            "where samples.parquet says?"
        )
    return np.asarray(images[ok], np.float32)


def _predict_onnx(clf: OnnxClassifier, evaluated: pd.DataFrame, settings: dict[str, Any]) -> Any:
    """The same batched decoder as Keras models (decoded_batches), onnxruntime for the forward pass; TTA views
    averaged in probability space like `pipeline.predict.predict_step`."""
    from pipeline.predict import PredictResult, numpy_views, parse_tta
    from pipeline.tfdata import decoded_batches

    tta = parse_tta(settings["tta"])
    paths = evaluated["path"].to_numpy()
    crops = _crops(evaluated, settings)
    probs = np.full((len(paths), clf.output_shape[1]), np.nan, np.float32)
    ok = np.zeros(len(paths), bool)
    start = time.perf_counter()
    for mode in pd.unique(crops):
        idx = np.flatnonzero(crops == mode)
        for offset, x, flag in decoded_batches(
            paths[idx].tolist(), clf.spec.input_size, settings["batch_size"], crop=str(mode), as_float=True
        ):
            xb = np.asarray(x, np.float32)
            views = numpy_views(xb, tta)
            rows = idx[offset : offset + len(flag)]
            probs[rows] = np.mean([clf(v) for v in views], axis=0)
            ok[rows] = flag
    probs[~ok] = np.nan
    return PredictResult(probs, ok, time.perf_counter() - start)


def _check_probs(preds: pd.DataFrame, n_classes: int, path: Path) -> None:
    problems = [p for p in art.check_predictions(preds, n_classes, path) if p.severity == "error"]
    if problems:
        raise ImportProblem(
            f"{path}: the model's outputs are not usable probabilities after conversion: "
            f"{problems[0].message}; declare outputs='logits' or 'probabilities'"
        )


# ---------------------------------------------------------------- predictions tables

KEY_COLUMNS = ("path", "file", "filename", "file_name", "image", "image_path", "image_id")
SCORE_COLUMNS = ("score", "prob", "probability", "y_score", "y_prob", "pred", "prediction")


def _read_table(path: Path) -> pd.DataFrame:
    suffix = _suffix(path)
    if suffix not in TABLE_SUFFIXES:
        raise invalid_argument("file", "a .csv or .parquet table of predictions", repr(path.name))
    try:
        if suffix == ".csv":
            return pd.read_csv(path, dtype={"sample_id": str})
        return pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for a bad file
        raise ImportProblem(
            f"{path}: unreadable {suffix[1:].upper()} ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())[:200]}); the file may be truncated or in another "
            "format"
        ) from None


def _examples(values: Any) -> str:
    vals = list(values)
    more = f" and {len(vals) - _EXAMPLES} more" if len(vals) > _EXAMPLES else ""
    return f"{[str(v) for v in vals[:_EXAMPLES]]}{more}"


def _key_rows(table: pd.DataFrame, samples: pd.DataFrame, problems: list[str]) -> tuple[np.ndarray, str]:
    """Sample id per row (None where unmatched) and the key column used."""
    if "sample_id" in table.columns:
        return table["sample_id"].astype(str).to_numpy(dtype=object), "sample_id"
    key = next((c for c in KEY_COLUMNS if c in table.columns), None)
    if key is None:
        problems.append(
            f"no key column: expected 'sample_id' or a file column ({', '.join(KEY_COLUMNS)}); "
            f"found {list(table.columns)}"
        )
        return np.full(len(table), None, dtype=object), ""
    values = table[key].astype(str).str.strip()
    by_path = dict(zip(samples["path"].astype(str), samples["sample_id"]))
    names = samples["path"].astype(str).map(lambda p: os.path.basename(p.replace("\\", "/")))
    counts = names.value_counts()
    by_name = dict(zip(names, samples["sample_id"]))
    ids = []
    ambiguous = []
    for v in values:
        if v in by_path:
            ids.append(by_path[v])
            continue
        base = os.path.basename(v.replace("\\", "/"))
        if counts.get(base, 0) > 1:
            ambiguous.append(base)
            ids.append(None)
        else:
            ids.append(by_name.get(base, f"<unmatched {v}>"))
    if ambiguous:
        problems.append(
            f"{len(ambiguous)} rows name a file that several samples share, e.g. "
            f"{_examples(dict.fromkeys(ambiguous))}; key those rows by sample_id or full path"
        )
    return np.asarray(ids, dtype=object), key


def _class_columns(table: pd.DataFrame, class_names: list[str], problems: list[str]) -> tuple[list[str], bool]:
    """The columns holding class probabilities in class order, and whether it is a single binary score."""
    cols = [str(c) for c in table.columns]
    k = len(class_names)
    named = [c for c in class_names if c in cols]
    numbered = [c for c in cols if c.startswith("prob_")]
    if len(named) == k:
        return list(class_names), False
    if numbered and set(numbered) == set(art.prob_columns(k)):
        return art.prob_columns(k), False
    if k == 2:
        scores = [c for c in cols if c in SCORE_COLUMNS or c in named or c == "prob_1"]
        if len(scores) == 1 and not (numbered and scores != ["prob_1"]):
            col = scores[0]
            return [col], col != class_names[0]  # a score column is the positive class's unless named class 0
    expected = f"one column per class named {class_names} or {art.prob_columns(k)}"
    if k == 2:
        expected += f", or one score column ({', '.join(SCORE_COLUMNS)} or {class_names[1]!r})"
    detail = []
    if named:
        detail.append(f"missing class columns {[c for c in class_names if c not in named]}")
    if numbered:
        extra = sorted(set(numbered) - set(art.prob_columns(k)))
        missing = [c for c in art.prob_columns(k) if c not in numbered]
        detail += ([f"unexpected {extra} (the experiment has {k} classes)"] if extra else []) + (
            [f"missing {missing}"] if missing else []
        )
    problems.append(
        f"class columns do not match: expected {expected}; found columns {cols}"
        + (f" ({'; '.join(detail)})" if detail else "")
    )
    return [], False


def _validate_predictions(
    table: pd.DataFrame, exp: art.Experiment, eval_sets: list[str], normalise: bool
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """(predictions in the artifact schema, every problem, notes)."""
    problems: list[str] = []
    notes: list[str] = []
    samples = exp.samples
    k = len(exp.class_names)
    if table.empty:
        return pd.DataFrame(), ["the table has no rows"], notes
    ids, key = _key_rows(table, samples, problems)
    columns, single = _class_columns(table, exp.class_names, problems)
    eval_of = dict(zip(samples["sample_id"], samples["eval_set"]))
    known = np.asarray([i is not None and i in eval_of for i in ids])
    unknown_vals = table[key].astype(str).to_numpy()[[i is not None and i not in eval_of for i in ids]] if key else []
    if len(unknown_vals):
        problems.append(
            f"{len(unknown_vals)} rows have {key} values not in the experiment's sample table, e.g. "
            f"{_examples(unknown_vals)}"
        )
    matched = pd.Series(ids[known], dtype=object)
    dup = matched[matched.duplicated(keep=False)].unique()
    if len(dup):
        problems.append(f"{len(dup)} samples have more than one row, e.g. {_examples(dup)}")
    row_sets = np.asarray([eval_of.get(i) if i is not None else None for i in ids], dtype=object)
    training = known & pd.isna(pd.Series(row_sets)).to_numpy()
    if training.any():
        notes.append(f"{int(training.sum())} rows are training samples (not in an evaluation set) and were ignored")
    outside = known & ~training & ~np.isin(row_sets, eval_sets)
    if outside.any():
        notes.append(
            f"{int(outside.sum())} rows belong to evaluation sets not imported "
            f"({sorted(set(row_sets[outside]))}) and were ignored"
        )
    use = known & ~training & ~outside
    for es in eval_sets:
        need = samples.loc[samples["eval_set"] == es, "sample_id"]
        have = set(ids[use])
        missing = [s for s in need if s not in have]
        if missing:
            problems.append(
                f"{len(missing)} of {len(need)} samples of evaluation set {es!r} have no row, e.g. {_examples(missing)}"
            )
    probs = np.zeros((len(table), k))
    if columns:
        values = table[columns].apply(pd.to_numeric, errors="coerce")
        bad = values.isna().any(axis=1).to_numpy()
        if bad.any():
            problems.append(
                f"{int(bad.sum())} rows have missing or non-numeric probabilities in {columns}, e.g. "
                f"rows {_examples(np.flatnonzero(bad) + 2)} (file line numbers)"
            )
        arr = values.to_numpy(np.float64, copy=True)
        if single:
            arr = np.stack([1 - arr[:, 0], arr[:, 0]], axis=1)
        elif columns == [exp.class_names[0]]:
            arr = np.stack([arr[:, 0], 1 - arr[:, 0]], axis=1)
        ok_rows = ~bad
        out_range = ok_rows & ((arr < -art.PROB_TOL) | (arr > 1 + art.PROB_TOL)).any(axis=1)
        if out_range.any():
            problems.append(
                f"{int(out_range.sum())} rows have probabilities outside [0, 1] (logits? apply a "
                f"softmax/sigmoid first), e.g. {_row_examples(table, key, out_range, arr)}"
            )
        sums = arr.sum(axis=1)
        off = ok_rows & ~out_range & (np.abs(sums - 1) > 1e-3)
        zero = off & (sums <= 1e-12)
        if zero.any() and normalise:
            problems.append(
                f"{int(zero.sum())} rows are all zero and cannot be normalised, e.g. "
                f"{_row_examples(table, key, zero, arr)}"
            )
            off &= ~zero
        if off.any() and normalise:
            arr[off] = arr[off] / sums[off, None]
            notes.append(f"{int(off.sum())} rows did not sum to 1 and were normalised")
        elif off.any():
            problems.append(
                f"{int(off.sum())} rows' probabilities do not sum to 1, e.g. "
                f"{_row_examples(table, key, off, sums[:, None])}; pass normalise=True (--normalise) "
                "to divide each row by its sum"
            )
        probs = np.clip(arr, 0.0, 1.0)
    if problems:
        return pd.DataFrame(), problems, notes
    out = pd.DataFrame(probs[use].astype(np.float64), columns=art.prob_columns(k))
    out.insert(0, "eval_set", row_sets[use].astype(str))
    out.insert(0, "sample_id", ids[use].astype(str))
    return out.reset_index(drop=True), [], notes


def _row_examples(table: pd.DataFrame, key: str, mask: np.ndarray, arr: np.ndarray) -> str:
    keys = table[key].astype(str).to_numpy() if key else np.arange(len(table)).astype(str)
    rows = np.flatnonzero(mask)[:_EXAMPLES]
    shown = ", ".join(f"{keys[r]}: {np.round(arr[r], 4).tolist()}" for r in rows)
    return shown + (f" and {int(mask.sum()) - len(rows)} more" if mask.sum() > len(rows) else "")
