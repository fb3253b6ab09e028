"""Metrics per subgroup (age band, sex, site, scanner...) with grouped bootstrap intervals, the largest gap
between subgroups, calibration per subgroup and the worst subgroup.

One pass of the grouped bootstrap engine (``_bootstrap``) serves every subgroup and model: each model is
reduced per subgroup to its cells (one sort per subgroup), the subgroups' cells are laid side by side in one
partition, and every resample draws whole patients/lesions once for all of them. So a patient drawn twice
brings all its samples twice in every subgroup they fall in, and the subgroups' replicates are paired
(the gap between two subgroups gets its interval from the same resamples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from pipeline.errors import invalid_argument
from pipeline.metrics._bootstrap import (
    _MAX_BINS,
    Estimate,
    _check_boot_args,
    _check_models,
    _count_metrics,
    _model_replicates,
    _ModelPrep,
    _partition_weight_chunks,
    _percentile_interval,
    _prepare_model,
    _resolve_metrics,
    _undefined_mask,
    undefined_count_metrics,
)
from pipeline.metrics._ranking import _binary_count_metrics
from pipeline.metrics._validation import _RANK_METRICS, _check_pos_index, _group_codes

SUBGROUP_METRICS = ("sensitivity", "specificity", "balanced_accuracy", "roc_auc")
DEFAULT_MIN_SIZE = 30
_NAN3 = Estimate(math.nan, math.nan, math.nan)


class Gap(NamedTuple):
    """The largest gap of a metric between two subgroups: best minus worst, with its bootstrap interval."""

    metric: str
    high: str  # the subgroup with the highest value
    low: str  # ... and the lowest
    estimate: Estimate  # high - low


@dataclass(frozen=True)
class SubgroupMetrics:
    """Per model, metric and subgroup an Estimate (NaN for subgroups with too few samples).

    `replicates[model][metric]` holds the bootstrap replicates, shape (n_subgroups, n_boot) (NaN rows for
    too-few subgroups), from the same resamples for every subgroup and model.
    """

    names: tuple[str, ...]
    n: NDArray[np.int64]  # samples per subgroup
    n_groups: NDArray[np.int64]  # distinct patients/lesions per subgroup
    n_pos: NDArray[np.int64]  # positive samples per subgroup
    too_few: NDArray[np.bool_]  # n < min_size: no numbers
    metrics: tuple[str, ...]
    values: dict[str, dict[str, list[Estimate]]]
    replicates: dict[str, dict[str, np.ndarray]] = field(repr=False)
    alpha: float = 0.05

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per (model, subgroup): model, subgroup, n, n_groups, n_pos, too_few and, per metric,
        `<metric>`, `<metric>_low`, `<metric>_high`."""
        out = []
        for model, per_metric in self.values.items():
            for i, name in enumerate(self.names):
                row: dict[str, Any] = {
                    "model": model,
                    "subgroup": name,
                    "n": int(self.n[i]),
                    "n_groups": int(self.n_groups[i]),
                    "n_pos": int(self.n_pos[i]),
                    "too_few": bool(self.too_few[i]),
                }
                for m in self.metrics:
                    e = per_metric[m][i]
                    row.update({m: e.point, f"{m}_low": e.low, f"{m}_high": e.high})
                out.append(row)
        return out


def _check_subgroups(subgroup: ArrayLike, n: int, names: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    codes = np.asarray(subgroup)
    if codes.ndim != 1 or codes.size != n:
        raise invalid_argument("subgroup", f"a 1-D array of {n} subgroup codes", f"shape {codes.shape}")
    if not np.issubdtype(codes.dtype, np.integer):
        uniq, codes = np.unique(codes.astype(str), return_inverse=True)
        return codes.reshape(-1).astype(np.int64), tuple(str(u) for u in uniq) if names is None else tuple(names)
    codes = codes.astype(np.int64)
    if codes.size and codes.min() < 0:
        raise invalid_argument("subgroup", "non-negative subgroup codes", f"min {codes.min()}")
    k = int(codes.max()) + 1 if codes.size else 0
    if names is None:
        return codes, tuple(str(i) for i in range(k))
    if len(names) < k:
        raise invalid_argument("names", f"at least {k} subgroup names", f"{len(names)} names")
    return codes, tuple(names)


def _points(prep: _ModelPrep, mets: Sequence[str]) -> dict[str, float]:
    """Exact values on a subgroup's samples. A metric whose denominator is zero there (sensitivity without
    positives, an AUC without both classes) is NaN, not scikit-learn's zero_division value or an error."""
    conf = np.bincount(prep.conf_cell, minlength=prep.n_classes**2).astype(np.float64)[:, None]
    counts = _count_metrics(prep, conf)
    undefined = _undefined_mask(prep, conf)
    out = {}
    for m in mets:
        if m in _RANK_METRICS:
            vals = np.array([r.exact_auc if m == "roc_auc" else r.exact_ap for r in prep.ranks])
            out[m] = float(np.nanmean(vals)) if not np.isnan(vals).all() else math.nan
        else:
            out[m] = math.nan if m in undefined and bool(undefined[m][0]) else float(counts[m][0])
    return out


def subgroup_metrics(
    y: ArrayLike,
    probs_by_model: Mapping[str, ArrayLike],
    subgroup: ArrayLike,
    groups: ArrayLike | None = None,
    *,
    names: Sequence[str] | None = None,
    metrics: Sequence[str] | None = SUBGROUP_METRICS,
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
    n_boot: int = 1000,
    seed: int | None = 0,
    alpha: float = 0.05,
    min_size: int = DEFAULT_MIN_SIZE,
    max_bins: int = _MAX_BINS,
) -> SubgroupMetrics:
    """Every model's metrics on every subgroup, at its threshold, with patient/lesion-grouped bootstrap CIs.

    `subgroup`: per sample a subgroup code (int index into `names`) or label. A point value equals the
    metric on the subgroup's slice (scikit-learn's definitions); subgroups with fewer than `min_size` samples
    get NaN ("too few"); a metric undefined on a subgroup (an AUC with one class only, a sensitivity without
    positives) is NaN.
    """
    _check_boot_args(n_boot, alpha)
    if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) or min_size < 1:
        raise invalid_argument("min_size", "a positive int", repr(min_size))
    labels, probs = _check_models(y, probs_by_model)
    K = next(iter(probs.values())).shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    mets = _resolve_metrics(metrics, K)
    codes, sg_names = _check_subgroups(subgroup, labels.size, names)
    S = len(sg_names)
    gcodes = _group_codes(groups, labels.size)
    g = gcodes[0] if gcodes is not None else np.arange(labels.size)
    n_sub = np.bincount(codes, minlength=S).astype(np.int64)
    pos_lab = labels == pos if K == 2 else np.zeros(labels.size, dtype=bool)
    n_pos = np.bincount(codes, weights=pos_lab, minlength=S).astype(np.int64)
    # Distinct (subgroup, group) pairs, counted per subgroup.
    pairs = np.unique(codes * (int(g.max()) + 1 if g.size else 1) + g)
    n_groups = np.bincount(pairs // (int(g.max()) + 1 if g.size else 1), minlength=S).astype(np.int64)
    too_few = n_sub < min_size
    eligible = np.flatnonzero(~too_few)
    thr = dict(thresholds or {})
    need_rank = any(m in _RANK_METRICS for m in mets)
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.cumsum(n_sub)]
    idx_of = {int(s): order[starts[s] : starts[s + 1]] for s in eligible}

    values: dict[str, dict[str, list[Estimate]]] = {}
    replicates: dict[str, dict[str, np.ndarray]] = {}
    preps: dict[str, dict[int, _ModelPrep]] = {}
    partitions: list[tuple[np.ndarray, int]] = []
    layout: dict[str, list[tuple[int, list[tuple[int, int, int]]]]] = {}
    cuts: dict[str, dict[int, int | None]] = {}
    labels_by_sub = labels[order]  # subgroups contiguous: each slice below is a view, not a copy
    for name, P in probs.items():
        P_by_sub = P[order]
        preps[name] = {
            s: _prepare_model(
                labels_by_sub[starts[s] : starts[s + 1]],
                P_by_sub[starts[s] : starts[s + 1]],
                thr.get(name),
                pos,
                need_rank,
                max_bins,
            )
            for s in idx_of
        }
        # Binary with the AUC: the confusion cells follow from the score bins (no bin straddles the threshold),
        # so the ranking's partition alone is resampled: half the weight products.
        cuts[name] = {s: _threshold_bin(prep) for s, prep in preps[name].items()} if K == 2 and need_rank else {}
        merged = bool(cuts[name]) and all(k is not None for k in cuts[name].values())
        if not merged:
            cuts[name] = {}
        n_parts = (0 if merged else 1) + (len(next(iter(preps[name].values())).ranks) if preps[name] else 0)
        # One partition per kind (confusion, each ranking): the subgroups' cells side by side, and one
        # extra cell at the end for the samples of too-few subgroups.
        cells = [np.empty(labels.size, dtype=np.int64) for _ in range(n_parts)]
        offsets = [0] * n_parts
        spans: list[tuple[int, list[tuple[int, int]]]] = []
        for s, prep in preps[name].items():
            span = []
            for j, (cell, n_cells) in enumerate(prep.partitions()[1:] if merged else prep.partitions()):
                cells[j][idx_of[s]] = cell + offsets[j]
                span.append((offsets[j], offsets[j] + n_cells))
                offsets[j] += n_cells
            spans.append((s, span))
        rest = too_few[codes]
        first = len(partitions)
        for j in range(n_parts):
            cells[j][rest] = offsets[j]
            partitions.append((cells[j], offsets[j] + 1))
        layout[name] = [(s, [(first + j, a, b) for j, (a, b) in enumerate(span)]) for s, span in spans]
        replicates[name] = {m: np.full((S, n_boot), np.nan) for m in mets}

    done = 0
    for chunk in _partition_weight_chunks(partitions, (g, int(g.max()) + 1), n_boot, seed):
        b = chunk[0].shape[1]
        for name in probs:
            for s, where in layout[name]:
                w = [chunk[j][a:z] for j, a, z in where]
                if cuts[name]:
                    w = [_confusion_from_bins(w[0], cuts[name][s], pos), *w]
                for m, v in _model_replicates(preps[name][s], w, mets).items():
                    replicates[name][m][s, done : done + b] = v
        done += b

    for name in probs:
        per_metric: dict[str, list[Estimate]] = {m: [_NAN3] * S for m in mets}
        for s, prep in preps[name].items():
            point = _points(prep, mets)
            for m in mets:
                if math.isnan(point[m]):
                    continue
                per_metric[m][s] = Estimate(point[m], *_percentile_interval(replicates[name][m][s], alpha))
        values[name] = per_metric
    return SubgroupMetrics(sg_names, n_sub, n_groups, n_pos, too_few, tuple(mets), values, replicates, alpha)


def _threshold_bin(prep: _ModelPrep) -> int | None:
    """How many of the ranking's top score bins are predicted positive, when the prediction is exactly the top
    bins (a binary threshold on the positive score, whose value the ranking made a bin edge); else None."""
    rank = prep.ranks[0]
    bins = rank.cell // 2
    nb = rank.n_cells // 2
    pred_pos = (prep.conf_cell % prep.n_classes) == prep.pos_index
    per_bin = np.bincount(bins, minlength=nb)
    pos_per_bin = np.bincount(bins, weights=pred_pos, minlength=nb)
    k = int(np.count_nonzero(pos_per_bin))
    if not (np.array_equal(pos_per_bin[:k], per_bin[:k]) and not pos_per_bin[k:].any()):
        return None
    return k


def _confusion_from_bins(w: np.ndarray, k: int | None, pos: int) -> np.ndarray:
    """Confusion-cell weights (true * 2 + predicted, b) from score-bin weights (bin * 2 + is_positive, b) whose
    top `k` bins are predicted positive."""
    wn, wp = w[0::2], w[1::2]
    tp, fp = wp[:k].sum(axis=0), wn[:k].sum(axis=0)
    fn, tn = wp[k:].sum(axis=0), wn[k:].sum(axis=0)
    neg = 1 - pos
    conf = np.empty((4, w.shape[1]), dtype=w.dtype)
    conf[neg * 2 + neg], conf[neg * 2 + pos], conf[pos * 2 + neg], conf[pos * 2 + pos] = tn, fp, fn, tp
    return conf


def largest_gap(result: SubgroupMetrics, model: str, metric: str) -> Gap | None:
    """The two subgroups (with numbers) whose `metric` differs most for `model`, and the interval of the
    difference from the shared resamples; None when fewer than two subgroups have a value."""
    if model not in result.values:
        raise invalid_argument("model", f"one of {list(result.values)}", repr(model))
    if metric not in result.metrics:
        raise invalid_argument("metric", f"one of {list(result.metrics)}", repr(metric))
    pts = np.array([e.point for e in result.values[model][metric]])
    ok = np.flatnonzero(~np.isnan(pts))
    if ok.size < 2:
        return None
    hi = int(ok[np.argmax(pts[ok])])
    lo = int(ok[np.argmin(pts[ok])])
    reps = result.replicates[model][metric]
    diff = reps[hi] - reps[lo]
    est = Estimate(float(pts[hi] - pts[lo]), *_percentile_interval(diff, result.alpha))
    return Gap(metric, result.names[hi], result.names[lo], est)


def worst_subgroup(result: SubgroupMetrics, metric: str) -> dict[str, tuple[str, Estimate] | None]:
    """Per model, the subgroup with the lowest `metric` (among subgroups with numbers) and its Estimate;
    None for a model with no subgroup value. For the leaderboard's "worst subgroup" column."""
    if metric not in result.metrics:
        raise invalid_argument("metric", f"one of {list(result.metrics)}", repr(metric))
    out: dict[str, tuple[str, Estimate] | None] = {}
    for model, per_metric in result.values.items():
        pts = np.array([e.point for e in per_metric[metric]])
        ok = np.flatnonzero(~np.isnan(pts))
        out[model] = (
            None
            if ok.size == 0
            else (result.names[int(ok[np.argmin(pts[ok])])], per_metric[metric][int(ok[np.argmin(pts[ok])])])
        )
    return out


def subgroup_point_metrics(
    y: ArrayLike,
    probs_by_model: Mapping[str, ArrayLike],
    subgroup: ArrayLike,
    *,
    n_subgroups: int | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
) -> dict[str, dict[str, NDArray[np.float64]]]:
    """Binary threshold metrics (sensitivity, specificity, balanced accuracy...) per subgroup at each model's
    threshold, without intervals: {model: {metric: (n_subgroups,)}}; NaN where a metric is undefined. One bincount
    per model (the fast path for a threshold move)."""
    labels, probs = _check_models(y, probs_by_model)
    K = next(iter(probs.values())).shape[1]
    if K != 2:
        raise invalid_argument("probs_by_model", "binary (n, 2) probabilities", f"{K} classes")
    pos = _check_pos_index(pos_index, K)
    codes, _ = _check_subgroups(subgroup, labels.size, None)
    S = int(n_subgroups) if n_subgroups is not None else int(codes.max()) + 1
    yb = labels == pos
    base = codes * 4 + yb * 2
    out: dict[str, dict[str, NDArray[np.float64]]] = {}
    for name, P in probs.items():
        t = (thresholds or {}).get(name)
        score = P[:, pos]
        pred = score >= t if t is not None else np.argmax(P, axis=1) == pos
        c = np.bincount(base + pred, minlength=4 * S).reshape(S, 4).astype(np.float64)
        tn, fp, fn, tp = c[:, 0], c[:, 1], c[:, 2], c[:, 3]
        # As subgroup_metrics: a metric without a denominator on a subgroup is NaN.
        undefined = undefined_count_metrics(tn, fp, fn, tp)
        out[name] = {
            k: np.where(undefined.get(k, False), np.nan, np.asarray(v, dtype=np.float64))
            for k, v in _binary_count_metrics(tn, fp, fn, tp).items()
        }
    return out


def subgroup_ece(
    y_true: ArrayLike,
    prob: ArrayLike,
    subgroup: ArrayLike,
    *,
    n_subgroups: int | None = None,
    n_bins: int = 15,
) -> NDArray[np.float64]:
    """Expected calibration error of the positive-class probability in each subgroup (equal-width bins, as
    `expected_calibration_error`); NaN for an empty subgroup."""
    yb = np.asarray(y_true).astype(bool)
    p = np.asarray(prob, dtype=np.float64)
    if yb.shape != p.shape or p.ndim != 1:
        raise invalid_argument("prob", f"a 1-D array like y_true {yb.shape}", f"shape {p.shape}")
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise invalid_argument("n_bins", "a positive int", repr(n_bins))
    codes, _ = _check_subgroups(subgroup, p.size, None)
    S = int(n_subgroups) if n_subgroups is not None else int(codes.max()) + 1
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    cell = codes * n_bins + np.searchsorted(edges[1:-1], p)
    m = S * n_bins
    cnt = np.bincount(cell, minlength=m).reshape(S, n_bins)
    sp = np.bincount(cell, weights=p, minlength=m).reshape(S, n_bins)
    sy = np.bincount(cell, weights=yb.astype(np.float64), minlength=m).reshape(S, n_bins)
    n = cnt.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.abs(sy - sp).sum(axis=1) / n, dtype=np.float64)
