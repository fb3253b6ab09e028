"""Subgroups: does each model work for every age band, sex, site, scanner? Metrics per subgroup with grouped CIs,
a forest plot, the largest gap, calibration per subgroup; clicking a marker opens that subgroup's samples."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline import metrics as mt
from pipeline.comparison import ModelData
from pipeline.report import SUBGROUP_METRIC_LABELS as METRIC_LABELS
from pipeline.report import subgroup_gap_rows, subgroup_table_rows

PICK_KEY = "sg_pick"  # (experiment, eval sets, column, model, subgroup name) of the last clicked marker


sel = state.selection()
exp = sel.exp
cfg = da.subgroups_config(exp)
st.title("Subgroups")
st.caption(
    "Does a model that looks fine overall fail one age band, sex, site or scanner? Every number is "
    "computed on the subgroup's samples only, at each model's threshold in force (set on *Threshold "
    "tuning*), with a 95% bootstrap interval that resamples whole patients/lesions."
    + (
        ""
        if sel.binary
        else f" Multiclass: **{sel.class_name}** against the rest (pick the class in "
        "the sidebar), at its one-vs-rest threshold."
    )
)

data = widgets.model_data_ui(sel)
if not data:
    st.stop()
models = list(data)

with st.expander("Subgroup settings"):
    c1, c2, c3 = st.columns(3)
    regex = c1.text_input(
        "Regex on file names (named groups become columns)",
        value=cfg.regex or "",
        key="sg_regex",
        help="e.g. -(?P<magnification>40|100|200|400)- for BreakHis",
    )
    min_size = int(
        c2.number_input("Minimum subgroup size", min_value=1, value=int(cfg.min_size), step=5, key="sg_min_size")
    )
    n_boot = int(c3.select_slider("Bootstrap resamples", options=[200, 500, 1000], value=200, key="sg_n_boot"))
cfg = type(cfg)(
    columns=cfg.columns,
    bins=cfg.bins,
    quantiles=cfg.quantiles,
    regex=regex.strip() or None,
    regex_source=cfg.regex_source,
    min_size=min_size,
)
try:
    frame = da.get_subgroup_frame(exp, cfg.columns, cfg.regex, cfg.regex_source)
except ValueError as exc:
    st.error(str(exc))
    cfg = type(cfg)(columns=cfg.columns, bins=cfg.bins, quantiles=cfg.quantiles, min_size=min_size)
    frame = da.get_subgroup_frame(exp, cfg.columns)
columns = list(frame.columns)
if not columns:
    st.info(
        "The sample table has no metadata column to split by (age, sex, site...). Add a metadata CSV, "
        "DICOM fields or a regex on the file names ([subgroups] in the experiment config)."
    )
    st.stop()
if st.session_state.get("sg_column") not in columns:
    st.session_state["sg_column"] = next((c for c in columns if c != "eval_set"), columns[0])
c1, c2 = st.columns([1, 1])
column = c1.selectbox("Subgroup column", columns, key="sg_column")
metric = (
    c2.radio(
        "Metric (forest plot, gap)",
        list(METRIC_LABELS),
        index=list(METRIC_LABELS).index("roc_auc"),  # the ranking metric, as the report's forest plot
        format_func=METRIC_LABELS.get,
        horizontal=True,
        key="sg_metric",
    )
    or "roc_auc"
)
eval_sets = exp.eval_sets if column == "eval_set" else [sel.eval_set]
if column == "eval_set":
    st.caption("Column **eval_set**: every evaluation set at once, one subgroup each.")

thresholds = {m: (state.decision_threshold(sel, m) if sel.binary else state.get_threshold(sel, m)) for m in models}
res = da.get_subgroup_metrics(exp, models, eval_sets, column, cfg, thresholds, sel.class_index, n_boot=n_boot)
label = METRIC_LABELS[metric]

# ---------------------------------------------------------------- table
st.dataframe(subgroup_table_rows(res), width="stretch", hide_index=True, key="sg_table")
st.caption(
    f"Subgroups with fewer than {min_size} samples show *too few*; *n/a*: the metric is undefined there "
    "(e.g. an AUC on a subgroup with one class only)."
)

# ---------------------------------------------------------------- largest gap and worst subgroup
st.subheader("Largest gap between subgroups")
st.dataframe(subgroup_gap_rows(res, metric), width="stretch", hide_index=True, key="sg_gaps")
st.caption(
    "Best minus worst subgroup (with numbers) of each model; the interval comes from the same patient-"
    "grouped resamples for both subgroups. An interval above 0 means the gap is more than sampling noise."
)

# ---------------------------------------------------------------- forest plot (click-through)
al = da.get_subgroup_inputs(exp, models, eval_sets)
overall = {}
for model in models:
    if metric == "roc_auc":
        y_pos = al.y == (exp.positive_index if sel.binary else sel.class_index)
        if 0 < int(y_pos.sum()) < y_pos.size:
            ci = exp.positive_index if sel.binary else sel.class_index
            overall[model] = mt.roc_auc(y_pos, al.probs[model][:, ci])


def _remember(custom: list) -> None:
    model, i = str(custom[0]), int(custom[1])
    if 0 <= i < len(res.names):
        st.session_state[PICK_KEY] = (exp.name, tuple(eval_sets), column, model, res.names[i])


fig = figures.forest_figure(
    res.names,
    {m: [tuple(e) for e in res.values[m][metric]] for m in models},
    label,
    too_few=res.too_few.tolist(),
    overall=overall or None,
    colors=sel.colors,
)
st.subheader(f"{label} per subgroup")
st.caption(
    "One row per subgroup, one marker and 95% CI per model"
    + (" (dotted: the value on all samples)" if overall else "")
    + ". **Click a marker** to open that subgroup's samples below."
)
widgets.clickable_chart_ui(fig, key="sg_forest", on_click=_remember)

# ---------------------------------------------------------------- calibration per subgroup
st.subheader("Calibration per subgroup")
ece = da.get_subgroup_ece(exp, models, eval_sets, column, cfg, sel.class_index)
ece_shown = {m: np.where(res.too_few, np.nan, v) for m, v in ece.items()}
st.plotly_chart(figures.subgroup_ece_figure(res.names, ece_shown, colors=sel.colors), width="stretch", key="sg_ece")
st.caption(
    "Expected calibration error of the predicted probability of "
    f"**{sel.class_name if not sel.binary else exp.class_names[exp.positive_index]}** over 15 equal-width "
    "bins, within each subgroup (no bar: too few samples). Lower is better."
)

# ---------------------------------------------------------------- samples of the clicked subgroup
st.divider()
pick = st.session_state.get(PICK_KEY)
if (
    pick is None
    or pick[:3] != (exp.name, tuple(eval_sets), column)
    or pick[3] not in models
    or pick[4] not in res.names
):
    st.info("Click a marker of the forest plot to open that subgroup's samples.")
else:
    _, _, _, model, name = pick
    groups = da.get_subgroups(exp, models, eval_sets, column, cfg)
    in_group = groups.codes == res.names.index(name)
    md = ModelData(
        model=model, eval_set=",".join(eval_sets), sample_ids=al.sample_ids, y=al.y, P=al.probs[model], groups=al.groups
    )
    pred = da.predicted_labels(md, state.decision_threshold(sel, model), exp.positive_index)
    only_wrong = st.toggle("Misclassified only", value=True, key="sg_only_wrong")
    keep = in_group & (pred != md.y) if only_wrong else in_group
    idx = np.flatnonzero(keep)
    # Most confident mistakes first, as the gallery of the confusion page.
    idx = idx[np.argsort(-md.P[idx, pred[idx]], kind="stable")]
    st.subheader(
        f"{model}: {column} = {name} ({idx.size:,} of {int(in_group.sum()):,} samples"
        + (", misclassified)" if only_wrong else ")")
    )
    widgets.gallery_ui(exp, md, idx, pred, key="sg_gallery")
