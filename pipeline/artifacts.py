"""The artifact contract between the pipeline and the dashboard: schema, atomic writes, validated reads.

Layout of one experiment folder (see docs/ARTIFACTS.md for the full description)::

    <root>/<experiment>/
        experiment.json          meta: task, class names, positive class, dataset fingerprint, split
        samples.parquet          sample_id, path, label, split, group, eval_set, mask_path, metadata...
        thumbnails.parquet       sample_id, png (bytes), mask_png (bytes or null)
        models/<backbone>/
            config.json          written LAST: its presence with status "complete" marks a finished model
            model.keras          the trained classifier (takes raw 0..255 RGB, preprocessing inside)
            history.csv          one row per epoch
            predictions.parquet  sample_id, eval_set, prob_0 .. prob_{K-1}

No TensorFlow here: the dashboard imports this module on every page.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

SCHEMA_VERSION = 2  # 2: runs (run_id in config.json and predictions, fold column, oof eval set); 1 still opens
PIPELINE_VERSION = "0.1.0"

EXPERIMENT_FILE = "experiment.json"
SAMPLES_FILE = "samples.parquet"
THUMBNAILS_FILE = "thumbnails.parquet"
MODELS_DIR = "models"
MODEL_CONFIG_FILE = "config.json"
MODEL_FILE = "model.keras"
HISTORY_FILE = "history.csv"
PREDICTIONS_FILE = "predictions.parquet"

TASKS = ("binary", "multiclass")
SPLITS = ("train", "val", "test", "eval")
SAMPLE_COLUMNS = ("sample_id", "path", "label", "split", "group", "eval_set")
EXPERIMENT_KEYS = ("schema_version", "name", "task", "class_names", "positive_class", "created")
PROB_TOL = 1e-3


class ArtifactError(Exception):
    """A malformed, partial or missing artifact; the message names the file and the problem."""

    def __init__(self, path: Path | str, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


@dataclass(frozen=True)
class Problem:
    """One problem found by validation: which file, and what is wrong with it."""

    path: str
    message: str
    severity: str = "error"  # "error" makes the artifact unusable, "warning" does not

    def __str__(self) -> str:
        return f"[{self.severity}] {self.path}: {self.message}"


@dataclass
class Experiment:
    """A loaded experiment: its metadata, sample table and the names of its finished models."""

    path: Path
    meta: dict[str, Any]
    samples: pd.DataFrame
    models: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def class_names(self) -> list[str]:
        return list(self.meta["class_names"])

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def positive_index(self) -> int:
        """Index of the positive class (binary) or 1 when none is named."""
        pos = self.meta.get("positive_class")
        return self.class_names.index(pos) if pos in self.class_names else min(1, len(self.class_names) - 1)

    @property
    def eval_sets(self) -> list[str]:
        col = self.samples["eval_set"].dropna()
        names = list(dict.fromkeys(col.tolist()))
        return sorted(names, key=lambda n: (n != "test", n))


# ---------------------------------------------------------------- paths and atomic writes

def safe_join(root: Path | str, relative: str | os.PathLike) -> Path:
    """Join `relative` under `root`, refusing absolute paths and `..` escapes."""
    root_p = Path(root).resolve()
    rel = Path(relative)
    if rel.is_absolute():
        raise ArtifactError(root_p, f"path {str(relative)!r} must be relative to the artifact folder, got an absolute path")
    target = (root_p / rel).resolve()
    if target != root_p and root_p not in target.parents:
        raise ArtifactError(root_p, f"path {str(relative)!r} escapes the artifact folder")
    return target


def _atomic_replace(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write bytes to `path` via a temp file and rename, so readers never see a partial file."""
    _atomic_replace(Path(path), lambda fh: fh.write(data))


def atomic_write_json(path: Path | str, obj: Any) -> None:
    """Write JSON atomically (sorted keys, indented, NaN refused)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False, default=_json_default)
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_parquet(path: Path | str, df: pd.DataFrame) -> None:
    """Write a DataFrame to Parquet atomically."""
    _atomic_replace(Path(path), lambda fh: df.to_parquet(fh, index=False))


def atomic_write_csv(path: Path | str, df: pd.DataFrame) -> None:
    """Write a DataFrame to CSV atomically."""
    atomic_write_bytes(path, df.to_csv(index=False).encode("utf-8"))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def now_iso() -> str:
    """Current UTC time as an ISO-8601 string."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def id_mask(ids: Any, known: Any) -> np.ndarray:
    """Boolean mask of which `ids` are in `known`, hashed by Arrow.

    pandas 3's `Series.isin` on string ids is slow (about 7-17 s for 300,000 ids here); Arrow's
    `is_in` does the same in well under a second.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = pa.array(np.asarray(ids, dtype=object).astype(str))
    value_set = pa.array(np.asarray(known, dtype=object).astype(str))
    return pc.is_in(values, value_set=value_set).to_numpy(zero_copy_only=False)


def prob_columns(n_classes: int) -> list[str]:
    """Names of the probability columns in predictions.parquet."""
    return [f"prob_{i}" for i in range(n_classes)]


# ---------------------------------------------------------------- writers

def write_experiment_meta(exp_dir: Path | str, meta: dict[str, Any]) -> None:
    """Validate and write experiment.json."""
    meta = {"schema_version": SCHEMA_VERSION, "pipeline_version": PIPELINE_VERSION, "created": now_iso(), **meta}
    problems = check_meta(meta, Path(exp_dir) / EXPERIMENT_FILE)
    if problems:
        raise ArtifactError(problems[0].path, problems[0].message)
    atomic_write_json(Path(exp_dir) / EXPERIMENT_FILE, meta)


def write_samples(exp_dir: Path | str, samples: pd.DataFrame) -> None:
    """Validate column presence and write samples.parquet."""
    missing = [c for c in SAMPLE_COLUMNS if c not in samples.columns]
    if missing:
        raise ArtifactError(Path(exp_dir) / SAMPLES_FILE, f"missing columns {missing}; expected at least {list(SAMPLE_COLUMNS)}")
    atomic_write_parquet(Path(exp_dir) / SAMPLES_FILE, samples.reset_index(drop=True))


def write_thumbnails(exp_dir: Path | str, thumbs: pd.DataFrame) -> None:
    """Write thumbnails.parquet (sample_id, png, optional mask_png)."""
    atomic_write_parquet(Path(exp_dir) / THUMBNAILS_FILE, thumbs.reset_index(drop=True))


def model_dir(exp_dir: Path | str, model: str) -> Path:
    """Folder of one model inside an experiment (name checked against path escapes)."""
    return safe_join(Path(exp_dir) / MODELS_DIR, model)


def write_predictions(exp_dir: Path | str, model: str, preds: pd.DataFrame, n_classes: int) -> None:
    """Validate and write a model's predictions.parquet."""
    path = model_dir(exp_dir, model) / PREDICTIONS_FILE
    problems = check_predictions(preds, n_classes, path)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ArtifactError(path, errors[0].message)
    cols = ["sample_id", "eval_set", *prob_columns(n_classes)] + (["run_id"] if "run_id" in preds.columns else [])
    atomic_write_parquet(path, preds[cols])


def write_model_config(exp_dir: Path | str, model: str, config: dict[str, Any]) -> None:
    """Write a model's config.json; call last, after predictions, to mark the model complete."""
    config = {"schema_version": SCHEMA_VERSION, "status": "complete", "backbone": model, **config}
    atomic_write_json(model_dir(exp_dir, model) / MODEL_CONFIG_FILE, config)


# ---------------------------------------------------------------- checks (return problems, never raise)

def check_meta(meta: Any, path: Path | str) -> list[Problem]:
    """Problems with an experiment.json document."""
    p = str(path)
    if not isinstance(meta, dict):
        return [Problem(p, f"expected a JSON object, got {type(meta).__name__}")]
    out = [Problem(p, f"missing key {k!r}") for k in EXPERIMENT_KEYS if k not in meta]
    if out:
        return out
    version = meta["schema_version"]
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        out.append(Problem(p, f"schema_version {version!r} is newer than this dashboard understands "
                              f"(max {SCHEMA_VERSION}); update the code (git pull) or rebuild the artifacts"))
    if meta["task"] not in TASKS:
        out.append(Problem(p, f"task must be one of {TASKS}, got {meta['task']!r}"))
    names = meta["class_names"]
    if not isinstance(names, list) or len(names) < 2 or len(set(map(str, names))) != len(names):
        out.append(Problem(p, f"class_names must be a list of at least 2 distinct names, got {names!r}"))
    elif meta["task"] == "binary" and len(names) != 2:
        out.append(Problem(p, f"a binary task needs exactly 2 class_names, got {len(names)}"))
    elif meta.get("positive_class") is not None and meta["positive_class"] not in names:
        out.append(Problem(p, f"positive_class {meta['positive_class']!r} is not one of class_names {names}"))
    return out


def check_samples(df: pd.DataFrame, n_classes: int, path: Path | str) -> list[Problem]:
    """Problems with samples.parquet contents."""
    p = str(path)
    missing = [c for c in SAMPLE_COLUMNS if c not in df.columns]
    if missing:
        return [Problem(p, f"missing columns {missing}; expected at least {list(SAMPLE_COLUMNS)}")]
    out: list[Problem] = []
    if df["sample_id"].duplicated().any():
        dup = df.loc[df["sample_id"].duplicated(), "sample_id"].head(3).tolist()
        out.append(Problem(p, f"sample_id must be unique, found duplicates such as {dup}"))
    if not pd.api.types.is_integer_dtype(df["label"]):
        out.append(Problem(p, f"label must be an integer class index, got dtype {df['label'].dtype}"))
    elif len(df) and (df["label"].min() < 0 or df["label"].max() >= n_classes):
        out.append(Problem(p, f"label must be in [0, {n_classes - 1}], got range "
                              f"[{df['label'].min()}, {df['label'].max()}]"))
    bad = sorted(set(df["split"].dropna().unique()) - set(SPLITS))  # unique() first: 300k-row set() took 0.3 s
    if bad:
        out.append(Problem(p, f"split must be one of {SPLITS}, got {bad}"))
    return out


DUPLICATE_ROWS = "duplicate (sample_id, eval_set) rows"


def check_predictions(df: pd.DataFrame, n_classes: int, path: Path | str,
                      known_ids: Iterable[str] | None = None, check_duplicates: bool = True) -> list[Problem]:
    """Problems with a predictions table: columns, dtypes, NaN, range, row sums, duplicates, unknown ids.

    `check_duplicates=False` is for callers that find duplicates more cheaply themselves (the dashboard
    does, from the aligned row positions); hashing 300,000 string pairs here cost ~85 ms per model.
    """
    p = str(path)
    cols = ["sample_id", "eval_set", *prob_columns(n_classes)]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        return [Problem(p, f"missing columns {missing}; expected {cols}")]
    out: list[Problem] = []
    probs = df[prob_columns(n_classes)]
    non_numeric = [c for c in probs.columns if not pd.api.types.is_float_dtype(probs[c])]
    if non_numeric:
        return [Problem(p, f"probability columns must be float, got {[(c, str(probs[c].dtype)) for c in non_numeric]}")]
    arr = probs.to_numpy(dtype=np.float64)
    if np.isnan(arr).any():
        out.append(Problem(p, f"{int(np.isnan(arr).any(axis=1).sum())} rows have NaN probabilities"))
    finite = arr[~np.isnan(arr).any(axis=1)]
    if finite.size and (finite.min() < -PROB_TOL or finite.max() > 1 + PROB_TOL):
        out.append(Problem(p, f"probabilities must be in [0, 1], got range [{finite.min():.4g}, {finite.max():.4g}]"))
    if finite.size and n_classes > 1:
        sums = finite.sum(axis=1)
        off = np.abs(sums - 1) > 1e-2
        if off.any():
            out.append(Problem(p, f"{int(off.sum())} rows' probabilities do not sum to 1 (e.g. {sums[off][0]:.4g})"))
    if check_duplicates and df.duplicated(["sample_id", "eval_set"]).any():
        out.append(Problem(p, DUPLICATE_ROWS))
    if known_ids is not None:
        unknown = ~id_mask(df["sample_id"], known_ids)
        if unknown.any():
            out.append(Problem(p, f"{int(unknown.sum())} rows reference sample ids not in samples.parquet "
                                  f"(e.g. {df['sample_id'].to_numpy()[unknown][0]!r}); they are ignored", "warning"))
    return out


# ---------------------------------------------------------------- readers

def read_json(path: Path | str) -> Any:
    """Read a JSON file, raising ArtifactError naming the file on any problem."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(path, "file is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(path, f"not valid JSON ({exc}); the file may be half-written") from None


def read_parquet(path: Path | str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a Parquet file, raising ArtifactError naming the file on any problem."""
    path = Path(path)
    if not path.exists():
        raise ArtifactError(path, "file is missing")
    try:
        return pd.read_parquet(path, columns=columns)
    except Exception as exc:  # pyarrow raises several types for truncated/corrupt files
        raise ArtifactError(path, f"unreadable Parquet ({type(exc).__name__}: {str(exc)[:200]}); "
                                  "the file may be truncated or half-written") from None


def read_meta(exp_dir: Path | str) -> dict[str, Any]:
    """Read and check experiment.json."""
    path = Path(exp_dir) / EXPERIMENT_FILE
    meta = read_json(path)
    problems = check_meta(meta, path)
    if problems:
        raise ArtifactError(path, "; ".join(pr.message for pr in problems))
    return meta


def list_experiments(root: Path | str) -> list[str]:
    """Names of the folders under `root` that contain an experiment.json, sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / EXPERIMENT_FILE).is_file())


def list_models(exp_dir: Path | str) -> list[str]:
    """Models whose config.json says complete (others are unfinished and skipped)."""
    base = Path(exp_dir) / MODELS_DIR
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir()):
        cfg = d / MODEL_CONFIG_FILE
        if d.is_dir() and cfg.is_file():
            try:
                if read_json(cfg).get("status") == "complete":
                    out.append(d.name)
            except (ArtifactError, AttributeError):
                out.append(d.name)  # listed so the problem is reported when it is opened
    return out


def load_experiment(exp_dir: Path | str) -> Experiment:
    """Read experiment.json and samples.parquet, list finished models; raises ArtifactError."""
    exp_dir = Path(exp_dir)
    meta = read_meta(exp_dir)
    samples_path = exp_dir / SAMPLES_FILE
    samples = read_parquet(samples_path)
    problems = check_samples(samples, len(meta["class_names"]), samples_path)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ArtifactError(samples_path, "; ".join(p.message for p in errors))
    samples["sample_id"] = samples["sample_id"].astype(str)
    return Experiment(exp_dir, meta, samples, list_models(exp_dir), problems)


def read_model_config(exp_dir: Path | str, model: str) -> dict[str, Any]:
    """Read a model's config.json."""
    cfg = read_json(model_dir(exp_dir, model) / MODEL_CONFIG_FILE)
    if not isinstance(cfg, dict):
        raise ArtifactError(model_dir(exp_dir, model) / MODEL_CONFIG_FILE, "expected a JSON object")
    return cfg


def read_predictions(exp: Experiment, model: str) -> pd.DataFrame:
    """Read and check a model's predictions; rows for unknown sample ids are dropped."""
    path = model_dir(exp.path, model) / PREDICTIONS_FILE
    df = read_parquet(path)
    df["sample_id"] = df["sample_id"].astype(str) if "sample_id" in df else df.get("sample_id")
    problems = check_predictions(df, len(exp.class_names), path, exp.samples["sample_id"])
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ArtifactError(path, "; ".join(p.message for p in errors))
    return df[id_mask(df["sample_id"], exp.samples["sample_id"])].reset_index(drop=True)


def read_history(exp_dir: Path | str, model: str) -> pd.DataFrame:
    """Read a model's history.csv (one row per epoch)."""
    path = model_dir(exp_dir, model) / HISTORY_FILE
    if not path.exists():
        raise ArtifactError(path, "file is missing")
    try:
        return pd.read_csv(path)
    except Exception as exc:
        raise ArtifactError(path, f"unreadable CSV ({exc})") from None


def read_thumbnails(exp_dir: Path | str) -> pd.DataFrame:
    """Read thumbnails.parquet indexed by sample_id."""
    df = read_parquet(Path(exp_dir) / THUMBNAILS_FILE)
    if "sample_id" not in df.columns or "png" not in df.columns:
        raise ArtifactError(Path(exp_dir) / THUMBNAILS_FILE, f"expected columns ['sample_id', 'png'], got {list(df.columns)}")
    df["sample_id"] = df["sample_id"].astype(str)
    return df.set_index("sample_id")


# ---------------------------------------------------------------- validation of a whole folder

def validate_experiment(exp_dir: Path | str) -> list[Problem]:
    """Check every file of an experiment folder; returns every problem found (empty = valid)."""
    exp_dir = Path(exp_dir)
    out: list[Problem] = []
    if not exp_dir.is_dir():
        return [Problem(str(exp_dir), "not a folder")]
    meta_path = exp_dir / EXPERIMENT_FILE
    try:
        meta = read_json(meta_path)
    except ArtifactError as exc:
        return [Problem(exc.path, exc.problem)]
    meta_problems = check_meta(meta, meta_path)
    out += meta_problems
    if meta_problems:
        return out
    n_classes = len(meta["class_names"])
    samples = None
    try:
        samples = read_parquet(exp_dir / SAMPLES_FILE)
        out += check_samples(samples, n_classes, exp_dir / SAMPLES_FILE)
    except ArtifactError as exc:
        out.append(Problem(exc.path, exc.problem))
    try:
        thumbs = read_parquet(exp_dir / THUMBNAILS_FILE, columns=["sample_id"])
        if samples is not None and "sample_id" in samples:
            evaluated = samples["eval_set"].notna() if "eval_set" in samples else slice(None)
            missing = set(samples.loc[evaluated, "sample_id"].astype(str)) - set(thumbs["sample_id"].astype(str))
            if missing:
                out.append(Problem(str(exp_dir / THUMBNAILS_FILE),
                                   f"{len(missing)} evaluated samples have no thumbnail", "warning"))
    except ArtifactError as exc:
        out.append(Problem(exc.path, exc.problem, "warning"))
    models_root = exp_dir / MODELS_DIR
    model_dirs = sorted(d for d in models_root.iterdir() if d.is_dir()) if models_root.is_dir() else []
    if not model_dirs:
        out.append(Problem(str(models_root), "no models found", "warning"))
    known = samples["sample_id"].astype(str) if samples is not None and "sample_id" in samples else None
    for d in model_dirs:
        cfg_path = d / MODEL_CONFIG_FILE
        cfg: Any = None
        try:
            cfg = read_json(cfg_path)
            if not isinstance(cfg, dict) or cfg.get("status") != "complete":
                out.append(Problem(str(cfg_path), "model is not marked complete (an interrupted run?)"))
        except ArtifactError as exc:
            out.append(Problem(exc.path, exc.problem if cfg_path.exists() else
                               "file is missing: the model did not finish (rerun the pipeline to resume)"))
        cfg_dict = cfg if isinstance(cfg, dict) else {}
        imported = cfg_dict.get("source") == "imported"
        if not (d / MODEL_FILE).is_file() and not (d / "model.onnx").is_file() and not cfg_dict.get("predictions_only"):
            out.append(Problem(str(d / MODEL_FILE), "file is missing: live inference and Grad-CAM are unavailable "
                                                     "for this model (its predictions still work)", "warning"))
        if not (d / HISTORY_FILE).is_file() and not imported:
            out.append(Problem(str(d / HISTORY_FILE), "file is missing: no training curves", "warning"))
        try:
            preds = read_parquet(d / PREDICTIONS_FILE)
            out += check_predictions(preds, n_classes, d / PREDICTIONS_FILE, known)
        except ArtifactError as exc:
            out.append(Problem(exc.path, exc.problem))
    return out


def is_finite_number(x: Any) -> bool:
    """True for an int/float that is not NaN or infinite."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
