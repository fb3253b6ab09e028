"""ROC and precision-recall curves of the selected models, overlaid, with AUC, CI band and operating point."""

from __future__ import annotations

import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline.artifacts import ArtifactError

BAND_DEFAULT_MAX_ROWS = 1_000_000  # samples x models above which the CI band starts switched off

sel = state.selection()
st.title("ROC & precision-recall curves")

data = widgets.model_data_ui(sel)
# Bands cost a bootstrap per model (cached afterwards); on very large sets they start switched off.
large = sum(md.n for md in data.values()) > BAND_DEFAULT_MAX_ROWS
views = ["one-vs-rest"] if sel.binary else ["one-vs-rest", "micro-average", "macro-average", "all classes"]
c1, c2, c3 = st.columns([2, 1, 1])
with c1:
    view = (
        views[0]
        if sel.binary
        else st.segmented_control(
            "Curves",
            views,
            default="one-vs-rest",
            key="curves_view",
            help="One-vs-rest for the sidebar class, micro/macro averages over classes, or every class of each model.",
        )
        or "one-vs-rest"
    )
with c2:
    show_band = st.toggle(
        "95% CI band",
        value=not large,
        key="curves_band",
        help="Grouped bootstrap (patients/lesions resampled) of each curve; computed once, "
        "then cached." + (" Off by default on this large set." if large else ""),
    )
with c3:
    show_point = st.toggle(
        "Operating points",
        value=True,
        key="curves_points",
        help="Each model's current threshold (set on Threshold tuning).",
    )

# Backbones trained several times: optionally their mean curve over runs with the runs' band.
run_groups = {b: runs for b, runs in da.runs_of_selected(sel.exp, list(data)).items() if len(runs) > 1}
runs_band = None
if run_groups and view == "one-vs-rest":
    r1, r2 = st.columns([1, 2])
    with r1:
        show_runs = st.toggle(
            "Mean over runs",
            value=False,
            key="curves_runs",
            help="For each backbone with several runs (seeds, folds): its curve averaged over all runs "
            "(TPR at each FPR, precision at each recall, on a common grid) with the runs' band: the "
            "training noise of the curve, next to the first run's bootstrap band.",
        )
    if show_runs:
        with r2:
            runs_band = (
                st.segmented_control(
                    "Runs band",
                    ["range", "sd"],
                    default="range",
                    key="curves_runs_band",
                    format_func={"range": "min–max", "sd": "mean ± SD"}.get,
                )
                or "range"
            )

ci = sel.class_index
if view == "one-vs-rest":
    st.caption(
        f"Positive class **{sel.class_name}**"
        + ("" if sel.binary else " against all other classes")
        + ". Hover a curve for the threshold at that point."
    )
    roc, pr = [], []
    prevalence = None
    for model in data:
        cur = da.get_curves(sel.exp, model, sel.eval_set, ci)
        prevalence = cur["prevalence"]
        if cur["roc"] is None:
            st.warning(
                f"**{model}**: the evaluation set has no {'positive' if cur['pr'] is None else 'negative'} "
                f"samples for class {sel.class_name}, so its ROC curve is undefined."
            )
            continue
        thr = state.get_threshold(sel, model, ci) if show_point else None
        style = dict(
            threshold=thr,
            color=sel.colors.get(model),
            at=None if thr is None else da.metrics_at_threshold(sel.exp, model, sel.eval_set, ci, thr),
            bands=da.get_curve_bands(sel.exp, model, sel.eval_set, ci) if show_band else None,
        )
        roc.append(figures.Curve.from_summary(model, cur, "roc", **style))
        pr.append(figures.Curve.from_summary(model, cur, "pr", **style))
    if runs_band is not None:
        for backbone, runs in run_groups.items():
            try:
                mean_curves = da.get_runs_curves(sel.exp, runs, sel.eval_set, ci)
            except ArtifactError as exc:
                widgets.artifact_error_ui(exc, f"Runs of **{backbone}**")
                continue
            color = sel.colors.get(backbone)
            roc.append(figures.Curve.from_runs(backbone, mean_curves["roc"], band=runs_band, color=color, dash="dash"))
            pr.append(figures.Curve.from_runs(backbone, mean_curves["pr"], band=runs_band, color=color, dash="dash"))
        st.caption(
            "Dashed curves labelled *mean of n runs* average every run of the backbone on a common grid; "
            "their band is the runs' "
            + ("min–max" if runs_band == "range" else "mean ± SD")
            + " (training noise), not a confidence interval"
            + ("; switch off the 95% CI band to see it alone." if show_band else ".")
        )
    left, right = st.columns(2)
    with left:
        st.plotly_chart(figures.curve_figure(roc, "roc", title="ROC"), width="stretch", key="roc_chart")
    with right:
        st.plotly_chart(
            figures.curve_figure(pr, "pr", title="Precision-recall", baseline=prevalence),
            width="stretch",
            key="pr_chart",
        )
elif view in ("micro-average", "macro-average"):
    kind = view.split("-")[0]
    curves = []
    for model in data:
        avg = da.get_average_curves(sel.exp, model, sel.eval_set)[kind]
        curves.append(
            figures.Curve(
                model, avg["fpr"], avg["tpr"], avg["thresholds"], area=avg["roc_auc"], color=sel.colors.get(model)
            )
        )
    st.caption(f"{kind.title()}-averaged one-vs-rest ROC over {len(sel.exp.class_names)} classes.")
    st.plotly_chart(figures.curve_figure(curves, "roc", title=f"ROC, {kind}-average"), width="stretch", key="avg_chart")
else:
    st.caption("Every class against the rest, one chart per model.")
    cols = st.columns(min(2, max(1, len(data))))
    for i, model in enumerate(data):
        curves = []
        for k, name in enumerate(sel.exp.class_names):
            cur = da.get_curves(sel.exp, model, sel.eval_set, k)
            curves.append(figures.Curve.from_summary(name, cur, "roc"))
        with cols[i % len(cols)]:
            st.plotly_chart(
                figures.curve_figure(curves, "roc", title=model, height=420), width="stretch", key=f"per_class_{model}"
            )

if data and view in ("one-vs-rest", "micro-average", "macro-average"):
    rows = []
    for model in data:
        cur = da.get_curves(sel.exp, model, sel.eval_set, ci)
        row = {"model": model, f"ROC AUC ({sel.class_name})": cur["roc_auc"], f"AP ({sel.class_name})": cur["ap"]}
        if not sel.binary:
            avg = da.get_average_curves(sel.exp, model, sel.eval_set)
            row["micro ROC AUC"], row["macro ROC AUC"] = avg["micro"]["roc_auc"], avg["macro"]["roc_auc"]
        rows.append(row)
    st.dataframe(rows, width="stretch", key="curves_table")
