"""Misclassifications: a filtered gallery of samples, a sample card (probabilities, thresholds, Grad-CAM), mentor
notes with tags, CSV export, and a toggle that leaves samples marked "label wrong" out of the metrics."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures, notes
from pipeline import review as rv
from pipeline.artifacts import ArtifactError

SAMPLE_KEY = "review_sample"  # (experiment, eval set, sample id) of the open sample card
CAM_KEY = "review_cam_for"  # (experiment, eval set, sample id) whose Grad-CAM was asked for
MESSAGE_KEY = "review_note_message"
AUTHOR_KEY = "_review_author"  # outlives the form's widgets
EXCLUDE_WIDGET = "review_exclude_toggle"
COLUMNS = 6
OUTCOME_LABELS = {"wrong": "Wrong answers", "right": "Right answers", "all": "All samples"}
AGREEMENT_LABELS = {
    "any": "Any",
    "disagree": "Models disagree (some right, some wrong)",
    "all_wrong": "All models wrong",
}
ERROR_LABELS = {"any": "FP and FN", "fp": "False positives only", "fn": "False negatives only"}
SORT_LABELS = {
    "confidence_desc": "Confidence of the answer, highest first",
    "confidence_asc": "Confidence of the answer, lowest first",
    "sample_id": "Sample id",
}
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "roc_auc")
OTHER_TAG = "other…"

sel = state.selection()
exp, names = sel.exp, sel.exp.class_names
pos_index = exp.positive_index
st.title("Misclassifications")
st.caption(
    f"**{exp.name}** · evaluation set **{sel.eval_set}** · "
    + (
        "binary predictions at each model's threshold (set on *Threshold tuning*)"
        if sel.binary
        else "predicted class = highest probability"
    )
    + ". Open a sample to see every model's answer, its Grad-CAM, and to leave a note."
)

data = widgets.model_data_ui(sel)
if not data:
    st.stop()
models = list(data)
try:
    arrays = da.get_review_arrays(exp, models, sel.eval_set)
except ArtifactError as exc:
    widgets.artifact_error_ui(exc, "Predictions")
    st.stop()
thresholds = [state.decision_threshold(sel, m) for m in models]
pred = rv.predictions(arrays, thresholds, pos_index)
try:
    tagged = da.get_tagged(exp)
except ArtifactError as exc:
    widgets.artifact_error_ui(exc, "Mentor notes (tag filters and notes are off)")
    tagged = {}

# ---------------------------------------------------------------- filters
if st.session_state.get("review_model") not in models:
    st.session_state["review_model"] = models[0]
tag_options = [rv.TAG_ANY, rv.TAG_TAGGED, rv.TAG_UNTAGGED] + list(notes.TAGS) + sorted(set(tagged) - set(notes.TAGS))
if st.session_state.get("review_tag") not in tag_options:
    st.session_state["review_tag"] = rv.TAG_ANY
for key in ("review_true", "review_pred"):  # class picks from another experiment may not exist here
    if key in st.session_state:
        st.session_state[key] = [c for c in st.session_state[key] if 0 <= int(c) < len(names)]
if st.session_state.get("review_cam_class", "predicted") not in ["predicted", *range(len(names))]:
    st.session_state["review_cam_class"] = "predicted"

c1, c2, c3, c4 = st.columns(4)
with c1:
    model = st.selectbox(
        "Model judged",
        models,
        key="review_model",
        help="Whose answer decides right/wrong, predicted class, FP/FN and confidence.",
    )
with c2:
    outcome = st.selectbox("Show", rv.OUTCOMES, format_func=OUTCOME_LABELS.get, key="review_outcome")
with c3:
    agreement = st.selectbox(
        "Across the selected models", rv.AGREEMENTS, format_func=AGREEMENT_LABELS.get, key="review_agreement"
    )
with c4:
    tag = st.selectbox("Mentor tag", tag_options, key="review_tag")
c5, c6, c7, c8 = st.columns(4)
with c5:
    true_classes = st.multiselect(
        "True class", range(len(names)), format_func=lambda i: names[i], key="review_true", placeholder="any"
    )
with c6:
    pred_classes = st.multiselect(
        "Predicted class", range(len(names)), format_func=lambda i: names[i], key="review_pred", placeholder="any"
    )
with c7:
    error_type = (
        st.selectbox(
            "Error type",
            rv.ERROR_TYPES,
            format_func=ERROR_LABELS.get,
            key="review_error",
            help=f"Positive class: {names[pos_index]}.",
        )
        if sel.binary
        else "any"
    )
with c8:
    conf = st.slider("Confidence of the model's answer", 0.0, 1.0, (0.0, 1.0), step=0.01, key="review_conf")

flt = rv.ReviewFilter(
    model=model,
    outcome=outcome,
    true_classes=tuple(true_classes),
    pred_classes=tuple(pred_classes),
    error_type=error_type,
    confidence=(float(conf[0]), float(conf[1])),
    agreement=agreement,
    tag=tag,
)
mask = rv.filter_mask(arrays, pred, flt, pos_index, tagged)
c9, c10, c11 = st.columns([1, 2, 1])
with c10:
    sort = st.selectbox("Sort by", rv.SORTS, format_func=SORT_LABELS.get, key="review_sort")
with c11:
    page_size = st.selectbox("Per page", [12, 24, 48, 96], index=1, key="review_page_size")
idx = rv.sorted_indices(arrays, pred, mask, model, sort)
with c9:
    st.metric("Matching samples", f"{idx.size:,}", help=f"of {arrays.n:,} samples in {sel.eval_set}")


# ---------------------------------------------------------------- gallery
def _open(sample_id: str) -> None:
    st.session_state[SAMPLE_KEY] = (exp.name, sel.eval_set, sample_id)


k = models.index(model)
if idx.size == 0:
    st.info("No sample matches these filters.")
else:
    start, stop = widgets.pager_ui(int(idx.size), int(page_size), key="review_page")
    page = idx[start:stop]
    ids = [str(s) for s in arrays.sample_ids[page]]
    try:
        images = da.get_thumbnails(exp, ids)
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, "Thumbnails")
        images = [None] * len(ids)
    page_tags = da.get_sample_tags(exp, ids) if tagged else [()] * len(ids)
    conf_k = rv.confidences(arrays, pred, page)[k]
    n_right = ((pred[:, page] == arrays.y[page][None, :]) & arrays.has[:, page]).sum(axis=0)
    n_have = arrays.has[:, page].sum(axis=0)
    st.caption(
        f"Samples {start + 1:,}–{stop:,} of {idx.size:,} · {SORT_LABELS[sort].lower()} "
        f"(confidence = {model}'s probability of the class it predicted)."
    )
    cols = st.columns(COLUMNS)
    for i, (row, sid, img, sample_tags) in enumerate(zip(page, ids, images, page_tags)):
        t, p = int(arrays.y[row]), int(pred[k, row])
        caption = (
            f"{sid}\ntrue {names[t]} · pred {names[p]} ({conf_k[i]:.2f})\n"
            f"{int(n_right[i])}/{int(n_have[i])} models right"
            + (f"\n🏷 {', '.join(sample_tags)}" if sample_tags else "")
        )
        with cols[i % COLUMNS]:
            if img is not None:
                st.image(img, caption=caption, width="stretch", output_format="PNG")
            else:
                st.caption(f"(no thumbnail)\n{caption}")
            st.button("Open", key=f"review_open_{sid}", on_click=_open, args=(sid,), width="stretch")

# ---------------------------------------------------------------- sample card
st.divider()
opened = st.session_state.get(SAMPLE_KEY)
sid = opened[2] if opened and opened[:2] == (exp.name, sel.eval_set) else None
if sid is not None and sid not in arrays.index:
    sid = None
if sid is None:
    st.info("Press **Open** under an image to see its card: every model's answer, Grad-CAM and notes.")
else:
    position = int(arrays.index.get_loc(sid))
    true_name = names[int(arrays.y[position])]
    st.subheader(f"Sample {sid}")
    image = da.sample_image(exp, sid)
    left, right = st.columns([1, 2])
    with left:
        if image is not None:
            st.image(image, caption=f"true class: {true_name}", width=320)
        else:
            st.caption("(no thumbnail for this sample)")
        meta = da.get_sample_row(exp, sid)
        st.dataframe(pd.DataFrame({"value": meta.astype(str)}).rename_axis("field"), width="stretch", key="review_meta")
    with right:
        table = rv.sample_table(arrays, pred, position, names, thresholds)
        probs = table[[str(n) for n in names]]
        st.plotly_chart(
            figures.sample_probabilities_figure(
                probs, true_name, sel.colors, title="Every model's class probabilities"
            ),
            width="stretch",
            key="review_probs",
        )
        shown = table.copy()
        shown["threshold"] = [f"{t:.3f}" if t is not None else "argmax" for t in table["threshold"]]
        shown["correct"] = ["✓" if c else ("✗" if c is not None else "—") for c in table["correct"]]
        st.dataframe(shown, width="stretch", key="review_sample_table")
        st.caption(
            "Threshold in force per model (binary: on the probability of "
            f"{names[pos_index]}; multiclass: highest probability)."
        )

    # Grad-CAM, on demand
    st.markdown("#### Grad-CAM")
    reasons = {m: da.grad_cam_unavailable_reason(exp, m) for m in models}
    onnx_models = set()
    for m in models:  # imported models: ONNX gets occlusion sensitivity; a predictions table has no heat map
        try:
            imported = da.get_model_config(exp, m)
        except ArtifactError:
            continue
        if imported.get("predictions_only"):
            reasons[m] = f"{m} was imported as predictions only; a heat map needs a model file"
        elif imported.get("format") == "onnx" and (exp.path / "models" / m / "model.onnx").is_file():
            reasons[m] = None
            onnx_models.add(m)
    if image is None or all(reasons.values()):
        distinct = set(reasons.values())
        why = (
            "no image for this sample"
            if image is None
            else distinct.pop()
            if len(distinct) == 1
            else "; ".join(f"{m}: {r}" for m, r in reasons.items())
        )
        st.info(f"Grad-CAM unavailable: {why}.")
    else:
        g1, g2, g3 = st.columns([1, 1, 1])
        with g1:
            explain_class = st.selectbox(
                "Explain",
                ["predicted"] + list(range(len(names))),
                key="review_cam_class",
                format_func=lambda c: "each model's predicted class" if c == "predicted" else f"class {names[c]}",
            )
        with g2:
            alpha = st.slider("Heat-map opacity", 0.0, 1.0, 0.45, 0.05, key="review_cam_alpha")
        with g3:
            if st.button("Compute Grad-CAM", key="review_cam_button"):
                st.session_state[CAM_KEY] = (exp.name, sel.eval_set, sid)
        if st.session_state.get(CAM_KEY) == (exp.name, sel.eval_set, sid):
            from pipeline import explain

            cam_cols = st.columns(min(len(models), 4))
            for i, m in enumerate(models):
                with cam_cols[i % len(cam_cols)]:
                    if reasons[m]:
                        st.caption(f"**{m}**: Grad-CAM unavailable ({reasons[m]})")
                        continue
                    ci = int(pred[i, position]) if explain_class == "predicted" else int(explain_class)
                    try:
                        heat = da.get_grad_cam(exp, m, sid, ci)
                        how = " (occlusion sensitivity: ONNX has no gradients here)" if m in onnx_models else ""
                        st.image(
                            explain.overlay(image, heat, float(alpha)),
                            width="stretch",
                            caption=f"{m}: evidence for {names[ci]}{how}",
                        )
                    except Exception as exc:  # noqa: BLE001 - one model failing must not hide the others
                        st.warning(f"{m}: Grad-CAM failed ({type(exc).__name__}: {str(exc)[:200]})")

    # Notes
    st.markdown("#### Mentor notes")

    def _save_note(sample_id: str) -> None:
        chosen = st.session_state.get("review_note_tag")
        tag_value = st.session_state.get("review_note_custom", "") if chosen == OTHER_TAG else chosen
        author = st.session_state.get("review_note_author", "")
        st.session_state[AUTHOR_KEY] = author
        try:
            notes.add_note(exp.path, sample_id, tag_value or "", st.session_state.get("review_note_text", ""), author)
        except ValueError as exc:
            st.session_state[MESSAGE_KEY] = ("error", str(exc))
            return
        except sqlite3.Error as exc:  # e.g. a read-only folder or a corrupt notes file
            st.session_state[MESSAGE_KEY] = ("error", f"The note was not saved: {exc}")
            return
        st.session_state[MESSAGE_KEY] = ("success", f"Saved: {notes.normalize_tag(tag_value)} on {sample_id}.")
        st.session_state["review_note_text"] = ""
        st.session_state["review_note_custom"] = ""

    def _remove(sample_id: str, tag_value: str) -> None:
        try:
            notes.remove_tag(exp.path, sample_id, tag_value, st.session_state.get(AUTHOR_KEY, ""))
        except sqlite3.Error as exc:
            st.session_state[MESSAGE_KEY] = ("error", f"The tag was not removed: {exc}")
            return
        st.session_state[MESSAGE_KEY] = ("success", f"Removed tag {tag_value!r} from {sample_id}.")

    current = da.get_sample_tags(exp, [sid])[0] if tagged else ()
    if current:
        st.markdown("Current tags: " + " ".join(f"`{t}`" for t in current))
        tag_cols = st.columns(min(len(current), 6))
        for i, t in enumerate(current):
            tag_cols[i % len(tag_cols)].button(
                f"Remove “{t}”", key=f"review_remove_{t}", on_click=_remove, args=(sid, t)
            )
    else:
        st.caption("No tags on this sample yet.")
    if "review_note_author" not in st.session_state:  # the author is remembered from sample to sample
        st.session_state["review_note_author"] = st.session_state.get(AUTHOR_KEY, "")
    with st.form("review_note_form", clear_on_submit=False, border=True):
        f1, f2 = st.columns([1, 1])
        with f1:
            st.selectbox(
                "Tag",
                [notes.COMMENT, *notes.TAGS, OTHER_TAG],
                key="review_note_tag",
                format_func=lambda t: "comment (free text, no tag)" if t == notes.COMMENT else t,
                help="A tag shows in the gallery and its filter; 'label wrong' can be left out of the metrics below.",
            )
            st.text_input(
                "Other tag (when 'other…' is picked)", key="review_note_custom", max_chars=notes.MAX_TAG_CHARS
            )
        with f2:
            st.text_input("Author", key="review_note_author", max_chars=notes.MAX_AUTHOR_CHARS)
            st.text_area("Note", key="review_note_text", max_chars=notes.MAX_TEXT_CHARS, height=80)
        st.form_submit_button("Save note", on_click=_save_note, args=(sid,))
    message = st.session_state.pop(MESSAGE_KEY, None)
    if message:
        (st.error if message[0] == "error" else st.success)(message[1])
    try:
        history = da.get_notes(exp, [sid])
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, "Mentor notes")
        history = None
    if history is not None and len(history):
        st.dataframe(history.drop(columns=["sample_id"]).set_index("note_id"), width="stretch", key="review_history")

# ---------------------------------------------------------------- export and label noise
st.divider()
e1, e2 = st.columns([1, 3])
with e1:
    try:
        n_notes = da.notes_stamp(exp)
    except ArtifactError:
        n_notes = 0
    # Built when clicked (on its own thread), so the export is current and reruns do not pay for it.
    st.download_button(
        "Export notes as CSV",
        data=lambda: da.notes_csv_or_message(exp),
        file_name=f"{exp.name}-notes.csv",
        mime="text/csv",
        key="review_export",
        disabled=not n_notes,
        on_click="ignore",
    )


def _on_exclude() -> None:
    st.session_state[da.EXCLUDE_LABEL_WRONG_KEY] = bool(st.session_state[EXCLUDE_WIDGET])


# The widget's own key is dropped when another page runs; the choice lives on in a plain session key.
st.session_state[EXCLUDE_WIDGET] = bool(st.session_state.get(da.EXCLUDE_LABEL_WRONG_KEY, False))
with e2:
    exclude = st.toggle(
        "Exclude samples marked 'label wrong' from the metrics", key=EXCLUDE_WIDGET, on_change=_on_exclude
    )
label_wrong = tagged.get(notes.LABEL_WRONG, frozenset())
n_marked = int(rv.tag_mask(arrays, label_wrong).sum())
st.caption(
    f"{n_marked:,} sample(s) of **{sel.eval_set}** are marked 'label wrong'. "
    "The choice is kept for this browser session and applies to every page's metrics (leaderboard, "
    "curves, confusion matrices, thresholds, calibration, comparison); the table shows its effect."
)
rows = []
for m, thr in zip(models, thresholds):
    before = da.get_summary_excluding(exp, m, sel.eval_set, thr, frozenset())
    row = {"model": m, "Samples": int(before["n"])}
    after = da.get_summary_excluding(exp, m, sel.eval_set, thr, label_wrong) if exclude else None
    if after is not None:
        row["Samples (excl.)"] = int(after["n"])
    for metric in SUMMARY_METRICS:
        label = figures.METRIC_LABELS.get(metric, metric)
        row[label] = before[metric]
        if after is not None:
            row[f"{label} (excl.)"] = after[metric]
            row[f"{label} change"] = after[metric] - before[metric]
    rows.append(row)
st.dataframe(
    pd.DataFrame(rows).set_index("model").style.format(precision=4, na_rep="—"), width="stretch", key="review_metrics"
)

# ---------------------------------------------------------------- suspected label errors
st.divider()
st.subheader("Suspected label errors")
queue = da.label_issue_queue(exp)
if queue.empty:
    st.caption(
        "No queue for this experiment: it is built from out-of-fold predictions (train with "
        "`[train] folds = 5`) and from duplicate clusters whose labels disagree (the data audit)."
    )
else:
    flagged = queue[queue["is_issue"].astype(bool)]
    names_arr = np.asarray(names, dtype=object)
    show = pd.DataFrame({"sample": flagged["sample_id"], "source": flagged["source"]})
    if "label" in flagged:
        show["label"] = [names_arr[int(v)] if v == v else "" for v in flagged["label"]]
        show["models suggest"] = [names_arr[int(v)] if v == v else "" for v in flagged["suggested"]]
        show["label quality"] = flagged["label_quality"].round(3)
        show["models disagree"] = [
            f"{int(d)} of {int(n)}" if n == n else "" for d, n in zip(flagged["models_disagree"], flagged["n_models"])
        ]
    show["marked 'label wrong'"] = flagged["sample_id"].isin(list(tagged.get(notes.LABEL_WRONG, ())))
    st.caption(
        f"{len(flagged):,} suspected, models-agree-label-disagrees first (lowest label quality first). "
        "Mark one after looking at it; marked samples can be left out of every metric with the toggle above."
    )
    if "injected_flip" in queue:
        from pipeline.label_issues import precision_recall

        p, r = precision_recall(flagged["sample_id"], queue.loc[queue["injected_flip"].astype(bool), "sample_id"])
        st.caption(
            f"This (demo) data set knows its injected label flips: the queue's precision {p:.2f}, recall {r:.2f}."
        )
    st.dataframe(show.head(200), hide_index=True, width="stretch", key="review_label_queue")
    q1, q2 = st.columns([3, 1])
    with q1:
        pick = st.selectbox("Sample from the queue", list(flagged["sample_id"].head(200)), key="review_queue_pick")

    def _mark_queue() -> None:
        sid_ = st.session_state.get("review_queue_pick")
        try:
            notes.add_note(
                exp.path,
                str(sid_),
                notes.LABEL_WRONG,
                "from the suspected-label-error queue",
                st.session_state.get(AUTHOR_KEY, ""),
            )
        except (ValueError, sqlite3.Error) as exc:
            st.session_state[MESSAGE_KEY] = ("error", f"The note was not saved: {exc}")
            return
        st.session_state[MESSAGE_KEY] = ("success", f"Saved: {notes.LABEL_WRONG} on {sid_}.")

    with q2:
        st.button("Mark 'label wrong'", on_click=_mark_queue, key="review_queue_mark", disabled=pick is None)
