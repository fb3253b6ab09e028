"""Training: loss and metric curves per epoch for the selected models, and what training cost."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline.artifacts import ArtifactError

sel = state.selection()
st.title("Training")

histories: dict[str, pd.DataFrame] = {}
for model in sel.models:
    try:
        histories[model] = da.get_history(sel.exp, model)
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, f"Model **{model}** (no training curves)")

metrics = sorted(
    {c.removeprefix("val_") for df in histories.values() for c in df.columns if c != "epoch"},
    key=lambda c: (c != "loss", c),
)
if not metrics:
    st.info("No training history for the selected models.")
    st.stop()
chosen = st.multiselect("Curves", metrics, default=metrics[:2], key="train_metrics")
cols = st.columns(2)
for i, metric in enumerate(chosen):
    with cols[i % 2]:
        st.plotly_chart(
            figures.history_figure(histories, metric, colors=sel.colors), width="stretch", key=f"train_{metric}"
        )

rows = []
for model, df in histories.items():
    row = {"model": model, "epochs": len(df)}
    try:
        cfg = da.get_model_config(sel.exp, model)
    except ArtifactError:
        cfg = {}
    if "selected" in df.columns and df["selected"].astype(bool).any():  # the protocol's own choice
        chosen = df[df["selected"].astype(bool)].iloc[-1]
        measure = str(cfg.get("selected_on", "val_auc"))
        row["selected epoch"] = int(chosen["epoch"])
        row["selected on"] = measure
        if measure in df.columns:
            row[f"selected {measure}"] = float(chosen[measure])
    elif "val_loss" in df.columns and len(df):  # models trained before the protocol: lowest val loss
        row["selected epoch"] = int(df["epoch"].iloc[df["val_loss"].idxmin()]) if "epoch" in df else None
        row["selected on"] = "val_loss"
        row["selected val_loss"] = float(df["val_loss"].min())
    if isinstance(cfg.get("stop_reason"), str):
        row["stopped"] = cfg["stop_reason"]
    try:
        cfg = da.get_model_config(sel.exp, model)
        for key, label in (
            ("train_seconds", "train time (s)"),
            ("cpu_seconds", "CPU (s)"),
            ("train_images_per_s", "images/s"),
            ("weights", "weights"),
            ("input_size", "input size"),
        ):
            if key in cfg:
                row[label] = cfg[key]
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, f"Model **{model}**")
    rows.append(row)
st.dataframe(pd.DataFrame(rows), width="stretch", hide_index=True, key="train_table")
