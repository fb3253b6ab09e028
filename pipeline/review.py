"""Misclassification review: several models' predictions aligned on one sample axis, and vectorised filters.

Everything is NumPy over arrays built once per (experiment, models, evaluation set), so filtering 100,000+
samples on every widget move costs milliseconds: no per-sample Python loops, no DataFrame row access.
No Streamlit, no TensorFlow, nothing happens on import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.errors import invalid_argument
from pipeline.metrics import decide

if TYPE_CHECKING:
    from pipeline.comparison import Aligned

OUTCOMES = ("wrong", "right", "all")
ERROR_TYPES = ("any", "fp", "fn")
AGREEMENTS = ("any", "disagree", "all_wrong")
SORTS = ("confidence_desc", "confidence_asc", "sample_id")
TAG_ANY, TAG_TAGGED, TAG_UNTAGGED = "(any)", "(tagged)", "(untagged)"


def _invalid(name: str, expected: str, received: object) -> ValueError:
    """`errors.invalid_argument` with the received value quoted (repr), as this module's messages always were."""
    return invalid_argument(name, expected, repr(received))


@dataclass(frozen=True)
class ReviewArrays:
    """Predictions of `models` aligned on the samples of one evaluation set (read-only arrays)."""

    models: tuple[str, ...]
    sample_ids: np.ndarray  # object str, shape (n,)
    y: np.ndarray  # int64 true class, shape (n,)
    P: np.ndarray  # float64, shape (m, n, K); NaN where a model has no prediction
    has: np.ndarray  # bool, shape (m, n): the model predicted this sample
    index: pd.Index  # sample_id -> position, for O(k) lookups of k ids

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.P.shape[2])


@dataclass(frozen=True)
class ReviewFilter:
    """The gallery's filter: which model is judged, and which of its samples to show."""

    model: str
    outcome: str = "wrong"  # the focus model's answer: "wrong", "right" or "all"
    true_classes: tuple[int, ...] = ()  # empty: every class
    pred_classes: tuple[int, ...] = ()  # the focus model's predicted class; empty: every class
    error_type: str = "any"  # binary only: "fp" (negative called positive), "fn", or "any"
    confidence: tuple[float, float] = (0.0, 1.0)  # focus model's probability of its predicted class
    agreement: str = "any"  # "disagree": some models right, some wrong; "all_wrong": no model right
    tag: str = TAG_ANY  # a mentor tag, TAG_TAGGED, TAG_UNTAGGED or TAG_ANY


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def align_predictions(
    sample_ids: Sequence[str] | np.ndarray,
    y: Sequence[int] | np.ndarray,
    per_model: Mapping[str, tuple[np.ndarray, np.ndarray]],
    n_classes: int,
) -> ReviewArrays:
    """Align each model's (sample_ids, P) on the given samples; ids a model lacks get NaN and has=False."""
    ids = np.asarray(sample_ids, dtype=object)
    labels = np.asarray(y, dtype=np.int64)
    if ids.shape != labels.shape or ids.ndim != 1:
        raise _invalid("y", f"a 1-D array as long as `sample_ids` ({ids.shape})", f"shape {labels.shape}")
    if not per_model:
        raise _invalid("per_model", "at least one model", "an empty mapping")
    index = pd.Index(ids)
    if not index.is_unique:
        raise _invalid("sample_ids", "unique ids", f"{int(index.duplicated().sum())} duplicates")
    m, n = len(per_model), ids.shape[0]
    P = np.full((m, n, n_classes), np.nan)
    has = np.zeros((m, n), dtype=bool)
    for i, (model, (m_ids, m_P)) in enumerate(per_model.items()):
        probs = np.asarray(m_P, dtype=np.float64)
        if probs.ndim != 2 or probs.shape[1] != n_classes or probs.shape[0] != len(m_ids):
            raise _invalid(
                f"per_model[{model!r}]", f"(ids, P) with P of shape ({len(m_ids)}, {n_classes})", f"shape {probs.shape}"
            )
        pos = index.get_indexer(pd.Index(np.asarray(m_ids, dtype=object)))
        keep = pos >= 0
        P[i, pos[keep]] = probs[keep]
        has[i, pos[keep]] = True
    return ReviewArrays(tuple(per_model), _readonly(ids), _readonly(labels), _readonly(P), _readonly(has), index)


def from_aligned(aligned: Aligned) -> ReviewArrays:
    """The gallery's arrays from `comparison.load_aligned(..., join="outer")` (or an inner join: every model
    then has every sample)."""
    models = tuple(aligned.models)
    if not models:
        raise _invalid("aligned", "at least one model", "none")
    has = aligned.has or {m: np.ones(aligned.n, dtype=bool) for m in models}
    P = np.stack([np.asarray(aligned.probs[m], dtype=np.float64) for m in models])
    mask = np.stack([np.asarray(has[m], dtype=bool) for m in models])
    ids = np.asarray(aligned.sample_ids, dtype=object)
    return ReviewArrays(
        models,
        _readonly(ids.copy()),
        _readonly(np.asarray(aligned.y, dtype=np.int64).copy()),
        _readonly(P),
        _readonly(mask),
        pd.Index(ids),
    )


def predictions(arrays: ReviewArrays, thresholds: Sequence[float | None], pos_index: int = 1) -> np.ndarray:
    """Predicted class per (model, sample), -1 where a model has no prediction.

    Binary with a threshold: `pos_index` when P[pos_index] >= threshold (as `metrics.predict_labels`);
    otherwise argmax.
    """
    if len(thresholds) != len(arrays.models):
        raise _invalid("thresholds", f"one per model ({len(arrays.models)})", f"{len(thresholds)} values")
    pred = np.empty(arrays.has.shape, dtype=np.int64)
    for i, thr in enumerate(thresholds):
        # rows without a prediction are NaN: masked below
        pred[i] = decide(arrays.P[i], threshold=thr, pos_index=pos_index)
    pred[~arrays.has] = -1
    return pred


def confidences(arrays: ReviewArrays, pred: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
    """Each model's probability of its own predicted class, shape (m, n) or (m, len(positions)); NaN where
    it has no prediction. `pred` is the full (m, n) output of `predictions`."""
    P, has = arrays.P, arrays.has
    if positions is not None:
        P, has, pred = P[:, positions], has[:, positions], pred[:, positions]
    safe = np.maximum(pred, 0)
    conf = np.take_along_axis(P, safe[:, :, None], axis=2)[:, :, 0]
    return np.where(has, conf, np.nan)


def _model_confidence(arrays: ReviewArrays, pred: np.ndarray, k: int, positions: np.ndarray | None) -> np.ndarray:
    """Model k's probability of its predicted class at `positions` (all samples when None); NaN if absent."""
    P, p, has = arrays.P[k], pred[k], arrays.has[k]
    if positions is not None:
        P, p, has = P[positions], p[positions], has[positions]
    conf = P[np.arange(p.shape[0]), np.maximum(p, 0)]
    return np.where(has, conf, np.nan)


def tag_mask(arrays: ReviewArrays, sample_ids: Collection[str]) -> np.ndarray:
    """Boolean mask (n,) of the samples whose id is in `sample_ids` (ids not in this set are ignored)."""
    mask = np.zeros(arrays.n, dtype=bool)
    if sample_ids:
        pos = arrays.index.get_indexer(list(sample_ids))
        mask[pos[pos >= 0]] = True
    return mask


def _check_filter(f: ReviewFilter, arrays: ReviewArrays) -> int:
    if f.model not in arrays.models:
        raise _invalid("model", f"one of {list(arrays.models)}", f.model)
    for name, value, allowed in (
        ("outcome", f.outcome, OUTCOMES),
        ("error_type", f.error_type, ERROR_TYPES),
        ("agreement", f.agreement, AGREEMENTS),
    ):
        if value not in allowed:
            raise _invalid(name, f"one of {list(allowed)}", value)
    lo, hi = f.confidence
    if not 0.0 <= lo <= hi <= 1.0:
        raise _invalid("confidence", "a range (lo, hi) with 0 <= lo <= hi <= 1", f.confidence)
    return arrays.models.index(f.model)


def filter_mask(
    arrays: ReviewArrays,
    pred: np.ndarray,
    f: ReviewFilter,
    pos_index: int = 1,
    tagged: Mapping[str, Collection[str]] | None = None,
) -> np.ndarray:
    """Boolean mask (n,) of the samples that pass filter `f`; `tagged` maps a tag to its sample ids."""
    k = _check_filter(f, arrays)
    y = arrays.y
    has = arrays.has
    correct = (pred == y[None, :]) & has
    mask = has[k].copy()
    if f.outcome == "wrong":
        mask &= ~correct[k]
    elif f.outcome == "right":
        mask &= correct[k]
    if f.true_classes:
        mask &= np.isin(y, np.asarray(f.true_classes, dtype=np.int64))
    if f.pred_classes:
        mask &= np.isin(pred[k], np.asarray(f.pred_classes, dtype=np.int64))
    if f.error_type != "any" and arrays.n_classes == 2:
        neg = 1 - pos_index
        if f.error_type == "fp":
            mask &= (y == neg) & (pred[k] == pos_index)
        else:
            mask &= (y == pos_index) & (pred[k] == neg)
    lo, hi = f.confidence
    if (lo, hi) != (0.0, 1.0):
        conf = _model_confidence(arrays, pred, k, None)
        mask &= (conf >= lo) & (conf <= hi)
    if f.agreement != "any":
        n_right = correct.sum(axis=0)
        n_have = has.sum(axis=0)
        if f.agreement == "disagree":
            mask &= (n_right > 0) & (n_right < n_have)
        else:
            mask &= (n_have > 0) & (n_right == 0)
    if f.tag != TAG_ANY:
        tagged = tagged or {}
        if f.tag in (TAG_TAGGED, TAG_UNTAGGED):
            any_tag = tag_mask(arrays, set().union(*tagged.values()) if tagged else set())
            mask &= any_tag if f.tag == TAG_TAGGED else ~any_tag
        else:
            mask &= tag_mask(arrays, tagged.get(f.tag, ()))
    return np.asarray(mask)


def sorted_indices(
    arrays: ReviewArrays, pred: np.ndarray, mask: np.ndarray, model: str, sort: str = "confidence_desc"
) -> np.ndarray:
    """Positions where `mask` holds, ordered by `model`'s confidence in its answer (desc/asc) or by sample id."""
    if sort not in SORTS:
        raise _invalid("sort", f"one of {list(SORTS)}", sort)
    idx = np.flatnonzero(mask)
    if sort == "sample_id":
        return idx[np.argsort(arrays.sample_ids[idx].astype(str), kind="stable")]
    k = arrays.models.index(model)
    conf = _model_confidence(arrays, pred, k, idx)
    order = np.argsort(-conf if sort == "confidence_desc" else conf, kind="stable")
    return idx[order]


def sample_table(
    arrays: ReviewArrays,
    pred: np.ndarray,
    position: int,
    class_names: Sequence[str],
    thresholds: Sequence[float | None],
) -> pd.DataFrame:
    """One row per model for one sample: probability of each class, threshold, prediction, correct or not."""
    rows = []
    y = int(arrays.y[position])
    for i, model in enumerate(arrays.models):
        row: dict[str, object] = {"model": model}
        for c, name in enumerate(class_names):
            row[str(name)] = float(arrays.P[i, position, c])
        row["threshold"] = thresholds[i]
        p = int(pred[i, position])
        row["predicted"] = class_names[p] if p >= 0 else None
        row["correct"] = (p == y) if p >= 0 else None
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")
