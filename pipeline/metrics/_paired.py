"""Paired comparisons of models on the same samples: DeLong, McNemar, Holm, paired bootstrap, and
disagreement and the mean-probability ensemble."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats

from pipeline.errors import invalid_argument
from pipeline.metrics._bootstrap import (
    _MAX_BINS,
    _bootstrap_core,
    _check_boot_args,
    _check_models,
    _percentile_interval,
    _prep_points,
    _resolve_metrics,
)
from pipeline.metrics._explicit import _explicit_resamples
from pipeline.metrics._multiclass import _normalize_metric, predict_labels
from pipeline.metrics._validation import (
    BINARY_METRICS,
    MULTICLASS_METRICS,
    _as_1d,
    _as_bool_labels,
    _as_probs,
    _as_scores,
    _check_pos_index,
    _check_same_length,
)

# --------------------------------------------------------------------------------------------
# Paired comparisons
# --------------------------------------------------------------------------------------------


def _delong_components(yb: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs and structural components V10 (k, m), V01 (k, n) by midranks (Sun & Xu 2014)."""
    m = int(yb.sum())
    n = yb.size - m
    if m < 2 or n < 2:
        raise invalid_argument(
            "y_true", "at least 2 positive and 2 negative samples for DeLong", f"{m} positive and {n} negative"
        )
    pos = scores[:, yb]
    neg = scores[:, ~yb]
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.hstack([pos, neg]), axis=1)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def delong_variance(y_true: ArrayLike, score: ArrayLike) -> float:
    """DeLong variance of the ROC AUC (structural components, fast midrank algorithm)."""
    yb = _as_bool_labels("y_true", y_true)
    s = _as_scores("score", score)
    _check_same_length("y_true", yb, score=s)
    _, v10, v01 = _delong_components(yb, s[None, :])
    return float(np.var(v10[0], ddof=1) / v10.shape[1] + np.var(v01[0], ddof=1) / v01.shape[1])


def delong_test(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike, alpha: float = 0.05) -> dict[str, float]:
    """DeLong test of AUC_a - AUC_b on the same samples, with a (1 - alpha) Wald CI."""
    yb = _as_bool_labels("y_true", y_true)
    a = _as_scores("score_a", score_a)
    b = _as_scores("score_b", score_b)
    _check_same_length("y_true", yb, score_a=a, score_b=b)
    if not 0.0 < float(alpha) < 1.0:
        raise invalid_argument("alpha", "a number in (0, 1)", repr(alpha))
    aucs, cov = _delong_cov(yb, np.vstack([a, b]))
    return _delong_pair(aucs, cov, 0, 1, alpha)


def _delong_cov(yb: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of k score rows and their DeLong covariance matrix (k, k)."""
    aucs, v10, v01 = _delong_components(yb, scores)
    cov = np.atleast_2d(np.cov(v10)) / v10.shape[1] + np.atleast_2d(np.cov(v01)) / v01.shape[1]
    return aucs, cov


def _delong_pair(aucs: np.ndarray, cov: np.ndarray, i: int, j: int, alpha: float) -> dict[str, float]:
    """DeLong z-test and Wald CI of AUC_i - AUC_j from the joint covariance."""
    var = float(cov[i, i] + cov[j, j] - 2 * cov[i, j])
    se = math.sqrt(max(var, 0.0))
    diff = float(aucs[i] - aucs[j])
    if se > 0:
        z = diff / se
        p = float(2 * stats.norm.sf(abs(z)))
    else:
        # Identical rankings: no variance, and a difference can only be zero.
        z, p = (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    half = float(stats.norm.ppf(1 - alpha / 2)) * se
    return {
        "auc_a": float(aucs[i]),
        "auc_b": float(aucs[j]),
        "diff": diff,
        "se": se,
        "z": z,
        "p_value": p,
        "ci_low": diff - half,
        "ci_high": diff + half,
    }


def mcnemar_test(y: ArrayLike, pred_a: ArrayLike, pred_b: ArrayLike, exact: bool | None = None) -> dict[str, object]:
    """McNemar's test on the discordant pairs; exact binomial when b + c < 25 (as statsmodels)."""
    yt = _as_1d("y", y)
    pa = _as_1d("pred_a", pred_a)
    pb = _as_1d("pred_b", pred_b)
    _check_same_length("y", yt, pred_a=pa, pred_b=pb)
    ca = pa == yt
    cb = pb == yt
    b = int(np.count_nonzero(ca & ~cb))  # only model a right
    c = int(np.count_nonzero(~ca & cb))  # only model b right
    use_exact = (b + c < 25) if exact is None else bool(exact)
    if use_exact:
        statistic = float(min(b, c))
        p = float(min(1.0, 2 * stats.binom.cdf(statistic, b + c, 0.5)))
        method = "exact"
    else:
        # Chi-square with continuity correction, as statsmodels (correction=True).
        if b + c == 0:
            statistic, p = math.nan, 1.0
        else:
            statistic = (abs(b - c) - 1.0) ** 2 / (b + c)
            p = float(stats.chi2.sf(statistic, 1))
        method = "chi2"
    return {"b": b, "c": c, "statistic": statistic, "p_value": p, "method": method}


def holm_correction(p_values: ArrayLike) -> NDArray[np.float64]:
    """Holm step-down adjusted p-values (monotone, capped at 1); NaNs stay NaN and are not counted."""
    p = _as_1d("p_values", p_values).astype(np.float64)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ((p[ok] < 0) | (p[ok] > 1)).any():
        raise invalid_argument("p_values", "values in [0, 1]", f"min {p[ok].min()}, max {p[ok].max()}")
    vals = p[ok]
    m = vals.size
    order = np.argsort(vals, kind="stable")
    adj = np.minimum(1.0, np.maximum.accumulate(vals[order] * np.arange(m, 0, -1)))
    res = np.empty(m)
    res[order] = adj
    out[ok] = res
    return out


def _paired_summary(diffs: np.ndarray, point: float, alpha: float) -> tuple[float, float, float, float]:
    """(diff, lo, hi, p) with the p-value from the bootstrap distribution's side of zero."""
    finite = diffs[~np.isnan(diffs)]
    lo, hi = _percentile_interval(finite, alpha)
    if finite.size == 0:
        return point, lo, hi, math.nan
    # Two-sided: twice the smaller tail beyond 0, with the +1 rule so p is never exactly 0.
    below = (np.count_nonzero(finite <= 0) + 1) / (finite.size + 1)
    above = (np.count_nonzero(finite >= 0) + 1) / (finite.size + 1)
    return point, lo, hi, float(min(1.0, 2 * min(below, above)))


def paired_bootstrap_diff(
    y: ArrayLike,
    P_a: ArrayLike,
    P_b: ArrayLike,
    metric: str | Callable[[np.ndarray, np.ndarray], float] = "roc_auc",
    groups: ArrayLike | None = None,
    *,
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold_a: float | None = None,
    threshold_b: float | None = None,
    pos_index: int = 1,
    alpha: float = 0.05,
) -> tuple[float, float, float, float]:
    """(metric_a - metric_b, lo, hi, p) from the same group resamples for both models."""
    _check_boot_args(n_boot, alpha)
    labels, probs = _check_models(y, {"a": P_a, "b": P_b})
    if callable(metric):
        pa, pb = probs["a"], probs["b"]
        point = float(metric(labels, pa)) - float(metric(labels, pb))
        diffs = np.array(
            [
                float(metric(labels[i], pa[i])) - float(metric(labels[i], pb[i]))
                for i in _explicit_resamples(groups, labels.size, n_boot, seed)
            ]
        )
        return _paired_summary(diffs, point, alpha)
    K = probs["a"].shape[1]
    name = _normalize_metric(metric, BINARY_METRICS if K == 2 else MULTICLASS_METRICS)
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    th = {"a": threshold_a, "b": threshold_b}
    preps, reps = _bootstrap_core(labels, probs, groups, [name], n_boot, seed, th, pos, True, _MAX_BINS)
    point = _prep_points(preps["a"], [name])[name] - _prep_points(preps["b"], [name])[name]
    return _paired_summary(reps["a"][name] - reps["b"][name], point, alpha)


@dataclass(frozen=True)
class PairedDifference:
    """One metric's paired-bootstrap difference (model A - model B) in a `pairwise_comparisons` row.

    The rows keep flat keys (``f"{metric}_diff"``, ``_ci_low``, ``_ci_high``, ``_p``, ``_p_holm``) so they
    cache and tabulate as plain dicts; read them through `PairedDifference.of` rather than composing keys.
    """

    diff: float
    ci_low: float
    ci_high: float
    p: float
    p_holm: float  # Holm-adjusted over the pairs (the unadjusted p when the row has none)

    @classmethod
    def of(cls, row: Mapping[str, Any], metric: str) -> PairedDifference | None:
        """The difference of `metric` in `row`, or None when the row has no bootstrap of it."""
        if f"{metric}_diff" not in row:
            return None
        p = float(row[f"{metric}_p"])
        return cls(
            float(row[f"{metric}_diff"]),
            float(row[f"{metric}_ci_low"]),
            float(row[f"{metric}_ci_high"]),
            p,
            float(row.get(f"{metric}_p_holm", p)),
        )


def pairwise_comparisons(
    y: ArrayLike,
    probs_by_model: Mapping[str, ArrayLike],
    groups: ArrayLike | None = None,
    *,
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
    metrics: Sequence[str] = ("roc_auc", "balanced_accuracy"),
    n_boot: int = 1000,
    seed: int | None = 0,
    alpha: float = 0.05,
) -> list[dict[str, object]]:
    """Every pair (a, b): DeLong, McNemar and paired-bootstrap differences, Holm-adjusted over pairs.

    Binary rows carry auc_*/delong_* for the positive class; multiclass rows carry
    ``delong_by_class`` (one dict per class, Holm-adjusted per class over the pairs). Bootstrap
    keys are ``<metric>_diff``, ``<metric>_ci_low``, ``<metric>_ci_high``, ``<metric>_p``,
    ``<metric>_p_holm``; differences are a - b.
    """
    labels, probs = _check_models(y, probs_by_model)
    _check_boot_args(n_boot, alpha)
    names = list(probs)
    if len(names) < 2:
        raise invalid_argument("probs_by_model", "at least 2 models to compare", f"{len(names)} model")
    K = probs[names[0]].shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    thresholds = dict(thresholds or {})
    mets = _resolve_metrics(list(metrics), K) if metrics else []
    preds = {n: predict_labels(P, thresholds=thresholds.get(n), pos_index=pos) for n, P in probs.items()}
    if mets:
        preps, reps = _bootstrap_core(labels, probs, groups, mets, n_boot, seed, thresholds, pos, True, _MAX_BINS)
        points = {n: _prep_points(p, mets) for n, p in preps.items()}
    classes = [pos] if K == 2 else list(range(K))
    # Structural components per model once (one set of ranks each), not once per pair.
    delong: dict[int, tuple[np.ndarray, np.ndarray] | None] = {}
    for k in classes:
        yb = labels == k
        ok = 2 <= yb.sum() <= yb.size - 2
        delong[k] = _delong_cov(yb, np.vstack([probs[n][:, k] for n in names])) if ok else None
    rows: list[dict[str, object]] = []
    for a, b in itertools.combinations(names, 2):
        row: dict[str, object] = {"model_a": a, "model_b": b}
        by_class = []
        for k in classes:
            dk = delong[k]
            if dk is not None:
                aucs, cov = dk
                d = _delong_pair(aucs, cov, names.index(a), names.index(b), alpha)
            else:
                d = dict.fromkeys(("auc_a", "auc_b", "diff", "se", "z", "p_value", "ci_low", "ci_high"), math.nan)
            by_class.append({"class": k, **d})
        if K == 2:
            d = by_class[0]
            row.update(
                auc_a=d["auc_a"],
                auc_b=d["auc_b"],
                auc_diff=d["diff"],
                auc_se=d["se"],
                auc_ci_low=d["ci_low"],
                auc_ci_high=d["ci_high"],
                delong_z=d["z"],
                delong_p=d["p_value"],
            )
        else:
            row["delong_by_class"] = by_class
        mc = mcnemar_test(labels, preds[a], preds[b])
        row.update(
            mcnemar_b=mc["b"],
            mcnemar_c=mc["c"],
            mcnemar_statistic=mc["statistic"],
            mcnemar_p=mc["p_value"],
            mcnemar_method=mc["method"],
            disagreement=float(np.mean(preds[a] != preds[b])),
        )
        for m in mets:
            diff, lo, hi, p = _paired_summary(reps[a][m] - reps[b][m], points[a][m] - points[b][m], alpha)
            row.update({f"{m}_diff": diff, f"{m}_ci_low": lo, f"{m}_ci_high": hi, f"{m}_p": p})
        rows.append(row)
    if K == 2:
        for key in ["delong_p", "mcnemar_p"] + [f"{m}_p" for m in mets]:
            adj = holm_correction(np.asarray([r[key] for r in rows], dtype=np.float64))
            for r, v in zip(rows, adj):
                r[f"{key}_holm"] = float(v)
    else:
        for key in ["mcnemar_p"] + [f"{m}_p" for m in mets]:
            adj = holm_correction(np.asarray([r[key] for r in rows], dtype=np.float64))
            for r, v in zip(rows, adj):
                r[f"{key}_holm"] = float(v)
        for i in range(K):
            adj = holm_correction([r["delong_by_class"][i]["p_value"] for r in rows])  # type: ignore[index]
            for r, v in zip(rows, adj):
                r["delong_by_class"][i]["p_holm"] = float(v)  # type: ignore[index]
    return rows


# --------------------------------------------------------------------------------------------
# Disagreement and ensembles
# --------------------------------------------------------------------------------------------


def _stack_preds(preds_by_model: Mapping[str, ArrayLike]) -> tuple[list[str], np.ndarray]:
    """Names and an (m, n) array of predicted labels, lengths checked."""
    if not isinstance(preds_by_model, Mapping) or not preds_by_model:
        raise invalid_argument("preds_by_model", "a non-empty dict {model name: labels}", type(preds_by_model).__name__)
    names = list(preds_by_model)
    arrays = [_as_1d(f"preds_by_model[{n!r}]", preds_by_model[n]) for n in names]
    for n, a in zip(names[1:], arrays[1:]):
        _check_same_length(f"preds_by_model[{names[0]!r}]", arrays[0], **{f"preds_by_model[{n!r}]": a})
    return names, np.vstack(arrays)


def disagreement_matrix(preds_by_model: Mapping[str, ArrayLike]) -> tuple[list[str], NDArray[np.float64]]:
    """(names, M) with M[i, j] the fraction of samples where models i and j predict differently."""
    names, stacked = _stack_preds(preds_by_model)
    m = len(names)
    out = np.zeros((m, m))
    for i, j in itertools.combinations(range(m), 2):
        out[i, j] = out[j, i] = np.mean(stacked[i] != stacked[j]) if stacked.shape[1] else math.nan
    return names, out


def unique_correct(y: ArrayLike, preds_by_model: Mapping[str, ArrayLike]) -> dict[str, int]:
    """Per model, the number of samples that only this model classifies correctly."""
    names, stacked = _stack_preds(preds_by_model)
    yt = _as_1d("y", y)
    _check_same_length("y", yt, preds_by_model=stacked[0])
    correct = stacked == yt[None, :]
    only = correct & (correct.sum(axis=0) == 1)[None, :]
    return {n: int(c) for n, c in zip(names, only.sum(axis=1))}


def ensemble_mean(probs_by_model: Mapping[str, ArrayLike]) -> NDArray[np.float64]:
    """Mean probability over models (the ensemble row of the leaderboard)."""
    if not isinstance(probs_by_model, Mapping) or not probs_by_model:
        raise invalid_argument("probs_by_model", "a non-empty dict {model name: P}", type(probs_by_model).__name__)
    arrays = {n: _as_probs(f"probs_by_model[{n!r}]", P) for n, P in probs_by_model.items()}
    first_name, first = next(iter(arrays.items()))
    for n, a in arrays.items():
        if a.shape != first.shape:
            raise invalid_argument(
                f"probs_by_model[{n!r}]", f"shape {first.shape} like {first_name!r}", f"shape {a.shape}"
            )
    return np.asarray(np.mean(np.stack(list(arrays.values())), axis=0))
