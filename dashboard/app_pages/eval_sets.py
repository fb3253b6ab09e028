"""Evaluation sets: the same models on several evaluation sets side by side (e.g. cropped vs uncropped)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures

sel = state.selection()
st.title("Evaluation sets")
eval_sets = sel.exp.eval_sets
if len(eval_sets) < 2:
    st.info(
        f"Experiment **{sel.exp.name}** has one evaluation set (**{eval_sets[0] if eval_sets else '—'}**). "
        "Add evaluation sets in the experiment config (e.g. uncropped test images) to compare here."
    )
c1, c2 = st.columns([2, 1])
chosen_sets = c1.multiselect("Evaluation sets", eval_sets, default=eval_sets, key="es_sets")
metric = c2.selectbox(
    "Metric for the chart",
    da.LEADERBOARD_METRICS,
    key="es_metric",
    format_func=lambda m: figures.METRIC_LABELS.get(m, m),
)

rows = []
loaded: dict[str, dict] = {}
for es in chosen_sets:
    data = loaded[es] = widgets.model_data_ui(sel, eval_set=es)
    for model in data:
        s = da.get_summary(sel.exp, model, es, state.decision_threshold(sel, model))
        rows.append(
            {
                "model": model,
                "eval set": es,
                "n": data[model].n,
                **{figures.METRIC_LABELS.get(k, k): s.get(k) for k in da.LEADERBOARD_METRICS},
            }
        )
if rows:
    table = pd.DataFrame(rows)
    label = figures.METRIC_LABELS.get(metric, metric)
    st.plotly_chart(
        figures.grouped_bar_figure(table, x="model", y=label, color="eval set", title=f"{label} per evaluation set"),
        width="stretch",
        key="es_bar",
    )
    wide = table.pivot(index="model", columns="eval set", values=label)
    if len(chosen_sets) >= 2:
        base = chosen_sets[0]
        for es in chosen_sets[1:]:
            if es in wide.columns and base in wide.columns:
                wide[f"Δ {es} − {base}"] = wide[es] - wide[base]
    st.markdown(f"**{label}** by evaluation set")
    st.dataframe(wide, width="stretch", key="es_wide")
    st.markdown("**All metrics**")
    st.dataframe(table, width="stretch", hide_index=True, key="es_table")

    st.subheader("ROC of one model across evaluation sets")
    model = st.selectbox("Model", sel.models, key="es_model")
    curves = []
    for i, es in enumerate(chosen_sets):
        if model not in loaded[es]:
            continue  # its problem was reported above
        cur = da.get_curves(sel.exp, model, es, sel.class_index)
        if cur["roc"] is not None:
            curves.append(figures.Curve(es, *cur["roc"], area=cur["roc_auc"], dash=None if i == 0 else "dash"))
    st.plotly_chart(
        figures.curve_figure(curves, "roc", title=f"{model}: positive class {sel.class_name}"),
        width="stretch",
        key="es_roc",
    )
