"""Paired comparison: is one model really better? DeLong, McNemar and paired grouped bootstrap for two models,
a Holm-corrected matrix over every pair, disagreement, the mean-probability ensemble, and the meeting report."""

from __future__ import annotations

import re

import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline import report as rp
from pipeline.artifacts import ArtifactError
from pipeline.comparison import ENSEMBLE
from pipeline.run_summary import TRUST_SENTENCE

ALPHA = 0.05
REPORT_KEY = "_compare_report_request"  # the parameters of the last "Build meeting report" click


def md_escape(text: str) -> str:
    """Escape Markdown markup characters (model names may hold underscores or asterisks)."""
    return re.sub(r"([\\`*_\[\]<>#|~])", r"\\\1", text)


def styled(df, p_columns: tuple[str, ...] = ()):
    """Numbers to 4 decimals, p-values in scientific notation below 0.001, empty cells as a dash."""

    def p_fmt(v: float) -> str:
        return "—" if v != v else (f"{v:.2e}" if v < 0.001 else f"{v:.4f}")

    fmt = {c: (p_fmt if c in p_columns else "{:.4f}") for c in df.columns if df[c].dtype.kind == "f"}
    return df.style.format(fmt, na_rep="—")


def report_ui(sel: state.Selection, models: list[str], thresholds: dict[str, float | None], n_boot: int) -> None:
    """The meeting-report section: build (cached) with the thresholds in force, then download HTML / PDF."""
    st.subheader("Meeting report")
    st.caption(
        "One self-contained HTML file that opens offline: leaderboard with CIs, curves, confusion matrices at "
        "the thresholds in force, calibration, the paired tests, disagreement, data set and splits, each "
        "model's config, and the top misclassifications with mentors' notes. Also `python -m pipeline report "
        f"{sel.exp.path.name}`."
    )
    try:
        rp.find_chromium()
        chromium_note = None
    except FileNotFoundError as exc:
        chromium_note = str(exc)
    want_pdf = st.toggle(
        "Also a PDF (printed by headless chromium, slower)",
        key="compare_report_pdf",
        disabled=chromium_note is not None,
        help=chromium_note,
    )
    if sel.binary and ENSEMBLE not in thresholds and len(models) >= 2:
        thresholds = {**thresholds, ENSEMBLE: state.get_threshold(sel, ENSEMBLE)}
    excluded = tuple(sorted(da.excluded_sample_ids(sel.exp)))  # the report leaves out what the pages leave out
    request = (
        sel.exp.name,
        tuple(models),
        sel.eval_set,
        tuple(sorted((m, t) for m, t in thresholds.items() if t is not None)),
        n_boot,
        bool(want_pdf),
        excluded,
    )
    if st.button("Build meeting report", key="compare_build_report", icon=":material/description:"):
        st.session_state[REPORT_KEY] = request
    if st.session_state.get(REPORT_KEY) != request:
        st.caption(
            "Press **Build meeting report** (a few seconds); it uses the models, evaluation set, thresholds "
            "and resamples chosen now"
            + (
                f", without the {len(excluded)} sample(s) left out (marked 'label "
                "wrong' and/or leak-free) (as every page)."
                if excluded
                else "."
            )
        )
        return
    try:
        html_bytes, pdf_bytes = da.get_meeting_report(
            sel.exp,
            models,
            sel.eval_set,
            thresholds,
            n_boot=n_boot,
            pdf=want_pdf,
            threshold_sources={m: state.threshold_source(sel, m) for m in thresholds},
        )
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, "Meeting report")
        return
    except (FileNotFoundError, RuntimeError, ValueError) as exc:
        st.error(f"Meeting report: {exc}", icon="⚠️")
        return
    base = f"{sel.exp.name}-{sel.eval_set}-meeting-report"
    c1, c2 = st.columns(2)
    with c1:
        st.download_button(
            "Download meeting report (HTML)",
            html_bytes,
            file_name=f"{base}.html",
            mime="text/html",
            key="compare_download_html",
            icon=":material/download:",
        )
    if pdf_bytes is not None:
        with c2:
            st.download_button(
                "Download meeting report (PDF)",
                pdf_bytes,
                file_name=f"{base}.pdf",
                mime="application/pdf",
                key="compare_download_pdf",
                icon=":material/picture_as_pdf:",
            )
    st.caption(
        f"HTML {len(html_bytes) / 1e6:.1f} MB (plotly.js and thumbnails inlined)"
        + (f", PDF {len(pdf_bytes) / 1e6:.1f} MB" if pdf_bytes is not None else "")
        + "."
    )


sel = state.selection()
st.title("Paired comparison")
st.caption(
    f"**{sel.exp.name}** · evaluation set **{sel.eval_set}** · same samples for every model · "
    + (
        "McNemar and threshold metrics at each model's threshold (set on *Threshold tuning*)"
        if sel.binary
        else f"multiclass: argmax predictions; DeLong per one-vs-rest class (sidebar class **{sel.class_name}**)"
    )
)

data = widgets.model_data_ui(sel)
models = list(data)
thresholds = {m: state.decision_threshold(sel, m) for m in models}
n_boot = st.session_state.get("compare_n_boot", 1000)

if len(models) < 2:
    st.info(
        "A comparison needs two models: select at least two models in the sidebar"
        + (" (this experiment has only one)." if len(sel.exp.models) < 2 else "."),
        icon="⚖️",
    )
    if models:
        report_ui(sel, models, thresholds, n_boot)
    st.stop()

aligned = da.get_aligned(sel.exp, models, sel.eval_set)
if aligned.n == 0:
    st.warning("The selected models have no predictions on common samples of this evaluation set.")
    st.stop()
if aligned.n < min(md.n for md in data.values()):
    st.caption(f"Compared on the {aligned.n:,} samples that every selected model predicted.")

left, right = st.columns(2)
with left:
    n_boot = st.select_slider(
        "Bootstrap resamples (grouped by patient/lesion)", [200, 500, 1000, 2000], value=1000, key="compare_n_boot"
    )
with right:
    metric = st.selectbox(
        "Difference in",
        da.LEADERBOARD_METRICS,
        key="compare_metric",
        index=da.LEADERBOARD_METRICS.index("roc_auc"),
        format_func=lambda m: figures.METRIC_LABELS.get(m, m),
        help="Leaderboard metric whose paired-bootstrap difference is reported for the pair and shown in the matrix.",
    )
try:
    rows = da.get_pairwise(sel.exp, models, sel.eval_set, thresholds, n_boot=n_boot)
except ValueError as exc:
    st.warning(f"The paired tests cannot run on this evaluation set: {exc}")
    st.stop()
n_pairs = len(rows)

# ---------------------------------------------------------------- two models
st.subheader("Two models")
for key, default in (("compare_a", models[0]), ("compare_b", models[1])):
    if st.session_state.get(key) not in models:
        st.session_state[key] = default
c1, c2 = st.columns(2)
with c1:
    a = st.selectbox("Model A", models, key="compare_a")
with c2:
    b = st.selectbox("Model B", models, key="compare_b")
if a == b:
    st.warning("Pick two different models.")
else:
    row = rp.orient_pair(rows, a, b)
    class_index = None if sel.binary else sel.class_index
    lines = rp.verdicts(row, metric, n_pairs, ALPHA, sel.exp.class_names, class_index)
    if not sel.binary:
        lines.insert(0, rp.multiclass_verdict(row, sel.exp.class_names, n_pairs, ALPHA))
    st.markdown(f"##### {md_escape(lines[0])}")
    for line in lines[1:]:
        st.markdown(md_escape(line))
    caution = rp.clustering_note(aligned.n, len(set(aligned.groups.tolist())))
    if caution:
        st.warning(caution, icon="👥")
    tests, per_class = rp.pair_tables(row, da.LEADERBOARD_METRICS, sel.exp.class_names, aligned.n, ALPHA)
    st.dataframe(styled(tests, ("p-value", "p (Holm)")), width="stretch", key="compare_pair_table")
    thr_text = f"{a} at {thresholds[a]:.3f}, {b} at {thresholds[b]:.3f}" if sel.binary else "argmax"
    st.caption(
        f"A = **{md_escape(a)}**, B = **{md_escape(b)}**; differences are A − B. DeLong: Wald 95% CI of the "
        f"AUC difference. McNemar: predictions at {md_escape(thr_text)}; exact binomial when fewer than 25 "
        "samples are discordant; the accuracy difference has a Wald paired-proportion CI. "
        f"Bootstrap: {n_boot} paired resamples of whole patients/lesions, percentile "
        f"CI. p (Holm): adjusted over the {n_pairs} pair{'s' if n_pairs != 1 else ''} of selected models."
    )
    runs_ab = da.runs_of_selected(sel.exp, [a, b])
    over_res = None
    if len(runs_ab) == 2 and min(len(r) for r in runs_ab.values()) >= 2:
        run_models = [r for rs in runs_ab.values() for r in rs]
        try:
            over_res = da.get_runs_comparison(
                sel.exp, run_models, sel.eval_set, metric, {m: state.decision_threshold(sel, m) for m in run_models}
            )
        except (ArtifactError, ValueError) as exc:
            st.warning(f"The test over runs is left out: {exc}")
    if over_res is not None and not over_res.pairs.empty:
        over = over_res.pairs.iloc[0]
        label = figures.METRIC_LABELS.get(metric, metric)
        st.markdown(
            f"**Over runs** ({over_res.test_name}): **{md_escape(over['a'])}** "
            f"beats **{md_escape(over['b'])}** in {int(over['wins'])} of {int(over['n'])} paired runs; mean "
            f"{label} difference {over['mean_diff']:+.4f}"
            + (
                f" [{over['ci_low']:+.4f}, {over['ci_high']:+.4f}], p = {rp.format_p(over['p'])}."
                if over["p"] == over["p"]
                else " (fewer than two paired runs: no p)."
            )
        )
        st.caption(f"{TRUST_SENTENCE} Details and rank stability on *Runs & stability*.")
    if per_class is not None:
        st.markdown("**DeLong per class (one vs rest)**")
        st.dataframe(styled(per_class, ("p-value", "p (Holm)")), width="stretch", key="compare_class_table")

# ---------------------------------------------------------------- every pair
st.subheader(f"All {n_pairs} pairs, Holm-corrected" if n_pairs > 1 else "The pair (one test: no correction needed)")
tests_for_matrix = {
    "delong": "DeLong (ROC AUC" + ("" if sel.binary else f", {sel.class_name} vs rest") + ")",
    "bootstrap": f"Paired bootstrap ({figures.METRIC_LABELS.get(metric, metric)})",
    "mcnemar": "McNemar (accuracy at the thresholds)",
}
test = (
    st.segmented_control(
        "Matrix of",
        list(tests_for_matrix),
        default="delong",
        key="compare_matrix_test",
        format_func=tests_for_matrix.get,
    )
    or "delong"
)
diff, p = rp.pair_matrix(rows, models, test, metric, None if sel.binary else sel.class_index)
diff_label = {
    "delong": "AUC difference",
    "bootstrap": f"{figures.METRIC_LABELS.get(metric, metric)} difference",
    "mcnemar": "only-row-right minus only-column-right samples",
}[test]
m1, m2 = st.columns([3, 2]) if len(models) <= 4 else (st.container(), st.container())
with m1:
    st.plotly_chart(
        figures.pairwise_matrix_figure(
            models, diff, p, title=tests_for_matrix[test], diff_label=diff_label, alpha=ALPHA
        ),
        width="stretch",
        key="compare_matrix",
    )
with m2:
    st.caption(
        f"Cell (row, column): row model minus column model; colour and p are Holm-adjusted over the "
        f"{n_pairs} pairs; ★ = significant at {ALPHA:g}."
    )
    if not sel.binary and test == "delong":
        labels, cdiff, cp = rp.delong_class_grid(rows, sel.exp.class_names)
        st.plotly_chart(
            figures.p_value_grid_figure(
                labels,
                sel.exp.class_names,
                cdiff,
                cp,
                alpha=ALPHA,
                title="Every class (DeLong, Holm over pairs)",
                diff_label="AUC difference",
                x_title="class",
                y_title="pair (A − B)",
            ),
            width="stretch",
            key="compare_class_grid",
        )
table = rp.pairs_table(rows, metric, sel.exp.class_names, None if sel.binary else sel.class_index)
st.dataframe(
    styled(table, tuple(c for c in table.columns if " p" in c)),
    width="stretch",
    hide_index=True,
    key="compare_pairs_table",
)

# ---------------------------------------------------------------- disagreement
st.subheader("Disagreement")
dis = da.get_disagreement(sel.exp, models, sel.eval_set, thresholds)
st.caption(
    f"All selected models are right on {dis['all_right']:,} of {dis['n']:,} samples and all wrong on "
    f"{dis['all_wrong']:,}. Samples that only one model gets right are where an ensemble can gain; open them "
    "on the *Misclassifications* page."
)
d1, d2 = st.columns(2)
with d1:
    st.plotly_chart(
        figures.disagreement_figure(dis["names"], dis["matrix"]), width="stretch", key="compare_disagreement"
    )
with d2:
    st.plotly_chart(
        figures.unique_correct_figure(dis["unique_correct"], colors=sel.colors), width="stretch", key="compare_unique"
    )

# ---------------------------------------------------------------- ensemble
st.subheader(f"{ENSEMBLE} of the selected models")
ci = sel.class_index
ens_thr = None
if sel.binary:
    # The shared threshold store is the truth (URL, Overview row, report); the slider mirrors it.
    st.session_state["compare_ens_thr"] = state.get_threshold(sel, ENSEMBLE)
    ens_thr = st.slider(
        "Ensemble threshold",
        0.0,
        1.0,
        step=0.005,
        key="compare_ens_thr",
        on_change=lambda: state.set_threshold(sel, ENSEMBLE, float(st.session_state["compare_ens_thr"])),
        help="Decision threshold of the ensemble's mean probability; also used by its Overview row "
        "and the meeting report.",
    )
    thresholds_with_ens = {**thresholds, ENSEMBLE: float(ens_thr)}
else:
    thresholds_with_ens = thresholds
roc, pr = [], []
prevalence = None
for model in models:
    cur = da.get_curves(sel.exp, model, sel.eval_set, ci)
    if cur["roc"] is None:
        continue
    prevalence = cur["prevalence"]
    roc.append(figures.Curve.from_summary(model, cur, "roc", color=sel.colors.get(model)))
    pr.append(figures.Curve.from_summary(model, cur, "pr", color=sel.colors.get(model)))
ens = da.get_ensemble_curves(sel.exp, models, sel.eval_set, ci)
if ens["roc"] is not None:
    style = dict(
        threshold=ens_thr,
        color="#222222",
        dash="dash",
        at=None if ens_thr is None else da.ensemble_metrics_at(sel.exp, models, sel.eval_set, ci, ens_thr),
    )
    roc.append(figures.Curve.from_summary(ENSEMBLE, ens, "roc", **style))
    pr.append(figures.Curve.from_summary(ENSEMBLE, ens, "pr", **style))
e1, e2 = st.columns(2)
with e1:
    roc_title = f"ROC, {sel.class_name}" + ("" if sel.binary else " vs rest")
    st.plotly_chart(figures.curve_figure(roc, "roc", title=roc_title), width="stretch", key="compare_ens_roc")
with e2:
    st.plotly_chart(
        figures.curve_figure(pr, "pr", title="Precision-recall", baseline=prevalence),
        width="stretch",
        key="compare_ens_pr",
    )
st.caption(
    f"The ensemble averages the selected models' probabilities on their {aligned.n:,} common samples; it "
    "is also a row of the *Overview* leaderboard, with its size and speed the sums of its members'."
)

st.divider()
report_ui(sel, models, thresholds_with_ens, n_boot)
