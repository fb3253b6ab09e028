"""Backbones with several runs, compared: mean and spread over runs beside the test-sample CI, rank stability
over runs x bootstrap draws, "A beats B in k of n runs" and a t-test made for repeated runs.

Computed here (no Streamlit) for the dashboard and the meeting report: `compare_runs` (Runs & stability,
Paired comparison, the report's runs section), `runs_spread` / `spread_table` (the Overview's "over runs"
column and run dots: point values, no resampling), `seed_ensembles` (the Overview's seed-averaged rows) and
`runs_curves` (the ROC/PR page's mean curve over runs with the runs' band).
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
from pipeline.comparison import Aligned, ModelData, load_aligned
from pipeline.runs import RUN_SEPARATOR, runs_table

TRUST_SENTENCE = (
    "Trust a difference only when both agree: DeLong/McNemar/bootstrap on one run say whether it is bigger than "
    "the test sample's noise, the test over runs whether it survives retraining."
)


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
    per_run = {b: v[metric] for b, v in _per_run_values(exp, aligned, groups_of, [metric], thresholds).items()}
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
    intervals = {}
    for backbone, runs in groups_of.items():
        boot = np.asarray(reps[runs[0]][metric], float)
        boot = boot[np.isfinite(boot)]
        lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2]) if len(boot) else (np.nan, np.nan)
        intervals[backbone] = (float(lo), float(hi))
    table = spread_table(per_run, intervals)
    table["rank_first"] = [rank_first.get(b, np.nan) for b in table["backbone"]]
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


def _per_run_values(
    exp: art.Experiment,
    aligned: Aligned,
    groups_of: Mapping[str, Sequence[str]],
    metrics: Sequence[str],
    thresholds: Mapping[str, float | None],
) -> dict[str, dict[str, dict[str, float]]]:
    """backbone -> metric -> {run: point value} on the aligned samples, each run at its own threshold."""
    binary = len(exp.class_names) == 2
    k = exp.positive_index
    y_bool = aligned.y == k
    one_class = bool(y_bool.all() or not y_bool.any())
    out: dict[str, dict[str, dict[str, float]]] = {}
    for backbone, runs in groups_of.items():
        out[backbone] = {metric: {} for metric in metrics}
        for m in runs:
            if binary:
                # One sort per run (the threshold pages' sweep) gives every leaderboard metric: 7x cheaper than
                # classification_summary at 300,000 samples, and equal to it (tests/test_run_summary.py).
                sweep = mt.make_sweep(y_bool, aligned.probs[m][:, k])
                t = thresholds.get(m)
                summary = dict(mt.metrics_at(sweep, mt.DEFAULT_THRESHOLD if t is None else float(t)))
                summary["roc_auc"] = float("nan") if one_class else mt.sweep_roc_auc(sweep)
                summary["pr_auc"] = float("nan") if one_class else mt.sweep_average_precision(sweep)
            else:
                summary = mt.classification_summary(aligned.y, aligned.probs[m], pos_index=k, undefined_auc="nan")
            for metric in metrics:
                out[backbone][metric][m] = float(summary[metric])
    return out


SPREAD_COLUMNS = ["backbone", "n_runs", "mean", "sd", "low", "high", "values", "runs", "primary", "primary_value"]


def spread_table(
    per_run: Mapping[str, Mapping[str, float]], intervals: Mapping[str, tuple[float, float]] | None = None
) -> pd.DataFrame:
    """One row per backbone from {backbone: {run: value}} (first run first): mean, SD, range, values, best mean first.

    `intervals` adds the first run's test-sample interval (primary_ci_low/high), e.g. its grouped bootstrap CI.
    """
    rows = []
    for backbone, values in per_run.items():
        runs = list(values)
        spread = mt.run_spread(list(values.values()))
        lo, hi = (intervals or {}).get(backbone, (np.nan, np.nan))
        rows.append(
            {
                "backbone": backbone,
                "n_runs": spread.n,
                "mean": spread.mean,
                "sd": spread.sd,
                "low": spread.low,
                "high": spread.high,
                "values": [float(values[r]) for r in runs],
                "runs": runs,
                "primary": runs[0] if runs else "",
                "primary_value": float(values[runs[0]]) if runs else np.nan,
                "primary_ci_low": float(lo),
                "primary_ci_high": float(hi),
            }
        )
    columns = [*SPREAD_COLUMNS, "primary_ci_low", "primary_ci_high"]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values("mean", ascending=False, kind="stable", na_position="last").reset_index(drop=True)


def runs_spread(
    exp: art.Experiment,
    eval_set: str,
    *,
    models: Sequence[str] | None = None,
    metrics: Sequence[str] = mt.LEADERBOARD_METRICS,
    thresholds: Mapping[str, float | None] | None = None,
    exclude: Collection[str] = (),
    read: Callable[[str], ModelData] | None = None,
) -> dict[str, pd.DataFrame]:
    """{metric: `spread_table`} over every run of the backbones of `models` (point values, no resampling).

    The leaderboard's "over runs" columns: cheap (one pass per run), so they stay beside the first run's
    bootstrap CI even at 300,000 samples x 5 runs x 10 backbones. A backbone with one run has SD NaN.
    """
    groups_of = backbone_runs(exp)
    if models is not None:
        owner = {r: b for b, runs in groups_of.items() for r in runs}
        groups_of = {b: groups_of[b] for b in dict.fromkeys(owner[m] for m in models if m in owner)}
    run_models = [m for runs in groups_of.values() for m in runs]
    aligned = load_aligned(exp, run_models, eval_set, exclude=exclude, read=read)
    values = _per_run_values(exp, aligned, groups_of, list(metrics), dict(thresholds or {}))
    return {metric: spread_table({b: v[metric] for b, v in values.items()}) for metric in metrics}


SEED_ENSEMBLE_FORMAT = "{backbone} (mean of {n} runs)"


def seed_ensembles(groups_of: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """{row name: the runs it averages} for every backbone with two or more runs (the seed-averaged model).

    Its probabilities are `metrics.ensemble_mean` of the runs, as the leaderboard's ensemble row is of models.
    """
    return {
        SEED_ENSEMBLE_FORMAT.format(backbone=b, n=len(runs)): list(runs)
        for b, runs in groups_of.items()
        if len(runs) >= 2
    }


def runs_curves(
    exp: art.Experiment,
    eval_set: str,
    runs: Sequence[str],
    *,
    class_index: int,
    exclude: Collection[str] = (),
    read: Callable[[str], ModelData] | None = None,
    grid_points: int = 101,
) -> dict[str, mt.RunsCurve | None]:
    """{"roc", "pr"}: one backbone's curves for `class_index` vs rest averaged over `runs` (common samples)."""
    aligned = load_aligned(exp, list(runs), eval_set, exclude=exclude, read=read)
    y = aligned.y == int(class_index)
    scores = [aligned.probs[m][:, int(class_index)] for m in runs]
    return {kind: mt.mean_curve_over_runs(y, scores, kind=kind, grid_points=grid_points) for kind in ("roc", "pr")}


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
