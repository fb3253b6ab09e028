"""The meeting report's "Runs & stability" section (backbones trained several times: seeds, folds) and the line
that says where each threshold came from. Numbers from `pipeline.run_summary.compare_runs` (the dashboard's
*Runs & stability* page computes the same), the figure from `pipeline.figures.runs_figure`."""

from __future__ import annotations

import html
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from pipeline import artifacts as art
from pipeline import figures
from pipeline import metrics as mt
from pipeline.report._verdicts import format_p
from pipeline.run_summary import TRUST_SENTENCE, backbone_runs, compare_runs

RUNS_SECTION_ID = "runs"


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def repeated_runs(exp: art.Experiment, models: Sequence[str]) -> dict[str, list[str]]:
    """backbone -> all its runs, for the backbones of `models`, when at least one of them has two or more runs;
    otherwise {} (the section is left out)."""
    groups = backbone_runs(exp)
    owner = {r: b for b, runs in groups.items() for r in runs}
    picked = {b: groups[b] for b in dict.fromkeys(owner[m] for m in models if m in owner)}
    return picked if any(len(r) > 1 for r in picked.values()) else {}


def threshold_sources(
    thr: Mapping[str, float | None],
    given: Mapping[str, float | None] | None,
    sources: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Where each model's threshold came from: `sources[model]` when the caller knows (the dashboard: 'chosen on
    val: Youden', 'set by hand'...), else 'given' for a threshold passed in and 'default 0.5' for the others."""
    sources = dict(sources or {})
    given = dict(given or {})
    out = {}
    for m, t in thr.items():
        if t is None:
            continue
        out[m] = sources.get(m) or ("given" if given.get(m) is not None else f"default {mt.DEFAULT_THRESHOLD:g}")
    return out


def threshold_sources_html(
    thr: Mapping[str, float | None],
    given: Mapping[str, float | None] | None,
    sources: Mapping[str, str] | None = None,
) -> str:
    """A paragraph 'Thresholds: A 0.412 (chosen on val: Youden); B 0.500 (default 0.5)', empty for argmax."""
    where = threshold_sources(thr, given, sources)
    if not where:
        return ""
    items = "; ".join(f"<b>{_esc(m)}</b> {float(thr[m] or 0):.3f} ({_esc(src)})" for m, src in where.items())
    optimistic = any("optimistic" in s for s in where.values())
    return (
        f'<p class="meta" id="threshold-sources">Thresholds and where they came from: {items}.'
        + (
            " A threshold chosen on the set reported makes its threshold metrics optimistic."
            if optimistic
            else " Choose thresholds on validation (or out-of-fold) predictions, never on the set reported."
        )
        + "</p>"
    )


def runs_section(
    exp: art.Experiment,
    models: Sequence[str],
    eval_set: str,
    thresholds: Mapping[str, float | None] | None,
    *,
    n_boot: int = 200,
    seed: int = 0,
    alpha: float = 0.05,
    exclude: Collection[str] = (),
    colors: Mapping[str, str] | None = None,
    metric: str = "roc_auc",
) -> tuple[str, str]:
    """(the "Runs & stability" section as HTML, its one-line verdict for "At a glance"), or ("", "") when no
    backbone of `models` was trained more than once.

    Per backbone: mean ± SD and range of `metric` over its runs beside the first run's grouped-bootstrap CI, and
    how often it ranks first over runs x bootstrap draws; per pair: "A beats B in k of n runs" and the test for
    repeated runs (Nadeau-Bengio corrected for k-fold, paired t over seeds); the top pair in one sentence.
    """
    groups = repeated_runs(exp, models)
    if not groups:
        return "", ""
    runs = [r for rs in groups.values() for r in rs]
    binary = len(exp.class_names) == 2
    thr = {m: ((thresholds or {}).get(m) if binary else None) for m in runs}
    res = compare_runs(
        exp,
        eval_set,
        metric=metric,
        models=runs,
        thresholds=thr,
        exclude=exclude,
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
    )
    label = figures.METRIC_LABELS.get(metric, metric)
    t = res.table
    table, pairs = figures.runs_tables(t, res.pairs, label)
    table = table.drop(columns=[f"{label} mean", "SD over runs"])
    table.insert(
        2,
        f"{label} mean ± SD",
        [f"{m:.3f} ± {sd:.3f}" if np.isfinite(sd) else f"{m:.3f}" for m, sd in zip(t["mean"], t["sd"])],
    )
    body = str(table.to_html(index=False, escape=True, border=0, classes="tbl"))
    fig = figures.runs_figure(t, label, colors=colors, height=max(240, 60 * len(t) + 80))
    body += str(
        fig.to_html(full_html=False, include_plotlyjs=False, include_mathjax=False, config={"displaylogo": False})
    )
    top = line = ""
    if not res.pairs.empty:
        p = res.pairs
        body += "<h3>Pairs over runs</h3>" + str(pairs.to_html(index=False, escape=True, border=0, classes="tbl"))
        r = p.iloc[0]
        verdict = (
            "no p (fewer than two paired runs)"
            if not np.isfinite(r["p"])
            else f"p = {format_p(r['p'])}: "
            + ("the difference survives retraining" if r["p"] < alpha else "not distinguishable over retraining")
        )
        top = (
            f'<p id="runs-top-pair"><b>Top pair:</b> {_esc(r["a"])} beats {_esc(r["b"])} in {int(r["wins"])} of '
            f"{int(r['n'])} runs; mean {label} difference {r['mean_diff']:+.4f}; {_esc(res.test_name)}, "
            f"{_esc(verdict)}. {_esc(TRUST_SENTENCE)}</p>"
        )
        line = (
            f"Over runs ({res.test_name}): {r['a']} beats {r['b']} in {int(r['wins'])} of {int(r['n'])} runs, mean "
            f"{label} difference {r['mean_diff']:+.4f}; {verdict}."
        )
    intro = (
        f"{label} on <b>{_esc(eval_set)}</b> over every run of each backbone (seeds and/or folds), each run at its "
        f"own threshold. SD over runs = training noise; the first run's {n_boot}-resample grouped bootstrap CI = "
        f"test-sample noise. <i>Ranks first</i>: share of draws (whole patients/lesions resampled, one run of each "
        f"backbone picked at random) in which the backbone is best. Test over runs: {_esc(res.test_name)}."
    )
    html_text = (
        f'<section id="{RUNS_SECTION_ID}"><h2>Runs &amp; stability</h2><p class="intro">{intro}</p>'
        f"{top}{body}</section>\n"
    )
    return html_text, line
