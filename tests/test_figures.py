"""Unit tests of pipeline/figures.py: figures carry the numbers they were given, and inputs are checked."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from pipeline import figures


def test_model_colors_are_stable_and_distinct():
    colors = figures.model_colors(["a", "b", "c"])
    assert colors == figures.model_colors(["a", "b", "c"])
    assert len(set(colors.values())) == 3


def test_curve_figure_legend_hover_band_and_marker():
    x = np.array([0.0, 0.2, 1.0])
    y = np.array([0.0, 0.8, 1.0])
    thr = np.array([1.0, 0.6, 0.0])
    band = (np.array([0.0, 1.0]), np.array([0.0, 0.9]), np.array([0.1, 1.0]))
    c = figures.Curve("ResNet50", x, y, thr, area=0.9, area_ci=(0.85, 0.95), band=band, marker=(0.2, 0.8, 0.6))
    fig = figures.curve_figure([c], "roc")
    names = [t.name for t in fig.data]
    assert "ResNet50 (AUC 0.900 [0.850, 0.950])" in names
    line = next(t for t in fig.data if t.name.startswith("ResNet50 (AUC"))
    np.testing.assert_allclose(line.customdata, thr)
    assert "threshold" in line.hovertemplate
    assert any(t.fill == "toself" for t in fig.data)  # CI band
    marker = [t for t in fig.data if t.mode == "markers"]
    assert len(marker) == 1 and marker[0].x == (0.2,) and marker[0].y == (0.8,)


def test_curve_figure_pr_uses_ap_and_baseline():
    c = figures.Curve("m", np.array([0, 1.0]), np.array([1.0, 0.3]), area=0.7)
    fig = figures.curve_figure([c], "pr", baseline=0.3)
    assert any(t.name == "m (AP 0.700)" for t in fig.data)
    assert fig.layout.xaxis.title.text.startswith("Recall")


def test_curve_figure_rejects_unknown_kind():
    with pytest.raises(ValueError, match="argument `kind`.*Received: 'det'"):
        figures.curve_figure([], "det")


def test_confusion_figure_points_carry_cell_indices_and_counts():
    cm = np.array([[5, 1], [2, 8]])
    fig = figures.confusion_figure(cm, ["benign", "malignant"])
    pts = fig.data[0]
    assert isinstance(pts, go.Scatter) and pts.marker.symbol == "square"
    custom = np.asarray(pts.customdata)
    # one point per cell: (true, pred, count, row share)
    assert custom.shape == (4, 4)
    cells = {(int(t), int(p)): int(n) for t, p, n, _ in custom}
    assert cells == {(0, 0): 5, (0, 1): 1, (1, 0): 2, (1, 1): 8}
    np.testing.assert_allclose(pts.x, custom[:, 1])
    np.testing.assert_allclose(pts.y, custom[:, 0])
    assert len(fig.layout.shapes) == 4
    assert "5" in pts.text[0] and "83%" in pts.text[0]


def test_confusion_figure_normalised_text_and_selected_outline():
    cm = np.array([[3, 1, 0], [0, 4, 0], [1, 1, 2]])
    fig = figures.confusion_figure(cm, ["a", "b", "c"], normalize=True, selected=(2, 0))
    assert fig.data[0].text[0].startswith("75%")
    assert len(fig.layout.shapes) == 10  # 9 cells + the outline of the selected one
    outline = fig.layout.shapes[-1]
    assert outline.x0 < 0 < outline.x1 and outline.y0 < 2 < outline.y1


def test_confusion_figure_rejects_shape_mismatch():
    with pytest.raises(ValueError, match=r"Expected shape \(3, 3\).*Received: \(2, 2\)"):
        figures.confusion_figure(np.eye(2), ["a", "b", "c"])


def test_confusion_figure_handles_empty_rows():
    fig = figures.confusion_figure(np.zeros((2, 2), dtype=int), ["a", "b"], normalize=True)
    assert fig.data[0].text[0].startswith("0%")


def test_reliability_figure_skips_empty_bins():
    fig = figures.reliability_figure(
        {"m": (np.array([0.1, 0.5, 0.9]), np.array([0.0, 0.4, 1.0]), np.array([10, 0, 5]))}
    )
    trace = fig.data[1]
    np.testing.assert_allclose(trace.x, [0.1, 0.9])
    np.testing.assert_allclose(trace.customdata, [10, 5])


def test_histogram_figure_bars_at_bin_centres():
    fig = figures.histogram_figure({"m": (np.array([0.0, 0.5, 1.0]), np.array([3, 7]))})
    np.testing.assert_allclose(fig.data[0].x, [0.25, 0.75])
    np.testing.assert_allclose(fig.data[0].y, [3, 7])


def test_history_figure_train_and_val_traces():
    df = pd.DataFrame({"epoch": [1, 2], "loss": [0.9, 0.5], "val_loss": [1.0, 0.7]})
    fig = figures.history_figure({"m": df}, "loss")
    assert [t.name for t in fig.data] == ["m (train)", "m (val)"]
    assert fig.data[1].line.dash == "dash"


def test_metric_threshold_figure_sorted_by_threshold():
    fig = figures.metric_threshold_figure(
        np.array([0.9, 0.1, 0.5]), {"sensitivity": np.array([0.2, 1.0, 0.6])}, current=0.5
    )
    np.testing.assert_allclose(fig.data[0].x, [0.1, 0.5, 0.9])
    np.testing.assert_allclose(fig.data[0].y, [1.0, 0.6, 0.2])


def test_grouped_bar_figure_error_bars():
    df = pd.DataFrame(
        {"model": ["a", "a"], "set": ["test", "uncropped"], "v": [0.9, 0.6], "lo": [0.85, 0.5], "hi": [0.95, 0.7]}
    )
    fig = figures.grouped_bar_figure(df, "model", "v", "set", "lo", "hi")
    assert [t.name for t in fig.data] == ["test", "uncropped"]
    np.testing.assert_allclose(fig.data[1].error_y.arrayminus, [0.1])


def test_leaderboard_table_marks_best_and_formats_ci():
    frame = pd.DataFrame(
        {
            "roc_auc": [0.9, 0.8],
            "roc_auc_lo": [0.85, 0.7],
            "roc_auc_hi": [0.95, 0.9],
            "params": [2e6, 1e6],
            "model_bytes": [8e6, np.nan],
            "infer_ms_per_image": [3.0, 4.0],
            "train_seconds": [120.0, 60.0],
        },
        index=pd.Index(["A", "B"], name="model"),
    )
    display, best = figures.leaderboard_table(frame, ["roc_auc"])
    assert display.loc["A", "ROC AUC"] == "0.900 [0.850, 0.950] ★"
    assert display.loc["B", "ROC AUC"] == "0.800 [0.700, 0.900]"
    assert best.loc["B", "Params (M)"] and not best.loc["A", "Params (M)"]
    assert best.loc["A", "Size (MB)"] and not best.loc["B", "Size (MB)"]  # NaN is never best
    assert display.loc["A", "Train (min)"] == 2.0
    styled = figures.style_best(display, best).to_html()
    assert "#d7f2dd" in styled


def test_leaderboard_table_ranks_rows_and_shows_thresholds_when_given():
    frame = pd.DataFrame(
        {"roc_auc": [0.9, 0.8], "roc_auc_lo": [0.85, 0.7], "roc_auc_hi": [0.95, 0.9]},
        index=pd.Index(["A", "B"], name="model"),
    )
    display, _ = figures.leaderboard_table(frame, ["roc_auc"], thresholds={"A": 0.3, "B": None})
    assert list(display.columns) == ["Rank", "Threshold", "ROC AUC"]
    assert display["Rank"].tolist() == [1, 2] and display.loc["A", "Threshold"] == 0.3
    assert list(figures.leaderboard_table(frame, ["roc_auc"])[0].columns) == ["Rank", "ROC AUC"]  # multiclass


def test_leaderboard_table_marks_nothing_with_one_model():
    frame = pd.DataFrame(
        {"roc_auc": [0.9], "roc_auc_lo": [0.8], "roc_auc_hi": [0.95], "params": [1e6]},
        index=pd.Index(["A"], name="model"),
    )
    display, best = figures.leaderboard_table(frame, ["roc_auc"])
    assert display.loc["A", "ROC AUC"] == "0.900 [0.800, 0.950]" and not best.values.any()


def test_curve_from_predictions_and_from_summary_agree_with_sklearn():
    from sklearn import metrics as skm

    from pipeline import metrics as mt

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300).astype(bool)
    score = np.clip(y * 0.3 + rng.random(300) * 0.7, 0, 1)
    roc = figures.Curve.from_predictions("m", y, score, "roc", threshold=0.5, color="#123456")
    pr = figures.Curve.from_predictions("m", y, score, "pr", threshold=0.5)
    assert roc.area == pytest.approx(skm.roc_auc_score(y, score))
    assert pr.area == pytest.approx(skm.average_precision_score(y, score))
    pred = score >= 0.5
    assert roc.marker == pytest.approx((np.mean(pred[~y]), np.mean(pred[y]), 0.5))
    assert pr.marker == pytest.approx((np.mean(pred[y]), skm.precision_score(y, pred), 0.5))
    assert roc.color == "#123456" and pr.band is None
    summary = mt.curve_summary(mt.make_sweep(y, score))
    bands = {"roc": (np.zeros(2), np.zeros(2), np.ones(2)), "roc_auc_ci": (0.7, 0.8), "pr": None, "ap_ci": None}
    banded = figures.Curve.from_summary("m", summary, "roc", bands=bands)
    assert banded.area_ci == (0.7, 0.8) and banded.band is bands["roc"] and banded.marker is None
    one_class = mt.curve_summary(mt.make_sweep(np.zeros(5, bool), np.arange(5.0)))
    assert figures.Curve.from_summary("m", one_class, "roc") is None
    fig = figures.curve_figure([roc, None], "roc")  # undefined curves are left out
    assert len([t for t in fig.data if t.name and t.name.startswith("m")]) == 1
