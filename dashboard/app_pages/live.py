"""Live inference (demo day): upload an image, pick a test sample or take a photo; every selected model
answers side by side with its probabilities, its decision at its threshold, its latency, its Grad-CAM and
the preprocessing it applied. A presenter mode makes the image and the answers large."""

from __future__ import annotations

import hashlib
import html
import time

import cv2
import numpy as np
import streamlit as st

from dashboard import data_access as da
from dashboard import live_inference as li
from dashboard import state, widgets
from pipeline import figures
from pipeline.artifacts import ArtifactError
from pipeline.explain import overlay

UPLOAD, SAMPLE, CAMERA = "Upload a file", "Sample from the evaluation set", "Camera"
MAX_PICKER_OPTIONS = 5000
DISPLAY_SIDE = 384  # small thumbnails are enlarged (nearest neighbour) to about this size
MAX_DISPLAY_SIDE = 1024  # large uploads are shrunk to this for display and the overlay
RESULT_KEY = "_live_result"

BASE_CSS = """<style>
.live-decision {font-size: 1.7rem; font-weight: 700; line-height: 1.2; margin: 0.1rem 0 0.3rem 0;}
.live-sub {color: #666; font-size: 0.9rem;}
</style>"""
PRESENTER_CSS = """<style>
section[data-testid="stSidebar"], div[data-testid="stSidebarCollapsedControl"],
header[data-testid="stHeader"], div[data-testid="stToolbar"] {display: none !important;}
.block-container {padding-top: 1.2rem !important; max-width: 100% !important;}
.live-decision {font-size: 3.2rem !important;}
.live-verdict {font-size: 2.2rem; font-weight: 600; line-height: 1.35;}
.live-sub {font-size: 1.2rem !important;}
</style>"""


def _for_display(rgb: np.ndarray) -> np.ndarray:
    """Enlarge small images crisply (nearest neighbour) and shrink huge ones, for the screen only."""
    h, w = rgb.shape[:2]
    if max(h, w) > MAX_DISPLAY_SIDE:
        s = MAX_DISPLAY_SIDE / max(h, w)
        return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    scale = DISPLAY_SIDE // max(h, w)
    return cv2.resize(rgb, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST) if scale > 1 else rgb


def _sample_source(sel: state.Selection) -> tuple[bytes | None, str, str | None]:
    """Pick a sample of the evaluation set: (thumbnail PNG bytes, name, true class name)."""
    rows = sel.exp.samples[sel.exp.samples["eval_set"].astype(str) == sel.eval_set]
    if rows.empty:
        st.info(f"Evaluation set **{sel.eval_set}** has no samples.")
        return None, "", None
    rows = rows.iloc[:MAX_PICKER_OPTIONS]
    ids = rows["sample_id"].astype(str).tolist()
    names = sel.exp.class_names
    label_of = dict(zip(ids, rows["label"].astype(int)))
    if st.session_state.get("live_sample") not in ids:
        st.session_state["live_sample"] = ids[0]
    sid = st.selectbox("Sample", ids, key="live_sample", format_func=lambda s: f"{s} · {names[label_of[s]]}")
    try:
        png = da.get_thumbnails(sel.exp, [sid])[0]
    except ArtifactError as exc:
        widgets.artifact_error_ui(exc, "Thumbnails")
        return None, sid, None
    if png is None:
        st.warning(f"Sample **{sid}** has no thumbnail in this experiment's artifacts.")
    return png, f"{sid}.png", names[label_of[sid]]


def _image_source(sel: state.Selection) -> tuple[bytes | None, str, str | None]:
    """The chosen image's bytes and name (None when nothing is chosen yet) and, for samples, its true class."""
    st.session_state.setdefault("live_source", UPLOAD)
    source = st.radio(
        "Image", [UPLOAD, SAMPLE, CAMERA], key="live_source", horizontal=True, label_visibility="collapsed"
    )
    if source == SAMPLE:
        return _sample_source(sel)
    if source == CAMERA:
        photo = st.camera_input("Take a photo", key="live_camera")
        return (photo.getvalue(), photo.name or "camera.jpg", None) if photo is not None else (None, "", None)
    upload = st.file_uploader(
        "PNG, JPEG, TIFF, BMP or DICOM",
        type=list(li.UPLOAD_TYPES),
        key="live_upload",
        help="Up to the upload limit in .streamlit/config.toml; at most 50 megapixels.",
    )
    return (upload.getvalue(), upload.name, None) if upload is not None else (None, "", None)


def _load_models(sel: state.Selection) -> dict[str, li.LiveModel | str]:
    """Each selected model loaded (once per process) and warmed up, or the one-line reason it cannot answer."""
    out: dict[str, li.LiveModel | str] = {}
    for model in sel.models:
        try:
            out[model] = da.load_live_model(sel.exp.path, model)
        except ArtifactError as exc:
            out[model] = f"{model} cannot answer: {exc.problem} (`{exc.path}`)"
    return out


def _result(image_bytes: bytes, name: str, models: dict[str, li.LiveModel | str]) -> dict:
    """This session's answer to this image with these models; computed once, reused while widgets move."""
    key = (
        hashlib.sha1(image_bytes).hexdigest(),
        name,
        tuple((m, id(v.model) if isinstance(v, li.LiveModel) else v) for m, v in models.items()),
    )
    cached = st.session_state.get(RESULT_KEY)
    if cached is None or cached["key"] != key:
        with st.spinner("Every model is answering…"):
            result = li.run_live_inference(image_bytes, name, models)
        cached = {"key": key, "result": result, "cams": {}}
        st.session_state[RESULT_KEY] = cached
    return cached


def _grad_cam(cached: dict, live: li.LiveModel, display: np.ndarray, class_index: int) -> tuple[np.ndarray | None, str]:
    """The Grad-CAM of `class_index` at display size (computed once per image, model and class), or why not."""
    cams = cached["cams"]
    key = (live.name, int(class_index))
    if key not in cams:
        start = time.perf_counter()
        try:
            cams[key] = (li.explain(live, display, class_index), f"{(time.perf_counter() - start) * 1000:.0f} ms")
        except Exception as exc:  # noqa: BLE001 - no map for one model must not hide the others' answers
            cams[key] = (None, f"no Grad-CAM: {type(exc).__name__}: {exc}")
    return cams[key]


def _decision_html(label: str, color: str, prob: float, threshold: float | None, positive: str) -> str:
    rule = "most probable class" if threshold is None else f"threshold {threshold:.2f} on p({positive})"
    return (
        f"<div class='live-decision' style='color:{color}'>{html.escape(label)}</div>"
        f"<div class='live-sub'>p({html.escape(label)}) = {prob:.1%} · {html.escape(rule)}</div>"
    )


sel = state.selection()
st.markdown(BASE_CSS, unsafe_allow_html=True)
head, toggles = st.columns([3, 1])
with toggles:
    presenter = st.toggle(
        "Presenter mode",
        key="live_presenter",
        help="Large image and answers, no sidebar: for a projector. Switch off to get it back.",
    )
    show_cam = st.toggle("Grad-CAM", value=True, key="live_show_cam")
with head:
    st.title("Live inference")
if presenter:
    st.markdown(PRESENTER_CSS, unsafe_allow_html=True)
else:
    st.caption(
        f"**{sel.exp.name}** · every selected model answers the same image · binary decisions use each "
        "model's threshold from *Threshold tuning*, multiclass the most probable class"
        + (
            ""
            if not sel.binary
            else " · thresholds: "
            + "; ".join(f"{m} {state.get_threshold(sel, m):.3f} ({state.threshold_source(sel, m)})" for m in sel.models)
        )
    )

image_bytes, name, true_class = _image_source(sel)
# Loaded (and warmed up) as soon as the page opens, before any image: the first upload then answers at once.
models = _load_models(sel)
if image_bytes is None:
    ready = [m for m, v in models.items() if isinstance(v, li.LiveModel)]
    st.info("Upload an image (PNG, JPEG, TIFF, BMP or DICOM), pick a sample, or take a photo.")
    st.caption(
        f"{len(ready)} of {len(models)} selected models ready"
        + (f" ({', '.join(ready)})" if ready else "")
        + " · loaded and warmed up once per server process, shared by every user."
    )
    st.stop()
cached = _result(image_bytes, name, models)
result: li.LiveResult = cached["result"]
if result.error:
    st.error(result.error, icon="🚫")
    st.stop()

names = sel.exp.class_names
display = _for_display(result.image)
alpha = 0.45
answers = {m: a for m, a in result.answers.items() if a.error is None}
decisions = {
    m: li.decide(a.probs, names, state.decision_threshold(sel, m), sel.exp.positive_index) for m, a in answers.items()
}

left, right = st.columns([3, 2] if presenter else [1, 2])
with left:
    shape = result.decoded.original_shape
    caption = f"{name} · {result.decoded.format} {shape[1]}x{shape[0]}" if len(shape) >= 2 else name
    st.image(display, caption=None if presenter else caption, width="stretch" if presenter else 320)
with right:
    if true_class is not None:
        st.markdown(f"True class: **{true_class}**")
    if presenter:
        for m, ci in decisions.items():
            color = sel.colors.get(m, "#1f77b4")
            st.markdown(
                f"<div class='live-verdict'><span style='color:{color}'>{html.escape(m)}</span>: "
                f"<b>{html.escape(names[ci])}</b> {answers[m].probs[ci]:.0%}</div>",
                unsafe_allow_html=True,
            )
    else:
        if result.decoded.notes:
            st.markdown("**Converted on decoding:** " + "; ".join(result.decoded.notes))
        st.caption(
            f"Decoded once for all models in {result.decode_ms:.1f} ms. Latency below = decode + "
            "preprocess (resize) + predict, measured on this request."
        )
    if show_cam:
        alpha = st.slider("Grad-CAM opacity", 0.0, 1.0, 0.45, 0.05, key="live_alpha")

failed = {m: a.error for m, a in result.answers.items() if a.error}
if presenter and failed:
    st.caption(f"Not answering: {', '.join(failed)} (switch presenter mode off for the reason).")
else:
    for error in failed.values():
        st.warning(error, icon="⚠️")

order = [m for m in result.answers if m in answers]
per_row = min(max(len(order), 2), 3) if presenter else min(max(len(order), 3), 4)
for start in range(0, len(order), per_row):
    cols = st.columns(per_row)
    for col, m in zip(cols, order[start : start + per_row]):
        answer, ci = answers[m], decisions[m]
        live = models[m]
        color = sel.colors.get(m, "#1f77b4")
        threshold = state.decision_threshold(sel, m)
        with col:
            st.subheader(m, divider="gray")
            st.markdown(
                _decision_html(names[ci], color, float(answer.probs[ci]), threshold, names[sel.exp.positive_index]),
                unsafe_allow_html=True,
            )
            st.plotly_chart(
                figures.class_probability_figure(
                    names,
                    answer.probs,
                    decided=ci,
                    threshold=threshold,
                    pos_index=sel.exp.positive_index if threshold is not None else None,
                    color=color,
                    height=(90 if presenter else 70) + 34 * len(names),
                    font_size=18 if presenter else 13,
                ),
                width="stretch",
                key=f"live_probs_{m}",
                config={"displayModeBar": False},
            )
            t = answer.timings_ms
            st.metric("Latency", f"{answer.latency_ms:.0f} ms")
            if not presenter:
                st.caption(
                    f"decode {t['decode']:.1f} · preprocess {t['preprocess']:.1f} · predict {t['predict']:.1f} ms"
                )
            if show_cam:
                heat, info = _grad_cam(cached, live, display, ci)
                if heat is None:
                    st.caption(info)
                else:
                    st.image(
                        overlay(display, heat, alpha=float(alpha)),
                        width="stretch",
                        caption=None
                        if presenter
                        else f"Grad-CAM for “{names[ci]}” ({live.cam_layer or 'default layer'}, {info})",
                    )
            if not presenter:
                with st.expander("Preprocessing applied"):
                    st.markdown("\n".join(f"- {step}" for step in answer.preprocessing))
                    st.caption(
                        f"Model loaded in {live.load_seconds:.1f} s; warm-up: first prediction "
                        f"{live.warmup_ms.get('first_predict', float('nan')):.0f} ms, first Grad-CAM "
                        f"{live.warmup_ms.get('first_grad_cam', float('nan')):.0f} ms."
                    )
