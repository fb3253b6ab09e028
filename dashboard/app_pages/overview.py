"""Overview: the leaderboard of backbones with 95% grouped-bootstrap intervals, size and speed; the data set."""

from __future__ import annotations

import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline.artifacts import ArtifactError
from pipeline.comparison import ENSEMBLE
from pipeline.report import ensemble_config
from pipeline.run_summary import seed_ensembles

sel = state.selection()
st.title("Overview")
st.caption(
    f"**{sel.exp.name}** · evaluation set **{sel.eval_set}** · "
    + (
        "binary metrics at each model's threshold (set on *Threshold tuning*)"
        if sel.binary
        else "multiclass: argmax predictions, macro-averaged sensitivity/specificity/precision/F1"
    )
)

left, right = st.columns([1, 1])
with left:
    n_boot = st.select_slider(
        "Bootstrap resamples (grouped by patient/lesion)", [200, 500, 1000, 2000], value=1000, key="overview_n_boot"
    )
with right:
    rank_by = st.selectbox(
        "Rank by",
        da.LEADERBOARD_METRICS,
        key="overview_rank_by",
        format_func=lambda m: figures.METRIC_LABELS.get(m, m),
        index=da.LEADERBOARD_METRICS.index("roc_auc"),
    )

data = widgets.model_data_ui(sel)
results = (
    da.get_leaderboard_ci(
        sel.exp, list(data), sel.eval_set, {m: state.decision_threshold(sel, m) for m in data}, n_boot=n_boot
    )
    if data
    else {}
)
configs = {}
for model in data:
    try:
        configs[model] = da.get_model_config(sel.exp, model)
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, f"Model **{model}** (size and speed columns left empty)")

if len(results) >= 2 and st.toggle(
    f"{ENSEMBLE} row",
    value=True,
    key="overview_ensemble",
    help="Mean probability of the selected models (threshold and curves on *Paired "
    "comparison*); its size and speed are the sums of its members'.",
):
    members = list(results)
    results[ENSEMBLE] = da.get_ensemble_bootstrap(
        sel.exp, members, sel.eval_set, state.get_threshold(sel, ENSEMBLE) if sel.binary else None, n_boot=n_boot
    )
    configs[ENSEMBLE] = ensemble_config(configs, members)

# Backbones trained several times (seeds, folds): their spread over runs beside the first run's CI.
run_groups = da.runs_of_selected(sel.exp, list(data)) if data else {}
repeated = {b: runs for b, runs in run_groups.items() if len(runs) > 1}
seed_rows = seed_ensembles(repeated)
if seed_rows and st.toggle(
    "Seed-ensemble rows",
    value=False,
    key="overview_seed_ensembles",
    help="For each backbone with several runs, a row for the mean probability of all its runs (the "
    "seed-averaged model); its size and speed are the sums of its runs'.",
):
    for name, runs in seed_rows.items():
        results[name] = da.get_ensemble_bootstrap(
            sel.exp, runs, sel.eval_set, state.get_threshold(sel, name) if sel.binary else None, n_boot=n_boot
        )
        run_configs = {}
        for run in runs:
            try:
                run_configs[run] = da.get_model_config(sel.exp, run)
            except ArtifactError:
                run_configs[run] = {}
        configs[name] = ensemble_config(run_configs, runs)

if results:
    frame = da.leaderboard_frame(results, configs).sort_values(rank_by, ascending=False)
    display, best = figures.leaderboard_table(
        frame,
        da.LEADERBOARD_METRICS,
        thresholds={m: state.get_threshold(sel, m) for m in frame.index} if sel.binary else None,
    )
    leaky = da.leaky_ids(sel.exp)
    if leaky and not st.session_state.get(da.EXCLUDE_LEAKY_KEY, False):
        # the ranking metric on the test images without a near-copy in training, beside the full value
        label = figures.METRIC_LABELS.get(rank_by, rank_by)
        free = {
            m: da.get_summary_excluding(
                sel.exp, m, sel.eval_set, state.decision_threshold(sel, m), da.excluded_sample_ids(sel.exp) | set(leaky)
            )[rank_by]
            for m in frame.index
            if m in data
        }
        column = [f"{free[m]:.3f}" if m in free and free[m] == free[m] else "—" for m in display.index]
        at = list(display.columns).index(label) + 1 if label in display.columns else len(display.columns)
        display.insert(at, f"{label} leak-free", column)
        best.insert(at, f"{label} leak-free", False)
    sg_cfg = da.subgroups_config(sel.exp)
    try:
        sg_columns = [c for c in da.get_subgroup_frame(sel.exp, sg_cfg.columns).columns if c != "eval_set"]
    except (ValueError, KeyError):
        sg_columns = []
    if sg_columns:  # a subgroup that fails must not hide inside a good average
        sg_col = st.selectbox(
            "Worst subgroup by",
            ["(none)", *sg_columns],
            key="overview_worst_by",
            index=1,
            help="The lowest subgroup value of the ranking metric (subgroups of at least "
            "the configured minimum size), at the thresholds in force; details on "
            "*Subgroups*.",
        )
        if sg_col != "(none)":
            label = figures.METRIC_LABELS.get(rank_by, rank_by)
            worst = da.get_worst_subgroup(
                sel.exp,
                [m for m in display.index if m in data],
                sel.eval_set,
                sg_col,
                rank_by,
                {m: state.decision_threshold(sel, m) for m in data},
                class_index=sel.class_index,
            )
            cells = [("—" if not worst.get(m) else f"{worst[m][1]:.3f} ({worst[m][0]})") for m in display.index]
            at = list(display.columns).index(label) + 1 if label in display.columns else len(display.columns)
            display.insert(at, f"Worst {sg_col}", cells)
            best.insert(at, f"Worst {sg_col}", False)
    spread = None
    if repeated:
        all_runs = [r for runs in run_groups.values() for r in runs]
        try:
            spread = da.get_runs_spread(
                sel.exp, all_runs, sel.eval_set, {m: state.decision_threshold(sel, m) for m in all_runs}
            )[rank_by]
        except ArtifactError as exc:
            widgets.artifact_error_ui(exc, "The runs' mean and SD (left out of the leaderboard)")
        except ValueError as exc:  # e.g. the runs share no sample of this evaluation set
            st.warning(f"The runs' mean and SD are left out on **{sel.eval_set}**: {exc}")
    if spread is not None:
        owner = {r: b for b, runs in run_groups.items() for r in runs}
        label = figures.METRIC_LABELS.get(rank_by, rank_by)
        cells = figures.runs_spread_cells(spread, [owner.get(m, "") for m in display.index])
        at = list(display.columns).index(label) + 1 if label in display.columns else len(display.columns)
        display.insert(at, f"{label} over runs", cells)
        best.insert(at, f"{label} over runs", False)
    st.subheader("Leaderboard")
    rank_label = figures.METRIC_LABELS.get(rank_by, rank_by)
    shown = widgets.leaderboard_columns_ui(
        display, first=[rank_label, f"{rank_label} over runs"] if spread is not None else ()
    )
    st.dataframe(
        figures.style_best(display, best),
        width="stretch",
        key="leaderboard",
        column_order=shown,
        column_config={"Rank": st.column_config.NumberColumn(width="small")},
    )
    hidden = [c for c in display.columns if c not in shown]
    st.caption(
        f"Point estimate [95% CI], {n_boot} resamples of whole patients/lesions. {figures.BEST_MARK.strip()} "
        "and green = best in the column (smallest for size, speed and training time). "
        "Click a column header to sort."
        + (f" Not shown, to fit the screen: {', '.join(hidden)} (add them under *Columns*)." if hidden else "")
    )
    if spread is not None:
        label = figures.METRIC_LABELS.get(rank_by, rank_by)
        st.caption(
            f"*{label} over runs*: mean ± SD (min–max, number of runs) of every run of the row's backbone "
            "(seeds and/or folds), each at its own threshold: the training noise, beside the first run's "
            "test-sample CI. Rank stability and the tests over runs are on *Runs & stability*."
        )
        ci = {b: results[p][rank_by] for b, p in zip(spread["backbone"], spread["primary"]) if p in results}
        fig_table = spread.assign(
            primary_ci_low=[ci[b][1] if b in ci else float("nan") for b in spread["backbone"]],
            primary_ci_high=[ci[b][2] if b in ci else float("nan") for b in spread["backbone"]],
        )
        with st.expander(f"Every run's {label}", expanded=True):
            st.plotly_chart(
                figures.runs_figure(fig_table, label, colors=sel.colors, height=max(240, 60 * len(fig_table) + 80)),
                width="stretch",
                key="overview_runs_fig",
            )
    if sel.binary:
        st.caption(
            "Thresholds in force: "
            + "; ".join(
                f"**{m}** {state.get_threshold(sel, m):.3f} ({state.threshold_source(sel, m)})"
                for m in [*data, *(n for n in seed_rows if n in results)]
            )
            + ". Choose them on validation predictions on *Threshold tuning*; chosen on the set shown, the "
            "threshold metrics above are optimistic."
        )

st.subheader("Data set")
counts, per_set = da.dataset_summary(sel.exp)
c1, c2 = st.columns([3, 2])
with c1:
    st.plotly_chart(figures.class_counts_figure(counts[sel.exp.class_names]), width="stretch")
with c2:
    st.markdown("**Class counts and groups per split**")
    st.dataframe(counts, width="stretch")
    st.markdown("**Evaluation sets**")
    st.dataframe(per_set, width="stretch")
