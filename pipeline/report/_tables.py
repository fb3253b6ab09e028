"""Comparison data of the report and the Paired comparison page: paired-test rows oriented and laid out as
tables and matrices, curve points, the leaderboard frame, the data set summary and the artifact fingerprint."""

from __future__ import annotations

import hashlib
import itertools
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline import artifacts as art
from pipeline import metrics as mt
from pipeline.errors import invalid_argument

_METRIC_NAMES = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
}

# ---------------------------------------------------------------- paired-test rows -> tables and verdicts

_FLIP_SWAP = (("model_a", "model_b"), ("auc_a", "auc_b"), ("mcnemar_b", "mcnemar_c"))


def _flip_interval(d: dict[str, Any], diff: str, low: str, high: str) -> None:
    """Negate a difference and its interval in place (a - b becomes b - a)."""
    if diff in d:
        d[diff] = -d[diff]
    if low in d and high in d:
        d[low], d[high] = -d[high], -d[low]


def orient_pair(rows: Sequence[Mapping[str, Any]], a: str, b: str) -> dict[str, Any]:
    """The `pairwise_comparisons` row of (a, b) with differences as a - b, whichever order it was computed in."""
    for row in rows:
        if (row["model_a"], row["model_b"]) == (a, b):
            out = dict(row)
            if "delong_by_class" in out:
                out["delong_by_class"] = [dict(d) for d in out["delong_by_class"]]
            return out
        if (row["model_a"], row["model_b"]) == (b, a):
            out = dict(row)
            for x, y in _FLIP_SWAP:
                if x in out and y in out:
                    out[x], out[y] = out[y], out[x]
            _flip_interval(out, "auc_diff", "auc_ci_low", "auc_ci_high")
            if "delong_z" in out:
                out["delong_z"] = -out["delong_z"]
            for key in list(out):
                if key.endswith("_diff") and key != "auc_diff":
                    m = key[: -len("_diff")]
                    _flip_interval(out, key, f"{m}_ci_low", f"{m}_ci_high")
            if "delong_by_class" in out:
                flipped = []
                for d in out["delong_by_class"]:
                    d = dict(d)
                    d["auc_a"], d["auc_b"] = d["auc_b"], d["auc_a"]
                    d["z"] = -d["z"]
                    _flip_interval(d, "diff", "ci_low", "ci_high")
                    flipped.append(d)
                out["delong_by_class"] = flipped
            return out
    raise invalid_argument("a, b", "two models compared in `rows`", f"{a!r}, {b!r}")


def _delong_entry(row: Mapping[str, Any], class_index: int | None) -> dict[str, float]:
    """DeLong numbers of a row: the binary ones, or those of one class (multiclass)."""
    if "delong_by_class" not in row:
        return {
            "auc_a": row["auc_a"],
            "auc_b": row["auc_b"],
            "diff": row["auc_diff"],
            "ci_low": row["auc_ci_low"],
            "ci_high": row["auc_ci_high"],
            "z": row["delong_z"],
            "p_value": row["delong_p"],
            "p_holm": row.get("delong_p_holm", row["delong_p"]),
        }
    by_class = row["delong_by_class"]
    k = 0 if class_index is None else int(class_index)
    d = next((e for e in by_class if int(e["class"]) == k), None)
    if d is None:
        raise invalid_argument("class_index", f"one of {[e['class'] for e in by_class]}", class_index)
    return {**d, "p_holm": d.get("p_holm", d["p_value"])}


def delong_class_grid(
    rows: Sequence[Mapping[str, Any]], class_names: Sequence[str]
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(pair labels "A − B", AUC differences, Holm-adjusted p) with one row per pair and one column per class."""
    labels = [f"{r['model_a']} − {r['model_b']}" for r in rows]
    K = len(class_names)
    diff = np.full((len(rows), K), np.nan)
    p = np.full((len(rows), K), np.nan)
    for i, r in enumerate(rows):
        for d in r["delong_by_class"]:
            k = int(d["class"])
            diff[i, k], p[i, k] = d["diff"], d.get("p_holm", d["p_value"])
    return labels, diff, p


def pair_tables(
    row: Mapping[str, Any], metrics: Sequence[str], class_names: Sequence[str], n: int, alpha: float = 0.05
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """(tests table, DeLong-per-class table or None) of one oriented pair on `n` samples; p-values as floats.

    The McNemar row carries the paired accuracy difference (b - c) / n with its Wald interval
    (se = sqrt(b + c - (b - c)^2 / n) / n), the interval that goes with McNemar's test.
    """
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2))
    rows = []
    if "delong_by_class" not in row:
        d = _delong_entry(row, None)
        rows.append(
            {
                "test": f"DeLong: ROC AUC {d['auc_a']:.3f} vs {d['auc_b']:.3f}",
                "difference (A - B)": d["diff"],
                "CI low": d["ci_low"],
                "CI high": d["ci_high"],
                "p-value": d["p_value"],
                "p (Holm)": d["p_holm"],
            }
        )
    b, c = int(row["mcnemar_b"]), int(row["mcnemar_c"])
    acc = (b - c) / n if n else float("nan")
    se = math.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n if n else float("nan")
    rows.append(
        {
            "test": f"McNemar ({row['mcnemar_method']}), accuracy: only A right {b}, only B right {c}",
            "difference (A - B)": acc,
            "CI low": acc - z * se,
            "CI high": acc + z * se,
            "p-value": row["mcnemar_p"],
            "p (Holm)": row.get("mcnemar_p_holm", row["mcnemar_p"]),
        }
    )
    for m in metrics:
        pd_m = mt.PairedDifference.of(row, m)
        if pd_m is None:
            continue
        rows.append(
            {
                "test": f"Paired bootstrap: {_METRIC_NAMES.get(m, m)}",
                "difference (A - B)": pd_m.diff,
                "CI low": pd_m.ci_low,
                "CI high": pd_m.ci_high,
                "p-value": pd_m.p,
                "p (Holm)": pd_m.p_holm,
            }
        )
    tests = pd.DataFrame(rows).set_index("test")
    per_class = None
    if "delong_by_class" in row:
        per_class = pd.DataFrame(
            [
                {
                    "class": class_names[int(d["class"])],
                    "AUC A": d["auc_a"],
                    "AUC B": d["auc_b"],
                    "difference (A - B)": d["diff"],
                    "CI low": d["ci_low"],
                    "CI high": d["ci_high"],
                    "p-value": d["p_value"],
                    "p (Holm)": d.get("p_holm", d["p_value"]),
                }
                for d in row["delong_by_class"]
            ]
        ).set_index("class")
    return tests, per_class


def pairs_table(
    rows: Sequence[Mapping[str, Any]],
    metric: str = "roc_auc",
    class_names: Sequence[str] | None = None,
    class_index: int | None = None,
) -> pd.DataFrame:
    """One line per pair: AUC difference with DeLong p, `metric` difference with bootstrap p, McNemar, disagreement."""
    out = []
    for row in rows:
        d = _delong_entry(row, class_index)
        line = {
            "A": row["model_a"],
            "B": row["model_b"],
            "AUC diff (A - B)": d["diff"],
            "AUC 95% CI": _ci_text(d["ci_low"], d["ci_high"]),
            "DeLong p": d["p_value"],
            "DeLong p (Holm)": d["p_holm"],
        }
        boot = mt.PairedDifference.of(row, metric) if metric != "roc_auc" else None
        if boot is not None:
            name = _METRIC_NAMES.get(metric, metric)
            line.update(
                {
                    f"{name} diff": boot.diff,
                    f"{name} 95% CI": _ci_text(boot.ci_low, boot.ci_high),
                    f"{name} p (Holm)": boot.p_holm,
                }
            )
        line.update(
            {
                "McNemar p": row["mcnemar_p"],
                "McNemar p (Holm)": row.get("mcnemar_p_holm", np.nan),
                "disagree": row["disagreement"],
            }
        )
        out.append(line)
    return pd.DataFrame(out)


def _ci_text(lo: float, hi: float) -> str:
    return f"[{lo:+.3f}, {hi:+.3f}]" if np.isfinite(lo) and np.isfinite(hi) else "—"


def pair_matrix(
    rows: Sequence[Mapping[str, Any]],
    names: Sequence[str],
    test: str = "delong",
    metric: str = "roc_auc",
    class_index: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(difference, Holm-adjusted p) matrices over `names`; cell (i, j) is row model i minus column model j.

    `test` is "delong" (AUC), "bootstrap" (paired bootstrap of `metric`) or "mcnemar" (difference in the
    number of samples only one of the two gets right). The diagonal is NaN.
    """
    if test not in ("delong", "bootstrap", "mcnemar"):
        raise invalid_argument("test", "'delong', 'bootstrap' or 'mcnemar'", repr(test))
    k = len(names)
    diff = np.full((k, k), np.nan)
    p = np.full((k, k), np.nan)
    for i, j in itertools.permutations(range(k), 2):
        row = orient_pair(rows, names[i], names[j])
        if test == "delong":
            d = _delong_entry(row, class_index)
            diff[i, j], p[i, j] = d["diff"], d["p_holm"]
        elif test == "bootstrap":
            boot = mt.PairedDifference.of(row, metric)
            if boot is None:
                raise invalid_argument("metric", "a metric bootstrapped in `rows`", repr(metric))
            diff[i, j], p[i, j] = boot.diff, boot.p_holm
        else:
            diff[i, j], p[i, j] = row["mcnemar_b"] - row["mcnemar_c"], row["mcnemar_p_holm"]
    return diff, p


# ---------------------------------------------------------------- curves (numbers only; figures.py draws them)


def curve_points(y_bool: np.ndarray, score: np.ndarray, max_points: int = mt.MAX_CURVE_POINTS) -> dict[str, Any]:
    """Downsampled ROC (fpr, tpr, thr) and PR (recall, precision, thr) of one score, with AUC and AP."""
    sweep = mt.make_sweep(y_bool, score)
    return {**mt.curve_summary(sweep, max_points), "sweep": sweep}


# ---------------------------------------------------------------- fingerprint


def _sha256_file(path: Path, h: Any) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def artifact_fingerprint(exp_dir: Path | str, models: Sequence[str]) -> dict[str, str]:
    """Dataset fingerprint (experiment.json), a SHA-256 of the models' prediction files, and both combined."""
    exp_dir = Path(exp_dir)
    meta = art.read_meta(exp_dir)
    dataset = str((meta.get("dataset") or {}).get("fingerprint") or "none")
    h = hashlib.sha256()
    for model in sorted(models):
        h.update(model.encode() + b"\0")
        path = art.model_dir(exp_dir, model) / art.PREDICTIONS_FILE
        if not path.is_file():
            raise art.ArtifactError(path, "file is missing")
        _sha256_file(path, h)
    predictions = h.hexdigest()[:16]
    combined = hashlib.sha256(f"{dataset}|{predictions}".encode()).hexdigest()[:12]
    return {"dataset": dataset, "predictions": predictions, "combined": combined}


def leaderboard_frame(
    results: Mapping[str, Mapping[str, tuple[float, float, float]]], configs: Mapping[str, Mapping[str, Any]]
) -> pd.DataFrame:
    """One row per model: metric point/lo/hi, then size and speed from config.json (as the dashboard's)."""
    rows = []
    for model, res in results.items():
        row: dict[str, Any] = {"model": model}
        for m in mt.LEADERBOARD_METRICS:
            point, lo, hi = res.get(m, (np.nan, np.nan, np.nan))
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = float(point), float(lo), float(hi)
        cfg = configs.get(model, {})
        for key in (
            "params",
            "model_bytes",
            "infer_ms_per_image",
            "train_seconds",
            "cpu_seconds",
            "epochs_run",
            "best_epoch",
        ):
            val = cfg.get(key)
            row[key] = float(val) if isinstance(val, (int, float)) and art.is_finite_number(val) else np.nan
        row["stop_reason"] = str(cfg["stop_reason"]) if isinstance(cfg.get("stop_reason"), str) else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("model") if rows else pd.DataFrame()


def ensemble_config(configs: Mapping[str, Mapping[str, Any]], models: Sequence[str]) -> dict[str, float]:
    """The ensemble's cost: the sum of its members' size, speed and training time (NaN if one is unknown)."""
    out = {}
    for key in ("params", "model_bytes", "infer_ms_per_image", "train_seconds"):
        vals = [configs.get(m, {}).get(key) for m in models]
        nums = [float(v) for v in vals if isinstance(v, (int, float)) and art.is_finite_number(v)]
        out[key] = float(sum(nums)) if vals and len(nums) == len(vals) else float("nan")
    return out


def _resolve_thresholds(
    binary: bool, names: Sequence[str], thresholds: Mapping[str, float | None] | None
) -> dict[str, float | None]:
    """Binary: each model's threshold (0.5 when not given); multiclass: None (argmax)."""
    thresholds = dict(thresholds or {})
    out: dict[str, float | None] = {}
    for n in names:
        if not binary:
            out[n] = None
            continue
        t = thresholds.get(n)
        t = mt.DEFAULT_THRESHOLD if t is None else float(t)
        if not (math.isfinite(t) and 0.0 <= t <= 1.0):
            raise invalid_argument("thresholds", f"a threshold in [0, 1] for model {n!r}", t)
        out[n] = t
    return out


def dataset_summary(exp: art.Experiment) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(class counts + groups per split, samples/groups/splits per evaluation set) of an experiment: the
    Overview page's and the report's data set tables."""
    s = exp.samples
    names = exp.class_names
    label_name = pd.Categorical.from_codes(s["label"].to_numpy(), categories=names)
    split_col = s["split"].fillna("?").astype(str)
    counts = pd.crosstab(split_col, label_name).reindex(columns=names, fill_value=0)
    counts.index.name = "split"
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    counts["groups"] = s.groupby(split_col)["group"].nunique().reindex(counts.index).fillna(0).astype(int)
    by_eval = s.groupby("eval_set", dropna=False)
    per_set = pd.DataFrame(
        {
            "samples": by_eval.size(),
            "groups (patients/lesions)": by_eval["group"].nunique(),
            "splits": by_eval["split"].agg(lambda v: ", ".join(sorted(map(str, v.dropna().unique())))),
        }
    )
    per_set.index.name = "evaluation set"
    return counts, per_set
