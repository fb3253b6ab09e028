"""Runs & stability: is a backbone better, or did it get a lucky seed? Training noise beside test-sample noise."""

from __future__ import annotations

import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline.artifacts import ArtifactError

sel = state.selection()
st.title("Runs & stability")
st.caption(
    "Each backbone may be trained several times (`[train] seeds`, `[train] folds`). The spread over runs "
    "is the training noise; the first run's 95% interval is the test-sample noise. Call a backbone better "
    "only when it wins across runs *and* the per-run tests on *Paired comparison* agree."
)

groups = da.get_backbone_runs(sel.exp)
selected = [b for b, runs in groups.items() if any(r in sel.models for r in runs)] or list(groups)
loaded = widgets.model_data_ui(sel, [r for b in selected for r in groups[b]])  # reports unreadable runs
groups = {b: [r for r in groups[b] if r in loaded] for b in selected}
groups = {b: runs for b, runs in groups.items() if runs}
selected = list(groups)
runs = [r for b in selected for r in groups[b]]
if not runs:
    st.info("No readable models selected.")
    st.stop()
if max(len(groups[b]) for b in selected) < 2:
    st.info(
        "Every selected backbone has a single run: rebuild with `[train] seeds = [0, 1, 2]` or "
        "`[train] folds = 5` (or `--seeds` / `--folds`) to see training noise here. The numbers below are "
        "the single runs."
    )

c1, c2 = st.columns(2)
with c1:
    metric = st.selectbox(
        "Metric",
        da.LEADERBOARD_METRICS,
        index=da.LEADERBOARD_METRICS.index("roc_auc"),
        format_func=lambda m: figures.METRIC_LABELS.get(m, m),
        key="runs_metric",
    )
with c2:
    n_boot = st.select_slider("Bootstrap resamples (grouped)", [100, 200, 500, 1000], value=200, key="runs_n_boot")
try:
    res = da.get_runs_comparison(
        sel.exp, runs, sel.eval_set, metric, {m: state.decision_threshold(sel, m) for m in runs}, n_boot=n_boot
    )
except (ArtifactError, ValueError) as exc:
    st.error(f"Cannot compare runs on **{sel.eval_set}**: {exc}")
    st.stop()

label = figures.METRIC_LABELS.get(metric, metric)
table = res.table
shown, pairs_shown = figures.runs_tables(table, res.pairs, label)
st.subheader("Mean over runs, beside the test-sample interval")
st.dataframe(shown, hide_index=True, width="stretch", key="runs_table")
ranked = sorted(zip(table["backbone"], table["rank_first"]), key=lambda bf: -bf[1])
st.markdown("**Ranks first:** " + " · ".join(f"{b} {f:.0%}" for b, f in ranked))
st.caption(
    f"*Ranks first*: share of {n_boot} draws in which the backbone has the best {label}; each draw "
    "resamples whole patients/lesions of the test set and picks one of each backbone's runs at random, so "
    "it moves with both sources of noise."
)
st.plotly_chart(
    figures.runs_figure(table, label, colors=sel.colors, height=max(260, 70 * len(table) + 80)),
    width="stretch",
    key="runs_fig",
)

st.subheader("Pairs over runs")
if res.pairs.empty:
    st.info("Select at least two backbones.")
else:
    st.dataframe(pairs_shown, hide_index=True, width="stretch", key="runs_pairs")
    st.caption(
        f"Test: {res.test_name}. With k-fold runs the training sets overlap, so a plain t-test over folds "
        "is far too confident; Nadeau and Bengio's correction widens the variance by n_test/n_train. "
        "With seeds on one split it is the paired t-test over seeds. Fewer than two paired runs: no p."
    )
