"""The report's Subgroups section, and the subgroup tables the dashboard's Subgroups page shares with it.

Per subgroup column (the experiment's `[subgroups] columns`, or the caller's): the subgroups of the samples
(`pipeline.subgroups.subgroups_for`: config bins, quantiles, the file-name regex, missing as its own group),
every model's metrics per subgroup with patient/lesion-grouped intervals (`metrics.subgroup_metrics`), the worst
subgroup and the largest gap with its interval (`metrics.worst_subgroup`, `metrics.largest_gap`), and the
forest plot (`figures.forest_figure`): the same functions the page calls.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import pandas as pd

from pipeline import artifacts as art
from pipeline import figures
from pipeline import metrics as mt
from pipeline import subgroups as sg
from pipeline.comparison import Aligned

SUBGROUP_METRIC_LABELS = {
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC AUC",
}
# The metrics whose worst subgroup and largest gap the report lists (ranking metric first).
GAP_METRICS = ("roc_auc", "balanced_accuracy")
TOO_FEW = "too few"


def format_subgroup_estimate(e: mt.Estimate, too_few: bool) -> str:
    """'0.812 [0.760, 0.861]'; 'too few' below the minimum size; 'n/a' where the metric is undefined."""
    if too_few:
        return TOO_FEW
    if math.isnan(e.point):
        return "n/a"
    return f"{e.point:.3f} [{e.low:.3f}, {e.high:.3f}]"


def subgroup_table_rows(res: mt.SubgroupMetrics) -> list[dict[str, Any]]:
    """One row per (model, subgroup): n, patients/lesions, positives and each metric as 'point [low, high]'."""
    rows = []
    for model in res.values:
        for i, name in enumerate(res.names):
            few = bool(res.too_few[i])
            rows.append(
                {
                    "model": model,
                    "subgroup": name,
                    "n": int(res.n[i]),
                    "patients/lesions": int(res.n_groups[i]),
                    "positives": int(res.n_pos[i]),
                    **{
                        SUBGROUP_METRIC_LABELS.get(m, m): format_subgroup_estimate(res.values[model][m][i], few)
                        for m in res.metrics
                    },
                }
            )
    return rows


def subgroup_gap_rows(res: mt.SubgroupMetrics, metric: str) -> list[dict[str, Any]]:
    """Per model: the worst subgroup of `metric` and the largest gap between subgroups with its interval."""
    label = SUBGROUP_METRIC_LABELS.get(metric, metric)
    worst = mt.worst_subgroup(res, metric)
    rows = []
    for model in res.values:
        gap = mt.largest_gap(res, model, metric)
        w = worst[model]
        rows.append(
            {
                "model": model,
                f"worst subgroup ({label})": "—" if w is None else f"{w[0]}: {w[1].point:.3f}",
                f"largest gap ({label})": "—"
                if gap is None
                else f"{gap.estimate.point:.3f} [{gap.estimate.low:.3f}, {gap.estimate.high:.3f}]",
                "between": "—" if gap is None else f"{gap.high} vs {gap.low}",
                "gap excludes 0": None if gap is None else bool(gap.estimate.low > 0),
            }
        )
    return rows


def report_subgroup_columns(exp: art.Experiment, columns: Sequence[str] | None = None) -> list[str]:
    """The columns the report splits by: `columns` when given (each checked), else the config's
    `[subgroups] columns`, else the first metadata column of the sample table (none: an empty list)."""
    cfg = sg.experiment_subgroups_config(exp.meta)
    frame = sg.subgroup_frame(exp.samples, columns=cfg.columns, regex=cfg.regex, regex_source=cfg.regex_source)
    offered = [str(c) for c in frame.columns]
    if columns:
        unknown = [c for c in columns if c not in offered]
        if unknown:
            from pipeline.errors import invalid_argument

            raise invalid_argument("subgroup_columns", f"subgroup columns among {offered}", unknown)
        return list(dict.fromkeys(columns))
    named = [c for c in cfg.columns if c in offered]
    if named:
        return named
    return [c for c in offered if c != "eval_set"][:1]


def compute_subgroups(
    exp: art.Experiment,
    aligned: Aligned,
    column: str,
    thresholds: Mapping[str, float | None],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[sg.Subgroups, mt.SubgroupMetrics]:
    """`column`'s subgroups of the aligned samples (binned as the experiment's config says) and every aligned
    model's metrics on them (binary: at `thresholds`; multiclass: argmax, macro-averaged)."""
    cfg = sg.experiment_subgroups_config(exp.meta)
    groups = sg.subgroups_for(
        exp.samples,
        column,
        aligned.sample_ids,
        regex=cfg.regex,
        regex_source=cfg.regex_source,
        bins=cfg.bins,
        quantiles=cfg.quantiles,
    )
    binary = len(exp.class_names) == 2
    res = mt.subgroup_metrics(
        aligned.y,
        aligned.probs,
        groups.codes,
        aligned.groups,
        names=groups.names,
        thresholds={m: thresholds.get(m) for m in aligned.models} if binary else None,
        pos_index=exp.positive_index,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
        min_size=cfg.min_size,
    )
    return groups, res


def subgroups_section(
    exp: art.Experiment,
    aligned: Aligned,
    thresholds: Mapping[str, float | None],
    *,
    columns: Sequence[str] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    colors: Mapping[str, str] | None = None,
) -> str:
    """The report's "Subgroups" section (HTML): per column the subgroup table, worst subgroup and largest gap,
    and the forest plot of the AUC."""
    from pipeline.report._html import _esc, _fig_html, _section, _table_html

    cfg = sg.experiment_subgroups_config(exp.meta)
    chosen = report_subgroup_columns(exp, columns)
    binary = len(exp.class_names) == 2
    intro = (
        "Does a model that looks fine overall fail one age band, sex, site or scanner? Each number is computed on "
        f"the subgroup's samples only, with a 95% interval from {n_boot} resamples of whole patients/lesions "
        f"(seed {seed}); subgroups with fewer than {cfg.min_size} samples show <i>too few</i>, <i>n/a</i> marks "
        "a metric undefined there (e.g. an AUC with one class only). "
        + (
            "Binary metrics at each model's threshold."
            if binary
            else "Multiclass: argmax predictions, macro-averaged metrics, one-vs-rest AUCs."
        )
        + " The largest gap is best minus worst subgroup, its interval from the same resamples."
    )
    if not chosen:
        body = (
            "<p>The sample table has no metadata column to split by. Name columns, bins or a file-name regex in "
            "the experiment config's <code>[subgroups]</code> section (or pass <code>--subgroup-column</code>).</p>"
        )
        return _section("subgroups", "Subgroups", body, intro)
    parts = []
    for column in chosen:
        groups, res = compute_subgroups(exp, aligned, column, thresholds, n_boot=n_boot, seed=seed, alpha=alpha)
        table = pd.DataFrame(subgroup_table_rows(res))
        gaps = pd.DataFrame(
            [{"metric": SUBGROUP_METRIC_LABELS[m]} | row for m in GAP_METRICS for row in _gap_rows_plain(res, m)]
        )
        overall = {}
        if binary:
            y_pos = aligned.y == exp.positive_index
            if 0 < int(y_pos.sum()) < y_pos.size:
                overall = {m: mt.roc_auc(y_pos, P[:, exp.positive_index]) for m, P in aligned.probs.items()}
        fig = figures.forest_figure(
            res.names,
            {m: [(e.point, e.low, e.high) for e in res.values[m]["roc_auc"]] for m in res.values},
            SUBGROUP_METRIC_LABELS["roc_auc"],
            too_few=res.too_few.tolist(),
            overall=overall or None,
            colors=colors,
            title=f"ROC AUC per {column} subgroup (95% CI)",
        )
        parts.append(
            f'<div class="subgroup-column" data-column="{_esc(column)}"><h3>{_esc(column)}</h3>'
            f'<p class="intro">{groups.n_subgroups} subgroups; {_esc(_binning_note(column, cfg, exp.samples))}</p>'
            f'<div class="wide">{_table_html(table, index=False)}</div>'
            f'<div class="wide">{_table_html(gaps, index=False)}</div>'
            f'<div class="grid full"><div class="cell">{_fig_html(fig)}</div></div></div>'
        )
    return _section("subgroups", "Subgroups", "".join(parts), intro)


def _gap_rows_plain(res: mt.SubgroupMetrics, metric: str) -> list[dict[str, Any]]:
    """`subgroup_gap_rows` with metric-neutral column names (one table for several metrics)."""
    label = SUBGROUP_METRIC_LABELS.get(metric, metric)
    out = []
    for row in subgroup_gap_rows(res, metric):
        out.append({k.replace(f" ({label})", ""): ("—" if v is None else v) for k, v in row.items()})
    return out


def _binning_note(column: str, cfg: Any, samples: pd.DataFrame) -> str:
    if column in cfg.bins:
        how = f"bins from the config {[float(x) for x in cfg.bins[column]]}"
    elif column in samples.columns and sg._is_numeric(samples[column]):
        how = f"a numeric column: {cfg.quantiles} quantile bins when it has more than {sg.MAX_NUMERIC_LEVELS} values"
    else:
        how = "one subgroup per value"
    return how + "; missing values are their own subgroup."


__all__ = [
    "GAP_METRICS",
    "SUBGROUP_METRIC_LABELS",
    "compute_subgroups",
    "format_subgroup_estimate",
    "report_subgroup_columns",
    "subgroup_gap_rows",
    "subgroup_table_rows",
    "subgroups_section",
]
