"""Pointwise confidence bands of ROC and PR curves by grouped bootstrap (the shaded band around a curve)."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import sparse

from pipeline.errors import invalid_argument


def bootstrap_curve_bands(
    y_bool: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    n_boot: int = 200,
    seed: int = 0,
    grid_points: int = 101,
    level: float = 0.95,
    max_bins: int = 1024,
) -> dict[str, Any]:
    """Pointwise grouped-bootstrap bands of the ROC (TPR on an FPR grid) and PR (precision on a recall grid).

    Scores are sorted once and cut into at most
    `max_bins` bins of whole distinct scores (exact when there are fewer distinct scores); a resample is
    then a vector of group multiplicities, and all resamples' (bin x label) weights come from one sparse
    product, so 200 resamples of 300,000 samples cost well under a second.
    Returns {"roc": (fpr_grid, lo, hi), "pr": (recall_grid, lo, hi)}, or None values when undefined.
    """
    y_bool = np.asarray(y_bool, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    if y_bool.shape != score.shape or score.shape != np.shape(groups):
        raise invalid_argument(
            "y_bool, score, groups", "equal shapes", f"{y_bool.shape}, {score.shape}, {np.shape(groups)}"
        )
    grid = np.linspace(0.0, 1.0, grid_points)
    empty: dict[str, Any] = {"roc": None, "pr": None}
    if score.size == 0 or y_bool.all() or not y_bool.any():
        return empty
    order = np.argsort(-score, kind="mergesort")
    s_sorted = score[order]
    rank = np.r_[0, np.cumsum(s_sorted[1:] != s_sorted[:-1])]  # index of each sample's distinct score
    n_distinct = int(rank[-1]) + 1
    n_bins = min(max_bins, n_distinct)
    bins = np.empty(score.size, dtype=np.int64)
    bins[order] = rank * n_bins // n_distinct  # monotone in score, ties never split
    codes = np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
    n_groups = int(codes.max()) + 1
    cells = sparse.csr_matrix((np.ones(score.size), (codes, bins * 2 + y_bool)), shape=(n_groups, 2 * n_bins))
    rng = np.random.default_rng(seed)
    rocs, prs = [], []
    chunk = max(1, min(int(n_boot), 4_000_000 // max(n_groups, 1)))
    done = 0
    while done < n_boot:
        b = min(chunk, int(n_boot) - done)
        draws = rng.integers(0, n_groups, (b, n_groups))
        mult = np.bincount((draws + n_groups * np.arange(b)[:, None]).ravel(), minlength=b * n_groups)
        weights = np.asarray((cells.T @ mult.reshape(b, n_groups).T.astype(np.float64)).T)  # (b, 2 * n_bins)
        tp = np.cumsum(weights[:, 1::2], axis=1)
        fp = np.cumsum(weights[:, 0::2], axis=1)
        for r in range(b):
            n_pos, n_neg = tp[r, -1], fp[r, -1]
            if n_pos <= 0 or n_neg <= 0:
                continue
            tpr, fpr = np.r_[0.0, tp[r] / n_pos], np.r_[0.0, fp[r] / n_neg]
            rocs.append(np.interp(grid, fpr, tpr))
            # Start at (recall 0, precision 1), scikit-learn's end point; zero-weight leading bins never match.
            precision = np.r_[1.0, tp[r] / np.maximum(tp[r] + fp[r], 1e-12)]
            recall = np.r_[0.0, tp[r] / n_pos]
            k = np.minimum(np.searchsorted(recall, grid, side="left"), recall.size - 1)
            prs.append(precision[k])
        done += b
    if not rocs:
        return empty
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    roc_lo, roc_hi = np.percentile(np.array(rocs), q, axis=0)
    pr_lo, pr_hi = np.percentile(np.array(prs), q, axis=0)
    return {"roc": (grid, roc_lo, roc_hi), "pr": (grid, pr_lo, pr_hi)}
