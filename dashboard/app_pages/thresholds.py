"""Threshold tuning: move a model's operating point and watch metrics, confusion matrix and ROC point follow."""

from __future__ import annotations

import numpy as np
import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline.artifacts import ArtifactError

sel = state.selection()
st.title("Threshold tuning")
ci = sel.class_index
st.caption(
    f"Positive class **{sel.class_name}**"
    + ("" if sel.binary else " one-vs-rest (pick the class in the sidebar)")
    + ". A sample is called positive when its probability is at or above the threshold. "
    "Thresholds are kept per model for this session and used on every page (and in the link)."
)

data = widgets.model_data_ui(sel)
if not data:
    st.stop()
if st.session_state.get("thr_model") not in data:
    st.session_state["thr_model"] = next(iter(data))


def _has_predictions(name: str, eval_set: str) -> bool:
    try:
        return da.get_model_data(sel.exp, name, eval_set).n > 0
    except ArtifactError:
        return False


c1, c2, c3 = st.columns([2, 1, 1.4])
with c1:
    model = st.selectbox("Model", list(data), key="thr_model")
with c2:
    target = st.number_input(
        "Target sensitivity", min_value=0.5, max_value=1.0, value=0.95, step=0.01, format="%.2f", key="thr_target"
    )
candidates = [es for es in dict.fromkeys(["val", "oof", *sel.exp.eval_sets]) if _has_predictions(model, es)]
sets = state.choice_sets(sel, model, candidates)
with c3:
    if st.session_state.get("thr_choose_on") not in sets:
        st.session_state["thr_choose_on"] = sets[0] if sets else sel.eval_set
    choose_on = st.selectbox(
        "Choose on",
        sets or [sel.eval_set],
        key="thr_choose_on",
        help="Where the buttons pick a threshold: the validation set (or out-of-fold "
        "predictions of k-fold runs). The threshold is then applied unchanged to the "
        "set shown below.",
    )
optimistic = choose_on == sel.eval_set
if optimistic:
    st.warning(
        f"Thresholds picked with the buttons are chosen on **{sel.eval_set}**, the set reported below: "
        "its sensitivity and specificity at that threshold are optimistic (tuned on the data they are "
        "reported on). Choose on the validation set for honest numbers.",
        icon="⚠️",
    )

slider_key = f"thr_slider::{sel.exp.name}::{model}::{ci}"
if slider_key not in st.session_state:
    st.session_state[slider_key] = state.get_threshold(sel, model, ci)


def _apply(value: float, source: str) -> None:
    value = float(np.clip(value, 0.0, 1.0))
    state.set_threshold(sel, model, value, ci, source=source)
    st.session_state[slider_key] = value


def _on_slider() -> None:
    state.set_threshold(sel, model, float(st.session_state[slider_key]), ci, source="set by hand")


def _on(eval_set: str) -> str:
    return f"on {eval_set}" + (" (optimistic: the reported set)" if eval_set == sel.eval_set else "")


def _on_target() -> None:
    es = st.session_state["thr_choose_on"]
    target_value = float(st.session_state["thr_target"])
    try:
        _apply(
            da.threshold_for_sensitivity(sel.exp, model, es, ci, target_value),
            f"sensitivity ≥ {target_value:.2f} {_on(es)}",
        )
    except ValueError as exc:  # e.g. no positive samples in this evaluation set
        st.session_state["thr_message"] = f"Cannot pick a threshold for {model}: {exc}"


def _on_youden() -> None:
    es = st.session_state["thr_choose_on"]
    try:
        _apply(da.youden_threshold(sel.exp, model, es, ci), f"Youden's J {_on(es)}")
    except ValueError as exc:
        st.session_state["thr_message"] = f"Cannot pick a threshold for {model}: {exc}"


def _on_reset() -> None:
    _apply(state.DEFAULT_THRESHOLD, "default 0.5")


b1, b2, b3 = st.columns(3)
b1.button(
    f"Sensitivity ≥ {target:.2f}",
    on_click=_on_target,
    key="thr_btn_target",
    width="stretch",
    help="Highest threshold whose sensitivity reaches the target (the screening use).",
)
b2.button(
    "Youden's J",
    on_click=_on_youden,
    key="thr_btn_youden",
    width="stretch",
    help="Threshold maximising sensitivity + specificity - 1.",
)
b3.button("Reset to 0.5", on_click=_on_reset, key="thr_btn_reset", width="stretch")
if message := st.session_state.pop("thr_message", None):
    st.warning(message)
thr = st.slider(
    "Threshold", min_value=0.0, max_value=1.0, step=0.001, format="%.3f", key=slider_key, on_change=_on_slider
)
state.set_threshold(sel, model, float(thr), ci)

st.caption(
    f"Threshold of **{model}**: {thr:.3f}, {state.threshold_source(sel, model, ci)}; "
    f"the numbers below are on **{sel.eval_set}**."
)
m = da.metrics_at_threshold(sel.exp, model, sel.eval_set, ci, thr)
cols = st.columns(6)
for col, key in zip(cols, ("sensitivity", "specificity", "precision", "npv", "f1", "balanced_accuracy")):
    col.metric(figures.METRIC_LABELS.get(key, key), f"{m[key]:.3f}")
st.caption(
    f"TP {m['tp']:,} · FP {m['fp']:,} · FN {m['fn']:,} · TN {m['tn']:,} · "
    f"accuracy {m['accuracy']:.3f} · Youden J {m['youden_j']:.3f}"
)

left, mid, right = st.columns([1, 1.3, 1.3])
neg_name = "rest" if not sel.binary else sel.exp.class_names[1 - sel.exp.positive_index]
cm2 = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]])
with left:
    st.plotly_chart(
        figures.confusion_figure(cm2, [neg_name, sel.class_name], title="At this threshold"),
        width="stretch",
        key="thr_cm",
    )
cur = da.get_curves(sel.exp, model, sel.eval_set, ci)
if cur["roc"] is None:
    mid.info(f"No ROC curve: this evaluation set has only one class for {sel.class_name} vs rest.")
else:
    fpr, tpr, t = cur["roc"]
    roc = figures.Curve(
        model, fpr, tpr, t, area=cur["roc_auc"], marker=(m["fpr"], m["sensitivity"], thr), color=sel.colors.get(model)
    )
    mid.plotly_chart(
        figures.curve_figure([roc], "roc", title="Operating point on the ROC", height=380),
        width="stretch",
        key="thr_roc",
    )
    right.plotly_chart(
        figures.metric_threshold_figure(
            t,
            {"sensitivity": tpr, "specificity": 1 - np.asarray(fpr)},
            current=thr,
            title="Sensitivity and specificity vs threshold",
            height=380,
        ),
        width="stretch",
        key="thr_curve",
    )

st.subheader("All selected models at their thresholds")
rows = []
for name in data:
    t_m = state.get_threshold(sel, name, ci)
    mm = da.metrics_at_threshold(sel.exp, name, sel.eval_set, ci, t_m)
    rows.append(
        {
            "model": name,
            "threshold": t_m,
            "chosen": state.threshold_source(sel, name, ci),
            **{
                figures.METRIC_LABELS.get(k, k): mm[k]
                for k in ("sensitivity", "specificity", "precision", "npv", "f1", "balanced_accuracy")
            },
        }
    )
st.dataframe(rows, width="stretch", key="thr_table")
