"""Calibration: reliability diagram per model, expected calibration error, Brier score, confidence histogram."""
from __future__ import annotations

import streamlit as st

from dashboard import charts
from dashboard import data_access as da
from dashboard import state, widgets

sel = state.selection()
st.title("Calibration")
st.caption(f"Does a predicted probability of 0.8 for **{sel.class_name}** mean 80% of such samples are "
           f"{sel.class_name}?" + ("" if sel.binary else " (one-vs-rest; pick the class in the sidebar)"))
c1, c2 = st.columns(2)
with c1:
    n_bins = st.slider("Bins", min_value=5, max_value=30, value=10, key="cal_bins")
with c2:
    strategy = st.radio("Binning", ["uniform", "quantile"], horizontal=True, key="cal_strategy",
                        help="Uniform: equal-width probability bins. Quantile: equal number of samples per bin.")

data = widgets.model_data_ui(sel)
results = {m: da.get_calibration(sel.exp, m, sel.eval_set, sel.class_index, n_bins=n_bins, strategy=strategy)
           for m in data}
if results:
    st.dataframe([{"model": m, "ECE": r["ece"], "Brier score": r["brier"]} for m, r in results.items()],
                 width="stretch", key="cal_table")
    st.caption("Lower is better for both. ECE: sample-weighted gap between confidence and frequency over the bins "
               "shown; Brier: mean squared error of the probability.")
    left, right = st.columns(2)
    with left:
        st.plotly_chart(charts.reliability_figure({m: r["reliability"] for m, r in results.items()},
                                                  colors=sel.colors), width="stretch", key="cal_reliability")
    with right:
        st.plotly_chart(charts.histogram_figure({m: r["histogram"] for m, r in results.items()},
                                                colors=sel.colors), width="stretch", key="cal_hist")
