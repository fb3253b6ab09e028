"""`*_ui()` helpers: draw a group of widgets (or messages) and return what the user chose or what loaded.

Widget defaults are written into session state before the widget is created (never passed as `index=` or
`default=` as well), so URL-restored values and values set by buttons on other pages take effect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import streamlit as st

from dashboard import data_access as da
from dashboard import state
from pipeline.artifacts import ArtifactError, Experiment
from pipeline.figures import model_colors
from pipeline.runs import RUN_SEPARATOR

GALLERY_PAGE_SIZE = 30
EMPTY_MESSAGE = (
    "**No experiments found** in `{root}`.\n\n"
    "Build the demo artifacts first: run `make run` (or `python -m pipeline demo`) from the repository "
    "root, then reload this page. To read artifacts from elsewhere, set `{env}` to that folder."
)


def artifact_error_ui(exc: ArtifactError, what: str = "") -> None:
    """Show an ArtifactError as a one-block message naming the file and the problem (no traceback)."""
    prefix = f"{what}: " if what else ""
    st.error(f"{prefix}could not read `{exc.path}`\n\n{exc.problem}", icon="⚠️")


def _on_experiment_change() -> None:
    # A new experiment has other models, eval sets and classes: reset them to that experiment's defaults.
    for key in (state.MODELS_KEY, state.EVAL_KEY, state.CLASS_KEY):
        st.session_state.pop(key, None)


def sidebar_ui(root: Path) -> state.Selection | None:
    """Draw the shared sidebar (experiment, models, evaluation set, class); None when nothing can be shown."""
    names = da.experiment_names(root)
    if not names:
        st.info(EMPTY_MESSAGE.format(root=root, env=da.ARTIFACTS_ENV), icon="📂")
        return None
    if st.session_state.get(state.EXP_KEY) not in names:
        st.session_state[state.EXP_KEY] = names[0]
    with st.sidebar:
        name = st.selectbox("Experiment", names, key=state.EXP_KEY, on_change=_on_experiment_change)
    try:
        exp = da.get_experiment(name, root)
    except ArtifactError as exc:
        artifact_error_ui(exc, f"Experiment **{name}**")
        st.caption("Pick another experiment in the sidebar; the others are unaffected.")
        return None
    if not exp.models:
        st.warning(
            f"Experiment **{name}** has no finished models yet (no `models/*/config.json` marked complete). "
            "Run the pipeline to train or predict, then reload.",
            icon="⏳",
        )
        return None
    return _selection_widgets(root, exp)


def _selection_widgets(root: Path, exp: Experiment) -> state.Selection | None:
    models_now = st.session_state.get(state.MODELS_KEY)
    if models_now is None or (models_now and not set(models_now) & set(exp.models)):
        # each backbone's first run by default; its other runs (`<backbone>@<run>`) stay selectable
        st.session_state[state.MODELS_KEY] = [m for m in exp.models if RUN_SEPARATOR not in m] or list(exp.models)
    else:
        st.session_state[state.MODELS_KEY] = [m for m in models_now if m in exp.models]
    eval_sets = exp.eval_sets or ["test"]
    if st.session_state.get(state.EVAL_KEY) not in eval_sets:
        st.session_state[state.EVAL_KEY] = eval_sets[0]
    names = exp.class_names
    if st.session_state.get(state.CLASS_KEY) not in names:
        st.session_state[state.CLASS_KEY] = names[exp.positive_index]
    with st.sidebar:
        models = st.multiselect(
            "Models",
            exp.models,
            key=state.MODELS_KEY,
            help="Backbones to compare; every page shows these. Extra runs of a backbone "
            "(`name@s1`, `name@f2-s0`) are summarised on *Runs & stability*.",
        )
        eval_set = st.selectbox(
            "Evaluation set",
            eval_sets,
            key=state.EVAL_KEY,
            help="Which set of predictions to score (e.g. cropped vs uncropped test images).",
        )
        if len(names) > 2:
            cls = st.selectbox(
                "Class (one-vs-rest)",
                names,
                key=state.CLASS_KEY,
                help="Positive class for curves, thresholds and calibration of a multiclass task.",
            )
        else:
            cls = names[exp.positive_index]
            st.caption(f"Positive class: **{cls}**")
        st.caption(f"{exp.task} · {len(names)} classes · {len(exp.samples):,} samples · {len(exp.models)} models")
        leaky = da.leaky_ids(exp)
        if leaky:
            st.toggle(
                f"Leak-free: leave out {len(leaky):,} evaluated images with a near-duplicate in training",
                key=da.EXCLUDE_LEAKY_KEY,
                help="From the data audit (Data audit page). Every metric page, the leaderboard and the meeting "
                "report then score only images the models have not seen a copy of.",
            )
        excluded = da.excluded_sample_ids(exp)
        if excluded:
            st.caption(
                f"{len(excluded):,} sample(s) are left out of every metric (marked 'label wrong', toggle on "
                "the Misclassifications page, and/or leak-free above)."
            )
        for problem in exp.problems:
            st.warning(str(problem))
    if not models:
        st.info("Select at least one model in the sidebar.")
        return None
    ordered = [m for m in exp.models if m in models]
    return state.Selection(
        root=root,
        exp=exp,
        models=ordered,
        eval_set=eval_set,
        class_index=names.index(cls),
        colors=model_colors(exp.models),
    )


def model_data_ui(
    sel: state.Selection, models: Sequence[str] | None = None, eval_set: str | None = None
) -> dict[str, da.ModelData]:
    """Load each model's predictions; a bad or empty model gets a message and is left out, the rest load."""
    out: dict[str, da.ModelData] = {}
    es = eval_set or sel.eval_set
    for model in models or sel.models:
        try:
            md = da.get_model_data(sel.exp, model, es)
        except ArtifactError as exc:
            artifact_error_ui(exc, f"Model **{model}**")
            continue
        if md.n == 0:
            st.warning(f"Model **{model}** has no predictions on evaluation set **{es}**.")
            continue
        if md.n_unknown:
            st.caption(
                f"⚠️ {model}: {md.n_unknown:,} prediction rows name sample ids that are not in "
                "samples.parquet; they are left out."
            )
        out[model] = md
    if not out:
        st.info("None of the selected models can be shown; see the messages above.")
    return out


def clicked_point(event: Any) -> list[Any] | None:
    """`customdata` of the first clicked point in a `st.plotly_chart(on_select=...)` event, or None."""
    try:
        points = event["selection"]["points"]
    except (KeyError, TypeError):
        return None
    if not points:
        return None
    custom = points[0].get("customdata")
    if isinstance(custom, dict):  # a typed-array row arrives as {"0": v0, "1": v1, ...}
        try:
            return [custom[k] for k in sorted(custom, key=int)]
        except ValueError:
            return None
    return list(custom) if isinstance(custom, (list, tuple)) else None


def clickable_chart_ui(fig: Any, key: str, on_click: Callable[[list[Any]], None]) -> None:
    """Draw a Plotly chart whose point clicks call `on_click(customdata)` (once per new click)."""

    def _changed() -> None:
        custom = clicked_point(st.session_state.get(key))
        if custom is not None:
            on_click(custom)

    st.plotly_chart(
        fig, key=key, on_select=_changed, selection_mode="points", width="stretch", config={"displayModeBar": False}
    )


def pager_ui(n_items: int, page_size: int, key: str) -> tuple[int, int]:
    """A page picker for `n_items`; returns the (start, stop) slice of the current page."""
    n_pages = max(1, -(-n_items // page_size))
    if n_pages == 1:
        return 0, n_items
    if st.session_state.get(key, 1) > n_pages:
        st.session_state[key] = 1
    page = st.columns([1, 4])[0].number_input(f"Page (of {n_pages:,})", min_value=1, max_value=n_pages, step=1, key=key)
    start = (int(page) - 1) * page_size
    return start, min(start + page_size, n_items)


def gallery_ui(
    exp: Experiment,
    md: da.ModelData,
    indices: np.ndarray,
    pred: np.ndarray,
    key: str,
    page_size: int = GALLERY_PAGE_SIZE,
    columns: int = 6,
) -> None:
    """Paginated thumbnails of `indices` (rows of `md`) with true/predicted class and probability."""
    names = exp.class_names
    if indices.size == 0:
        st.info("No samples in this cell.")
        return
    start, stop = pager_ui(int(indices.size), page_size, key=f"{key}_page")
    page = indices[start:stop]
    ids = [str(s) for s in md.sample_ids[page]]
    try:
        images = da.get_thumbnails(exp, ids)
    except ArtifactError as exc:
        artifact_error_ui(exc, "Thumbnails")
        images = [None] * len(ids)
    st.caption(
        f"Samples {start + 1:,}–{stop:,} of {indices.size:,}, most confident first. Under each image: "
        "sample id, true → predicted class, p = probability of the predicted class."
    )
    cols = st.columns(columns)
    for i, (row, sid, img) in enumerate(zip(page, ids, images)):
        t, p = int(md.y[row]), int(pred[row])
        caption = f"{sid}\n{names[t]} → {names[p]} · p={md.P[row, p]:.3f}"
        with cols[i % columns]:
            if img is not None:
                st.image(img, caption=caption, width="stretch", output_format="PNG")
            else:
                st.caption(f"(no thumbnail)\n{caption}")


# ---------------------------------------------------------------- leaderboard that fits a laptop screen

# Width the leaderboard may take without scrolling sideways: a 1366 px laptop screen minus the sidebar and the
# page margins of the wide layout. Text widths are estimated (the grid sizes columns to their content).
LAPTOP_TABLE_PX = 900
# Calibrated in chromium: the 15-column leaderboard of the fake binary experiment is 1,725 px wide, which
# these constants estimate at ~1,750 px (slightly over, so the default never scrolls).
_CHAR_PX = 6.3
_CELL_PAD_PX = 16
# Column priority when not every column fits: what a review meeting reads first (imbalanced medical data:
# balanced accuracy, sensitivity, specificity and AUC before plain accuracy), then cost.
LEADERBOARD_PRIORITY = (
    "ROC AUC",
    "Balanced acc.",
    "Sensitivity",
    "Specificity",
    "F1",
    "PR AUC",
    "Precision",
    "Accuracy",
    "Params (M)",
    "ms / image",
    "Size (MB)",
    "Train (min)",
)
ALWAYS_SHOWN = ("Rank", "Threshold")


def column_px(df: Any, column: str | None) -> float:
    """Estimated rendered width of one column of `df` (None: the index), header included."""
    values = df.index if column is None else df[column]
    header = (df.index.name or "") if column is None else column
    longest = max([len(str(header))] + [len(f"{v:.3f}" if isinstance(v, float) else str(v)) for v in values])
    return longest * _CHAR_PX + _CELL_PAD_PX


def fit_columns(display: Any, budget_px: float = LAPTOP_TABLE_PX, first: Sequence[str] = ()) -> list[str]:
    """The columns to show by default: Rank and Threshold, then `first`, then `LEADERBOARD_PRIORITY` while they fit
    `budget_px` (the model column included), in the table's own order. At least one metric is always shown."""
    always = [c for c in ALWAYS_SHOWN if c in display.columns]
    used = column_px(display, None) + sum(column_px(display, c) for c in always)
    chosen: list[str] = []
    order = [c for c in first if c in display.columns] + [c for c in LEADERBOARD_PRIORITY if c in display.columns]
    for c in list(dict.fromkeys(order)) + [c for c in display.columns if c not in order and c not in always]:
        w = column_px(display, c)
        if used + w <= budget_px or not chosen:
            chosen.append(c)
            used += w
    keep = set(always) | set(chosen)
    return [c for c in display.columns if c in keep]


def leaderboard_columns_ui(display: Any, key: str = "overview_columns", first: Sequence[str] = ()) -> list[str]:
    """A column picker for a wide table; by default the columns that fit a laptop screen (no sideways scroll),
    `first` before the usual priority. Returns the columns to show, in the table's order."""
    options = [c for c in display.columns if c not in ALWAYS_SHOWN]
    default = [c for c in fit_columns(display, first=first) if c not in ALWAYS_SHOWN]
    chosen = st.session_state.get(key)
    if not chosen or not set(chosen) <= set(options):  # first visit, another experiment, or emptied
        st.session_state[key] = default
    picked = st.multiselect(
        "Columns",
        options,
        key=key,
        help="The leaderboard shows the columns that fit a laptop screen; add any other here "
        "(the table then scrolls sideways).",
    )
    shown = set(picked) | set(ALWAYS_SHOWN)
    return [c for c in display.columns if c in shown]
