"""Suspected label errors from out-of-fold predictions, by confident learning (cleanlab).

With k-fold runs every training-pool sample has a prediction from a model that never saw it (eval_set
`oof`). Averaged over seeds and backbones, those probabilities go to cleanlab's `find_label_issues`
(confident learning, Northcutt et al. 2021) and `get_label_quality_scores` (self-confidence), which
rank the samples whose given label the models most disagree with. The queue feeds the mentor's review.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import artifacts as art
from pipeline.runs import OOF_EVAL_SET, runs_table

LABEL_ISSUES_FILE = "label_issues.parquet"


@dataclass(frozen=True)
class OutOfFold:
    """Out-of-fold probabilities of the training pool: mean over seeds and backbones, and per backbone."""

    sample_ids: np.ndarray
    labels: np.ndarray
    probs: np.ndarray  # (n, K) mean over backbones
    by_backbone: dict[str, np.ndarray]  # backbone -> (n, K), NaN where that backbone has no oof row


def out_of_fold(exp: art.Experiment, *, backbones: Sequence[str] | None = None) -> OutOfFold:
    """Collect the `oof` rows of every k-fold run; raises ValueError when the experiment has none."""
    runs = runs_table(exp.path, exp.models)
    if backbones is not None:
        runs = runs[runs["backbone"].isin(list(backbones))]
    cols = art.prob_columns(len(exp.class_names))
    parts: dict[str, list[pd.DataFrame]] = {}
    for row in runs.itertuples():
        if row.fold is None:
            continue
        preds = art.read_predictions(exp, row.model)
        oof = preds[preds["eval_set"] == OOF_EVAL_SET]
        if len(oof):
            parts.setdefault(row.backbone, []).append(oof[["sample_id", *cols]])
    if not parts:
        raise ValueError(
            f"Invalid value for argument `exp`. Expected an experiment with k-fold runs "
            f"(`[train] folds >= 2`, out-of-fold predictions). Received: {exp.name!r} without any"
        )
    ids = np.unique(np.concatenate([p["sample_id"].to_numpy(str) for ps in parts.values() for p in ps]))
    by_backbone = {}
    for backbone, frames in parts.items():
        mean = pd.concat(frames).groupby("sample_id")[cols].mean()  # average over seeds
        by_backbone[backbone] = mean.reindex(ids).to_numpy(np.float64)
    stacked = np.stack(list(by_backbone.values()))
    probs = np.nanmean(stacked, axis=0)
    labels = exp.samples.set_index("sample_id").loc[ids, "label"].to_numpy(np.int64)
    return OutOfFold(ids, labels, probs, by_backbone)


def find_label_issues(oof: OutOfFold, *, class_names: Sequence[str] | None = None) -> pd.DataFrame:
    """The review queue: every pool sample, suspected label issues first, lowest label quality first.

    Columns: sample_id, label, suggested (argmax of the mean out-of-fold probabilities), label_quality
    (cleanlab self-confidence), is_issue (cleanlab confident learning), models_disagree (backbones
    whose out-of-fold argmax is not the label), n_models, prob_<i>.
    """
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores

    probs = np.clip(oof.probs, 1e-9, 1.0)
    probs = probs / probs.sum(axis=1, keepdims=True)
    k = probs.shape[1]
    present = np.unique(oof.labels)
    if len(present) < 2:
        raise ValueError(
            f"Invalid value for argument `oof`. Expected at least two classes among the labels. "
            f"Received: {present.tolist()}"
        )
    issue = cl_find(oof.labels, probs, filter_by="prune_by_noise_rate")
    quality = get_label_quality_scores(oof.labels, probs, method="self_confidence")
    votes = np.stack(
        [np.where(np.isnan(p).any(axis=1), -1, np.nan_to_num(p).argmax(axis=1)) for p in oof.by_backbone.values()]
    )
    disagree = ((votes >= 0) & (votes != oof.labels[None, :])).sum(axis=0)
    n_models = (votes >= 0).sum(axis=0)
    out = pd.DataFrame(
        {
            "sample_id": oof.sample_ids,
            "label": oof.labels,
            "suggested": probs.argmax(axis=1),
            "label_quality": quality,
            "is_issue": issue,
            "models_disagree": disagree,
            "n_models": n_models,
        }
    )
    for i, col in enumerate(art.prob_columns(k)):
        out[col] = probs[:, i]
    if class_names is not None:
        names = np.asarray(list(class_names), dtype=object)
        out["label_name"], out["suggested_name"] = names[out["label"]], names[out["suggested"]]
    return out.sort_values(["is_issue", "label_quality"], ascending=[False, True], kind="stable").reset_index(drop=True)


def precision_recall(found: Sequence[str], truth: Sequence[str]) -> tuple[float, float]:
    """Precision and recall of the flagged sample ids `found` against the known wrong labels `truth`."""
    f, t = set(map(str, found)), set(map(str, truth))
    hit = len(f & t)
    return (hit / len(f) if f else float("nan")), (hit / len(t) if t else float("nan"))


def write_label_issues(exp_dir: object, queue: pd.DataFrame) -> None:
    """Write the queue as label_issues.parquet beside experiment.json (atomic)."""
    from pathlib import Path

    art.atomic_write_parquet(Path(str(exp_dir)) / LABEL_ISSUES_FILE, queue)


def read_label_issues(exp_dir: object) -> pd.DataFrame | None:
    """The stored queue, or None when the experiment has none."""
    from pathlib import Path

    path = Path(str(exp_dir)) / LABEL_ISSUES_FILE
    return art.read_parquet(path) if path.is_file() else None
