"""The meeting report as ONE self-contained HTML file: every number from `pipeline.metrics` on the aligned
view (`pipeline.comparison.load_aligned`, exclusions applied), every figure from `pipeline.figures`,
plotly.js inlined once, thumbnails as base64 PNG, no network reference, so it opens offline."""

from __future__ import annotations

import base64
import html
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Collection, Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline import artifacts as art
from pipeline import figures
from pipeline import metrics as mt
from pipeline.comparison import ENSEMBLE, Aligned, load_aligned, with_ensemble
from pipeline.errors import invalid_argument
from pipeline.report._pdf import html_to_pdf
from pipeline.report._runs_section import runs_section, threshold_sources_html
from pipeline.report._subgroups_section import subgroups_section
from pipeline.report._tables import (
    _ci_text,
    _resolve_thresholds,
    artifact_fingerprint,
    curve_points,
    dataset_summary,
    delong_class_grid,
    ensemble_config,
    leaderboard_frame,
    pair_matrix,
    pairs_table,
)
from pipeline.report._verdicts import clustering_note, format_p, multiclass_verdict, verdicts

# Section ids of the report, in order (tests check that each is present).
REPORT_SECTIONS = (
    "summary",
    "leaderboard",
    "curves",
    "confusion",
    "calibration",
    "paired-tests",
    "subgroups",
    "disagreement",
    "dataset",
    "configs",
    "gallery",
)

# ---------------------------------------------------------------- the report


def _esc(x: object) -> str:
    return html.escape(str(x), quote=True)


def _fig_html(fig: Any) -> str:
    """A figure as a <div> + script using the plotly.js inlined once in <head> (no CDN)."""
    return str(
        fig.to_html(
            full_html=False,
            include_plotlyjs=False,
            include_mathjax=False,
            config={"displaylogo": False, "responsive": True},
            default_width="100%",
        )
    )


def _table_html(df: pd.DataFrame, float_format: str = "{:.3f}", index: bool = True) -> str:
    """A plain HTML table (escaped), floats formatted, NaN as a dash."""

    def fmt(spec: str) -> Callable[[object], str]:
        def _f(v: object) -> str:
            if isinstance(v, (float, np.floating)):
                return "—" if not np.isfinite(v) else spec.format(v)
            return str(v)

        return _f

    signed = float_format.replace("{:", "{:+")
    return str(
        df.to_html(
            index=index,
            escape=True,
            na_rep="—",
            border=0,
            classes="tbl",
            formatters={c: fmt(signed if "diff" in str(c) else float_format) for c in df.columns},
        )
    )


def _p_table_html(df: pd.DataFrame) -> str:
    """A table whose p-value columns read '< 0.001'."""
    out = df.copy()
    for c in out.columns:
        if c.lower().startswith("p") or " p" in c:
            if pd.api.types.is_float_dtype(out[c]):
                out[c] = [format_p(v) for v in out[c]]
    return _table_html(out)


def _section(sid: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{sid}"><h2>{_esc(title)}</h2>{intro_html}{body}</section>\n'


def _grid(items: Sequence[str], full: bool = False) -> str:
    """Figures two per row (or one per row when `full`)."""
    cls = "grid full" if full else "grid"
    return f'<div class="{cls}">' + "".join(f'<div class="cell">{i}</div>' for i in items) + "</div>"


def _leaderboard_section(
    exp: art.Experiment,
    aligned: Aligned,
    probs: Mapping[str, np.ndarray],
    thr: Mapping[str, float | None],
    n_boot: int,
    seed: int,
) -> tuple[str, pd.DataFrame]:
    pos = exp.positive_index
    # One class only: AUCs NaN (shown as a dash), the threshold metrics as usual.
    res = mt.bootstrap_models(
        aligned.y,
        probs,
        aligned.groups,
        metrics=list(mt.LEADERBOARD_METRICS),
        n_boot=n_boot,
        seed=seed,
        thresholds=thr,
        pos_index=pos,
        undefined_auc="nan",
    )
    configs: dict[str, dict[str, Any]] = {}
    for m in aligned.models:
        try:
            configs[m] = art.read_model_config(exp.path, m)
        except art.ArtifactError:
            configs[m] = {}
    if ENSEMBLE in probs:
        configs[ENSEMBLE] = ensemble_config(configs, aligned.models)
    frame = leaderboard_frame(res, configs).sort_values("roc_auc", ascending=False, na_position="last")
    display, best = figures.leaderboard_table(
        frame, mt.LEADERBOARD_METRICS, thresholds=thr if len(exp.class_names) == 2 else None
    )
    table = figures.style_best(display, best).to_html()
    intro = (
        f"Point estimate [95% CI] from {n_boot} paired resamples of whole patients/lesions (seed {seed}); "
        f"{figures.BEST_MARK.strip()} and green = best in the column. "
        + (
            "Binary metrics at each model's threshold."
            if len(exp.class_names) == 2
            else "Multiclass: argmax predictions, macro-averaged sensitivity/specificity/precision/F1, "
            "one-vs-rest AUCs."
        )
        + (
            f" <b>{_esc(ENSEMBLE)}</b> averages the models' probabilities; its size and speed are the sums of "
            "its members'."
            if ENSEMBLE in probs
            else ""
        )
    )
    return _section("leaderboard", "Leaderboard", f'<div class="wide">{table}</div>', intro), frame


def _curves_section(
    exp: art.Experiment,
    aligned: Aligned,
    probs: Mapping[str, np.ndarray],
    thr: Mapping[str, float | None],
    colors: Mapping[str, str],
) -> str:
    names = exp.class_names
    roc, pr = [], []
    prevalence = None
    if len(names) == 2:
        k = exp.positive_index
        y_bool = aligned.y == k
        for m, P in probs.items():
            cur = curve_points(y_bool, P[:, k])
            prevalence = cur["prevalence"]
            if cur["roc"] is None:
                continue
            t = thr.get(m)
            at = None if t is None else mt.metrics_at(cur["sweep"], t)
            dash = "dash" if m == ENSEMBLE else None
            roc.append(figures.Curve.from_summary(m, cur, "roc", threshold=t, at=at, color=colors.get(m), dash=dash))
            pr.append(figures.Curve.from_summary(m, cur, "pr", threshold=t, at=at, color=colors.get(m), dash=dash))
        intro = (
            f"Positive class <b>{_esc(names[k])}</b>; the marker is each model's operating point at its "
            "threshold. "
            "Hover a curve for the threshold at that point."
        )
        title = "ROC"
        per_class = ""
    else:
        K = len(names)
        onehot = np.eye(K, dtype=bool)[aligned.y]
        auc_rows = []
        for m, P in probs.items():
            cur = curve_points(onehot.ravel(), P.ravel())  # micro-average: every (sample, class) pair
            prevalence = cur["prevalence"]
            dash = "dash" if m == ENSEMBLE else None
            roc.append(figures.Curve.from_summary(m, cur, "roc", color=colors.get(m), dash=dash))
            pr.append(figures.Curve.from_summary(m, cur, "pr", color=colors.get(m), dash=dash))
            ovr = mt.one_vs_rest_curves(aligned.y, P)
            aucs = np.asarray([ovr[c]["roc_auc"] for c in range(K)], dtype=np.float64)
            auc_rows.append(
                {"model": m, **{names[c]: float(aucs[c]) for c in range(K)}, "macro": float(np.nanmean(aucs))}
            )
        intro = (
            f"Micro-averaged over the {K} classes (every sample-class pair is one binary decision). "
            "The table gives each class's one-vs-rest ROC AUC."
        )
        title = "ROC, micro-average"
        per_class = "<h3>One-vs-rest ROC AUC per class</h3>" + _table_html(pd.DataFrame(auc_rows).set_index("model"))
    figs = [
        _fig_html(figures.curve_figure(roc, "roc", title=title)),
        _fig_html(figures.curve_figure(pr, "pr", title=title.replace("ROC", "Precision-recall"), baseline=prevalence)),
    ]
    return _section("curves", "ROC and precision-recall curves", _grid(figs) + per_class, intro)


def _confusion_section(
    exp: art.Experiment,
    aligned: Aligned,
    probs: Mapping[str, np.ndarray],
    thr: Mapping[str, float | None],
    preds: Mapping[str, np.ndarray],
) -> str:
    K = len(exp.class_names)
    figs = []
    for m in probs:
        cm = mt.confusion_matrix(aligned.y, preds[m], K)
        t = thr.get(m)
        title = m + (f" (threshold {t:.3f})" if t is not None else "")
        fig = figures.confusion_figure(cm, exp.class_names, title=title, size=360 if K <= 4 else 520)
        fig.update_layout(clickmode="none")
        figs.append(_fig_html(fig))
    intro = "Rows are true classes, columns predicted; colour is the share of each true class. " + (
        "Predictions at each model's threshold." if K == 2 else "Predicted class = highest probability."
    )
    return _section("confusion", "Confusion matrices", _grid(figs), intro)


def _calibration_section(
    exp: art.Experiment, aligned: Aligned, probs: Mapping[str, np.ndarray], colors: Mapping[str, str], n_bins: int = 10
) -> str:
    rel, hist, rows = {}, {}, []
    binary = len(exp.class_names) == 2
    k = exp.positive_index
    for m, P in probs.items():
        if binary:
            y_bool, p = aligned.y == k, P[:, k]
            rel[m] = mt.reliability_curve(y_bool, p, n_bins=n_bins)
            rows.append(
                {
                    "model": m,
                    "ECE": mt.expected_calibration_error(y_bool, p, n_bins=n_bins),
                    "Brier score": mt.brier_score(y_bool, p),
                }
            )
        else:
            rel[m] = mt.top_label_reliability(aligned.y, P, n_bins=n_bins)
            rows.append(
                {
                    "model": m,
                    "ECE (top label)": mt.top_label_ece(aligned.y, P, n_bins=n_bins),
                    "Brier score": mt.multiclass_brier_score(aligned.y, P),
                }
            )
        counts, edges = mt.confidence_histogram(P, bins=n_bins)
        hist[m] = (edges, counts)
    title = f"Reliability: P({exp.class_names[k]})" if binary else "Reliability: top-label confidence"
    figs = [
        _fig_html(figures.reliability_figure(rel, colors=colors, title=title)),
        _fig_html(figures.histogram_figure(hist, colors=colors)),
    ]
    intro = f"Lower is better for both scores; ECE over {n_bins} equal-width bins. " + (
        "Calibration of the positive-class probability."
        if binary
        else "Multiclass: is the confidence in the predicted class right?"
    )
    return _section(
        "calibration", "Calibration", _table_html(pd.DataFrame(rows).set_index("model")) + _grid(figs), intro
    )


def _paired_section(
    exp: art.Experiment,
    rows: list[dict[str, Any]],
    names: Sequence[str],
    alpha: float,
    n_boot: int,
    caution: str | None = None,
) -> tuple[str, list[str]]:
    if len(names) < 2:
        return _section(
            "paired-tests", "Paired tests", "<p>A paired comparison needs at least two models; this report has one.</p>"
        ), []
    binary = len(exp.class_names) == 2
    n_pairs = len(rows)
    lines: list[str] = []
    for row in rows:
        lines.append(
            verdicts(row, "roc_auc", n_pairs, alpha)[0]
            if binary
            else multiclass_verdict(row, exp.class_names, n_pairs, alpha)
        )
    body = ""
    if binary:
        table = pairs_table(rows, "balanced_accuracy")
        body += _p_table_html(table.set_index(["A", "B"]))
        diff, p = pair_matrix(rows, list(names), "delong")
        body += _grid(
            [
                _fig_html(
                    figures.pairwise_matrix_figure(
                        list(names),
                        diff,
                        p,
                        title="ROC AUC: DeLong, Holm-adjusted",
                        diff_label="AUC difference",
                        alpha=alpha,
                    )
                )
            ],
            full=len(names) > 4,
        )
    else:
        labels, diff, p = delong_class_grid(rows, exp.class_names)
        fig = figures.p_value_grid_figure(
            labels,
            list(exp.class_names),
            diff,
            p,
            alpha=alpha,
            title="One-vs-rest ROC AUC per class: DeLong, Holm-adjusted over pairs",
            diff_label="AUC difference",
            x_title="class",
            y_title="pair (A − B)",
        )
        table = pairs_table(rows, "balanced_accuracy", class_index=0)
        table = table.drop(columns=[c for c in table.columns if c.startswith("AUC") or c.startswith("DeLong")])
        macro = pd.DataFrame(
            [
                {
                    "A": r["model_a"],
                    "B": r["model_b"],
                    "macro AUC diff": r["roc_auc_diff"],
                    "macro AUC 95% CI": _ci_text(r["roc_auc_ci_low"], r["roc_auc_ci_high"]),
                    "macro AUC p (Holm)": r["roc_auc_p_holm"],
                }
                for r in rows
            ]
        )
        table = macro.merge(table, on=["A", "B"])
        body += _p_table_html(table.set_index(["A", "B"])) + _grid([_fig_html(fig)], full=True)
    intro = (
        f"Every pair of models on the same {'' if binary else 'multiclass '}samples: DeLong's test of the ROC AUC "
        f"difference, McNemar's test of accuracy at the thresholds in force, and {n_boot} paired bootstrap "
        f"resamples of whole patients/lesions for balanced accuracy. p-values are Holm-adjusted over the "
        f"{n_pairs} pair{'s' if n_pairs != 1 else ''} (per class for DeLong); cell (row, column) of a matrix "
        f"is row minus column."
    )
    if caution:
        body = f'<p class="caution">{_esc(caution)}</p>' + body
    return _section("paired-tests", "Paired tests", body, intro), lines


def _disagreement_section(exp: art.Experiment, aligned: Aligned, preds: Mapping[str, np.ndarray]) -> str:
    base = {m: preds[m] for m in aligned.models}
    if len(base) < 2:
        return _section("disagreement", "Disagreement", "<p>Disagreement needs at least two models.</p>")
    names, M = mt.disagreement_matrix(base)
    only = mt.unique_correct(aligned.y, base)
    correct = np.vstack([base[m] == aligned.y for m in names])
    all_wrong = int((~correct).all(axis=0).sum())
    all_right = int(correct.all(axis=0).sum())
    figs = [_fig_html(figures.disagreement_figure(names, M)), _fig_html(figures.unique_correct_figure(only))]
    intro = (
        f"Share of samples on which two models predict different classes, and how many samples only one model "
        f"gets right. All models right on {all_right:,} of {aligned.n:,} samples; all wrong on {all_wrong:,}."
    )
    return _section("disagreement", "Disagreement", _grid(figs), intro)


def _dataset_section(exp: art.Experiment, aligned: Aligned, eval_set: str) -> str:
    counts, per_set = dataset_summary(exp)
    meta = exp.meta
    ds = meta.get("dataset") or {}
    split = meta.get("split") or {}
    facts = [
        ("Experiment", meta.get("name")),
        ("Task", f"{meta.get('task')} · classes {', '.join(exp.class_names)}"),
        ("Layout", ds.get("layout")),
        ("Dataset fingerprint", ds.get("fingerprint")),
        ("Samples ingested", ds.get("n_samples", len(exp.samples))),
        ("Split policy", split.get("policy") or ds.get("split_policy")),
        ("Split seed", split.get("seed")),
        ("Split fractions", split.get("fractions")),
        ("Pipeline version", meta.get("pipeline_version")),
        ("Artifacts created", meta.get("created")),
        (
            "Evaluated here",
            f"evaluation set {eval_set}: {aligned.n:,} samples predicted by every model, "
            f"{len(np.unique(aligned.groups)):,} patients/lesions",
        ),
    ]
    dl = "".join(f"<dt>{_esc(k)}</dt><dd>{_esc(v)}</dd>" for k, v in facts if v not in (None, "", []))
    fig = _fig_html(figures.class_counts_figure(counts[exp.class_names]))
    tables = (
        '<div class="wide"><h3>Class counts and groups per split</h3>'
        + _table_html(counts, "{:.0f}")
        + "<h3>Evaluation sets</h3>"
        + _table_html(per_set, "{:.0f}")
        + "</div>"
    )
    return _section("dataset", "Dataset and splits", f'<dl class="facts">{dl}</dl>' + _grid([fig, tables]))


def _config_text(value: Any, max_chars: int = 120) -> str:
    """A config value for a table cell: floats to 4 significant digits (also inside lists/dicts), long text cut."""

    def short(v: Any) -> Any:
        if isinstance(v, float):
            return float(f"{v:.4g}")
        if isinstance(v, dict):
            return {k: short(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [short(x) for x in v]
        return v

    text = json.dumps(short(value), sort_keys=True) if isinstance(value, (dict, list)) else str(short(value))
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


def _configs_section(exp: art.Experiment, models: Sequence[str]) -> str:
    cols: dict[str, dict[str, str]] = {}
    for m in models:
        try:
            cfg = art.read_model_config(exp.path, m)
        except art.ArtifactError as exc:
            cfg = {"error": exc.problem}
        cols[m] = {k: _config_text(v) for k, v in cfg.items()}
    keys = sorted({k for c in cols.values() for k in c})
    table = pd.DataFrame({m: [c.get(k, "") for k in keys] for m, c in cols.items()}, index=pd.Index(keys, name="key"))
    return _section(
        "configs",
        "Model configurations",
        f'<div class="wide configs">{_table_html(table)}</div>',
        "Each model's config.json: input size, preprocessing, weights, epochs, seed, size and speed.",
    )


def _notes_by_sample(exp_dir: Path, sample_ids: list[str]) -> tuple[dict[str, list[str]], dict[str, tuple], str]:
    """(note lines per sample, current tags per sample, status message) from pipeline.notes when available."""
    try:
        from pipeline import notes
    except Exception as exc:  # noqa: BLE001 - the notes module is optional for the report
        return {}, {}, f"Mentor notes unavailable (pipeline.notes could not be imported: {type(exc).__name__})."
    try:
        hist = notes.notes_for(exp_dir, sample_ids)
        tags = notes.current_tags(exp_dir)
    except Exception as exc:  # noqa: BLE001 - a corrupt notes file must not stop the report
        return {}, {}, f"Mentor notes unavailable ({type(exc).__name__}: {exc})."
    lines: dict[str, list[str]] = {}
    for r in hist.itertuples(index=False):
        text = str(r.text or "").strip()
        what = f"{r.action} {r.tag}" if r.tag and r.tag != getattr(notes, "COMMENT", "comment") else "comment"
        who = f"{r.author} · " if r.author else ""
        lines.setdefault(str(r.sample_id), []).append(
            f"{who}{str(r.created)[:16]} · {what}" + (f": {text}" if text else "")
        )
    current = {str(s): tuple(t) for s, t in zip(tags["sample_id"], tags["tags"])}
    n = sum(len(v) for v in lines.values())
    return lines, current, f"{n} mentor note{'s' if n != 1 else ''} on these samples (from notes.sqlite)."


def _read_thumbnails(exp_dir: Path, ids: list[str]) -> dict[str, bytes]:
    """PNG bytes of `ids` only (a filtered Parquet read: the file may hold hundreds of thousands of images)."""
    path = exp_dir / art.THUMBNAILS_FILE
    if not ids:
        return {}
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["sample_id", "png"], filters=[("sample_id", "in", list(ids))])
        got = dict(zip(map(str, table.column("sample_id").to_pylist()), table.column("png").to_pylist()))
    except Exception:  # noqa: BLE001 - fall back to the checked reader, which names the problem
        t = art.read_thumbnails(exp_dir)
        got = dict(zip(ids, t["png"].reindex(pd.Index(ids, dtype=object)).tolist()))
    return {sid: bytes(v) for sid, v in got.items() if isinstance(v, (bytes, bytearray))}


def _gallery_section(exp: art.Experiment, aligned: Aligned, preds: Mapping[str, np.ndarray], n_gallery: int) -> str:
    base = aligned.models
    names = exp.class_names
    wrong = np.vstack([preds[m] != aligned.y for m in base])
    n_wrong = wrong.sum(axis=0)
    # Confidence of each wrong answer (the probability given to the wrongly predicted class), 0 when right.
    conf = np.vstack(
        [np.where(wrong[i], aligned.probs[m][np.arange(aligned.n), preds[m]], 0.0) for i, m in enumerate(base)]
    )
    cand = np.flatnonzero(n_wrong > 0)
    order = cand[np.lexsort((-conf.max(axis=0)[cand], -n_wrong[cand]))][:n_gallery]
    ids = [str(s) for s in aligned.sample_ids[order]]
    thumbs: dict[str, bytes] = {}
    thumb_note = ""
    try:
        thumbs = _read_thumbnails(exp.path, ids)
    except art.ArtifactError as exc:
        thumb_note = f" Thumbnails unavailable: {exc.problem}."
    lines, tags, notes_msg = _notes_by_sample(exp.path, ids)
    cards = []
    for row, sid in zip(order, ids):
        t = int(aligned.y[row])
        img = (
            f'<img alt="{_esc(sid)}" src="data:image/png;base64,{base64.b64encode(thumbs[sid]).decode()}">'
            if sid in thumbs
            else '<div class="noimg">no thumbnail</div>'
        )
        answers = "".join(
            f'<li class="{"bad" if preds[m][row] != t else "ok"}">{_esc(m)}: {_esc(names[int(preds[m][row])])} '
            f"({aligned.probs[m][row, int(preds[m][row])]:.2f})</li>"
            for m in base
        )
        tag_html = "".join(f'<span class="tag">{_esc(x)}</span>' for x in tags.get(sid, ()))
        note_html = "".join(f"<li>{_esc(x)}</li>" for x in lines.get(sid, [])[-4:])
        cards.append(
            f'<div class="card">{img}<div class="sid">{_esc(sid)}</div>'
            f"<div>true <b>{_esc(names[t])}</b> · wrong for {int(n_wrong[row])}/{len(base)}</div>"
            f'<ul class="answers">{answers}</ul>{tag_html}'
            + (f'<ul class="notes">{note_html}</ul>' if note_html else "")
            + "</div>"
        )
    intro = (
        f"The {len(order)} samples most models get wrong, most confidently wrong first "
        f"({int((n_wrong > 0).sum()):,} samples are misclassified by at least one model). Each card lists every "
        f"model's answer with its probability, the current mentor tags and the latest notes. {_esc(notes_msg)}"
        f"{_esc(thumb_note)}"
    )
    body = '<div class="gallery">' + "".join(cards) + "</div>" if cards else "<p>No misclassified samples.</p>"
    return _section("gallery", "Top misclassifications", body, intro)


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0 auto;max-width:1040px;
 padding:16px 20px;color:#1d2733;font-size:14px;line-height:1.45}
header{border-bottom:3px solid #2a6fb0;margin-bottom:10px;padding-bottom:6px}
h1{margin:0 0 4px;font-size:24px} h2{border-bottom:1px solid #c9d3de;padding-bottom:3px;margin-top:26px;font-size:19px}
h3{font-size:15px;margin:14px 0 6px}
.meta{color:#4a5868;font-size:13px} .meta code{background:#eef2f6;padding:1px 4px;border-radius:3px}
.intro{color:#4a5868;margin:4px 0 10px}
.verdicts li{margin:3px 0} .caution{background:#fff4e0;border-left:4px solid #e8a33d;padding:4px 8px}
.toc a{margin-right:10px}
.grid{display:flex;flex-wrap:wrap;gap:10px} .grid .cell{flex:0 0 calc(50% - 5px);min-width:0}
.grid.full .cell{flex-basis:100%} @media screen and (max-width:900px){.grid .cell{flex-basis:100%}}
.wide{overflow-x:auto} .configs td{overflow-wrap:anywhere}
thead{display:table-header-group} table{border-collapse:collapse;font-size:12.5px;margin:6px 0}
th,td{border:1px solid #d5dde6;padding:3px 6px;text-align:right}
th{background:#eef2f6} td:first-child,th:first-child{text-align:left}
dl.facts{display:grid;grid-template-columns:180px 1fr;gap:2px 10px;margin:6px 0} dl.facts dt{color:#4a5868}
dl.facts dd{margin:0}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(185px,1fr));gap:8px}
.card{border:1px solid #d5dde6;border-radius:6px;padding:6px;font-size:12px;break-inside:avoid}
.card img{width:100%;max-width:180px;image-rendering:pixelated;display:block;margin:0 auto 4px}
.noimg{height:90px;background:#eef2f6;color:#777;text-align:center;line-height:90px}
.sid{font-family:monospace;font-size:11px;word-break:break-all}
.answers,.notes{margin:3px 0;padding-left:16px} .answers .bad{color:#b3261e} .answers .ok{color:#1b6e2a}
.notes{color:#444;font-style:italic}
.tag{display:inline-block;background:#fde7c8;border-radius:8px;padding:0 6px;margin:2px 3px 0 0;font-size:11px}
footer{margin-top:30px;color:#6a7888;font-size:12px;border-top:1px solid #c9d3de;padding-top:6px}
@page{size:A4 landscape;margin:10mm}
@media print{body{max-width:none;width:1000px;padding:0;margin:0} section{break-inside:auto}
 .cell,.card,tr{break-inside:avoid} h2{break-after:avoid} .modebar-container{display:none!important}
 .cell{overflow:hidden}}
"""
# Plotly draws a figure once, at the width its container has when the figure's script runs, and does not
# redraw for print. Hence cell widths that do not depend on cells parsed later (a fixed flex basis, not
# "grow"), and a printed body as wide as the screen's content (1000 px; html_to_pdf renders with a 1040 px
# window), which fits an A4-landscape page with 10 mm margins (1047 px).


def render_report_html(
    exp_dir: Path | str,
    models: Sequence[str] | None = None,
    eval_set: str = "test",
    thresholds: Mapping[str, float | None] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    n_gallery: int = 24,
    *,
    exclude: Collection[str] = (),
    subgroup_columns: Sequence[str] | None = None,
    threshold_sources: Mapping[str, str] | None = None,
) -> str:
    """The meeting report as one self-contained HTML string (see `build_report`)."""
    from plotly.offline import get_plotlyjs

    started = time.perf_counter()
    exp = art.load_experiment(exp_dir)
    if not exp.models:
        raise invalid_argument("exp_dir", "an experiment with at least one finished model", f"{exp.path} (no models)")
    if models is None:
        models = list(exp.models)
    models = list(dict.fromkeys(models))
    unknown = [m for m in models if m not in exp.models]
    if not models or unknown:
        raise invalid_argument("models", f"names among {exp.models}", unknown or "an empty list")
    if eval_set not in exp.eval_sets:
        raise invalid_argument("eval_set", f"one of {exp.eval_sets}", repr(eval_set))
    if not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise invalid_argument("n_boot", "a positive int", repr(n_boot))
    aligned = load_aligned(exp, models, eval_set, exclude=exclude)
    if aligned.n == 0:
        raise invalid_argument(
            "eval_set", f"an evaluation set on which every model in {models} has predictions", repr(eval_set)
        )
    binary = len(exp.class_names) == 2
    probs = with_ensemble(aligned)
    thr = _resolve_thresholds(binary, list(probs), thresholds)
    pos = exp.positive_index
    preds = {m: mt.predict_labels(P, thresholds=thr[m], pos_index=pos) for m, P in probs.items()}
    colors = figures.model_colors(exp.models)
    colors[ENSEMBLE] = "#222222"
    fp = artifact_fingerprint(exp.path, models)
    created = datetime.now(UTC).replace(microsecond=0).isoformat()

    leaderboard, _ = _leaderboard_section(exp, aligned, probs, thr, n_boot, seed)
    rows: list[dict[str, Any]] = []
    if len(models) >= 2:
        rows = mt.pairwise_comparisons(
            aligned.y,
            aligned.probs,
            aligned.groups,
            thresholds={m: thr[m] for m in models},
            pos_index=pos,
            metrics=("roc_auc", "balanced_accuracy"),
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
        )
    caution = clustering_note(aligned.n, len(np.unique(aligned.groups))) if rows else None
    paired, lines = _paired_section(exp, rows, models, alpha, n_boot, caution)
    runs_html, runs_line = runs_section(
        exp, models, eval_set, thr, n_boot=n_boot, seed=seed, alpha=alpha, exclude=exclude, colors=colors
    )
    sections = [
        leaderboard,
        _curves_section(exp, aligned, probs, thr, colors),
        _confusion_section(exp, aligned, probs, thr, preds),
        _calibration_section(exp, aligned, probs, colors),
        paired,
        runs_html,
        subgroups_section(
            exp, aligned, thr, columns=subgroup_columns, n_boot=n_boot, seed=seed, alpha=alpha, colors=colors
        ),
        _disagreement_section(exp, aligned, preds),
        _dataset_section(exp, aligned, eval_set),
        _configs_section(exp, models),
        _gallery_section(exp, aligned, preds, n_gallery),
    ]
    thr_text = ", ".join(f"{m} {t:.3f}" for m, t in thr.items() if t is not None) or "argmax (multiclass)"
    summary_items = "".join(f"<li>{_esc(x)}</li>" for x in [*lines, *([runs_line] if runs_line else [])])
    summary_items = summary_items or "<li>One model: no paired comparison.</li>"
    summary = _section(
        "summary",
        "At a glance",
        f'<ul class="verdicts">{summary_items}</ul>'
        + (f'<p class="caution">{_esc(caution)}</p>' if caution else "")
        + '<p class="toc">Sections: '
        + "".join(f'<a href="#{s}">{s.replace("-", " ")}</a>' for s in REPORT_SECTIONS[1:])
        + ('<a href="#runs">runs</a>' if runs_html else "")
        + "</p>",
        (
            "DeLong verdicts for every pair"
            if binary
            else "Macro ROC AUC by paired bootstrap and DeLong per one-vs-rest class, for every pair"
        )
        + " (Holm-adjusted over pairs); details under Paired tests.",
    )
    header = (
        f"<header><h1>Meeting report: {_esc(exp.name)}</h1>"
        f'<div class="meta">Evaluation set <b>{_esc(eval_set)}</b> · {aligned.n:,} samples · models '
        f"{_esc(', '.join(models))} · thresholds {_esc(thr_text)} · {n_boot} bootstrap resamples (seed {seed})"
        + (
            f' · <span id="excluded">{aligned.excluded:,} samples excluded</span> (e.g. marked "label wrong")'
            if aligned.excluded
            else ""
        )
        + "</div>"
        + threshold_sources_html(thr, thresholds, threshold_sources)
        + f'<div class="meta" id="fingerprint">Artifact fingerprint <code>{fp["combined"]}</code> '
        f"(dataset <code>{_esc(fp['dataset'])}</code>, predictions sha256 <code>{fp['predictions']}</code>) · "
        f'created <time datetime="{created}">{created}</time></div></header>'
    )
    footer = (
        f"<footer>Generated by <code>python -m pipeline report</code> (MedCompare, pipeline "
        f"{_esc(exp.meta.get('pipeline_version', art.PIPELINE_VERSION))}) "
        f"in {time.perf_counter() - started:.1f}s "
        f"from <code>{_esc(exp.path.name)}</code>. Self-contained: plotly.js and thumbnails are inlined; "
        "it needs no network.</footer>"
    )
    head = (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="medcompare-fingerprint" content="{fp["combined"]}">'
        f'<meta name="medcompare-dataset-fingerprint" content="{_esc(fp["dataset"])}">'
        f'<meta name="medcompare-predictions-sha256" content="{fp["predictions"]}">'
        f'<meta name="medcompare-created" content="{created}">'
        f"<title>Meeting report: {_esc(exp.name)} ({fp['combined']})</title><style>{_CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
    )
    return head + header + summary + "".join(sections) + footer + "</body></html>"


def build_report(
    exp_dir: Path | str,
    models: Sequence[str] | None = None,
    eval_set: str = "test",
    thresholds: Mapping[str, float | None] | None = None,
    n_boot: int = 1000,
    out_html: Path | str | None = None,
    out_pdf: Path | str | None = None,
    seed: int = 0,
    alpha: float = 0.05,
    n_gallery: int = 24,
    *,
    exclude: Collection[str] = (),
    subgroup_columns: Sequence[str] | None = None,
    threshold_sources: Mapping[str, str] | None = None,
) -> Path:
    """Write the meeting report (HTML, and a PDF when `out_pdf` is given); returns the HTML path.

    Default output: `<experiment>/reports/report-<eval_set>-<UTC time>.html`. Thresholds apply to binary
    tasks (0.5 for a model not listed; the key "Ensemble (mean)" sets the ensemble's); multiclass uses argmax.
    `exclude` holds sample ids left out of every number (the dashboard passes the samples its pages exclude).
    `subgroup_columns`: the columns of the Subgroups section (default: the config's `[subgroups] columns`).
    `threshold_sources`: where each threshold came from (the dashboard's 'Youden's J on val'...), printed beside
    it; default 'given' or 'default 0.5'. A "Runs & stability" section appears when a backbone has several runs.
    """
    text = render_report_html(
        exp_dir,
        models,
        eval_set,
        thresholds,
        n_boot,
        seed,
        alpha,
        n_gallery,
        exclude=exclude,
        subgroup_columns=subgroup_columns,
        threshold_sources=threshold_sources,
    )
    if out_html is None:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        out_html = Path(exp_dir) / "reports" / f"report-{eval_set}-{stamp}.html"
    out_html = Path(out_html)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    art.atomic_write_bytes(out_html, text.encode("utf-8"))
    if out_pdf is not None:
        html_to_pdf(out_html, out_pdf)
    return out_html
