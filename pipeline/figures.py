"""Numbers -> Plotly figures, shared by the dashboard pages and the meeting report. No Streamlit here.

Every figure function takes arrays or DataFrames that are already computed and returns a
`plotly.graph_objects.Figure`, so each can be unit-tested without a running app. The one exception is
`Curve.from_predictions` (scikit-learn's Display style), a shortcut through `pipeline.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.colors as pcolors
import plotly.graph_objects as go

from pipeline.errors import invalid_argument

PALETTE = pcolors.qualitative.Plotly + pcolors.qualitative.D3
CM_COLORSCALE = "Blues"
_MARGIN = dict(l=10, r=10, t=40, b=10)


def model_colors(models: Sequence[str]) -> dict[str, str]:
    """A stable colour per model name, in the order given (pass the experiment's full model list)."""
    return {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(models)}


def _hex_to_rgba(color: str, alpha: float) -> str:
    if color.startswith("rgb"):
        nums = color[color.index("(") + 1 : color.index(")")].split(",")[:3]
        return f"rgba({nums[0]},{nums[1]},{nums[2]},{alpha})"
    h = color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


@dataclass(frozen=True)
class Curve:
    """One ROC or PR trace: points with the threshold of each, an area, and optional band and marker."""

    label: str
    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray | None = None
    area: float | None = None
    area_ci: tuple[float, float] | None = None
    band: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # (grid, lower, upper)
    marker: tuple[float, float, float] | None = None  # (x, y, threshold) of the operating point
    color: str | None = None
    dash: str | None = None
    band_label: str = "95% CI"  # what the band is: the bootstrap CI, or the runs' min-max

    @classmethod
    def from_summary(
        cls,
        label: str,
        summary: Mapping[str, Any],
        kind: Literal["roc", "pr"] = "roc",
        *,
        threshold: float | None = None,
        at: Mapping[str, float] | None = None,
        bands: Mapping[str, Any] | None = None,
        color: str | None = None,
        dash: str | None = None,
    ) -> Curve | None:
        """The `kind` curve of a `metrics.curve_summary` result, None when it is undefined (one class only).

        `at` (`metrics.metrics_at` at `threshold`) places the operating point; `bands` (from
        `metrics.bootstrap_curve_bands` plus "roc_auc_ci"/"ap_ci") adds the 95% band and the area's interval.
        """
        if kind not in _CURVE_AXES:
            raise invalid_argument("kind", f"one of {list(_CURVE_AXES)}", repr(kind))
        points = summary.get(kind)
        if points is None:
            return None
        x, y, thr = points
        marker = None
        if threshold is not None and at is not None:
            marker = (
                (at["fpr"], at["sensitivity"], float(threshold))
                if kind == "roc"
                else (at["sensitivity"], at["precision"], float(threshold))
            )
        area_key, ci_key = ("roc_auc", "roc_auc_ci") if kind == "roc" else ("ap", "ap_ci")
        return cls(
            label,
            x,
            y,
            thr,
            area=summary.get(area_key),
            marker=marker,
            color=color,
            dash=dash,
            band=None if bands is None else bands.get(kind),
            area_ci=None if bands is None else bands.get(ci_key),
        )

    @classmethod
    def from_predictions(
        cls,
        label: str,
        y_true: np.ndarray,
        score: np.ndarray,
        kind: Literal["roc", "pr"] = "roc",
        *,
        threshold: float | None = None,
        max_points: int | None = None,
        color: str | None = None,
        dash: str | None = None,
    ) -> Curve | None:
        """The `kind` curve of binary labels and a score (downsampled), with the operating point at `threshold`."""
        from pipeline import metrics as mt

        sweep = mt.make_sweep(y_true, score)
        summary = mt.curve_summary(sweep, mt.MAX_CURVE_POINTS if max_points is None else max_points)
        at = None if threshold is None else mt.metrics_at(sweep, float(threshold))
        return cls.from_summary(label, summary, kind, threshold=threshold, at=at, color=color, dash=dash)

    @classmethod
    def from_runs(
        cls,
        label: str,
        runs: Any,
        *,
        band: Literal["range", "sd"] = "range",
        color: str | None = None,
        dash: str | None = None,
    ) -> Curve | None:
        """The mean curve of a `metrics.mean_curve_over_runs` result with the runs' min-max (or mean +/- SD) band;
        the legend gives the mean area +/- its SD over runs. None when undefined."""
        if runs is None:
            return None
        if band not in ("range", "sd"):
            raise invalid_argument("band", "'range' or 'sd'", repr(band))
        areas = np.asarray(runs.areas, dtype=float)
        area_name = "AUC" if runs.kind == "roc" else "AP"
        spread = f" ± {np.std(areas, ddof=1):.3f}" if len(areas) > 1 else ""
        if band == "range":
            lo, hi, band_label = runs.low, runs.high, f"runs min–max ({runs.n} runs)"
        else:
            sd = np.nan_to_num(runs.sd)
            lo, hi, band_label = np.clip(runs.mean - sd, 0, 1), np.clip(runs.mean + sd, 0, 1), "runs mean ± SD"
        return cls(
            f"{label}, mean of {runs.n} runs ({area_name} {areas.mean():.3f}{spread})",
            runs.grid,
            runs.mean,
            band=(runs.grid, lo, hi),
            color=color,
            dash=dash,
            band_label=band_label,
        )


_CURVE_AXES = {
    "roc": ("False positive rate (1 - specificity)", "True positive rate (sensitivity)", "FPR", "TPR", "AUC"),
    "pr": ("Recall (sensitivity)", "Precision (PPV)", "Recall", "Precision", "AP"),
}


def _figure(data: list[dict], layout: dict) -> go.Figure:
    # One validated construction: building with add_trace/update_* re-validates at every call (3-10x slower,
    # which a slider rerun pays on every move).
    return go.Figure(data=data, layout=layout)


def curve_figure(
    curves: Sequence[Curve | None], kind: str = "roc", title: str = "", baseline: float | None = None, height: int = 460
) -> go.Figure:
    """Overlay ROC (`kind="roc"`) or precision-recall (`kind="pr"`) curves; area in the legend, threshold on hover.
    None entries (curves undefined on one class, from `Curve.from_summary`) are left out."""
    if kind not in _CURVE_AXES:
        raise invalid_argument("kind", f"one of {list(_CURVE_AXES)}", repr(kind))
    x_title, y_title, x_name, y_name, area_name = _CURVE_AXES[kind]
    data: list[dict] = []
    for i, c in enumerate([c for c in curves if c is not None]):
        color = c.color or PALETTE[i % len(PALETTE)]
        name = c.label
        if c.area is not None and np.isfinite(c.area):
            name += f" ({area_name} {c.area:.3f}"
            if c.area_ci is not None and all(np.isfinite(c.area_ci)):
                name += f" [{c.area_ci[0]:.3f}, {c.area_ci[1]:.3f}]"
            name += ")"
        if c.band is not None:
            grid, lo, hi = (np.asarray(a, dtype=float) for a in c.band)
            data.append(
                dict(
                    type="scatter",
                    x=np.concatenate([grid, grid[::-1]]),
                    y=np.concatenate([hi, lo[::-1]]),
                    fill="toself",
                    fillcolor=_hex_to_rgba(color, 0.15),
                    line=dict(width=0),
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=c.label,
                    name=f"{c.label} {c.band_label}",
                )
            )
        thr = None if c.thresholds is None else np.asarray(c.thresholds, dtype=float)
        hover = f"<b>{c.label}</b><br>{x_name} %{{x:.3f}}<br>{y_name} %{{y:.3f}}"
        if thr is not None:
            hover += "<br>threshold %{customdata:.4f}"
        data.append(
            dict(
                type="scatter",
                x=np.asarray(c.x, dtype=float),
                y=np.asarray(c.y, dtype=float),
                customdata=thr,
                mode="lines",
                name=name,
                legendgroup=c.label,
                line=dict(color=color, width=2, dash=c.dash),
                hovertemplate=hover + "<extra></extra>",
            )
        )
        if c.marker is not None:
            mx, my, mt = c.marker
            data.append(
                dict(
                    type="scatter",
                    x=[mx],
                    y=[my],
                    mode="markers",
                    legendgroup=c.label,
                    showlegend=False,
                    marker=dict(color=color, size=13, symbol="circle", line=dict(color="black", width=1.5)),
                    cliponaxis=False,
                    hovertemplate=(
                        f"<b>{c.label}</b> operating point<br>threshold {mt:.4f}<br>"
                        f"{x_name} {mx:.3f}<br>{y_name} {my:.3f}<extra></extra>"
                    ),
                )
            )
    if kind == "roc":
        data.append(
            dict(
                type="scatter",
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                showlegend=False,
                hoverinfo="skip",
                line=dict(color="grey", dash="dot", width=1),
            )
        )
    elif baseline is not None:
        data.append(
            dict(
                type="scatter",
                x=[0, 1],
                y=[baseline, baseline],
                mode="lines",
                showlegend=False,
                hoverinfo="skip",
                line=dict(color="grey", dash="dot", width=1),
            )
        )
    return _figure(
        data,
        dict(
            title=title,
            height=height,
            margin=_MARGIN,
            hovermode="closest",
            legend=dict(yanchor="bottom", y=0.02, xanchor="right", x=0.98, bgcolor="rgba(255,255,255,0.7)"),
            xaxis=dict(title=x_title, range=[-0.01, 1.01], constrain="domain"),
            yaxis=dict(title=y_title, range=[-0.01, 1.01]),
        ),
    )


def confusion_figure(
    cm: np.ndarray,
    class_names: Sequence[str],
    normalize: bool = False,
    title: str = "",
    selected: tuple[int, int] | None = None,
    size: int | None = None,
) -> go.Figure:
    """A confusion matrix drawn as clickable points (one per cell) over coloured squares.

    Streamlit reports clicks on scatter points, not on heatmap cells, so each cell is a scatter point whose
    `customdata` is (true index, predicted index, count, row share); the colour comes from layout shapes,
    which scale with the axes at any width. Rows are true classes, columns predicted classes. The colour
    always follows the row share, so a rare class's cells read as clearly as a common one's (raw counts
    would paint only the majority class on imbalanced data); the text carries the counts.
    """
    cm = np.asarray(cm)
    k = len(class_names)
    if cm.shape != (k, k):
        raise invalid_argument("cm", f"shape ({k}, {k}) to match class_names", cm.shape)
    counts = cm.astype(np.int64)
    row_sums = counts.sum(axis=1, keepdims=True)
    rates = np.divide(counts, row_sums, out=np.zeros(counts.shape, dtype=float), where=row_sums > 0)
    colors = pcolors.sample_colorscale(CM_COLORSCALE, list(np.clip(rates, 0, 1).ravel()))
    shapes = [
        dict(
            type="rect",
            x0=j - 0.5,
            x1=j + 0.5,
            y0=i - 0.5,
            y1=i + 0.5,
            layer="below",
            fillcolor=colors[i * k + j],
            line=dict(color="white", width=2),
        )
        for i in range(k)
        for j in range(k)
    ]
    if selected is not None:
        t, p = selected
        shapes.append(
            dict(type="rect", x0=p - 0.48, x1=p + 0.48, y0=t - 0.48, y1=t + 0.48, line=dict(color="#d62728", width=4))
        )
    grid_i, grid_j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    ii, jj = grid_i.ravel(), grid_j.ravel()
    if normalize:
        text = [f"{rates[i, j]:.0%}<br><sub>{counts[i, j]:,}</sub>" for i, j in zip(ii, jj)]
    else:
        text = [f"{counts[i, j]:,}<br><sub>{rates[i, j]:.0%}</sub>" for i, j in zip(ii, jj)]
    dark = rates.ravel() > 0.55
    names = list(map(str, class_names))
    custom = np.stack([ii, jj, counts.ravel(), np.round(rates.ravel(), 4)], axis=1)
    px_size = size or max(330, min(560, 45 * k + 200))
    font = 14 if k <= 4 else (11 if k <= 8 else 9)
    points = dict(
        type="scatter",
        # Plain lists, not NumPy arrays: the browser then reports a clicked point's customdata as a list.
        x=jj.tolist(),
        y=ii.tolist(),
        mode="markers+text",
        text=text,
        customdata=custom.tolist(),
        textfont=dict(color=["white" if d else "#222" for d in dark], size=font),
        marker=dict(symbol="square", size=max(8, int(0.75 * (px_size - 120) / k)), color="rgba(0,0,0,0.001)"),
        selected=dict(marker=dict(opacity=1)),
        unselected=dict(marker=dict(opacity=1)),
        hovertext=[
            f"true <b>{names[i]}</b> → predicted <b>{names[j]}</b><br>{counts[i, j]:,} samples "
            f"({rates[i, j]:.1%} of true {names[i]})<br><i>click to open these samples</i>"
            for i, j in zip(ii, jj)
        ],
        hoverinfo="text",
        showlegend=False,
    )
    return _figure(
        [points],
        dict(
            title=title,
            shapes=shapes,
            height=px_size,
            margin=dict(l=10, r=10, t=40, b=10),
            hovermode="closest",
            hoverdistance=-1,
            dragmode=False,
            clickmode="event+select",
            plot_bgcolor="white",
            xaxis=dict(
                title="Predicted",
                tickvals=list(range(k)),
                ticktext=names,
                range=[-0.5, k - 0.5],
                showgrid=False,
                zeroline=False,
                fixedrange=True,
                tickangle=0 if k <= 4 else -30,
            ),
            yaxis=dict(
                title="True",
                tickvals=list(range(k)),
                ticktext=names,
                range=[k - 0.5, -0.5],
                showgrid=False,
                zeroline=False,
                fixedrange=True,
            ),
        ),
    )


def metric_threshold_figure(
    thresholds: np.ndarray,
    series: Mapping[str, np.ndarray],
    current: float | None = None,
    title: str = "",
    height: int = 320,
) -> go.Figure:
    """Metrics (e.g. sensitivity, specificity) against the decision threshold, with the current one marked."""
    thr = np.asarray(thresholds, dtype=float)
    order = np.argsort(thr)
    data = [
        dict(
            type="scatter",
            x=thr[order],
            y=np.asarray(vals, dtype=float)[order],
            mode="lines",
            name=name,
            line=dict(color=PALETTE[(i + 2) % len(PALETTE)]),
            hovertemplate=f"{name} %{{y:.3f}}<br>threshold %{{x:.4f}}<extra></extra>",
        )
        for i, (name, vals) in enumerate(series.items())
    ]
    shapes = (
        []
        if current is None
        else [
            dict(
                type="line",
                x0=float(current),
                x1=float(current),
                y0=0,
                y1=1,
                xref="x",
                yref="paper",
                line=dict(color="black", dash="dash", width=1.5),
            )
        ]
    )
    return _figure(
        data,
        dict(
            title=title,
            height=height,
            margin=_MARGIN,
            hovermode="x unified",
            shapes=shapes,
            legend=dict(orientation="h", y=-0.25),
            xaxis=dict(title="Threshold", range=[0, 1]),
            yaxis=dict(range=[-0.01, 1.01]),
        ),
    )


def reliability_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
    colors: Mapping[str, str] | None = None,
    title: str = "Reliability diagram",
    height: int = 420,
) -> go.Figure:
    """Reliability diagram: observed frequency against mean predicted probability per bin, one trace per model."""
    data = [
        dict(
            type="scatter",
            x=[0, 1],
            y=[0, 1],
            mode="lines",
            name="perfectly calibrated",
            hoverinfo="skip",
            line=dict(color="grey", dash="dot", width=1),
        )
    ]
    for i, (label, (mean_pred, frac_pos, counts)) in enumerate(curves.items()):
        color = (colors or {}).get(label, PALETTE[i % len(PALETTE)])
        counts = np.asarray(counts)
        keep = counts > 0
        data.append(
            dict(
                type="scatter",
                x=np.asarray(mean_pred)[keep],
                y=np.asarray(frac_pos)[keep],
                customdata=counts[keep],
                mode="lines+markers",
                name=label,
                line=dict(color=color),
                hovertemplate=(
                    f"<b>{label}</b><br>mean predicted %{{x:.3f}}<br>observed %{{y:.3f}}"
                    "<br>n=%{customdata:,}<extra></extra>"
                ),
            )
        )
    return _figure(
        data,
        dict(
            title=title,
            height=height,
            margin=_MARGIN,
            legend=dict(orientation="h", y=-0.2),
            xaxis=dict(title="Mean predicted probability", range=[0, 1]),
            yaxis=dict(title="Observed frequency", range=[0, 1]),
        ),
    )


def histogram_figure(
    histograms: Mapping[str, tuple[np.ndarray, np.ndarray]],
    colors: Mapping[str, str] | None = None,
    title: str = "Confidence histogram",
    x_title: str = "Confidence (probability of the predicted class)",
    height: int = 320,
) -> go.Figure:
    """Overlaid bar histograms from precomputed (edges, counts), one trace per model."""
    data = []
    for i, (label, (edges, counts)) in enumerate(histograms.items()):
        edges = np.asarray(edges, dtype=float)
        color = (colors or {}).get(label, PALETTE[i % len(PALETTE)])
        data.append(
            dict(
                type="bar",
                x=(edges[:-1] + edges[1:]) / 2,
                y=np.asarray(counts),
                width=np.diff(edges),
                name=label,
                marker=dict(color=color),
                opacity=0.55,
                hovertemplate=f"<b>{label}</b><br>%{{x:.2f}}: %{{y:,}}<extra></extra>",
            )
        )
    return _figure(
        data,
        dict(
            title=title,
            height=height,
            margin=_MARGIN,
            barmode="overlay",
            legend=dict(orientation="h", y=-0.3),
            xaxis=dict(title=x_title),
            yaxis=dict(title="Samples"),
        ),
    )


def history_figure(
    histories: Mapping[str, pd.DataFrame], metric: str, colors: Mapping[str, str] | None = None, height: int = 360
) -> go.Figure:
    """Training curves of one metric per epoch: solid = training, dashed = validation (`val_<metric>`)."""
    data = []
    for i, (label, df) in enumerate(histories.items()):
        color = (colors or {}).get(label, PALETTE[i % len(PALETTE)])
        x = df["epoch"].to_numpy() if "epoch" in df.columns else np.arange(1, len(df) + 1)
        for col, dash, suffix in ((metric, None, "train"), (f"val_{metric}", "dash", "val")):
            if col in df.columns:
                data.append(
                    dict(
                        type="scatter",
                        x=x,
                        y=df[col].to_numpy(),
                        mode="lines+markers",
                        name=f"{label} ({suffix})",
                        legendgroup=label,
                        line=dict(color=color, dash=dash),
                        hovertemplate=f"<b>{label}</b> {col}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
                    )
                )
    return _figure(
        data,
        dict(
            title=metric,
            height=height,
            margin=_MARGIN,
            legend=dict(orientation="h", y=-0.25),
            xaxis=dict(title="Epoch"),
        ),
    )


def grouped_bar_figure(
    df: pd.DataFrame,
    x: str,
    y: str,
    color: str,
    error_low: str | None = None,
    error_high: str | None = None,
    title: str = "",
    height: int = 380,
    y_range: tuple[float, float] | None = (0, 1),
) -> go.Figure:
    """Grouped bars of `y` by `x`, one colour per value of `color`, with optional asymmetric error bars."""
    data = []
    for i, (key, part) in enumerate(df.groupby(color, sort=False)):
        err = None
        if error_low and error_high:
            err = dict(
                type="data",
                symmetric=False,
                array=(part[error_high] - part[y]).to_numpy(),
                arrayminus=(part[y] - part[error_low]).to_numpy(),
            )
        data.append(
            dict(
                type="bar",
                x=part[x].to_numpy(),
                y=part[y].to_numpy(),
                name=str(key),
                error_y=err,
                marker=dict(color=PALETTE[i % len(PALETTE)]),
                hovertemplate=f"<b>{key}</b><br>%{{x}}: %{{y:.3f}}<extra></extra>",
            )
        )
    layout = dict(title=title, height=height, margin=_MARGIN, barmode="group", legend=dict(orientation="h", y=-0.2))
    if y_range is not None:
        layout["yaxis"] = dict(range=list(y_range))
    return _figure(data, layout)


def class_counts_figure(
    counts: pd.DataFrame, title: str = "Samples per class and split", height: int = 300
) -> go.Figure:
    """Stacked bars of a (split x class) count table."""
    data = [
        dict(
            type="bar",
            x=counts.index.astype(str).to_numpy(),
            y=counts[cls].to_numpy(),
            name=str(cls),
            marker=dict(color=PALETTE[i % len(PALETTE)]),
            hovertemplate=f"{cls}<br>%{{x}}: %{{y:,}}<extra></extra>",
        )
        for i, cls in enumerate(counts.columns)
    ]
    return _figure(data, dict(title=title, height=height, margin=_MARGIN, barmode="stack"))


METRIC_LABELS = {
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced acc.",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "precision": "Precision",
    "npv": "NPV",
    "f1": "F1",
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "fpr": "FPR",
    "youden_j": "Youden J",
}
RESOURCE_COLUMNS = {  # config key -> (label, scale, lower is better)
    "params": ("Params (M)", 1e-6, True),
    "model_bytes": ("Size (MB)", 1e-6, True),
    "infer_ms_per_image": ("ms / image", 1.0, True),
    "train_seconds": ("Train (min)", 1 / 60, True),
    "cpu_seconds": ("Train CPU (min)", 1 / 60, True),
}
TRAINING_COLUMNS = {"epochs_run": "Epochs", "best_epoch": "Best epoch", "stop_reason": "Stopped"}  # no best mark
BEST_MARK = " ★"
BEST_STYLE = "background-color: #d7f2dd; color: #0b5d1e"


def _best_mask(values: pd.Series, lower_is_better: bool) -> pd.Series:
    finite = values.dropna()
    if len(values) < 2 or finite.empty:  # with one model there is nothing to be best at
        return pd.Series(False, index=values.index)
    best = finite.min() if lower_is_better else finite.max()
    return (values - best).abs() <= 1e-12


def leaderboard_table(
    frame: pd.DataFrame, metrics: Sequence[str], *, thresholds: Mapping[str, float | None] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(display table, boolean 'best in column' mask) from `report.leaderboard_frame` output, in its row order:
    the one leaderboard layout of the Overview page and the meeting report.

    Columns: Rank (1 = first row), Threshold (when `thresholds` is given: binary tasks), then each metric as
    "0.912 [0.890, 0.931]" (point and 95% CI; in [0, 1] such strings sort like numbers), then size, speed and
    training time. The best value per column gets a star; lower is better for size, speed and training time.
    """
    display = pd.DataFrame(index=frame.index)
    display["Rank"] = range(1, len(frame) + 1)
    if thresholds is not None:
        display["Threshold"] = [thresholds.get(m) for m in frame.index]
    best = pd.DataFrame(index=frame.index)
    for m in metrics:
        if m not in frame.columns:
            continue
        label = METRIC_LABELS.get(m, m)
        mask = _best_mask(frame[m], lower_is_better=False)
        display[label] = [
            "—"
            if not np.isfinite(p)
            else (f"{p:.3f} [{lo:.3f}, {hi:.3f}]" if np.isfinite(lo) else f"{p:.3f}") + (BEST_MARK if b else "")
            for p, lo, hi, b in zip(frame[m], frame[f"{m}_lo"], frame[f"{m}_hi"], mask)
        ]
        best[label] = mask
    for key, (label, scale, lower) in RESOURCE_COLUMNS.items():
        if key in frame.columns:
            display[label] = (frame[key] * scale).round(3)
            best[label] = _best_mask(frame[key], lower_is_better=lower)
    for key, label in TRAINING_COLUMNS.items():  # how each run ended: epochs run, selected epoch, why it stopped
        if key in frame.columns and frame[key].notna().any():
            display[label] = [("—" if v != v else str(int(v)) if isinstance(v, float) else str(v)) for v in frame[key]]
            best[label] = False
    display.index.name = "Model"
    best.index.name = "Model"
    return display, best


def style_best(display: pd.DataFrame, best: pd.DataFrame) -> pd.io.formats.style.Styler:
    """A Styler that highlights the cells where `best` is True."""
    mask = best.reindex(index=display.index, columns=display.columns, fill_value=False).astype(bool)
    styles = mask.map(lambda b: BEST_STYLE if b else "")
    return display.style.apply(lambda _: styles, axis=None).format(precision=3, na_rep="—")


def sample_probabilities_figure(
    probs: pd.DataFrame,
    true_class: str | None = None,
    colors: Mapping[str, str] | None = None,
    title: str = "",
    height: int = 320,
) -> go.Figure:
    """Every model's class probabilities for one sample, side by side: rows of `probs` are models,
    columns class names; the true class is marked on the axis."""
    colors = colors or {}
    classes = [str(c) for c in probs.columns]
    ticks = [f"<b>{c} (true)</b>" if c == true_class else c for c in classes]
    fig = go.Figure()
    for i, (model, row) in enumerate(probs.iterrows()):
        values = row.to_numpy(dtype=np.float64)
        fig.add_trace(
            go.Bar(
                x=ticks,
                y=values,
                name=str(model),
                marker=dict(color=colors.get(str(model), PALETTE[i % len(PALETTE)])),
                text=[f"{v:.2f}" if np.isfinite(v) else "—" for v in values],
                textposition="outside",
                hovertemplate=f"<b>{model}</b><br>%{{x}}: %{{y:.4f}}<extra></extra>",
            )
        )
    fig.update_layout(
        title=title, height=height, margin=_MARGIN, barmode="group", legend=dict(orientation="h", y=-0.25)
    )
    fig.update_yaxes(range=[0, 1.12], title="Probability")
    return fig


# ---------------------------------------------------------------- paired comparison and disagreement


def _pair_axes(fig: go.Figure, names: Sequence[str], x_title: str = "", y_title: str = "") -> None:
    """Square model-by-model axes, first model at the top."""
    fig.update_xaxes(
        title=x_title,
        tickvals=list(range(len(names))),
        ticktext=list(names),
        showgrid=False,
        zeroline=False,
        tickangle=0 if len(names) <= 4 else -30,
    )
    fig.update_yaxes(
        title=y_title,
        tickvals=list(range(len(names))),
        ticktext=list(names),
        showgrid=False,
        zeroline=False,
        autorange="reversed",
    )


def p_value_grid_figure(
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    diff: np.ndarray,
    p_values: np.ndarray,
    title: str = "",
    diff_label: str = "difference",
    alpha: float = 0.05,
    x_title: str = "",
    y_title: str = "",
    height: int | None = None,
) -> go.Figure:
    """Heatmap of test results: colour = -log10 of the (Holm-adjusted) p-value, text = difference and p.

    Cells with p < alpha are starred; NaN cells stay empty. Row labels are read top to bottom.
    """
    r, c = len(row_labels), len(col_labels)
    diff = np.asarray(diff, dtype=float)
    p = np.asarray(p_values, dtype=float)
    if diff.shape != (r, c) or p.shape != (r, c):
        raise invalid_argument("diff, p_values", f"shape ({r}, {c}) to match the labels", f"{diff.shape}, {p.shape}")
    z = np.clip(-np.log10(np.maximum(np.nan_to_num(p, nan=1.0), 1e-12)), 0, 4)
    z[~np.isfinite(p)] = np.nan
    text = [
        [
            ""
            if not np.isfinite(p[i, j])
            else f"{diff[i, j]:+.3f}<br>p{'<0.001' if p[i, j] < 0.001 else f'={p[i, j]:.3f}'}"
            + (" ★" if p[i, j] < alpha else "")
            for j in range(c)
        ]
        for i in range(r)
    ]
    hover = [
        [
            f"<b>{row_labels[i]}</b> · <b>{col_labels[j]}</b><br>{diff_label} {diff[i, j]:+.4f}"
            f"<br>p (Holm) {p[i, j]:.4g}"
            if np.isfinite(p[i, j])
            else ""
            for j in range(c)
        ]
        for i in range(r)
    ]
    ticks = [1.0, 0.1, 0.05, 0.01, 0.001]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(range(c)),
            y=list(range(r)),
            text=text,
            texttemplate="%{text}",
            hovertext=hover,
            hoverinfo="text",
            colorscale="Purples",
            zmin=0,
            zmax=4,
            xgap=2,
            ygap=2,
            colorbar=dict(
                title=dict(text="p (Holm)"),
                tickvals=[float(-np.log10(t)) for t in ticks],
                ticktext=[f"{t:g}" for t in ticks],
            ),
        )
    )
    fig.update_xaxes(
        title=x_title,
        tickvals=list(range(c)),
        ticktext=list(col_labels),
        showgrid=False,
        zeroline=False,
        tickangle=0 if c <= 4 else -30,
    )
    fig.update_yaxes(
        title=y_title,
        tickvals=list(range(r)),
        ticktext=list(row_labels),
        showgrid=False,
        zeroline=False,
        autorange="reversed",
    )
    fig.update_layout(title=title, height=height or max(300, 60 * r + 160), margin=_MARGIN, plot_bgcolor="white")
    return fig


def pairwise_matrix_figure(
    names: Sequence[str],
    diff: np.ndarray,
    p_values: np.ndarray,
    title: str = "",
    diff_label: str = "difference",
    alpha: float = 0.05,
    height: int | None = None,
) -> go.Figure:
    """Every pair of models as a square p-value heatmap; cell (i, j) reads "row model minus column model"."""
    k = len(names)
    if np.shape(diff) != (k, k):
        raise invalid_argument("diff", f"shape ({k}, {k}) to match names", np.shape(diff))
    return p_value_grid_figure(
        names,
        names,
        diff,
        p_values,
        title=title,
        diff_label=diff_label,
        alpha=alpha,
        x_title="minus (column)",
        y_title="model (row)",
        height=height or max(300, 70 * k + 150),
    )


def disagreement_figure(
    names: Sequence[str], matrix: np.ndarray, title: str = "How often two models disagree", height: int | None = None
) -> go.Figure:
    """Heatmap of the share of samples on which two models predict different classes."""
    k = len(names)
    m = np.asarray(matrix, dtype=float).copy()
    if m.shape != (k, k):
        raise invalid_argument("matrix", f"shape ({k}, {k}) to match names", m.shape)
    np.fill_diagonal(m, np.nan)
    text = [["" if i == j or not np.isfinite(m[i, j]) else f"{m[i, j]:.1%}" for j in range(k)] for i in range(k)]
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=list(range(k)),
            y=list(range(k)),
            text=text,
            texttemplate="%{text}",
            colorscale="Oranges",
            zmin=0,
            xgap=2,
            ygap=2,
            hovertext=[
                [f"{names[i]} vs {names[j]}: disagree on {t}" for j, t in enumerate(r)] for i, r in enumerate(text)
            ],
            hoverinfo="text",
            colorbar=dict(title=dict(text="disagree"), tickformat=".0%"),
        )
    )
    _pair_axes(fig, names)
    fig.update_layout(title=title, height=height or max(300, 70 * k + 150), margin=_MARGIN, plot_bgcolor="white")
    return fig


def unique_correct_figure(
    counts: Mapping[str, int],
    colors: Mapping[str, str] | None = None,
    title: str = "Samples only this model gets right",
    height: int = 320,
) -> go.Figure:
    """Bars: per model, the number of samples that it alone classifies correctly."""
    names = list(counts)
    values = [int(counts[n]) for n in names]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=values,
            text=[f"{v:,}" for v in values],
            textposition="outside",
            marker=dict(color=[(colors or {}).get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]),
            hovertemplate="<b>%{x}</b>: only model right on %{y:,} samples<extra></extra>",
        )
    )
    fig.update_layout(title=title, height=height, margin=_MARGIN, showlegend=False)
    fig.update_yaxes(title="Samples", rangemode="tozero")
    return fig


def intensity_histogram_figure(
    counts: np.ndarray, threshold: float | None = None, title: str = "", height: int = 220
) -> go.Figure:
    """Gray-level histogram (256 counts) with the threshold in force as a vertical line."""
    counts = np.asarray(counts, dtype=np.float64)
    fig = go.Figure(
        go.Bar(
            x=np.arange(counts.size),
            y=counts,
            marker=dict(color="#7f7f7f", line=dict(width=0)),
            hovertemplate="gray %{x}: %{y:,.0f} px<extra></extra>",
            name="pixels",
        )
    )
    if threshold is not None and np.isfinite(threshold):
        fig.add_vline(
            x=float(threshold),
            line=dict(color="#d62728", width=2, dash="dash"),
            annotation_text=f"threshold {threshold:g}",
            annotation_position="top right",
        )
    fig.update_layout(title=title, height=height, margin=_MARGIN, bargap=0, showlegend=False)
    fig.update_xaxes(title="Gray level", range=[-0.5, 255.5])
    fig.update_yaxes(title="Pixels")
    return fig


def class_probability_figure(
    class_names: Sequence[str],
    probs: np.ndarray,
    decided: int | None = None,
    threshold: float | None = None,
    pos_index: int | None = None,
    color: str = PALETTE[0],
    title: str = "",
    height: int = 220,
    font_size: int = 13,
) -> go.Figure:
    """One model's class probabilities as horizontal bars: the decided class in `color`, the others grey, and
    the binary threshold (on the positive class's bar) as a dashed line."""
    p = np.asarray(probs, dtype=np.float64)
    names = [str(c) for c in class_names]
    if p.shape != (len(names),):
        raise invalid_argument("probs", f"shape ({len(names)},) matching `class_names`", p.shape)
    colours = [color if i == decided else "#c7c7c7" for i in range(len(names))]
    fig = go.Figure(
        go.Bar(
            x=p,
            y=names,
            orientation="h",
            marker=dict(color=colours),
            text=[f"{v:.1%}" if np.isfinite(v) else "—" for v in p],
            textposition="auto",
            textfont=dict(size=font_size),
            hovertemplate="%{y}: %{x:.4f}<extra></extra>",
        )
    )
    if threshold is not None and pos_index is not None and np.isfinite(threshold):
        fig.add_shape(
            type="line",
            x0=float(threshold),
            x1=float(threshold),
            y0=pos_index - 0.45,
            y1=pos_index + 0.45,
            line=dict(color="#d62728", width=3, dash="dash"),
        )
    x_title = (
        "Probability"
        if threshold is None or pos_index is None
        else f"Probability (red dashes: threshold {threshold:.2f} on {names[pos_index]})"
    )
    fig.update_layout(title=title, height=height, margin=_MARGIN, showlegend=False, font=dict(size=font_size))
    fig.update_xaxes(range=[0, 1], title=dict(text=x_title, font=dict(size=max(font_size - 2, 9))), tickformat=".0%")
    # category axis: class names such as "0" and "1" must not become a numeric axis
    fig.update_yaxes(type="category", autorange="reversed", categoryorder="array", categoryarray=names)
    return fig


def runs_figure(
    table: pd.DataFrame,
    metric_label: str,
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "",
    height: int = 360,
) -> go.Figure:
    """Per backbone: every run as a dot, the mean over runs with +/- 1 SD, and the first run's bootstrap CI.

    `table` is `pipeline.run_summary.compare_runs(...).table` (columns backbone, values, mean, sd,
    primary_value, primary_ci_low, primary_ci_high): training noise and test-sample noise side by side.
    """
    fig = go.Figure()
    names = list(table["backbone"])
    for i, row in enumerate(table.itertuples()):
        color = (colors or {}).get(row.backbone, PALETTE[i % len(PALETTE)])
        vals = list(row.values)
        fig.add_trace(
            go.Scatter(
                x=vals,
                y=[row.backbone] * len(vals),
                mode="markers",
                name=f"{row.backbone} runs",
                marker=dict(color=color, size=9, opacity=0.55, symbol="circle"),
                customdata=list(row.runs)[: len(vals)],
                hovertemplate="%{customdata}: %{x:.4f}<extra></extra>",
                showlegend=False,
            )
        )
        sd = 0.0 if not np.isfinite(row.sd) else float(row.sd)
        fig.add_trace(
            go.Scatter(
                x=[row.mean],
                y=[row.backbone],
                mode="markers",
                name=f"{row.backbone} mean",
                marker=dict(color=color, size=14, symbol="diamond"),
                error_x=dict(type="data", array=[sd], visible=sd > 0, color=color, thickness=2),
                hovertemplate=f"mean %{{x:.4f}} ± {sd:.4f} (SD over {len(vals)} runs)<extra></extra>",
                showlegend=False,
            )
        )
        if np.isfinite(row.primary_ci_low) and np.isfinite(row.primary_ci_high):
            fig.add_shape(
                type="line",
                x0=row.primary_ci_low,
                x1=row.primary_ci_high,
                y0=i - 0.3,
                y1=i - 0.3,
                line=dict(color=color, width=2, dash="dot"),
            )
    fig.update_layout(
        title=title or f"{metric_label}: runs (dots), mean ± SD (diamond), first run's 95% CI (dotted)",
        height=height,
        margin=_MARGIN,
    )
    fig.update_xaxes(title=metric_label)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=names, autorange="reversed")
    return fig


def runs_tables(table: pd.DataFrame, pairs: pd.DataFrame, metric_label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Display tables of a `run_summary.compare_runs` result (the Runs page and the report): per backbone mean, SD
    over runs, range, first run [95% CI], ranks first; per pair "A beats B in k of n runs", difference [CI], p."""
    per_backbone = pd.DataFrame(
        {
            "backbone": table["backbone"],
            "runs": table["n_runs"],
            f"{metric_label} mean": table["mean"].round(4),
            "SD over runs": table["sd"].round(4),
            "range": [f"{lo:.3f} – {hi:.3f}" for lo, hi in zip(table["low"], table["high"])],
            "first run [95% CI]": [
                f"{v:.3f} [{lo:.3f}, {hi:.3f}]"
                for v, lo, hi in zip(table["primary_value"], table["primary_ci_low"], table["primary_ci_high"])
            ],
            "ranks first": [f"{f:.0%}" for f in table["rank_first"]],
        }
    )
    per_pair = pd.DataFrame(
        {
            "pair": [f"{a} vs {b}" for a, b in zip(pairs["a"], pairs["b"])],
            "A beats B": [f"{k} of {n} runs" for k, n in zip(pairs["wins"], pairs["n"])],
            "mean difference [95% CI]": [
                f"{d:+.4f} [{lo:+.4f}, {hi:+.4f}]" if np.isfinite(lo) else f"{d:+.4f}"
                for d, lo, hi in zip(pairs["mean_diff"], pairs["ci_low"], pairs["ci_high"])
            ],
            "p": ["—" if not np.isfinite(p) else (f"{p:.2e}" if p < 0.001 else f"{p:.3g}") for p in pairs["p"]],
        },
        columns=["pair", "A beats B", "mean difference [95% CI]", "p"],
    )
    return per_backbone, per_pair


def runs_spread_cells(table: pd.DataFrame, backbones: Sequence[str]) -> list[str]:
    """Leaderboard cells "mean ± SD (min–max, n runs)" of each row's backbone from a `run_summary.spread_table`;
    "1 run" for a backbone trained once, a dash for rows of no backbone (ensembles)."""
    by = table.set_index("backbone")
    cells = []
    for b in backbones:
        if b not in by.index:
            cells.append("—")
            continue
        row = by.loc[b]
        if int(row["n_runs"]) < 2 or not np.isfinite(row["mean"]):
            cells.append("1 run" if int(row["n_runs"]) == 1 else "—")
            continue
        cells.append(
            f"{row['mean']:.3f} ± {row['sd']:.3f} ({row['low']:.3f}–{row['high']:.3f}, {int(row['n_runs'])} runs)"
        )
    return cells


def forest_figure(
    subgroups: Sequence[str],
    estimates: Mapping[str, Sequence[tuple[float, float, float]]],
    metric_label: str,
    *,
    too_few: Sequence[bool] | None = None,
    overall: Mapping[str, float] | None = None,
    colors: Mapping[str, str] | None = None,
    title: str = "",
    height: int | None = None,
) -> go.Figure:
    """Forest plot: one row per subgroup, one marker with its interval per model (rows offset per model).

    `estimates[model][i]` is (point, low, high) of subgroup i (NaN: no number, e.g. too few samples); each
    marker's customdata is [model, subgroup index], for click-through. `overall`: a dotted line per model at its
    value on all samples.
    """
    models = list(estimates)
    n_rows = len(subgroups)
    k = max(len(models), 1)
    step = 0.6 / k
    data: list[dict] = []
    for j, model in enumerate(models):
        color = (colors or {}).get(model, PALETTE[j % len(PALETTE)])
        est = np.asarray(estimates[model], dtype=np.float64).reshape(-1, 3)
        ys = np.arange(n_rows) - 0.3 + step * (j + 0.5)
        data.append(
            dict(
                type="scatter",
                x=est[:, 0],
                y=ys,
                mode="markers",
                name=model,
                marker=dict(color=color, size=9),
                error_x=dict(
                    type="data",
                    symmetric=False,
                    array=est[:, 2] - est[:, 0],
                    arrayminus=est[:, 0] - est[:, 1],
                    color=color,
                    thickness=1.5,
                    width=3,
                ),
                customdata=[[model, i] for i in range(n_rows)],
                hovertemplate=(f"<b>{model}</b><br>%{{text}}<br>{metric_label} %{{x:.3f}}<extra></extra>"),
                text=[f"{s}: [{lo:.3f}, {hi:.3f}]" for s, (_, lo, hi) in zip(subgroups, est)],
            )
        )
    shapes = []
    for j, (model, value) in enumerate((overall or {}).items()):
        if np.isfinite(value):
            color = (colors or {}).get(model, PALETTE[j % len(PALETTE)])
            shapes.append(
                dict(
                    type="line",
                    x0=value,
                    x1=value,
                    y0=-0.5,
                    y1=n_rows - 0.5,
                    xref="x",
                    yref="y",
                    line=dict(color=color, dash="dot", width=1),
                )
            )
    annotations = [
        dict(
            x=0,
            xref="paper",
            xanchor="left",
            y=i,
            yref="y",
            text="too few",
            showarrow=False,
            font=dict(color="grey", size=11),
        )
        for i, few in enumerate(too_few or [])
        if few
    ]
    return _figure(
        data,
        dict(
            title=title or f"{metric_label} per subgroup (95% CI)",
            height=height or max(260, 60 + 46 * n_rows),
            margin=_MARGIN,
            legend=dict(orientation="h", y=-0.15),
            shapes=shapes,
            annotations=annotations,
            xaxis=dict(title=metric_label),
            yaxis=dict(
                tickmode="array",
                tickvals=list(range(n_rows)),
                ticktext=list(subgroups),
                autorange="reversed",
                range=[n_rows - 0.5, -0.5],
                zeroline=False,
            ),
        ),
    )


def subgroup_ece_figure(
    subgroups: Sequence[str],
    ece: Mapping[str, Sequence[float]],
    *,
    colors: Mapping[str, str] | None = None,
    title: str = "Calibration error (ECE) per subgroup",
    height: int = 380,
) -> go.Figure:
    """Grouped bars: expected calibration error per subgroup, one bar per model (lower is better)."""
    data = []
    for j, (model, values) in enumerate(ece.items()):
        color = (colors or {}).get(model, PALETTE[j % len(PALETTE)])
        data.append(
            dict(
                type="bar",
                x=list(subgroups),
                y=np.asarray(values, dtype=np.float64),
                name=model,
                marker=dict(color=color),
                hovertemplate=f"<b>{model}</b><br>%{{x}}: ECE %{{y:.3f}}<extra></extra>",
            )
        )
    return _figure(
        data,
        dict(
            title=title,
            height=height,
            margin=_MARGIN,
            barmode="group",
            legend=dict(orientation="h", y=-0.25),
            xaxis=dict(type="category"),
            yaxis=dict(title="ECE", rangemode="tozero"),
        ),
    )
