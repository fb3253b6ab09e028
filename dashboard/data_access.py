"""Every cached read and computation the dashboard pages use; the only module with `st.cache_*`.

Large per-model arrays (labels, probabilities, sweeps) are cached with `st.cache_resource`, so all sessions
share one read-only copy; small derived results (tables, curves, bootstrap intervals) with
`st.cache_data`. Each cache key includes a stamp of the files it was read from (mtime and size), so a
rebuilt artifact is re-read without restarting the app. Functions taking an `Experiment` pass it to the
cached helper as an unhashed `_exp` argument and key on (folder, stamp) instead: hashing a 300,000-row
sample table on every rerun would cost more than the work it saves.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import streamlit as st

from pipeline import artifacts as art
from pipeline import comparison as cmp
from pipeline import metrics as mt
from pipeline import review as rv
from pipeline.comparison import ModelData
from pipeline.metrics import MAX_CURVE_POINTS
from pipeline.run_summary import RunsComparison, backbone_runs, compare_runs, runs_curves, runs_spread

if TYPE_CHECKING:
    from dashboard.live_inference import LiveModel

REPO_ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS_ENV = "MEDCOMPARE_ARTIFACTS"
LEADERBOARD_METRICS: tuple[str, ...] = tuple(mt.LEADERBOARD_METRICS)
Stamp = tuple


# ---------------------------------------------------------------- paths and stamps


def artifacts_root() -> Path:
    """The artifacts folder: $MEDCOMPARE_ARTIFACTS if set, else <repo>/artifacts."""
    env = os.environ.get(ARTIFACTS_ENV, "").strip()
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "artifacts"


def experiment_names(root: Path | str | None = None) -> list[str]:
    """Experiments under `root` (folders holding an experiment.json); cheap, so not cached."""
    return art.list_experiments(root or artifacts_root())


def file_stamp(*paths: Path | str) -> Stamp:
    """(name, mtime_ns, size) of each path, or (name, None, None) when missing: changes when a file is rebuilt."""
    out = []
    for p in paths:
        try:
            s = os.stat(p)
            out.append((str(p), s.st_mtime_ns, s.st_size))
        except OSError:
            out.append((str(p), None, None))
    return tuple(out)


def experiment_stamp(exp_dir: Path | str) -> Stamp:
    """Stamp of an experiment's own files and of every model's config.json (which is written last)."""
    exp_dir = Path(exp_dir)
    models = exp_dir / art.MODELS_DIR
    cfgs = sorted(models.glob(f"*/{art.MODEL_CONFIG_FILE}")) if models.is_dir() else []
    return file_stamp(exp_dir / art.EXPERIMENT_FILE, exp_dir / art.SAMPLES_FILE, *cfgs)


def model_stamp(exp_dir: Path | str, model: str) -> Stamp:
    """Stamp of one model's config and predictions."""
    d = art.model_dir(exp_dir, model)
    return file_stamp(d / art.MODEL_CONFIG_FILE, d / art.PREDICTIONS_FILE)


# ---------------------------------------------------------------- experiment-level reads


@st.cache_resource(show_spinner="Loading experiment…", max_entries=32)
def _load_experiment(exp_dir: str, stamp: Stamp) -> art.Experiment:
    return art.load_experiment(exp_dir)


def get_experiment(name: str, root: Path | str | None = None) -> art.Experiment:
    """The experiment `name` (shared, do not mutate); raises ArtifactError naming the bad file."""
    base = Path(root or artifacts_root())
    # A folder directly inside the root: "../x", "/etc" or "a/b" (from a URL or a caller) never leave it.
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise art.ArtifactError(
            base, f"Invalid experiment name {name!r}: expected a folder name inside the artifacts folder"
        )
    exp_dir = base / name
    return _load_experiment(str(exp_dir), experiment_stamp(exp_dir))


@st.cache_data(show_spinner=False, max_entries=256)
def _model_config(exp_dir: str, model: str, stamp: Stamp) -> dict[str, Any]:
    return art.read_model_config(exp_dir, model)


def get_model_config(exp: art.Experiment, model: str) -> dict[str, Any]:
    """A model's config.json as a dict; raises ArtifactError."""
    d = art.model_dir(exp.path, model)
    return _model_config(str(exp.path), model, file_stamp(d / art.MODEL_CONFIG_FILE))


@st.cache_data(show_spinner=False, max_entries=256)
def _history(exp_dir: str, model: str, stamp: Stamp) -> pd.DataFrame:
    return art.read_history(exp_dir, model)


def get_history(exp: art.Experiment, model: str) -> pd.DataFrame:
    """A model's history.csv (one row per epoch); raises ArtifactError."""
    d = art.model_dir(exp.path, model)
    return _history(str(exp.path), model, file_stamp(d / art.HISTORY_FILE))


@st.cache_resource(show_spinner="Loading thumbnails…", max_entries=8)
def _thumbnails(exp_dir: str, stamp: Stamp) -> pd.Series:
    return art.read_thumbnails(exp_dir)["png"]


def get_thumbnails(exp: art.Experiment, sample_ids: list[str]) -> list[bytes | None]:
    """PNG bytes of each sample's thumbnail (None where missing); raises ArtifactError if the file is bad."""
    thumbs = _thumbnails(str(exp.path), file_stamp(exp.path / art.THUMBNAILS_FILE))
    # get_indexer on the cached index is O(len(sample_ids)); reindex with an object Index against the str
    # index re-hashed all rows (0.3 s per page at 300k thumbnails).
    pos = thumbs.index.get_indexer([str(s) for s in sample_ids])
    values = [thumbs.iat[p] if p >= 0 else None for p in pos]
    return [v if isinstance(v, (bytes, bytearray)) else None for v in values]


@st.cache_data(show_spinner=False, max_entries=64)
def _dataset_summary(exp_dir: str, stamp: Stamp, _exp: art.Experiment) -> tuple[pd.DataFrame, pd.DataFrame]:
    from pipeline import report as rp

    return rp.dataset_summary(_exp)


def dataset_summary(exp: art.Experiment) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(class counts + groups per split, samples/groups per evaluation set)."""
    return _dataset_summary(str(exp.path), experiment_stamp(exp.path), exp)


# ---------------------------------------------------------------- per-model arrays


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


@st.cache_resource(show_spinner=False, max_entries=32)
def _sample_arrays(exp_dir: str, exp_stamp: Stamp, _exp: art.Experiment) -> cmp.SampleIndex:
    return cmp.sample_index(_exp)


_EXCLUDED = "excluded-from-metrics"


def metrics_stamp(exp: art.Experiment) -> Stamp:
    """The experiment's stamp, plus the sample ids this user excludes from metrics (a cache key part).

    Every metric getter keys its cache on this, so turning the review page's "exclude samples marked
    'label wrong'" toggle on changes the numbers on every page, for this session only.
    """
    stamp = experiment_stamp(exp.path)
    excluded = excluded_sample_ids(exp)
    return (*stamp, (_EXCLUDED, tuple(sorted(excluded)))) if excluded else stamp


def _split_stamp(stamp: Stamp) -> tuple[Stamp, tuple[str, ...]]:
    if stamp and isinstance(stamp[-1], tuple) and len(stamp[-1]) == 2 and stamp[-1][0] == _EXCLUDED:
        return stamp[:-1], stamp[-1][1]
    return stamp, ()


@st.cache_resource(show_spinner="Reading predictions…", max_entries=128)
def _model_data(
    exp_dir: str, exp_stamp: Stamp, model: str, m_stamp: Stamp, eval_set: str, _exp: art.Experiment
) -> ModelData:
    base, excluded = _split_stamp(exp_stamp)
    if excluded:  # the shared, complete arrays minus this user's exclusions
        return cmp.without_samples(_model_data(exp_dir, base, model, m_stamp, eval_set, _exp), frozenset(excluded))
    return cmp.read_model_data(_exp, model, eval_set, index=_sample_arrays(exp_dir, exp_stamp, _exp))


def get_model_data(exp: art.Experiment, model: str, eval_set: str) -> ModelData:
    """Aligned (sample_ids, y, P, groups) of `model` on `eval_set`; raises ArtifactError for bad predictions."""
    return _model_data(str(exp.path), metrics_stamp(exp), model, model_stamp(exp.path, model), eval_set, exp)


def _keys(exp: art.Experiment, model: str) -> tuple[str, Stamp, str, Stamp]:
    return str(exp.path), metrics_stamp(exp), model, model_stamp(exp.path, model)


@st.cache_resource(show_spinner=False, max_entries=512)
def _sweep(
    exp_dir: str, exp_stamp: Stamp, model: str, m_stamp: Stamp, eval_set: str, class_index: int, _exp: art.Experiment
) -> mt.Sweep:
    md = _model_data(exp_dir, exp_stamp, model, m_stamp, eval_set, _exp)
    return mt.make_sweep(md.y == class_index, md.P[:, class_index])


def get_sweep(exp: art.Experiment, model: str, eval_set: str, class_index: int) -> mt.Sweep:
    """The sorted-score sweep of `model` for class `class_index` against the rest (built once, shared)."""
    return _sweep(*_keys(exp, model), eval_set, int(class_index), exp)


# ---------------------------------------------------------------- derived results (small, cached by value)


@st.cache_data(show_spinner=False, max_entries=512)
def _curves(
    exp_dir: str,
    exp_stamp: Stamp,
    model: str,
    m_stamp: Stamp,
    eval_set: str,
    class_index: int,
    max_points: int,
    _exp: art.Experiment,
) -> dict[str, Any]:
    sweep = _sweep(exp_dir, exp_stamp, model, m_stamp, eval_set, class_index, _exp)
    return mt.curve_summary(sweep, max_points)


def get_curves(
    exp: art.Experiment, model: str, eval_set: str, class_index: int, max_points: int = MAX_CURVE_POINTS
) -> dict[str, Any]:
    """Downsampled ROC (x=fpr, y=tpr, thr) and PR (x=recall, y=precision, thr) curves plus AUC and AP."""
    return _curves(*_keys(exp, model), eval_set, int(class_index), int(max_points), exp)


@st.cache_data(show_spinner=False, max_entries=128)
def _average_curves(
    exp_dir: str, exp_stamp: Stamp, model: str, m_stamp: Stamp, eval_set: str, max_points: int, _exp: art.Experiment
) -> dict[str, Any]:
    md = _model_data(exp_dir, exp_stamp, model, m_stamp, eval_set, _exp)
    avg = mt.micro_macro_roc(md.y, md.P)
    micro, macro = avg["micro"], avg["macro"]
    m_fpr, m_tpr, m_thr = mt.downsample_curve(
        micro["fpr"], micro["tpr"], np.minimum(micro["thresholds"], 1.0), max_points
    )
    g_fpr, g_tpr, _ = mt.downsample_curve(macro["fpr"], macro["tpr"], np.zeros(len(macro["fpr"])), max_points)
    return {
        "micro": {"fpr": m_fpr, "tpr": m_tpr, "thresholds": m_thr, "roc_auc": float(micro["roc_auc"])},
        "macro": {"fpr": g_fpr, "tpr": g_tpr, "thresholds": None, "roc_auc": float(macro["roc_auc"])},
    }


def get_average_curves(
    exp: art.Experiment, model: str, eval_set: str, max_points: int = MAX_CURVE_POINTS
) -> dict[str, Any]:
    """Micro- and macro-averaged one-vs-rest ROC curves (downsampled) and AUCs of a multiclass model."""
    return _average_curves(*_keys(exp, model), eval_set, int(max_points), exp)


@st.cache_data(show_spinner="Bootstrapping confidence intervals…", max_entries=256)
def _bootstrap(
    exp_dir: str,
    exp_stamp: Stamp,
    model: str,
    m_stamp: Stamp,
    eval_set: str,
    threshold: float | None,
    pos_index: int,
    n_boot: int,
    seed: int,
    _exp: art.Experiment,
) -> dict[str, mt.Estimate]:
    md = _model_data(exp_dir, exp_stamp, model, m_stamp, eval_set, _exp)
    # AUCs are undefined on a set with one class only: NaN, and the threshold metrics are kept.
    return mt.bootstrap_all(
        md.y,
        md.P,
        md.groups,
        metrics=LEADERBOARD_METRICS,
        n_boot=n_boot,
        seed=seed,
        threshold=threshold,
        pos_index=pos_index,
        undefined_auc="nan",
    )


def get_bootstrap(
    exp: art.Experiment, model: str, eval_set: str, threshold: float | None, n_boot: int = 1000, seed: int = 0
) -> dict[str, mt.Estimate]:
    """Leaderboard metrics with 95% patient-grouped bootstrap intervals: {metric: (point, lo, hi)} (cached)."""
    thr = None if threshold is None else round(float(threshold), 6)
    return _bootstrap(*_keys(exp, model), eval_set, thr, exp.positive_index, int(n_boot), int(seed), exp)


def _bootstrap_aligned(
    mds: list[ModelData], thresholds: dict[str, float | None], pos_index: int, n_boot: int, seed: int
) -> dict[str, dict[str, mt.Estimate]]:
    """Models scored on the same samples share one set of group resamples (metrics.bootstrap_models)."""
    first = mds[0]
    probs = {md.model: md.P for md in mds}
    return mt.bootstrap_models(
        first.y,
        probs,
        first.groups,
        metrics=LEADERBOARD_METRICS,
        n_boot=n_boot,
        seed=seed,
        thresholds=thresholds,
        pos_index=pos_index,
        undefined_auc="nan",
    )


@st.cache_data(show_spinner="Bootstrapping confidence intervals…", max_entries=64)
def _leaderboard_ci(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    thresholds: tuple[float | None, ...],
    pos_index: int,
    n_boot: int,
    seed: int,
    _exp: art.Experiment,
) -> dict[str, dict[str, mt.Estimate]]:
    mds = [_model_data(exp_dir, exp_stamp, m, st_, eval_set, _exp) for m, st_ in zip(models, m_stamps)]
    thr = dict(zip(models, thresholds))
    # Group models whose predictions cover the same samples in the same order (the usual case).
    batches: list[list[ModelData]] = []
    for md in mds:
        for batch in batches:
            if batch[0].n == md.n and np.array_equal(batch[0].sample_ids, md.sample_ids):
                batch.append(md)
                break
        else:
            batches.append([md])
    out: dict[str, dict[str, mt.Estimate]] = {}
    for batch in batches:
        out.update(_bootstrap_aligned(batch, {md.model: thr[md.model] for md in batch}, pos_index, n_boot, seed))
    return out


def get_leaderboard_ci(
    exp: art.Experiment,
    models: list[str],
    eval_set: str,
    thresholds: dict[str, float | None],
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, mt.Estimate]]:
    """{model: {metric: (point, lo, hi)}}: leaderboard metrics with 95% patient-grouped bootstrap intervals.

    Models scored on the same samples share the resamples (faster, and paired); cached as a whole.
    """
    models = list(models)
    thr = tuple(None if thresholds.get(m) is None else round(float(thresholds[m]), 6) for m in models)
    return _leaderboard_ci(
        str(exp.path),
        metrics_stamp(exp),
        tuple(models),
        tuple(model_stamp(exp.path, m) for m in models),
        eval_set,
        thr,
        exp.positive_index,
        int(n_boot),
        int(seed),
        exp,
    )


@st.cache_data(show_spinner=False, max_entries=256)
def _calibration(
    exp_dir: str,
    exp_stamp: Stamp,
    model: str,
    m_stamp: Stamp,
    eval_set: str,
    class_index: int | None,
    n_bins: int,
    strategy: str,
    _exp: art.Experiment,
) -> dict[str, Any]:
    md = _model_data(exp_dir, exp_stamp, model, m_stamp, eval_set, _exp)
    counts, edges = mt.confidence_histogram(md.P, bins=n_bins)
    if class_index is None:  # top label: is the model's confidence in its own answer right?
        return {
            "reliability": mt.top_label_reliability(md.y, md.P, n_bins=n_bins),
            "ece": mt.top_label_ece(md.y, md.P, n_bins=n_bins),
            "brier": mt.multiclass_brier_score(md.y, md.P),
            "histogram": (edges, counts),
        }
    y_bool, prob = md.y == class_index, md.P[:, class_index]
    return {
        "reliability": mt.reliability_curve(y_bool, prob, n_bins=n_bins, strategy=strategy),
        "ece": mt.expected_calibration_error(y_bool, prob, n_bins=n_bins),
        "brier": mt.brier_score(y_bool, prob),
        "histogram": (edges, counts),
    }


def get_calibration(
    exp: art.Experiment, model: str, eval_set: str, class_index: int | None, n_bins: int = 10, strategy: str = "uniform"
) -> dict[str, Any]:
    """Reliability curve, ECE (equal-width bins) and Brier score of class `class_index` against the rest, or of
    the top label when `class_index` is None; plus the histogram (edges, counts) of top-label confidence."""
    ci = None if class_index is None else int(class_index)
    return _calibration(*_keys(exp, model), eval_set, ci, int(n_bins), strategy, exp)


def metrics_at_threshold(
    exp: art.Experiment, model: str, eval_set: str, class_index: int, threshold: float
) -> dict[str, float]:
    """Metrics of class `class_index` against the rest at `threshold`, from the cached sweep: O(log n)."""
    return mt.metrics_at(get_sweep(exp, model, eval_set, class_index), float(threshold))


def threshold_for_sensitivity(exp: art.Experiment, model: str, eval_set: str, class_index: int, target: float) -> float:
    """Highest threshold whose sensitivity for `class_index` reaches `target`."""
    return float(mt.threshold_for_sensitivity(get_sweep(exp, model, eval_set, class_index), float(target)))


def youden_threshold(exp: art.Experiment, model: str, eval_set: str, class_index: int) -> float:
    """Threshold maximising Youden's J (sensitivity + specificity - 1) for `class_index`."""
    return float(mt.youden_threshold(get_sweep(exp, model, eval_set, class_index)))


@st.cache_data(show_spinner="Bootstrapping curve bands…", max_entries=256)
def _curve_bands(
    exp_dir: str,
    exp_stamp: Stamp,
    model: str,
    m_stamp: Stamp,
    eval_set: str,
    class_index: int,
    n_boot: int,
    seed: int,
    _exp: art.Experiment,
) -> dict[str, Any]:
    md = _model_data(exp_dir, exp_stamp, model, m_stamp, eval_set, _exp)
    y_bool, score = md.y == class_index, md.P[:, class_index]
    out = mt.bootstrap_curve_bands(y_bool, score, md.groups, n_boot=n_boot, seed=seed)
    out["roc_auc_ci"] = out["ap_ci"] = None
    if out["roc"] is not None:
        # Class-vs-rest as a two-column problem, so the intervals come from the metrics package's bootstrap.
        ci = mt.bootstrap_all(
            y_bool.astype(np.int64),
            np.column_stack([1.0 - score, score]),
            md.groups,
            metrics=["roc_auc", "pr_auc"],
            n_boot=n_boot,
            seed=seed,
            pos_index=1,
        )
        out["roc_auc_ci"], out["ap_ci"] = ci["roc_auc"][1:], ci["pr_auc"][1:]
    return out


def get_curve_bands(
    exp: art.Experiment, model: str, eval_set: str, class_index: int, n_boot: int = 200, seed: int = 0
) -> dict[str, Any]:
    """95% grouped-bootstrap bands of the ROC and PR curves, and intervals of ROC AUC and AP (cached)."""
    return _curve_bands(*_keys(exp, model), eval_set, int(class_index), int(n_boot), int(seed), exp)


# ---------------------------------------------------------------- cheap per-rerun helpers (no cache needed)


def predicted_labels(md: ModelData, threshold: float | None, pos_index: int) -> np.ndarray:
    """Predicted class per sample: binary at `threshold` on the positive class, multiclass by argmax."""
    thr = None if threshold is None or md.P.shape[1] != 2 else float(threshold)
    return mt.predict_labels(md.P, thresholds=thr, pos_index=pos_index)


def confusion_counts(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """The (n_classes x n_classes) confusion matrix, rows true and columns predicted."""
    return np.asarray(mt.confusion_matrix(y, pred, n_classes))


def cell_indices(
    y: np.ndarray, pred: np.ndarray, true_index: int, pred_index: int, confidence: np.ndarray | None = None
) -> np.ndarray:
    """Row indices of the samples in confusion cell (true, pred), most confident first when `confidence` is given."""
    idx = np.flatnonzero((y == true_index) & (pred == pred_index))
    if confidence is not None and idx.size:
        idx = idx[np.argsort(-confidence[idx], kind="stable")]
    return idx


@st.cache_data(show_spinner=False, max_entries=1024)
def _summary(
    exp_dir: str,
    exp_stamp: Stamp,
    model: str,
    m_stamp: Stamp,
    eval_set: str,
    threshold: float | None,
    pos_index: int,
    _exp: art.Experiment,
) -> dict[str, float]:
    md = _model_data(exp_dir, exp_stamp, model, m_stamp, eval_set, _exp)
    # One class only: AUCs are NaN, the threshold metrics still mean something.
    return mt.classification_summary(md.y, md.P, threshold=threshold, pos_index=pos_index, undefined_auc="nan")


def get_summary(exp: art.Experiment, model: str, eval_set: str, threshold: float | None) -> dict[str, float]:
    """Point metrics of a model (binary at `threshold`, multiclass by argmax with macro averages)."""
    thr = None if threshold is None else float(threshold)
    return _summary(*_keys(exp, model), eval_set, thr, exp.positive_index, exp)


def leaderboard_frame(results: dict[str, dict[str, mt.Estimate]], configs: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """One row per model: each metric's point, lower and upper bound, then size/speed from config.json.

    The meeting report's table, so the page and the report can never disagree.
    """
    from pipeline import report as rp

    return rp.leaderboard_frame(results, configs)


# ---------------------------------------------------------------- mentor review: notes, aligned predictions, Grad-CAM

EXCLUDE_LABEL_WRONG_KEY = "exclude_label_wrong"  # session-state key of the review page's toggle


@st.cache_resource(show_spinner="Aligning predictions…", max_entries=16)
def _review_arrays(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    _exp: art.Experiment,
) -> rv.ReviewArrays:
    stamps = dict(zip(models, m_stamps))
    # The union of every model's samples, in sample-table order (the gallery shows excluded samples too).
    aligned = cmp.load_aligned(
        _exp,
        models,
        eval_set,
        join="outer",
        index=_sample_arrays(exp_dir, exp_stamp, _exp),
        read=lambda m: _model_data(exp_dir, exp_stamp, m, stamps[m], eval_set, _exp),
    )
    return rv.from_aligned(aligned)


def get_review_arrays(exp: art.Experiment, models: list[str], eval_set: str) -> rv.ReviewArrays:
    """`pipeline.review.ReviewArrays` of `models` on `eval_set` (built once, shared); raises ArtifactError."""
    models_t = tuple(models)
    return _review_arrays(
        str(exp.path),
        experiment_stamp(exp.path),
        models_t,
        tuple(model_stamp(exp.path, m) for m in models_t),
        eval_set,
        exp,
    )


def notes_stamp(exp: art.Experiment) -> int:
    """Changes whenever a note is written to the experiment (the highest note id)."""
    from pipeline import notes

    return _notes_call(exp, notes.last_note_id)


def _notes_call(exp: art.Experiment, fn: Any, *args: Any) -> Any:
    """Run a notes.py read, turning a corrupt database into an ArtifactError naming the file."""
    import sqlite3

    from pipeline import notes

    try:
        return fn(exp.path, *args)
    except sqlite3.DatabaseError as exc:
        raise art.ArtifactError(notes.notes_path(exp.path), f"unreadable notes database ({exc})") from None


@st.cache_data(show_spinner=False, max_entries=64)
def _tagged(exp_dir: str, stamp: int, _exp: art.Experiment) -> dict[str, frozenset[str]]:
    from pipeline import notes

    tags = _notes_call(_exp, notes.current_tags)
    out: dict[str, set[str]] = {}
    for sid, sample_tags in zip(tags["sample_id"], tags["tags"]):
        for tag in sample_tags:
            out.setdefault(tag, set()).add(str(sid))
    return {t: frozenset(ids) for t, ids in out.items()}


def get_tagged(exp: art.Experiment) -> dict[str, frozenset[str]]:
    """Current mentor tags: {tag: ids of the samples carrying it} (cached until the next note)."""
    return _tagged(str(exp.path), notes_stamp(exp), exp)


def get_sample_tags(exp: art.Experiment, sample_ids: list[str]) -> list[tuple[str, ...]]:
    """The current tags of each of `sample_ids` (sorted), from the cached tag sets."""
    tagged = get_tagged(exp)
    return [tuple(sorted(t for t, ids in tagged.items() if sid in ids)) for sid in sample_ids]


def excluded_sample_ids(exp: art.Experiment) -> set[str]:
    """Samples to leave out of metrics: those marked 'label wrong' while the review page's toggle is on.

    The one place that decides this session's exclusions: every metric getter keys on them (`metrics_stamp`)
    and passes them to `pipeline.comparison.load_aligned(..., exclude=...)`, and so does the meeting report.
    Another exclusion (e.g. test images with a near-duplicate in train) is a union with another id set here.
    """
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    from pipeline import notes

    if get_script_run_ctx(suppress_warning=True) is None:
        return set()
    out: set[str] = set()
    if st.session_state.get(EXCLUDE_LABEL_WRONG_KEY, False):
        out |= set(get_tagged(exp).get(notes.LABEL_WRONG, ()))
    if st.session_state.get(EXCLUDE_LEAKY_KEY, False):
        out |= set(leaky_ids(exp))
    return out


EXCLUDE_LEAKY_KEY = "exclude_leaky"  # session-state key of the sidebar's leak-free switch


@st.cache_data(show_spinner=False, max_entries=32)
def _leaky_ids(exp_dir: str, stamp: Stamp, eval_sets: tuple[str, ...]) -> frozenset[str]:
    from pipeline.audit import leaky_sample_ids

    return frozenset(sid for es in eval_sets for sid in leaky_sample_ids(exp_dir, es))


def leaky_ids(exp: art.Experiment) -> frozenset[str]:
    """Evaluated images (test, val, extra sets) with a near-duplicate in training (data audit); empty without one."""
    audit_dir = Path(exp.path) / "audit"
    stamp = (*experiment_stamp(exp.path), *file_stamp(*sorted(audit_dir.glob("*.parquet"))))
    return _leaky_ids(str(exp.path), stamp, tuple(exp.eval_sets))


@st.cache_data(show_spinner=False, max_entries=512)
def _summary_excluding(
    exp_dir: str,
    exp_stamp: Stamp,
    model: str,
    m_stamp: Stamp,
    eval_set: str,
    threshold: float | None,
    pos_index: int,
    excluded: tuple[str, ...],
    _exp: art.Experiment,
) -> dict[str, float]:
    md = cmp.without_samples(_model_data(exp_dir, exp_stamp, model, m_stamp, eval_set, _exp), frozenset(excluded))
    out: dict[str, float] = {"n": float(md.n)}
    if md.n == 0:
        return {**out, **{m: float("nan") for m in LEADERBOARD_METRICS}}
    # One class left: AUCs NaN, threshold metrics still meaningful.
    return {
        **out,
        **mt.classification_summary(md.y, md.P, threshold=threshold, pos_index=pos_index, undefined_auc="nan"),
    }


def get_summary_excluding(
    exp: art.Experiment, model: str, eval_set: str, threshold: float | None, excluded: set[str] | frozenset[str]
) -> dict[str, float]:
    """Point metrics (and "n", the samples counted) of a model without exactly the `excluded` samples (cached).

    Independent of the session's exclusion toggle: the review page shows before and after side by side.
    """
    thr = None if threshold is None else float(threshold)
    return _summary_excluding(
        str(exp.path),
        experiment_stamp(exp.path),
        model,
        model_stamp(exp.path, model),
        eval_set,
        thr,
        exp.positive_index,
        tuple(sorted(excluded)),
        exp,
    )


def sample_image(exp: art.Experiment, sample_id: str) -> np.ndarray | None:
    """A sample's thumbnail decoded to RGB uint8, or None when it has none (raises ArtifactError)."""
    from pipeline import preprocess

    png = get_thumbnails(exp, [sample_id])[0]
    if png is None:
        return None
    try:
        return preprocess.decode_image(png).rgb
    except preprocess.ImageDecodeError:
        return None


def grad_cam_unavailable_reason(exp: art.Experiment, model: str) -> str | None:
    """Why Grad-CAM cannot run for `model` (no explain module, no model loader, no model file), or None."""
    try:
        from pipeline import explain
    except Exception as exc:  # noqa: BLE001 - any import failure means the feature is off
        return f"the Grad-CAM module could not be imported ({type(exc).__name__})"
    if not (hasattr(explain, "grad_cam") and hasattr(explain, "overlay")):
        return "pipeline/explain.py has no grad_cam/overlay"
    if not callable(globals().get("load_model")):
        return "no model loader (data_access.load_model) is available"
    if not (art.model_dir(exp.path, model) / art.MODEL_FILE).is_file():
        return f"{model} has no saved model file ({art.MODEL_FILE}); only its predictions exist"
    return None


@st.cache_data(show_spinner="Computing Grad-CAM…", max_entries=256)
def _grad_cam(
    exp_dir: str, model: str, m_stamp: Stamp, sample_id: str, class_index: int, _exp: art.Experiment
) -> np.ndarray:
    from pipeline import explain

    image = sample_image(_exp, sample_id)
    if image is None:
        raise art.ArtifactError(Path(exp_dir) / art.THUMBNAILS_FILE, f"no image for sample {sample_id!r}")
    keras_model = globals()["load_model"](exp_dir, model)
    return np.asarray(explain.grad_cam(keras_model, image, int(class_index)), dtype=np.float32)


def get_grad_cam(exp: art.Experiment, model: str, sample_id: str, class_index: int) -> np.ndarray:
    """Grad-CAM heat map (HxW in [0, 1], the thumbnail's size) of `model` for `class_index` on a sample (cached)."""
    return _grad_cam(str(exp.path), model, model_stamp(exp.path, model), str(sample_id), int(class_index), exp)


def get_notes(exp: art.Experiment, sample_ids: list[str] | None = None) -> pd.DataFrame:
    """The mentor-note history of `sample_ids` (all samples when None), oldest first; raises ArtifactError."""
    from pipeline import notes

    return _notes_call(exp, notes.notes_for, sample_ids)


def notes_csv(exp: art.Experiment) -> bytes:
    """Every mentor note of the experiment as CSV bytes; raises ArtifactError for a corrupt notes file."""
    from pipeline import notes

    return _notes_call(exp, notes.export_csv)


# ---------------------------------------------------------------- segmentation preview


@st.cache_resource(show_spinner="Loading masks…", max_entries=8)
def _thumbnail_masks(exp_dir: str, stamp: Stamp) -> pd.Series:
    thumbs = art.read_thumbnails(exp_dir)
    if "mask_png" not in thumbs.columns:
        return pd.Series([], index=pd.Index([], dtype=object), dtype=object)
    masks = thumbs["mask_png"]
    return masks[[isinstance(v, (bytes, bytearray)) for v in masks.tolist()]]


def masked_sample_ids(exp: art.Experiment) -> pd.Index:
    """Ids of the samples with a ground-truth mask thumbnail (`mask_png`); raises ArtifactError if the file is bad."""
    return _thumbnail_masks(str(exp.path), file_stamp(exp.path / art.THUMBNAILS_FILE)).index


def get_thumbnail_mask(exp: art.Experiment, sample_id: str) -> bytes | None:
    """PNG bytes of a sample's ground-truth mask thumbnail, or None when it has none."""
    masks = _thumbnail_masks(str(exp.path), file_stamp(exp.path / art.THUMBNAILS_FILE))
    value = masks.get(str(sample_id))
    return value if isinstance(value, (bytes, bytearray)) else None


@st.cache_data(show_spinner="Decoding the image…", max_entries=4)
def decode_upload(data: bytes, name: str, max_side: int = 1024) -> tuple[np.ndarray, tuple[str, ...]]:
    """An uploaded image as RGB uint8, shrunk to at most `max_side` pixels a side, and the conversion notes;
    raises ImageDecodeError with a one-line reason."""
    from pipeline import preprocess

    decoded = preprocess.decode_image(data, name)
    rgb, notes = decoded.rgb, list(decoded.notes)
    if max(rgb.shape[:2]) > max_side:
        notes.append(f"shrunk from {rgb.shape[1]}x{rgb.shape[0]} for the preview")
        rgb = preprocess.decode_image(preprocess.thumbnail_png(rgb, max_side)).rgb
    return rgb, tuple(notes)


def notes_csv_or_message(exp: art.Experiment) -> bytes:
    """`notes_csv`, or a one-line CSV naming the problem when the notes file cannot be read (for downloads)."""
    try:
        return notes_csv(exp)
    except art.ArtifactError as exc:
        return f'error\n"{exc.problem}"\n'.encode()


@st.cache_resource(show_spinner=False, max_entries=16)
def _sample_index(exp_dir: str, exp_stamp: Stamp, _exp: art.Experiment) -> pd.Index:
    return pd.Index(_exp.samples["sample_id"])


def get_sample_row(exp: art.Experiment, sample_id: str) -> pd.Series:
    """The sample table's row of `sample_id` (KeyError when it is not there); O(1) after the first call."""
    pos = _sample_index(str(exp.path), experiment_stamp(exp.path), exp).get_loc(str(sample_id))
    return exp.samples.iloc[int(pos)]


# ---------------------------------------------------------------- saved models (live inference, Grad-CAM)


@st.cache_resource(show_spinner="Loading and warming up the model…", max_entries=32)
def _live_model(exp_dir: str, model: str, stamp: Stamp) -> LiveModel:
    from dashboard.live_inference import load_live_model as _load

    return _load(exp_dir, model)


def load_live_model(exp_dir: Path | str, model_name: str) -> LiveModel:
    """`dashboard.live_inference.LiveModel` of a saved model: loaded once per process (Keras safe mode), shared
    by every session, warmed up with one prediction and one Grad-CAM; re-read when model.keras changes.
    Raises ArtifactError naming the file when it is missing or cannot be loaded (other models are unaffected)."""
    d = art.model_dir(exp_dir, model_name)
    return _live_model(str(exp_dir), model_name, file_stamp(d / art.MODEL_FILE, d / art.MODEL_CONFIG_FILE))


def load_model(exp_dir: Path | str, model_name: str) -> Any:
    """The saved `keras.Model` of `model_name` (cached and warmed up as in `load_live_model`); raises ArtifactError."""
    return load_live_model(exp_dir, model_name).model


# ---------------------------------------------------------------- paired comparison, ensemble, meeting report


def _models_key(exp: art.Experiment, models: list[str] | tuple[str, ...]) -> tuple[tuple[str, ...], tuple[Stamp, ...]]:
    models_t = tuple(models)
    return models_t, tuple(model_stamp(exp.path, m) for m in models_t)


@st.cache_resource(show_spinner="Aligning predictions…", max_entries=32)
def _aligned(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    _exp: art.Experiment,
) -> cmp.Aligned:
    base, excluded = _split_stamp(exp_stamp)
    stamps = dict(zip(models, m_stamps))
    return cmp.load_aligned(
        _exp,
        models,
        eval_set,
        exclude=excluded,
        read=lambda m: _model_data(exp_dir, base, m, stamps[m], eval_set, _exp),
    )


def get_aligned(exp: art.Experiment, models: list[str], eval_set: str) -> cmp.Aligned:
    """`models`' predictions on the samples every one of them predicted, minus this session's exclusions (shared):
    `pipeline.comparison.load_aligned` through the cached per-model reads."""
    return _aligned(str(exp.path), metrics_stamp(exp), *_models_key(exp, models), eval_set, exp)


@st.cache_data(show_spinner="Running the paired tests…", max_entries=64)
def _pairwise(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    thresholds: tuple[float | None, ...],
    pos_index: int,
    n_boot: int,
    seed: int,
    _exp: art.Experiment,
) -> list[dict[str, Any]]:
    al = _aligned(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    return mt.pairwise_comparisons(
        al.y,
        al.probs,
        al.groups,
        thresholds=dict(zip(models, thresholds)),
        pos_index=pos_index,
        metrics=LEADERBOARD_METRICS,
        n_boot=n_boot,
        seed=seed,
    )


def get_pairwise(
    exp: art.Experiment,
    models: list[str],
    eval_set: str,
    thresholds: dict[str, float | None],
    n_boot: int = 1000,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """`metrics.pairwise_comparisons` rows for every pair of `models` (DeLong, McNemar, paired bootstrap of every
    leaderboard metric, Holm-adjusted over the pairs), on their common samples (cached)."""
    thr = tuple(None if thresholds.get(m) is None else round(float(thresholds[m]), 6) for m in models)
    return _pairwise(
        str(exp.path),
        metrics_stamp(exp),
        *_models_key(exp, models),
        eval_set,
        thr,
        exp.positive_index,
        int(n_boot),
        int(seed),
        exp,
    )


@st.cache_resource(show_spinner=False, max_entries=64)
def _ensemble_P(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    _exp: art.Experiment,
) -> np.ndarray:
    al = _aligned(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    return _readonly(mt.ensemble_mean(al.probs))


@st.cache_resource(show_spinner=False, max_entries=128)
def _ensemble_sweep(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    class_index: int,
    _exp: art.Experiment,
) -> mt.Sweep:
    al = _aligned(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    P = _ensemble_P(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    return mt.make_sweep(al.y == class_index, P[:, class_index])


@st.cache_data(show_spinner="Bootstrapping the ensemble…", max_entries=128)
def _ensemble_bootstrap(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    threshold: float | None,
    pos_index: int,
    n_boot: int,
    seed: int,
    _exp: art.Experiment,
) -> dict[str, mt.Estimate]:
    al = _aligned(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    P = _ensemble_P(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    return mt.bootstrap_all(
        al.y,
        P,
        al.groups,
        metrics=LEADERBOARD_METRICS,
        n_boot=n_boot,
        seed=seed,
        threshold=threshold,
        pos_index=pos_index,
        undefined_auc="nan",
    )


def get_ensemble_bootstrap(
    exp: art.Experiment, models: list[str], eval_set: str, threshold: float | None, n_boot: int = 1000, seed: int = 0
) -> dict[str, mt.Estimate]:
    """Leaderboard metrics with 95% grouped-bootstrap intervals of the mean-probability ensemble of `models`."""
    thr = None if threshold is None else round(float(threshold), 6)
    return _ensemble_bootstrap(
        str(exp.path),
        metrics_stamp(exp),
        *_models_key(exp, models),
        eval_set,
        thr,
        exp.positive_index,
        int(n_boot),
        int(seed),
        exp,
    )


@st.cache_data(show_spinner=False, max_entries=128)
def _ensemble_curves(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    class_index: int,
    max_points: int,
    _exp: art.Experiment,
) -> dict[str, Any]:
    from pipeline import report as rp

    al = _aligned(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    P = _ensemble_P(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    out = rp.curve_points(al.y == class_index, P[:, class_index], max_points)
    out.pop("sweep")
    return out


def get_ensemble_curves(
    exp: art.Experiment, models: list[str], eval_set: str, class_index: int, max_points: int = MAX_CURVE_POINTS
) -> dict[str, Any]:
    """ROC and PR curves (downsampled), AUC and AP of the ensemble for class `class_index` against the rest."""
    return _ensemble_curves(
        str(exp.path), metrics_stamp(exp), *_models_key(exp, models), eval_set, int(class_index), int(max_points), exp
    )


def ensemble_metrics_at(
    exp: art.Experiment, models: list[str], eval_set: str, class_index: int, threshold: float
) -> dict[str, float]:
    """The ensemble's metrics of class `class_index` against the rest at `threshold` (from a cached sweep)."""
    sweep = _ensemble_sweep(
        str(exp.path), metrics_stamp(exp), *_models_key(exp, models), eval_set, int(class_index), exp
    )
    return mt.metrics_at(sweep, float(threshold))


@st.cache_data(show_spinner=False, max_entries=64)
def _disagreement(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    thresholds: tuple[float | None, ...],
    pos_index: int,
    _exp: art.Experiment,
) -> dict[str, Any]:
    al = _aligned(exp_dir, exp_stamp, models, m_stamps, eval_set, _exp)
    preds = {m: mt.predict_labels(al.probs[m], thresholds=t, pos_index=pos_index) for m, t in zip(models, thresholds)}
    names, matrix = mt.disagreement_matrix(preds)
    correct = np.vstack([preds[m] == al.y for m in models])
    return {
        "names": names,
        "matrix": matrix,
        "unique_correct": mt.unique_correct(al.y, preds),
        "all_right": int(correct.all(axis=0).sum()),
        "all_wrong": int((~correct).all(axis=0).sum()),
        "n": al.n,
    }


def get_disagreement(
    exp: art.Experiment, models: list[str], eval_set: str, thresholds: dict[str, float | None]
) -> dict[str, Any]:
    """Pairwise disagreement matrix, per-model "only this one is right" counts, all-right/all-wrong counts (cached)."""
    thr = tuple(None if thresholds.get(m) is None else round(float(thresholds[m]), 6) for m in models)
    return _disagreement(
        str(exp.path), metrics_stamp(exp), *_models_key(exp, models), eval_set, thr, exp.positive_index, exp
    )


@st.cache_data(show_spinner="Building the meeting report…", max_entries=8)
def _meeting_report(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    thresholds: tuple[tuple[str, float], ...],
    n_boot: int,
    notes: int,
    pdf: bool,
    sources: tuple[tuple[str, str], ...] = (),
) -> tuple[bytes, bytes | None]:
    _, excluded = _split_stamp(exp_stamp)
    import tempfile

    from pipeline import report as rp

    with tempfile.TemporaryDirectory(prefix="medcompare-report-") as tmp:
        html_path = Path(tmp) / "report.html"
        pdf_path = Path(tmp) / "report.pdf" if pdf else None
        rp.build_report(
            exp_dir,
            list(models),
            eval_set,
            dict(thresholds),
            n_boot,
            out_html=html_path,
            out_pdf=pdf_path,
            exclude=excluded,
            threshold_sources=dict(sources),
        )
        return html_path.read_bytes(), (pdf_path.read_bytes() if pdf_path is not None else None)


def get_meeting_report(
    exp: art.Experiment,
    models: list[str],
    eval_set: str,
    thresholds: dict[str, float | None],
    n_boot: int = 1000,
    pdf: bool = False,
    threshold_sources: dict[str, str] | None = None,
) -> tuple[bytes, bytes | None]:
    """(HTML bytes, PDF bytes or None) of `pipeline.report.build_report` with these thresholds and this session's
    exclusions, so it shows the numbers of the pages it is downloaded from (cached until an artifact or a mentor
    note changes); `threshold_sources` says where each threshold came from (printed beside it); raises
    ArtifactError, or FileNotFoundError when a PDF needs chromium."""
    try:
        notes = notes_stamp(exp)
    except art.ArtifactError:
        notes = -1
    thr = tuple(sorted((m, round(float(t), 6)) for m, t in thresholds.items() if t is not None))
    sources = tuple(sorted((m, str(v)) for m, v in (threshold_sources or {}).items()))
    return _meeting_report(
        str(exp.path),
        metrics_stamp(exp),
        *_models_key(exp, models),
        eval_set,
        thr,
        int(n_boot),
        notes,
        bool(pdf),
        sources,
    )


@st.cache_data(show_spinner="Comparing runs…", max_entries=64)
def _runs_comparison(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    metric: str,
    thresholds: tuple[float | None, ...],
    n_boot: int,
    _exp: art.Experiment,
) -> RunsComparison:
    def read(model: str) -> ModelData:
        return _model_data(exp_dir, exp_stamp, model, m_stamps[models.index(model)], eval_set, _exp)

    return compare_runs(
        _exp,
        eval_set,
        metric=metric,
        models=list(models),
        thresholds=dict(zip(models, thresholds)),
        n_boot=n_boot,
        read=read,
    )


def get_runs_comparison(
    exp: art.Experiment,
    models: list[str],
    eval_set: str,
    metric: str,
    thresholds: dict[str, float | None],
    n_boot: int = 200,
) -> RunsComparison:
    """Spread over runs, rank stability and pairwise run tests of `metric` (pipeline.run_summary), cached."""
    models = list(models)
    thr = tuple(None if thresholds.get(m) is None else round(float(thresholds[m]), 6) for m in models)
    return _runs_comparison(
        str(exp.path),
        metrics_stamp(exp),
        tuple(models),
        tuple(model_stamp(exp.path, m) for m in models),
        eval_set,
        metric,
        thr,
        int(n_boot),
        exp,
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _backbone_runs(exp_dir: str, stamp: Stamp, _exp: art.Experiment) -> dict[str, list[str]]:
    return backbone_runs(_exp)


def get_backbone_runs(exp: art.Experiment) -> dict[str, list[str]]:
    """backbone -> its run folders, first run first (one entry per model for single-run experiments); cached
    on the experiment's stamp, which covers every model's config.json."""
    return _backbone_runs(str(exp.path), experiment_stamp(exp.path), exp)


def runs_of_selected(exp: art.Experiment, models: list[str]) -> dict[str, list[str]]:
    """backbone -> all its runs, for the backbones that any of `models` belongs to (in `models`' order)."""
    groups = get_backbone_runs(exp)
    owner = {r: b for b, runs in groups.items() for r in runs}
    return {b: groups[b] for b in dict.fromkeys(owner[m] for m in models if m in owner)}


@st.cache_data(show_spinner="Scoring every run…", max_entries=64)
def _runs_spread(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    thresholds: tuple[float | None, ...],
    _exp: art.Experiment,
) -> dict[str, pd.DataFrame]:
    def read(model: str) -> ModelData:
        return _model_data(exp_dir, exp_stamp, model, m_stamps[models.index(model)], eval_set, _exp)

    return runs_spread(_exp, eval_set, models=list(models), thresholds=dict(zip(models, thresholds)), read=read)


def get_runs_spread(
    exp: art.Experiment, models: list[str], eval_set: str, thresholds: dict[str, float | None]
) -> dict[str, pd.DataFrame]:
    """{metric: per-backbone mean, SD, range and per-run values} over every run of `models`' backbones
    (`pipeline.run_summary.runs_spread`, point values at each run's threshold; cached)."""
    models = list(models)
    thr = tuple(None if thresholds.get(m) is None else round(float(thresholds[m]), 6) for m in models)
    return _runs_spread(str(exp.path), metrics_stamp(exp), *_models_key(exp, models), eval_set, thr, exp)


@st.cache_data(show_spinner="Averaging the runs' curves…", max_entries=128)
def _runs_curves(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    class_index: int,
    _exp: art.Experiment,
) -> dict[str, Any]:
    def read(model: str) -> ModelData:
        return _model_data(exp_dir, exp_stamp, model, m_stamps[models.index(model)], eval_set, _exp)

    return runs_curves(_exp, eval_set, list(models), class_index=class_index, read=read)


def get_runs_curves(exp: art.Experiment, runs: list[str], eval_set: str, class_index: int) -> dict[str, Any]:
    """{"roc", "pr"}: the runs' curves for `class_index` vs rest averaged on a common grid, with min/max and SD
    (`pipeline.run_summary.runs_curves`; None where undefined; cached)."""
    return _runs_curves(str(exp.path), metrics_stamp(exp), *_models_key(exp, runs), eval_set, int(class_index), exp)


# ---------------------------------------------------------------- subgroups (pipeline/subgroups.py, metrics._subgroups)


def subgroups_config(exp: art.Experiment) -> Any:
    """The experiment's [subgroups] settings, else the defaults (`pipeline.subgroups.experiment_subgroups_config`)."""
    from pipeline.subgroups import experiment_subgroups_config

    return experiment_subgroups_config(exp.meta)


@st.cache_resource(show_spinner=False, max_entries=32)
def _subgroup_frame(
    exp_dir: str, exp_stamp: Stamp, named: tuple[str, ...], regex: str | None, regex_source: str, _exp: art.Experiment
) -> pd.DataFrame:
    from pipeline import subgroups as sg

    frame = sg.subgroup_frame(_exp.samples, columns=named, regex=regex, regex_source=regex_source)
    frame.index = _exp.samples["sample_id"].to_numpy()
    return frame


def get_subgroup_frame(
    exp: art.Experiment, named: tuple[str, ...] = (), regex: str | None = None, regex_source: str = "sample_id"
) -> pd.DataFrame:
    """The sample table's subgroup columns (raw values) indexed by sample id, with `regex`'s named groups; raises
    ValueError for a bad regex (cached, shared)."""
    return _subgroup_frame(str(exp.path), experiment_stamp(exp.path), tuple(named), regex or None, regex_source, exp)


@st.cache_resource(show_spinner="Aligning predictions…", max_entries=32)
def _subgroup_inputs(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_sets: tuple[str, ...],
    _exp: art.Experiment,
) -> cmp.Aligned:
    parts = [_aligned(exp_dir, exp_stamp, models, m_stamps, es, _exp) for es in eval_sets]
    if len(parts) == 1:
        return parts[0]
    return cmp.Aligned(
        sample_ids=_readonly(np.concatenate([p.sample_ids for p in parts])),
        y=_readonly(np.concatenate([p.y for p in parts])),
        groups=_readonly(np.concatenate([p.groups for p in parts])),
        probs={m: _readonly(np.concatenate([p.probs[m] for p in parts])) for m in models},
    )


def get_subgroup_inputs(exp: art.Experiment, models: list[str], eval_sets: list[str]) -> cmp.Aligned:
    """`models`' aligned predictions on `eval_sets` (several: one after the other, for the `eval_set` column),
    minus this session's exclusions (cached, shared)."""
    return _subgroup_inputs(str(exp.path), metrics_stamp(exp), *_models_key(exp, models), tuple(eval_sets), exp)


@st.cache_resource(show_spinner=False, max_entries=64)
def _subgroup_codes(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_sets: tuple[str, ...],
    column: str,
    named: tuple[str, ...],
    regex: str | None,
    regex_source: str,
    bins: tuple[float, ...] | None,
    quantiles: int,
    _exp: art.Experiment,
) -> Any:
    from pipeline import subgroups as sg

    al = _subgroup_inputs(exp_dir, exp_stamp, models, m_stamps, eval_sets, _exp)
    base, _ = _split_stamp(exp_stamp)
    frame = _subgroup_frame(exp_dir, base, named, regex, regex_source, _exp)
    values = frame[column].reindex(al.sample_ids)
    return sg.assign_subgroups(column, values, bins=bins, quantiles=quantiles)


def get_subgroups(exp: art.Experiment, models: list[str], eval_sets: list[str], column: str, cfg: Any) -> Any:
    """`pipeline.subgroups.Subgroups` of `column` for the samples of `get_subgroup_inputs` (same order), binned as
    `cfg` (a SubgroupsConfig) says (cached)."""
    bins = cfg.bins.get(column)
    return _subgroup_codes(
        str(exp.path),
        metrics_stamp(exp),
        *_models_key(exp, models),
        tuple(eval_sets),
        column,
        tuple(cfg.columns),
        cfg.regex or None,
        cfg.regex_source,
        None if bins is None else tuple(bins),
        int(cfg.quantiles),
        exp,
    )


def _one_vs_rest(
    al: cmp.Aligned, class_index: int, pos_index: int, binary: bool
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Binary tasks as they are; a multiclass task as `class_index` against the rest (positive index 1)."""
    if binary:
        return al.y, al.probs, pos_index
    y = (al.y == class_index).astype(np.int64)
    probs = {m: np.column_stack([1.0 - P[:, class_index], P[:, class_index]]) for m, P in al.probs.items()}
    return y, probs, 1


@st.cache_resource(show_spinner="Bootstrapping subgroup intervals…", max_entries=32)
def _subgroup_metrics(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_sets: tuple[str, ...],
    column: str,
    sg_key: tuple[Any, ...],
    thresholds: tuple[float | None, ...],
    class_index: int,
    binary: bool,
    pos_index: int,
    n_boot: int,
    min_size: int,
    seed: int,
    _exp: art.Experiment,
    _subgroups: Any,
) -> mt.SubgroupMetrics:
    al = _subgroup_inputs(exp_dir, exp_stamp, models, m_stamps, eval_sets, _exp)
    y, probs, pos = _one_vs_rest(al, class_index, pos_index, binary)
    return mt.subgroup_metrics(
        y,
        probs,
        _subgroups.codes,
        al.groups,
        names=_subgroups.names,
        thresholds=dict(zip(models, thresholds)),
        pos_index=pos,
        n_boot=n_boot,
        seed=seed,
        min_size=min_size,
    )


def get_subgroup_metrics(
    exp: art.Experiment,
    models: list[str],
    eval_sets: list[str],
    column: str,
    cfg: Any,
    thresholds: dict[str, float | None],
    class_index: int,
    n_boot: int = 500,
    seed: int = 0,
) -> mt.SubgroupMetrics:
    """`metrics.subgroup_metrics` of `models` on `column`'s subgroups at `thresholds` (binary: the models'
    thresholds; multiclass: `class_index` against the rest at its one-vs-rest threshold), with patient-grouped
    bootstrap intervals (cached per threshold set)."""
    groups = get_subgroups(exp, models, eval_sets, column, cfg)
    key = (tuple(cfg.columns), cfg.regex, cfg.regex_source, tuple(cfg.bins.get(column, ())), cfg.quantiles)
    thr = tuple(None if thresholds.get(m) is None else round(float(thresholds[m]), 6) for m in models)
    binary = len(exp.class_names) == 2
    return _subgroup_metrics(
        str(exp.path),
        metrics_stamp(exp),
        *_models_key(exp, models),
        tuple(eval_sets),
        column,
        key,
        thr,
        int(class_index),
        binary,
        exp.positive_index,
        int(n_boot),
        int(cfg.min_size),
        int(seed),
        exp,
        groups,
    )


def get_subgroup_ece(
    exp: art.Experiment,
    models: list[str],
    eval_sets: list[str],
    column: str,
    cfg: Any,
    class_index: int,
    n_bins: int = 15,
) -> dict[str, np.ndarray]:
    """{model: ECE per subgroup} of the probability of `class_index` (binary: the positive class); one bincount
    per model, so not cached."""
    al = get_subgroup_inputs(exp, models, eval_sets)
    groups = get_subgroups(exp, models, eval_sets, column, cfg)
    ci = exp.positive_index if len(exp.class_names) == 2 else int(class_index)
    return {
        m: mt.subgroup_ece(al.y == ci, P[:, ci], groups.codes, n_subgroups=groups.n_subgroups, n_bins=n_bins)
        for m, P in al.probs.items()
    }


@st.cache_data(show_spinner=False, max_entries=64)
def _worst_subgroup(
    exp_dir: str,
    exp_stamp: Stamp,
    models: tuple[str, ...],
    m_stamps: tuple[Stamp, ...],
    eval_set: str,
    column: str,
    sg_key: tuple[Any, ...],
    thresholds: tuple[float | None, ...],
    class_index: int,
    binary: bool,
    pos_index: int,
    metric: str,
    min_size: int,
    _exp: art.Experiment,
    _subgroups: Any,
) -> dict[str, tuple[str, float] | None]:
    al = _subgroup_inputs(exp_dir, exp_stamp, models, m_stamps, (eval_set,), _exp)
    y, probs, pos = _one_vs_rest(al, class_index, pos_index, binary)
    res = mt.subgroup_metrics(
        y,
        probs,
        _subgroups.codes,
        al.groups,
        names=_subgroups.names,
        metrics=[metric],
        thresholds=dict(zip(models, thresholds)),
        pos_index=pos,
        n_boot=1,
        min_size=min_size,
    )
    key = res.metrics[0]
    return {m: None if w is None else (w[0], float(w[1].point)) for m, w in mt.worst_subgroup(res, key).items()}


def get_worst_subgroup(
    exp: art.Experiment,
    models: list[str],
    eval_set: str,
    column: str,
    metric: str,
    thresholds: dict[str, float | None],
    class_index: int = 0,
) -> dict[str, tuple[str, float] | None]:
    """For the leaderboard's "worst subgroup" column: per model (subgroup name, value) of the lowest `metric`
    (any leaderboard metric) among `column`'s subgroups with at least the configured minimum size, at the
    thresholds in force; None when no subgroup has a value (cached; points only, no resampling)."""
    cfg = subgroups_config(exp)
    groups = get_subgroups(exp, models, [eval_set], column, cfg)
    key = (tuple(cfg.columns), cfg.regex, cfg.regex_source, tuple(cfg.bins.get(column, ())), cfg.quantiles)
    thr = tuple(None if thresholds.get(m) is None else round(float(thresholds[m]), 6) for m in models)
    return _worst_subgroup(
        str(exp.path),
        metrics_stamp(exp),
        *_models_key(exp, models),
        eval_set,
        column,
        key,
        thr,
        int(class_index),
        len(exp.class_names) == 2,
        exp.positive_index,
        metric,
        int(cfg.min_size),
        exp,
        groups,
    )


@st.cache_data(show_spinner=False, max_entries=32)
def _label_issue_queue(exp_dir: str, stamp: Stamp) -> pd.DataFrame:
    from pipeline.audit import conflicting_sample_ids
    from pipeline.label_issues import read_label_issues

    queue = read_label_issues(exp_dir)
    frames = []
    if queue is not None and len(queue):
        frames.append(queue.assign(source="out-of-fold predictions (cleanlab)"))
    conflicts = sorted(conflicting_sample_ids(exp_dir))
    if conflicts:
        frames.append(
            pd.DataFrame(
                {
                    "sample_id": conflicts,
                    "is_issue": True,
                    "source": "duplicate cluster with conflicting labels (data audit)",
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=["sample_id", "is_issue", "source"])
    return pd.concat(frames, ignore_index=True)


def label_issue_queue(exp: art.Experiment) -> pd.DataFrame:
    """Suspected label errors: cleanlab's ranking of out-of-fold predictions, then duplicate clusters whose labels
    disagree (data audit). Empty when the experiment has neither (no k-fold runs, no audit)."""
    files = [Path(exp.path) / "label_issues.parquet", *sorted((Path(exp.path) / "audit").glob("*.parquet"))]
    return _label_issue_queue(str(exp.path), (*experiment_stamp(exp.path), *file_stamp(*files)))
