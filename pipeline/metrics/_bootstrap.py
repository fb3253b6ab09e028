"""Grouped (cluster) bootstrap of every metric, several models sharing one set of draws.

A cluster-bootstrap resample is a vector of integer multiplicities per group. Every metric here is a
function of a few weighted sums, so a model is reduced once (one sort) to "cells": confusion cells
(true class x predicted class) and score-bin cells (score bin x class). A resample then only needs
the weight of each cell: with groups it is ``group_counts @ H`` (H: sparse group x cell counts);
without groups and when the cells are few, the cell weights are drawn directly as one
multinomial(n, cell sizes / n), which is the exact distribution of the per-sample bootstrap.
Threshold metrics are exact. ROC AUC is exact across score bins and uses the conditional
expectation inside a bin; PR AUC a second-order expansion inside bins plus a constant shift that
makes the unresampled value exact. Both are exact whenever each bin holds one distinct score
(n <= ``max_bins``, or few distinct scores); otherwise a replicate is off by a few percent of the
bootstrap spread at most (tests/test_stats.py measures it), noise that narrows the interval by
well under 1%. Bins are single samples at the top of the ranking and grow to n / max_bins;
multiclass rankings get max_bins / 4 bins each.

For several models call ``bootstrap_models`` (or ``bootstrap_replicates``): group draws are made
once and shared. The same seed gives a model the same interval whichever models come with it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Literal, Mapping, NamedTuple, Sequence

import numpy as np
from numpy.typing import ArrayLike
from scipy import sparse

from pipeline.errors import invalid_argument
from pipeline.metrics._multiclass import _multiclass_count_metrics, _normalize_metric, predict_labels
from pipeline.metrics._ranking import _binary_count_metrics
from pipeline.metrics._validation import (
    _RANK_METRICS,
    BINARY_METRICS,
    LEADERBOARD_METRICS,
    MULTICLASS_METRICS,
    _as_class_labels,
    _as_probs,
    _check_pos_index,
    _check_same_length,
    _group_codes,
    _safe_div,
)

_MAX_BINS = 512
# The multinomial draw costs one binomial per cell; above this many cells, resampling the groups
# (n integer draws per resample) is cheaper.
_JOINT_CELL_LIMIT = 4096
_CHUNK_ELEMENTS = 8_000_000

# --------------------------------------------------------------------------------------------
# Bootstrap engine (see the module docstring).
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RankPrep:
    """Binned sufficient statistics of one ranking, for weighted AUC/AP replicates."""

    cell: np.ndarray  # per sample, original order: bin * 2 + label
    n_cells: int
    n_pos: np.ndarray  # per bin
    n_neg: np.ndarray
    kappa: np.ndarray  # within-bin fraction of (pos, neg) pairs ordered correctly (ties 1/2)
    rp_mean: np.ndarray  # AP moments of within-bin cumulative counts at the positives
    rn_mean: np.ndarray
    suu: np.ndarray
    suv: np.ndarray
    svv: np.ndarray
    exact_auc: float  # on the unresampled data (NaN when one class is missing)
    exact_ap: float
    ap_shift: float = 0.0


@functools.lru_cache(maxsize=256)  # many models ranked on the same samples (subgroups): one loop per size
def _bin_starts(n: int, max_bins: int) -> np.ndarray:
    """Candidate bin starts: single samples at the top, then growing to n / max_bins (read-only, cached)."""
    cap = max(1, math.ceil(n / max_bins))
    starts = []
    pos = 0
    # Precision changes fastest at the top of the ranking, so bins grow with the depth
    # (at most 1/16 of it) until they reach the cap.
    while pos < n:
        starts.append(pos)
        pos += min(cap, max(1, pos // 16))
    out = np.asarray(starts, dtype=np.int64)
    out.setflags(write=False)
    return out


def _rank_prep(yb: np.ndarray, s: np.ndarray, max_bins: int, pred_pos: np.ndarray | None) -> _RankPrep:
    """Sort once and reduce one ranking to per-bin statistics."""
    n = s.size
    # Any order within ties will do (ties are grouped below), so the fast unstable sort is fine.
    order = np.argsort(-s)
    ss = s[order]
    ys = yb[order].astype(np.int64)
    new_block = np.r_[True, ss[1:] != ss[:-1]]
    block_starts = np.flatnonzero(new_block)
    block_id = np.cumsum(new_block) - 1
    cuts = _bin_starts(n, max_bins)
    if pred_pos is not None:
        # When the prediction is "score >= t", make t a bin edge so no bin straddles it.
        k = int(pred_pos.sum())
        if 0 < k < n and pred_pos[order[:k]].all():
            cuts = np.union1d(cuts, [k])
    j = np.searchsorted(block_starts, cuts, side="left")
    bin_start = np.unique(block_starts[j[j < block_starts.size]])  # ties never split
    nb = bin_start.size
    marker = np.zeros(n, dtype=np.int64)
    marker[bin_start] = 1
    bin_of = np.cumsum(marker) - 1
    cp0 = np.r_[0, np.cumsum(ys)]  # positives before position i
    cn0 = np.arange(n + 1) - cp0
    ends = np.r_[block_starts[1:], n]  # one past the end of each block
    block_end = ends[block_id]
    first = bin_start[bin_of]
    rp = cp0[block_end] - cp0[first]  # positives in bin up to the end of own block
    rn = cn0[block_end] - cn0[first]
    n_pos = np.bincount(bin_of, weights=ys, minlength=nb)
    n_neg = np.bincount(bin_of, minlength=nb) - n_pos
    is_pos = ys == 1
    bp = bin_of[is_pos]
    tied_neg = (cn0[block_end] - cn0[block_starts[block_id]])[is_pos]
    psi = (n_neg[bp] - rn[is_pos]) + 0.5 * tied_neg
    psi_bin = np.bincount(bp, weights=psi, minlength=nb)
    rpp, rnp = rp[is_pos].astype(np.float64), rn[is_pos].astype(np.float64)
    rp_mean = _safe_div(np.bincount(bp, weights=rpp, minlength=nb), n_pos)
    rn_mean = _safe_div(np.bincount(bp, weights=rnp, minlength=nb), n_pos)
    u = rpp - rp_mean[bp]
    v = rnp - rn_mean[bp]
    cell = np.empty(n, dtype=np.int64)
    cell[order] = bin_of * 2 + ys
    # Exact point values from the block-end counts (integer arithmetic, as make_sweep).
    tps, fps = cp0[ends], cn0[ends]
    P, N = int(cp0[-1]), int(cn0[-1])
    exact_auc = float(np.dot(np.diff(np.r_[0, fps]), tps + np.r_[0, tps[:-1]]) / (2.0 * P * N)) if P and N else math.nan
    # Not np.dot: a float dot goes to BLAS, whose idle threads then spin and cost ~5 ms of CPU per call (a
    # subgroup table makes hundreds of these calls).
    exact_ap = float((np.diff(np.r_[0, tps]) * (tps / ends)).sum() / P) if P else math.nan
    prep = _RankPrep(
        cell,
        2 * nb,
        n_pos,
        n_neg,
        _safe_div(psi_bin, n_pos * n_neg),
        rp_mean,
        rn_mean,
        np.bincount(bp, weights=u * u, minlength=nb),
        np.bincount(bp, weights=u * v, minlength=nb),
        np.bincount(bp, weights=v * v, minlength=nb),
        exact_auc,
        exact_ap,
    )
    if not P:
        return prep
    # Shift the (second-order accurate) binned AP so the unresampled value is exact.
    counts = np.bincount(prep.cell, minlength=prep.n_cells).astype(np.float64)[:, None]
    approx_ap = _rank_replicates(prep, counts, want_auc=False)["pr_auc"][0]
    return dataclasses.replace(prep, ap_shift=exact_ap - approx_ap)


def _rank_replicates(
    prep: _RankPrep, w: np.ndarray, want_auc: bool = True, want_ap: bool = True
) -> dict[str, np.ndarray]:
    """Weighted ROC AUC / AP for each column of cell weights w (n_cells, b)."""
    wn = w[0::2]
    wp = w[1::2]
    total_p = wp.sum(axis=0)
    total_n = wn.sum(axis=0)
    cp_excl = np.cumsum(wp, axis=0)
    cp_excl -= wp  # positive weight in higher bins
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        if want_auc:
            num = np.einsum("ij,ij->j", wn, cp_excl) + np.einsum("ij,ij,i->j", wp, wn, prep.kappa)
            out["roc_auc"] = num / (total_p * total_n)
        if want_ap:
            tot = wp + wn
            ca_excl = np.cumsum(tot, axis=0)
            ca_excl -= tot
            alpha = wp * _safe_div(1.0, prep.n_pos)[:, None]
            beta = wn * _safe_div(1.0, prep.n_neg)[:, None]
            p0 = alpha * prep.rp_mean[:, None]
            p0 += cp_excl
            a0 = ca_excl
            a0 += alpha * prep.rp_mean[:, None]
            a0 += beta * prep.rn_mean[:, None]
            inv = np.divide(1.0, a0, out=np.zeros_like(a0), where=a0 > 0)  # a0 == 0 => alpha == 0
            contrib = p0 * inv
            contrib *= prep.n_pos[:, None]
            if prep.suu.any() or prep.svv.any():
                aa, ab = alpha * alpha, alpha * beta
                t_xy = aa * prep.suu[:, None] + ab * prep.suv[:, None]
                t_yy = aa * prep.suu[:, None] + 2 * ab * prep.suv[:, None] + beta * beta * prep.svv[:, None]
                inv2 = inv * inv
                contrib -= t_xy * inv2
                contrib += p0 * t_yy * inv2 * inv
            out["pr_auc"] = np.einsum("ij,ij->j", alpha, contrib) / total_p + prep.ap_shift
    return out


@dataclass(frozen=True)
class _ModelPrep:
    """A model reduced to partitions of the samples into cells (internal)."""

    n_classes: int
    pos_index: int
    conf_cell: np.ndarray  # true * K + pred
    ranks: tuple[_RankPrep, ...]  # binary: the positive class; multiclass: every class

    def partitions(self) -> list[tuple[np.ndarray, int]]:
        """(cell id per sample, number of cells) for each partition."""
        return [(self.conf_cell, self.n_classes**2)] + [(r.cell, r.n_cells) for r in self.ranks]


def _prepare_model(
    labels: np.ndarray, probs: np.ndarray, threshold: float | None, pos_index: int, need_rank: bool, max_bins: int
) -> _ModelPrep:
    """Reduce one model's predictions to cells (one sort per ranked class)."""
    K = probs.shape[1]
    pred = predict_labels(probs, thresholds=threshold, pos_index=pos_index)
    ranks: tuple[_RankPrep, ...] = ()
    if need_rank:
        if K == 2:
            ranks = (_rank_prep(labels == pos_index, probs[:, pos_index], max_bins, pred == pos_index),)
        else:
            # K rankings per resample: a quarter of the bins each keeps the cost near the
            # binary case, and the approximation error stays a few percent of the spread.
            per_class = max(64, max_bins // 4)
            ranks = tuple(_rank_prep(labels == k, probs[:, k], per_class, None) for k in range(K))
    return _ModelPrep(K, pos_index, labels * K + pred, ranks)


def _count_metrics(prep: _ModelPrep, conf: np.ndarray) -> dict[str, np.ndarray]:
    """Threshold metrics from confusion-cell weights of shape (K*K, b)."""
    K = prep.n_classes
    cm = conf.reshape(K, K, -1)
    if K == 2:
        p, q = prep.pos_index, 1 - prep.pos_index
        return _binary_count_metrics(cm[q, q], cm[q, p], cm[p, q], cm[p, p])
    return _multiclass_count_metrics(np.moveaxis(cm, -1, 0))


def _undefined_mask(prep: _ModelPrep, conf: np.ndarray) -> dict[str, np.ndarray]:
    """Per binary metric, the resamples where its denominator is zero (the metric is undefined)."""
    if prep.n_classes != 2:
        return {}
    cm = conf.reshape(2, 2, -1)
    p, q = prep.pos_index, 1 - prep.pos_index
    return undefined_count_metrics(cm[q, q], cm[q, p], cm[p, q], cm[p, p])


def undefined_count_metrics(tn: Any, fp: Any, fn: Any, tp: Any) -> dict[str, Any]:
    """Per binary count metric, where its denominator is zero (the metric is undefined) given the counts."""
    no_pos, no_neg = tp + fn == 0, tn + fp == 0
    return {
        "sensitivity": no_pos,
        "specificity": no_neg,
        "fpr": no_neg,
        "youden_j": no_pos | no_neg,
        "precision": tp + fp == 0,
        "npv": tn + fn == 0,
        "f1": 2 * tp + fp + fn == 0,
    }


def _model_replicates(prep: _ModelPrep, weights: list[np.ndarray], metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Metric replicates of one model from its partition weights [(cells, b), ...]."""
    counts = _count_metrics(prep, weights[0])
    out = {m: counts[m] for m in metrics if m not in _RANK_METRICS}
    # A resample without, say, positives says nothing about sensitivity: NaN, left out of the
    # interval, rather than scikit-learn's zero_division value.
    for m, undefined in _undefined_mask(prep, weights[0]).items():
        if m in out and undefined.any():
            out[m] = np.where(undefined, np.nan, out[m])
    wanted = [m for m in metrics if m in _RANK_METRICS]
    if wanted:
        per_class = [
            _rank_replicates(r, w, "roc_auc" in wanted, "pr_auc" in wanted) for r, w in zip(prep.ranks, weights[1:])
        ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
            for m in wanted:
                out[m] = np.nanmean(np.stack([pc[m] for pc in per_class]), axis=0)
    return out


def _prep_points(prep: _ModelPrep, metrics: Sequence[str]) -> dict[str, float]:
    """Exact metric values on the unresampled data, from the prepared model."""
    conf = np.bincount(prep.conf_cell, minlength=prep.n_classes**2).astype(np.float64)[:, None]
    counts = _count_metrics(prep, conf)
    out = {}
    for m in metrics:
        if m in _RANK_METRICS:
            vals = np.array([r.exact_auc if m == "roc_auc" else r.exact_ap for r in prep.ranks])
            if prep.n_classes == 2 and np.isnan(vals[0]):
                n_pos = int(prep.ranks[0].n_pos.sum())
                raise invalid_argument(
                    "y",
                    f"both classes present for {m}",
                    f"{n_pos} positive and {prep.conf_cell.size - n_pos} negative samples",
                )
            out[m] = float(np.nanmean(vals)) if not np.isnan(vals).all() else math.nan
        else:
            out[m] = float(counts[m][0])
    return out


def _point_metrics(
    labels: np.ndarray, probs: np.ndarray, threshold: float | None, pos_index: int, metrics: Sequence[str]
) -> dict[str, float]:
    """Exact metric values on the unresampled data."""
    need_rank = any(m in _RANK_METRICS for m in metrics)
    return _prep_points(_prepare_model(labels, probs, threshold, pos_index, need_rank, 1), metrics)


def _chunks(n_boot: int, per_resample: int, prefer: int | None = None) -> Iterator[int]:
    """Chunk sizes: at most `prefer`, bounding memory at about _CHUNK_ELEMENTS numbers."""
    size = max(1, min(n_boot, prefer or n_boot, _CHUNK_ELEMENTS // max(per_resample, 1)))
    done = 0
    while done < n_boot:
        b = min(size, n_boot - done)
        yield b
        done += b


def _joint_cells(partitions: list[tuple[np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint cell per sample across partitions: (inverse, joint sizes, joint-to-cell maps)."""
    n = partitions[0][0].size
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for cell, n_cells in partitions:
        if radix * n_cells > max(4 * n, 1 << 20):
            # Compress the key so far to keep it small (bincount below needs a small range).
            uniq, key = np.unique(key, return_inverse=True)
            key = key.reshape(-1).astype(np.int64)
            radix = uniq.size
        key = key * n_cells + cell
        radix *= n_cells
    if radix <= max(4 * n, 1 << 20):
        sizes = np.bincount(key, minlength=radix)
        present = np.flatnonzero(sizes)
        lookup = np.zeros(radix, dtype=np.int64)
        lookup[present] = np.arange(present.size)
        inverse = lookup[key]
        sizes = sizes[present]
    else:
        _, inverse, sizes = np.unique(key, return_inverse=True, return_counts=True)
        inverse = inverse.reshape(-1)
    first = np.zeros(sizes.size, dtype=np.int64)
    first[inverse[::-1]] = np.arange(n)[::-1]  # one sample of each joint cell
    maps = np.stack([cell[first] for cell, _ in partitions])
    return inverse, sizes, maps


def _partition_weight_chunks(
    partitions: list[tuple[np.ndarray, int]],
    groups: tuple[np.ndarray, int] | None,
    n_boot: int,
    seed: int | None,
    joint: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Iterator[list[np.ndarray]]:
    """Yield, per chunk of resamples, the cell weights (cells, b) of every partition.

    With ``joint`` (from _joint_cells, per-sample bootstrap only) the joint cell counts are drawn
    as one multinomial(n, sizes / n), which is exactly their bootstrap distribution; otherwise
    group multiplicities are drawn (multinomial over groups) and aggregated with sparse products.
    """
    n = partitions[0][0].size
    rng = np.random.default_rng(seed)
    if joint is not None:
        _, sizes, maps = joint
        n_joint = sizes.size
        p = sizes / n
        agg = [
            sparse.csr_matrix((np.ones(n_joint), (m, np.arange(n_joint))), shape=(c, n_joint))
            for m, (_, c) in zip(maps, partitions)
        ]
        for b in _chunks(n_boot, n_joint):
            draws = np.ascontiguousarray(rng.multinomial(n, p, size=b).T, dtype=np.float64)
            yield [np.asarray(a @ draws) for a in agg]
        return
    codes, n_groups = groups if groups is not None else (np.arange(n), n)
    # The products below cost one read of a group's row of counts per (sample, partition):
    # CSC matrices read those rows in order and scatter into a small output (a few partitions
    # at a time, so it stays in cache), and float32 halves the traffic. float32 is exact here:
    # every sum is an integer below 2**24.
    dtype = np.float32 if n < 2**23 else np.float64
    blocks: list[tuple[sparse.csc_matrix, list[int]]] = []
    start = 0
    while start < len(partitions):
        stop, total = start, 0
        while stop < len(partitions) and (stop == start or total + partitions[stop][1] <= 20_000):
            total += partitions[stop][1]
            stop += 1
        block_sizes = [c for _, c in partitions[start:stop]]
        offsets = np.cumsum([0, *block_sizes])
        rows = np.concatenate([cell + off for (cell, _), off in zip(partitions[start:stop], offsets)])
        cols = np.tile(codes, stop - start)
        h = sparse.csc_matrix((np.ones(rows.size, dtype=dtype), (rows, cols)), shape=(int(offsets[-1]), n_groups))
        blocks.append((h, offsets.tolist()))
        start = stop
    total_cells = sum(c for _, c in partitions)
    # Products run 32 resamples at a time (the scatter target stays in cache); the metrics
    # afterwards run on bigger batches, since their cost is mostly per call.
    batch = max(32, min(n_boot, _CHUNK_ELEMENTS // max(total_cells, 1)))
    for big in _chunks(n_boot, n_groups, batch):
        parts: list[list[np.ndarray]] = []
        for b in _chunks(big, n_groups, 32):
            counts = np.empty((b, n_groups), dtype=dtype)
            for i in range(b):
                counts[i] = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
            counts_t = np.ascontiguousarray(counts.T)
            parts.append([np.asarray(h @ counts_t) for h, _ in blocks])
        out: list[np.ndarray] = []
        for j, (_, block_offsets) in enumerate(blocks):
            w = np.hstack([p[j] for p in parts]).astype(np.float64)
            out.extend(w[a:z] for a, z in zip(block_offsets[:-1], block_offsets[1:]))
        yield out


def _check_boot_args(n_boot: int, alpha: float) -> None:
    """Validate the resample count and the interval level."""
    if not isinstance(n_boot, (int, np.integer)) or isinstance(n_boot, bool) or n_boot < 1:
        raise invalid_argument("n_boot", "a positive int", repr(n_boot))
    if not 0.0 < float(alpha) < 1.0:
        raise invalid_argument("alpha", "a number in (0, 1)", repr(alpha))


def _resolve_metrics(metrics: Sequence[str] | str | None, n_classes: int) -> list[str]:
    """Normalise a metric list for a binary or multiclass task."""
    allowed = BINARY_METRICS if n_classes == 2 else MULTICLASS_METRICS
    if metrics is None:
        return list(LEADERBOARD_METRICS)
    if isinstance(metrics, str):
        metrics = [metrics]
    out = []
    for m in metrics:
        key = _normalize_metric(m, allowed)
        if key not in out:
            out.append(key)
    return out


def _check_models(y: ArrayLike, probs_by_model: Mapping[str, ArrayLike]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validate labels and every model's probabilities against them."""
    if not isinstance(probs_by_model, Mapping) or not probs_by_model:
        raise invalid_argument("probs_by_model", "a non-empty dict {model name: P}", type(probs_by_model).__name__)
    probs: dict[str, np.ndarray] = {}
    labels = np.empty(0, dtype=np.int64)
    shape: tuple[int, ...] = ()
    for name, P in probs_by_model.items():
        arr = _as_probs(f"probs_by_model[{name!r}]", P)
        if not probs:
            labels = _as_class_labels("y", y, arr.shape[1])
            _check_same_length("y", labels, **{f"probs_by_model[{name!r}]": arr})
            if labels.size == 0:
                raise invalid_argument("y", "at least one sample", "an empty array")
            shape = arr.shape
        if arr.shape != shape:
            raise invalid_argument(
                f"probs_by_model[{name!r}]", f"shape {shape} like the first model", f"shape {arr.shape}"
            )
        probs[name] = arr
    return labels, probs


def _bootstrap_core(
    labels: np.ndarray,
    probs: dict[str, np.ndarray],
    groups: ArrayLike | None,
    mets: list[str],
    n_boot: int,
    seed: int | None,
    thresholds: Mapping[str, float | None],
    pos: int,
    paired: bool,
    max_bins: int,
) -> tuple[dict[str, _ModelPrep], dict[str, dict[str, np.ndarray]]]:
    """Prepare every model once and compute its replicates (validated inputs)."""
    if not isinstance(max_bins, (int, np.integer)) or max_bins < 1:
        raise invalid_argument("max_bins", "a positive int", repr(max_bins))
    codes = _group_codes(groups, labels.size)
    need_rank = any(m in _RANK_METRICS for m in mets)
    preps = {
        name: _prepare_model(labels, P, thresholds.get(name), pos, need_rank, max_bins) for name, P in probs.items()
    }
    results: dict[str, dict[str, list[np.ndarray]]] = {name: {m: [] for m in mets} for name in preps}

    def run(names: list[str], joint: tuple | None) -> None:
        parts: list[tuple[np.ndarray, int]] = []
        spans = []
        for name in names:
            p = preps[name].partitions()
            spans.append((len(parts), len(parts) + len(p)))
            parts.extend(p)
        for chunk in _partition_weight_chunks(parts, codes, n_boot, seed, joint):
            for name, (a, b) in zip(names, spans):
                for m, v in _model_replicates(preps[name], chunk[a:b], mets).items():
                    results[name][m].append(v)

    def joint_of(names: list[str]) -> tuple | None:
        if codes is not None:
            return None
        joint = _joint_cells([p for name in names for p in preps[name].partitions()])
        return joint if joint[1].size <= _JOINT_CELL_LIMIT else None

    if paired:
        names = list(preps)
        run(names, joint_of(names))
    else:
        # A model whose joint cells are few is resampled alone (exact multinomial, cheap); the
        # others share one pass of group draws. Either way a model's replicates do not depend on
        # which other models are passed in.
        shared = []
        for name in preps:
            joint = joint_of([name])
            if joint is not None:
                run([name], joint)
            else:
                shared.append(name)
        if shared:
            run(shared, None)
    reps = {name: {m: np.concatenate(v) for m, v in r.items()} for name, r in results.items()}
    return preps, reps


def bootstrap_replicates(
    y: ArrayLike,
    probs_by_model: Mapping[str, ArrayLike],
    groups: ArrayLike | None = None,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int | None = 0,
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
    paired: bool = False,
    max_bins: int = _MAX_BINS,
) -> dict[str, dict[str, np.ndarray]]:
    """Raw bootstrap replicates {model: {metric: (n_boot,)}}; paired=True shares every resample."""
    _check_boot_args(n_boot, 0.05)
    labels, probs = _check_models(y, probs_by_model)
    K = next(iter(probs.values())).shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    mets = _resolve_metrics(metrics, K)
    return _bootstrap_core(labels, probs, groups, mets, n_boot, seed, dict(thresholds or {}), pos, paired, max_bins)[1]


UndefinedAUC = Literal["raise", "nan"]


class Estimate(NamedTuple):
    """A point estimate with its bootstrap interval; a tuple, so `point, low, high = e` still works."""

    point: float
    low: float
    high: float


_NAN3 = Estimate(math.nan, math.nan, math.nan)


def _undefined_auc_metrics(labels: np.ndarray, K: int, pos: int, mets: Sequence[str], undefined_auc: str) -> list[str]:
    """The AUC metrics of `mets` to report as NaN instead of computing: the undefined-AUC policy, in one place.

    A binary AUC is undefined when the labels hold one class only. `undefined_auc="raise"` keeps them (the
    computation raises ValueError naming the counts); `"nan"` reports them as NaN and keeps every threshold
    metric, which stays meaningful (a one-class evaluation set, or what is left after exclusions).
    """
    if undefined_auc not in ("raise", "nan"):
        raise invalid_argument("undefined_auc", "'raise' or 'nan'", repr(undefined_auc))
    if undefined_auc == "raise" or K != 2:
        return []
    n_pos = int(np.count_nonzero(labels == pos))
    if 0 < n_pos < labels.size:
        return []
    return [m for m in mets if m in _RANK_METRICS]


def _percentile_interval(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval ignoring NaN replicates (resamples where the metric is undefined)."""
    finite = reps[~np.isnan(reps)]
    if finite.size == 0:
        return math.nan, math.nan
    lo, hi = np.percentile(finite, [50.0 * alpha, 100.0 * (1.0 - alpha / 2.0)])
    return float(lo), float(hi)


def bootstrap_models(
    y: ArrayLike,
    probs_by_model: Mapping[str, ArrayLike],
    groups: ArrayLike | None = None,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int | None = 0,
    thresholds: Mapping[str, float | None] | None = None,
    pos_index: int = 1,
    alpha: float = 0.05,
    max_bins: int = _MAX_BINS,
    undefined_auc: UndefinedAUC = "raise",
) -> dict[str, dict[str, Estimate]]:
    """Leaderboard CIs for several models: {model: {metric: (point, lo, hi)}}.

    `undefined_auc`: "raise" (ValueError when the labels hold one class and an AUC is asked for) or "nan"
    (those AUCs are (nan, nan, nan); the other metrics are computed as usual).
    """
    _check_boot_args(n_boot, alpha)
    labels, probs = _check_models(y, probs_by_model)
    K = next(iter(probs.values())).shape[1]
    pos = _check_pos_index(pos_index, K) if K == 2 else 0
    mets = _resolve_metrics(metrics, K)
    undefined = _undefined_auc_metrics(labels, K, pos, mets, undefined_auc)
    computed = [m for m in mets if m not in undefined]
    out: dict[str, dict[str, Estimate]] = {name: {} for name in probs}
    if computed:
        preps, reps = _bootstrap_core(
            labels, probs, groups, computed, n_boot, seed, dict(thresholds or {}), pos, False, max_bins
        )
        for name, prep in preps.items():
            point = _prep_points(prep, computed)
            out[name] = {m: Estimate(point[m], *_percentile_interval(reps[name][m], alpha)) for m in computed}
    return {name: {**res, **dict.fromkeys(undefined, _NAN3)} for name, res in out.items()}


def bootstrap_all(
    y: ArrayLike,
    P: ArrayLike,
    groups: ArrayLike | None = None,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int | None = 0,
    threshold: float | None = None,
    pos_index: int = 1,
    alpha: float = 0.05,
    undefined_auc: UndefinedAUC = "raise",
) -> dict[str, Estimate]:
    """(point, lo, hi) for each metric from one shared set of group resamples (`undefined_auc`: see
    `bootstrap_models`)."""
    res = bootstrap_models(
        y,
        {"model": P},
        groups,
        metrics=metrics,
        n_boot=n_boot,
        seed=seed,
        thresholds={"model": threshold},
        pos_index=pos_index,
        alpha=alpha,
        undefined_auc=undefined_auc,
    )
    return res["model"]
