"""Backbones with several runs, compared: mean and spread over runs beside the test-sample CI, rank stability
over runs x bootstrap draws, "A beats B in k of n runs" and a t-test made for repeated runs.

Computed here (no Streamlit) for the Overview and Paired comparison pages and the meeting report.
Which test to trust: DeLong/McNemar/bootstrap on one run answer "is this difference bigger than the test
sample's noise?"; the runs test answers "does it survive retraining?". A backbone should be called better
only when both agree.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline import artifacts as art
from pipeline import metrics as mt
from pipeline.comparison import ModelData, load_aligned
from pipeline.runs import RUN_SEPARATOR, runs_table


def backbone_runs(exp: art.Experiment, models: Sequence[str] | None = None) -> dict[str, list[str]]:
    """backbone -> its run model folders (the first run, named after the backbone, first)."""
    table = runs_table(exp.path, list(models) if models is not None else exp.models)
    out: dict[str, list[str]] = {}
    for row in table.itertuples():
        out.setdefault(str(row.backbone), []).append(str(row.model))
    for backbone, runs in out.items():
        runs.sort(key=lambda m: (m != backbone, m))
    return out


@dataclass(frozen=True)
class RunsComparison:
    """Per-backbone spread over runs and pairwise run statistics of one metric on one evaluation set."""

    eval_set: str
    metric: str
    table: pd.DataFrame  # one row per backbone
    pairs: pd.DataFrame  # one row per ordered-by-mean pair (a ahead of b)
    test_name: str


def _test_train_ratio(exp: art.Experiment, runs: Sequence[str]) -> tuple[float, str]:
    """Nadeau-Bengio's n_test/n_train for k-fold runs (1/(k-1)); 0 (plain paired t-test) for seeds."""
    folds = []
    for m in runs:
        try:
            cfg = art.read_model_config(exp.path, m)
        except art.ArtifactError:
            continue
        if isinstance(cfg.get("folds"), int) and cfg["folds"] > 1:
            folds.append(int(cfg["folds"]))
    if folds:
        k = max(folds)
        return 1.0 / (k - 1), f"corrected resampled t-test (Nadeau & Bengio), {k}-fold runs"
    return 0.0, "paired t-test over seeds (same split and test set)"


def compare_runs(
    exp: art.Experiment,
    eval_set: str,
    *,
    metric: str = "roc_auc",
    models: Sequence[str] | None = None,
    thresholds: Mapping[str, float | None] | None = None,
    exclude: Collection[str] = (),
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    read: Callable[[str], ModelData] | None = None,
) -> RunsComparison:
    """Spread over runs, rank-first frequency and pairwise run statistics of `metric` on `eval_set`.

    All runs are aligned on the samples every run predicted, minus `exclude`. Bootstrap draws resample
    whole patients/lesions and are shared by every run (paired), so the rank-first frequency moves with
    both the test sample and the retraining.
    """
    groups_of = backbone_runs(exp, models)
    run_models = [m for runs in groups_of.values() for m in runs]
    aligned = load_aligned(exp, run_models, eval_set, exclude=exclude, read=read)
    thresholds = dict(thresholds or {})
    binary = len(exp.class_names) == 2
    per_run: dict[str, dict[str, float]] = {}
    for backbone, runs in groups_of.items():
        per_run[backbone] = {}
        for m in runs:
            summary = mt.classification_summary(
                aligned.y,
                aligned.probs[m],
                pos_index=exp.positive_index,
                threshold=thresholds.get(m) if binary else None,
                undefined_auc="nan",
            )
            per_run[backbone][m] = float(summary[metric])
    reps = mt.bootstrap_replicates(
        aligned.y,
        aligned.probs,
        aligned.groups,
        metrics=[metric],
        n_boot=n_boot,
        seed=seed,
        thresholds={m: thresholds.get(m) for m in run_models} if binary else None,
        pos_index=exp.positive_index,
        paired=True,
    )
    rank_first = mt.rank_first_frequency(
        {b: np.stack([reps[m][metric] for m in runs]) for b, runs in groups_of.items()}, seed=seed
    )
    rows = []
    for backbone, runs in groups_of.items():
        spread = mt.run_spread(list(per_run[backbone].values()))
        primary = runs[0]
        boot = np.asarray(reps[primary][metric], float)
        boot = boot[np.isfinite(boot)]
        lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if len(boot) else (np.nan, np.nan)
        rows.append(
            {
                "backbone": backbone,
                "n_runs": spread.n,
                "mean": spread.mean,
                "sd": spread.sd,
                "low": spread.low,
                "high": spread.high,
                "values": list(spread.values),
                "runs": list(runs),
                "primary": primary,
                "primary_value": per_run[backbone][primary],
                "primary_ci_low": float(lo),
                "primary_ci_high": float(hi),
                "rank_first": rank_first.get(backbone, np.nan),
            }
        )
    table = pd.DataFrame(rows).sort_values("mean", ascending=False, kind="stable").reset_index(drop=True)
    ratio, test_name = _test_train_ratio(exp, run_models)
    pairs = []
    order = list(table["backbone"])
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            va, vb = _paired_values(per_run[a], per_run[b])
            k, n = mt.wins(va, vb)
            t = mt.corrected_resampled_ttest(np.asarray(va) - np.asarray(vb), test_train_ratio=ratio, alpha=alpha)
            pairs.append(
                {
                    "a": a,
                    "b": b,
                    "wins": k,
                    "n": n,
                    "mean_diff": t.mean_diff,
                    "ci_low": t.low,
                    "ci_high": t.high,
                    "t": t.t,
                    "df": t.df,
                    "p": t.p,
                }
            )
    return RunsComparison(
        eval_set,
        metric,
        table,
        pd.DataFrame(pairs, columns=["a", "b", "wins", "n", "mean_diff", "ci_low", "ci_high", "t", "df", "p"]),
        test_name,
    )


def _run_key(model: str) -> str:
    """The run id part of a run's folder name ('' for the first run, named after its backbone)."""
    return model.split(RUN_SEPARATOR, 1)[1] if RUN_SEPARATOR in model else ""


def _paired_values(a: Mapping[str, float], b: Mapping[str, float]) -> tuple[list[float], list[float]]:
    """Runs of two backbones paired by run id (same seed/fold); by position when the ids do not match."""
    ka = {_run_key(m): v for m, v in a.items()}
    kb = {_run_key(m): v for m, v in b.items()}
    common = [k for k in ka if k in kb]
    if len(common) >= 2:
        return [ka[k] for k in common], [kb[k] for k in common]
    n = min(len(a), len(b))
    return list(a.values())[:n], list(b.values())[:n]
