"""Data audit: duplicates and their leakage across splits, conflicting labels, image-quality flags."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline.artifacts import ArtifactError
from pipeline.audit import QUALITY_FLAGS, read_audit, read_audit_thumbnails

PAIRS_PER_PAGE = 8
FLAGGED_PER_PAGE = 12

OPEN_KEY = "audit_open_card"  # (experiment, eval set, sample id) asked for by an "Open card" button
REVIEW_SAMPLE_KEY = "review_sample"  # the Misclassifications page's open sample card (its SAMPLE_KEY)

sel = state.selection()
exp = sel.exp
if (wanted := st.session_state.pop(OPEN_KEY, None)) is not None:
    # click-through: the sample's card on Misclassifications, with the sidebar on its evaluation set
    st.session_state[REVIEW_SAMPLE_KEY] = wanted
    st.switch_page("app_pages/review.py")
st.title("Data audit")
st.caption(
    "Exact and near-duplicate images (Pearson r of small gray thumbnails, candidates by perceptual hash), "
    "duplicates that cross splits, duplicate clusters with conflicting labels, and image-quality flags."
)
try:
    audit = read_audit(exp.path)
except ArtifactError as exc:
    widgets.artifact_error_ui(exc, "the data audit")
    st.stop()
if audit is None:
    st.info(
        f"Experiment **{exp.name}** has no data audit yet. Run `python -m pipeline audit {exp.path}` "
        "(or rebuild it: the audit runs at ingest unless `[audit] enabled = false`)."
    )
    st.stop()

samples = exp.samples
side = samples.assign(sample_id=samples["sample_id"].astype(str)).drop_duplicates("sample_id").set_index("sample_id")
label_names = exp.class_names
eval_sets = [es for es in exp.eval_sets]
leaky = {es: audit.leaky_ids(samples, es) for es in eval_sets}
crossing = audit.leakage(samples)
conflicts = audit.conflicts(samples)
quality = audit.quality
settings = audit.summary.get("settings", {})

# ---------------------------------------------------------------- counts
c = st.columns(5)
c[0].metric("Duplicate pairs", f"{len(audit.pairs):,}", help=f"{int(audit.pairs['exact'].sum()):,} exact copies")
c[1].metric("Duplicate clusters", f"{int(quality.loc[quality['cluster'] >= 0, 'cluster'].nunique()):,}")
c[2].metric("Pairs across splits", f"{len(crossing):,}")
n_eval = int((samples["eval_set"] == sel.eval_set).sum())
c[3].metric(
    f"{sel.eval_set}: duplicate in training",
    f"{len(leaky.get(sel.eval_set, ())):,} of {n_eval:,}",
    help="Images of this evaluation set whose duplicate cluster holds a train (or val) image.",
)
c[4].metric("Clusters with conflicting labels", f"{int(conflicts['cluster'].nunique()) if len(conflicts) else 0:,}")
side_px = settings.get("thumb_size", "?")
st.caption(
    f"Similarity threshold r ≥ {settings.get('threshold', '?')} on {side_px}×{side_px} thumbnails; "
    f"perceptual hash of {settings.get('hash_size', 8) ** 2} bits. Change it in the config's `[audit]` section."
)
st.dataframe(
    pd.DataFrame(
        [
            {
                "evaluation set": es,
                "images": int((samples["eval_set"] == es).sum()),
                "with a duplicate in training": len(leaky[es]),
            }
            for es in eval_sets
        ]
    ),
    hide_index=True,
    width="stretch",
    key="audit_leak_table",
)

# ---------------------------------------------------------------- duplicate pairs side by side
st.subheader("Duplicate pairs")
kinds = {"across splits": crossing, "conflicting labels": None, "all": audit.pairs}
shown_kind = st.radio("Show", list(kinds), horizontal=True, key="audit_pairs_kind")
if shown_kind == "conflicting labels":
    conflict_ids = set(conflicts["sample_id"]) if len(conflicts) else set()
    pairs = audit.pairs[audit.pairs["a"].isin(conflict_ids) & audit.pairs["b"].isin(conflict_ids)]
    pairs = pairs[pairs["a"].map(side["label"]) != pairs["b"].map(side["label"])]
else:
    pairs = kinds[shown_kind]
pairs = pairs.sort_values("similarity", ascending=False).reset_index(drop=True)
extra_thumbs = read_audit_thumbnails(exp.path)


def thumbs_of(ids: list[str]) -> list[bytes | None]:
    """Thumbnails from the experiment (evaluated images) or the audit (the others)."""
    try:
        base = da.get_thumbnails(exp, ids)
    except ArtifactError:
        base = [None] * len(ids)
    return [b if b is not None else extra_thumbs.get(i) for i, b in zip(ids, base)]


def _open_card(sid: str, eval_set: str) -> None:
    st.session_state[OPEN_KEY] = (exp.name, eval_set, sid)
    st.session_state[state.EVAL_KEY] = eval_set


def caption(sid: str) -> str:
    row = side.loc[sid] if sid in side.index else None
    if row is None:
        return sid
    label = label_names[int(row["label"])] if 0 <= int(row["label"]) < len(label_names) else row["label"]
    return f"{sid} · {row.get('split')} · {label}"


if pairs.empty:
    st.success(f"No duplicate pairs to show ({shown_kind}).")
else:
    start, stop = widgets.pager_ui(len(pairs), PAIRS_PER_PAGE, key="audit_pairs_page")
    page = pairs.iloc[start:stop]
    ids = [str(x) for ab in zip(page["a"], page["b"]) for x in ab]
    images = thumbs_of(ids)
    for k, row in enumerate(page.itertuples()):
        left, right, info = st.columns([2, 2, 1])
        for col, sid, img in ((left, str(row.a), images[2 * k]), (right, str(row.b), images[2 * k + 1])):
            if img is not None:
                col.image(img, caption=caption(sid), width=160)
            else:
                col.caption(f"(no thumbnail) {caption(sid)}")
            es = side.loc[sid, "eval_set"] if sid in side.index else None
            if isinstance(es, str):  # evaluated images have a card (every model's answer, Grad-CAM, notes)
                col.button("Open card", key=f"audit_open_{k}_{sid}", on_click=_open_card, args=(sid, es))
        info.markdown(f"**r = {row.similarity:.3f}**" + (" · exact copy" if row.exact else ""))

# ---------------------------------------------------------------- conflicting labels
st.subheader("Duplicate clusters with conflicting labels")
if conflicts.empty:
    st.success("No duplicate cluster mixes labels.")
else:
    table = conflicts.assign(
        label=conflicts["label"].map(lambda v: label_names[int(v)] if 0 <= int(v) < len(label_names) else v)
    )
    cols = [c for c in ("cluster", "sample_id", "label", "split", "group") if c in table.columns]
    st.dataframe(table[cols], hide_index=True, width="stretch", key="audit_conflicts")
    st.caption(
        "Each cluster holds copies of one image with different labels: at least one label is wrong. "
        "Review them on the Misclassifications page and leave a 'label wrong' note."
    )

# ---------------------------------------------------------------- quality flags
st.subheader("Image quality")
counts = pd.DataFrame(
    [
        {"flag": f.replace("_", " "), "images": int(quality[f"flag_{f}"].sum())}
        for f in QUALITY_FLAGS
        if f"flag_{f}" in quality.columns
    ]
)
st.dataframe(counts, hide_index=True, width="stretch", key="audit_quality_counts")
flagged_kinds = [f for f in QUALITY_FLAGS if f"flag_{f}" in quality.columns and quality[f"flag_{f}"].any()]
if flagged_kinds:
    flag = st.selectbox(
        "Show images flagged", flagged_kinds, key="audit_flag", format_func=lambda f: f.replace("_", " ")
    )
    ids = quality.loc[quality[f"flag_{flag}"], "sample_id"].astype(str).tolist()
    start, stop = widgets.pager_ui(len(ids), FLAGGED_PER_PAGE, key="audit_flag_page")
    page_ids = ids[start:stop]
    images = thumbs_of(page_ids)
    grid = st.columns(6)
    for k, (sid, img) in enumerate(zip(page_ids, images)):
        if img is not None:
            grid[k % 6].image(img, caption=caption(sid), width=120)
        else:
            grid[k % 6].caption(f"(no thumbnail) {caption(sid)}")
    st.caption("Nothing is dropped unless the config lists the flag in `[audit] drop_quality`.")
else:
    st.success("No image-quality flags.")
