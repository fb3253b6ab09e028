"""Confusion matrices side by side; clicking a cell opens the gallery of exactly those samples."""

from __future__ import annotations

import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures

CELL_KEY = "cm_cell"  # (experiment, eval set, model, true index, predicted index) of the last clicked cell
PER_ROW = 3

sel = state.selection()
st.title("Confusion matrices")
normalize = st.toggle("Row-normalised (share of each true class)", value=False, key="cm_normalize")
st.caption(
    "Rows are true classes, columns predicted. "
    + (
        "Binary predictions use each model's threshold (set on *Threshold tuning*). "
        if sel.binary
        else "Predicted class = highest probability. "
    )
    + "**Click a cell** to see its samples below."
)

data = widgets.model_data_ui(sel)
preds = {m: da.predicted_labels(md, state.decision_threshold(sel, m), sel.exp.positive_index) for m, md in data.items()}
cell = st.session_state.get(CELL_KEY)
if cell is not None and cell[:2] != (sel.exp.name, sel.eval_set):
    cell = None


def _remember(model: str):
    def on_click(custom: list) -> None:
        st.session_state[CELL_KEY] = (sel.exp.name, sel.eval_set, model, int(custom[0]), int(custom[1]))

    return on_click


models = list(data)
for start in range(0, len(models), PER_ROW):
    cols = st.columns(min(PER_ROW, len(models)) if len(models) > 1 else [2, 1])
    for col, model in zip(cols, models[start : start + PER_ROW]):
        md = data[model]
        cm = da.confusion_counts(md.y, preds[model], len(sel.exp.class_names))
        chosen = (cell[3], cell[4]) if cell is not None and cell[2] == model else None
        thr = state.decision_threshold(sel, model)
        title = model + (f" (threshold {thr:.3f})" if thr is not None else "")
        fig = figures.confusion_figure(cm, sel.exp.class_names, normalize=normalize, title=title, selected=chosen)
        with col:
            widgets.clickable_chart_ui(fig, key=f"cm_chart_{model}", on_click=_remember(model))

st.divider()
if cell is None or cell[2] not in data:
    st.info("Click a cell of a confusion matrix to open its samples.")
else:
    _, _, model, t, p = cell
    md, pred = data[model], preds[model]
    names = sel.exp.class_names
    idx = da.cell_indices(md.y, pred, t, p, confidence=md.P[:, p])
    kind = "correct" if t == p else "misclassified"
    st.subheader(f"{model}: true {names[t]} → predicted {names[p]} ({idx.size:,} samples, {kind})")
    widgets.gallery_ui(sel.exp, md, idx, pred, key="cm_gallery")
