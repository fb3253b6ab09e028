"""Segmentation preview: threshold a sample or an upload, see its contours and regions, and score it
against the ground-truth mask (Dice, IoU) where one exists; plus the ultrasound clean-up preview."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets
from pipeline import figures
from pipeline import segment as sg
from pipeline.artifacts import ArtifactError
from pipeline.preprocess import ImageDecodeError, decode_image

SAMPLE, UPLOAD = "Sample from the evaluation set", "Upload an image"
METHOD_LABELS = {
    "global": "Global (slider)",
    "otsu": "Otsu",
    "triangle": "Triangle",
    "adaptive_mean": "Adaptive (mean)",
    "adaptive_gaussian": "Adaptive (Gaussian)",
}
MORPH_LABELS = {
    "none": "None",
    "open": "Open (remove specks)",
    "close": "Close (fill holes)",
    "open_close": "Open, then close",
}
MAX_PICKER_OPTIONS = 5000
MAX_TABLE_ROWS = 500
DISPLAY_SIDE = 320


def _show(rgb: np.ndarray) -> np.ndarray:
    """Enlarge small thumbnails with nearest-neighbour so pixels and contours stay crisp on screen."""
    h, w = rgb.shape[:2]
    scale = DISPLAY_SIDE // max(h, w)
    return cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST) if scale > 1 else rgb


def _defaults(**values: object) -> None:
    """Give each widget key its default, or re-assign its current value.

    Re-assigning matters: Streamlit drops the state of widgets skipped by a run (e.g. while no upload is
    chosen); a plain setdefault would then see a stale key and the widget would fall back to its first option.
    """
    for key, value in values.items():
        st.session_state[key] = st.session_state[key] if key in st.session_state else value


def _sample_source(sel: state.Selection) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """Pick a sample of the evaluation set; (image, ground-truth mask or None, caption) or None."""
    samples = sel.exp.samples
    rows = samples[samples["eval_set"].astype(str) == sel.eval_set]
    try:
        with_mask = da.masked_sample_ids(sel.exp)
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, "Thumbnails")
        return None
    has_mask = rows["sample_id"].astype(str).isin(with_mask)
    if has_mask.any():
        _defaults(seg_only_masked=True)
        if st.checkbox(
            f"Only samples with a ground-truth mask ({int(has_mask.sum()):,} of {len(rows):,})", key="seg_only_masked"
        ):
            rows = rows[has_mask.to_numpy()]
    else:
        st.caption(f"No sample of **{sel.eval_set}** has a ground-truth mask; Dice and IoU need one.")
    if rows.empty:
        st.info(f"Evaluation set **{sel.eval_set}** has no samples.")
        return None
    ids = rows["sample_id"].astype(str).tolist()
    names = sel.exp.class_names
    label_of = dict(zip(ids, rows["label"].astype(int)))
    if len(ids) <= MAX_PICKER_OPTIONS:
        if st.session_state.get("seg_sample") not in ids:
            st.session_state["seg_sample"] = ids[0]
        sid = st.selectbox("Sample", ids, key="seg_sample", format_func=lambda s: f"{s} · {names[label_of[s]]}")
    else:
        _defaults(seg_sample_no=1)
        if st.session_state["seg_sample_no"] > len(ids):
            st.session_state["seg_sample_no"] = 1
        number = st.number_input(
            f"Sample number (1–{len(ids):,})", min_value=1, max_value=len(ids), step=1, key="seg_sample_no"
        )
        sid = ids[int(number) - 1]
        st.caption(f"Sample **{sid}** · {names[label_of[sid]]}")
    try:
        png = da.get_thumbnails(sel.exp, [sid])[0]
        mask_png = da.get_thumbnail_mask(sel.exp, sid)
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, "Thumbnails")
        return None
    if png is None:
        st.warning(f"Sample **{sid}** has no thumbnail in `thumbnails.parquet`.")
        return None
    try:
        image = decode_image(png, "thumbnail.png").rgb
        mask = decode_image(mask_png, "mask.png").rgb if mask_png is not None else None
    except ImageDecodeError as exc:
        st.error(f"The stored thumbnail of {sid} cannot be decoded: {exc}")
        return None
    return image, mask, f"{sid} · true class {names[label_of[sid]]}"


def _upload_source() -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """An uploaded image (and optional mask); one error line for a file that is not a usable image."""
    left, right = st.columns(2)
    with left:
        file = st.file_uploader("Image (PNG, JPEG, TIFF, BMP, DICOM …)", key="seg_upload")
    with right:
        mask_file = st.file_uploader("Ground-truth mask (optional)", key="seg_upload_mask")
    if file is None:
        st.info("Upload an image to preview its segmentation.")
        return None
    try:
        image, notes = da.decode_upload(file.getvalue(), file.name)
    except ImageDecodeError as exc:
        st.error(f"Cannot use **{file.name}**: {exc}")
        return None
    mask = None
    if mask_file is not None:
        try:
            mask, _ = da.decode_upload(mask_file.getvalue(), mask_file.name)
        except ImageDecodeError as exc:
            st.error(f"Cannot use the mask **{mask_file.name}**: {exc}")
    if notes:
        st.caption("Decoding: " + "; ".join(notes))
    return image, mask, file.name


def _controls() -> dict:
    """Threshold method, its parameters, blur, morphology and inversion; returns threshold_mask kwargs."""
    _defaults(
        seg_method="otsu",
        seg_value=128,
        seg_block=31,
        seg_c=5,
        seg_blur=0,
        seg_invert=True,
        seg_morph="none",
        seg_morph_size=3,
        seg_cleanup=False,
    )
    c1, c2, c3, c4 = st.columns(4)
    with c1:
        method = st.selectbox("Method", list(METHOD_LABELS), key="seg_method", format_func=METHOD_LABELS.get)
        invert = st.checkbox(
            "Dark = foreground",
            key="seg_invert",
            help="Nuclei, lesions, nodules and cysts are darker than their surroundings; "
            "untick to segment bright structures.",
        )
    with c2:
        if method == "global":
            st.slider(
                "Threshold",
                0,
                255,
                key="seg_value",
                help="Foreground: gray level at or below this value (above it with **Dark = foreground** off).",
            )
        elif method.startswith("adaptive"):
            st.slider("Block size", 3, 151, step=2, key="seg_block", help="Neighbourhood (pixels) of the local mean.")
            st.slider("Offset C", -40, 40, key="seg_c", help="Subtracted from the local mean.")
        else:
            st.caption(f"{METHOD_LABELS[method]} picks the threshold from the histogram.")
    with c3:
        st.select_slider("Gaussian blur (kernel px)", [0, 3, 5, 7, 9, 11, 15, 21], key="seg_blur")
        st.checkbox(
            "Ultrasound clean-up first",
            key="seg_cleanup",
            help="Remove burned-in marks and crop to the scan region before thresholding.",
        )
    with c4:
        morph = st.selectbox("Morphology", list(MORPH_LABELS), key="seg_morph", format_func=MORPH_LABELS.get)
        if morph != "none":
            st.slider("Structuring element (px)", 3, 21, step=2, key="seg_morph_size")
    return dict(
        method=method,
        value=int(st.session_state["seg_value"]),
        block_size=int(st.session_state["seg_block"]),
        c=float(st.session_state["seg_c"]),
        invert=bool(invert),
        blur=int(st.session_state["seg_blur"]),
        morph=morph,
        morph_size=int(st.session_state["seg_morph_size"]),
    )


def _cleanup_expander(
    image: np.ndarray, clean: np.ndarray, removed: np.ndarray, bbox: sg.BBox, notes: list[str]
) -> None:
    with st.expander("Ultrasound clean-up", expanded=bool(st.session_state.get("seg_cleanup"))):
        st.caption(
            "Models trained on cropped scans and tested on uncropped ones (or the reverse) can collapse: "
            "the pipeline applies this same clean-up at ingest when the config asks for it "
            '(`pipeline.segment.apply_crop(rgb, "ultrasound")`).'
        )
        marked = image.copy()
        marked[removed > 0] = (255, 0, 255)
        x0, y0, x1, y1 = bbox
        a, b, c = st.columns(3)
        a.image(
            _show(sg.draw_box(marked, bbox)), caption="Scan region (box) and removed marks (magenta)", width="stretch"
        )
        b.image(_show(clean), caption="Marks inpainted", width="stretch")
        c.image(_show(clean[y0:y1, x0:x1]), caption=f"Cropped: {x1 - x0}x{y1 - y0} px", width="stretch")
        share = float((removed > 0).mean())
        st.caption(" · ".join(notes + [f"{share:.2%} of the pixels inpainted"]))


# ---------------------------------------------------------------- the page

sel = state.selection()
st.title("Segmentation preview")
st.caption(
    "Threshold an image, look at the regions it finds and, where a ground-truth mask exists, "
    "score the preview with Dice and IoU."
)

_defaults(seg_source=SAMPLE)
source = st.radio("Image source", [SAMPLE, UPLOAD], key="seg_source", horizontal=True)
picked = _sample_source(sel) if source == SAMPLE else _upload_source()
if picked is None:
    st.stop()
image, true_rgb, caption = picked

params = _controls()
clean, removed = sg.remove_annotations(image)
_, bbox, crop_notes = sg.crop_ultrasound(clean)
true_mask = sg.fit_mask(true_rgb, image.shape[:2]) if true_rgb is not None else None
if st.session_state["seg_cleanup"]:
    x0, y0, x1, y1 = bbox
    work = np.ascontiguousarray(clean[y0:y1, x0:x1])
    true_mask = None if true_mask is None else np.ascontiguousarray(true_mask[y0:y1, x0:x1])
else:
    work = image
gray = sg.to_gray(work)
mask, used = sg.threshold_mask(gray, **params)
stats = sg.region_stats(mask, gray)

st.plotly_chart(
    figures.intensity_histogram_figure(sg.gray_histogram(gray), used, title="Gray-level histogram"),
    width="stretch",
    key="seg_histogram",
    config={"displayModeBar": False},
)

columns = st.columns(4 if true_mask is not None else 3)
columns[0].image(_show(work), caption=caption, width="stretch")
columns[1].image(_show(mask), caption="Mask (white = foreground)", width="stretch")
columns[2].image(_show(sg.contour_overlay(work, mask, thickness=1)), caption="Contours", width="stretch")
if true_mask is not None:
    columns[3].image(
        _show(sg.comparison_overlay(work, mask, true_mask)),
        caption="Preview (red) vs ground truth (green)",
        width="stretch",
    )

m = st.columns(5)
m[0].metric("Threshold", "adaptive" if used is None else f"{used:g}")
m[1].metric("Foreground area (px)", f"{stats['area_px']:,}")
m[2].metric("Foreground (%)", f"{100 * stats['area_fraction']:.2f}")
m[3].metric("Regions", f"{stats['n_regions']:,}")
m[4].metric("Largest region (px)", f"{stats['largest_area_px']:,}")
m = st.columns(5)
for col, label, value in (
    (m[0], "Mean gray inside", stats["mean_inside"]),
    (m[1], "Mean gray outside", stats["mean_outside"]),
):
    col.metric(label, "—" if np.isnan(value) else f"{value:.1f}")
if true_mask is not None:
    m[2].metric("Dice", f"{sg.dice(mask, true_mask):.4f}")
    m[3].metric("IoU", f"{sg.iou(mask, true_mask):.4f}")
    m[4].metric("Ground-truth area (px)", f"{int((true_mask > 0).sum()):,}")
    if true_rgb.shape[:2] != image.shape[:2]:
        st.caption(
            f"The mask ({true_rgb.shape[1]}x{true_rgb.shape[0]}) was resized to the image "
            f"({image.shape[1]}x{image.shape[0]}) with nearest-neighbour."
        )

regions: pd.DataFrame = stats["regions"]
st.markdown("**Regions**, largest first")
if regions.empty:
    st.caption("No foreground region: move the threshold or flip **Dark = foreground**.")
else:
    st.dataframe(
        regions.head(MAX_TABLE_ROWS),
        width="stretch",
        hide_index=True,
        key="seg_regions",
        column_config={
            "centroid_x": st.column_config.NumberColumn(format="%.1f"),
            "centroid_y": st.column_config.NumberColumn(format="%.1f"),
            "mean_intensity": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    if len(regions) > MAX_TABLE_ROWS:
        st.caption(f"Showing the {MAX_TABLE_ROWS} largest of {len(regions):,} regions.")

_cleanup_expander(image, clean, removed, bbox, crop_notes)
