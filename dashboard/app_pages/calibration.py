"""Calibration: reliability diagram per model, expected calibration error, Brier score, confidence histogram."""

from __future__ import annotations

import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures

sel = state.selection()
st.title("Calibration")
st.caption(
    f"Does a predicted probability of 0.8 for **{sel.class_name}** mean 80% of such samples are "
    f"{sel.class_name}?" + ("" if sel.binary else " (one-vs-rest; pick the class in the sidebar)")
)
c1, c2 = st.columns(2)
with c1:
    n_bins = st.slider("Bins", min_value=5, max_value=30, value=10, key="cal_bins")
with c2:
    strategy = st.radio(
        "Binning",
        ["uniform", "quantile"],
        horizontal=True,
        key="cal_strategy",
        help="Uniform: equal-width probability bins. Quantile: equal number of samples per bin.",
    )

target = "class"
if not sel.binary:
    target = st.radio(
        "Calibration of",
        ["class", "top label"],
        horizontal=True,
        key="cal_target",
        format_func=lambda t: (
            f"{sel.class_name} vs rest" if t == "class" else "top label (confidence of the predicted class)"
        ),
    )
data = widgets.model_data_ui(sel)
class_index = sel.class_index if target == "class" else None
results = {m: da.get_calibration(sel.exp, m, sel.eval_set, class_index, n_bins=n_bins, strategy=strategy) for m in data}
if results:
    st.dataframe(
        [{"model": m, "ECE": r["ece"], "Brier score": r["brier"]} for m, r in results.items()],
        width="stretch",
        key="cal_table",
    )
    st.caption(
        f"Lower is better for both. ECE: sample-weighted gap between predicted probability and observed "
        f"frequency over {n_bins} equal-width bins; Brier: mean squared error of the probability"
        + (" (multiclass: squared distance to the one-hot label)." if class_index is None else ".")
    )
    if class_index is None and strategy == "quantile":
        st.caption("Top-label reliability uses equal-width bins.")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(
            figures.reliability_figure({m: r["reliability"] for m, r in results.items()}, colors=sel.colors),
            width="stretch",
            key="cal_reliability",
        )
    with right:
        st.plotly_chart(
            figures.histogram_figure({m: r["histogram"] for m, r in results.items()}, colors=sel.colors),
            width="stretch",
            key="cal_hist",
        )
