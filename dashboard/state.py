"""Per-user state: the shared selection, per-model thresholds, and their mirror in the URL query string.

Everything lives in `st.session_state` (one per browser tab), never in module globals. The URL carries
`exp`, `models`, `eval`, `cls`, `thr` and `page`, so a pasted link reopens the same view.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import streamlit as st

from pipeline.artifacts import Experiment
from pipeline.errors import invalid_argument
from pipeline.metrics import DEFAULT_THRESHOLD

# Session-state keys of the sidebar widgets and of non-widget state.
EXP_KEY = "exp"
MODELS_KEY = "models"
EVAL_KEY = "eval_set"
CLASS_KEY = "cls"
THRESHOLDS_KEY = "thresholds"  # {experiment: {threshold_key: float}}
THRESHOLD_SOURCES_KEY = "threshold_sources"  # {experiment: {threshold_key: "Youden's J on val"}}
SELECTION_KEY = "_selection"
URL_RESTORED_KEY = "_url_restored"
URL_PAGE_KEY = "_url_page"


@dataclass(frozen=True)
class Selection:
    """What the sidebar selected: the experiment, the models, the evaluation set and the one-vs-rest class."""

    root: Path
    exp: Experiment
    models: list[str]
    eval_set: str
    class_index: int
    colors: dict[str, str] = field(default_factory=dict)

    @property
    def binary(self) -> bool:
        return len(self.exp.class_names) == 2

    @property
    def class_name(self) -> str:
        return self.exp.class_names[self.class_index]


def selection() -> Selection:
    """The selection drawn by the sidebar on this run; stops the page with a message when there is none."""
    sel = st.session_state.get(SELECTION_KEY)
    if sel is None:
        st.info("Pick an experiment in the sidebar.")
        st.stop()
    return sel


def set_selection(sel: Selection | None) -> None:
    """Store this run's selection for the page to read."""
    st.session_state[SELECTION_KEY] = sel


# ---------------------------------------------------------------- thresholds


def threshold_key(model: str, class_index: int | None = None) -> str:
    """Key of a model's threshold: the model name (binary) or `model@class_index` (one-vs-rest)."""
    return model if class_index is None else f"{model}@{int(class_index)}"


def _store(exp_name: str) -> dict[str, float]:
    all_thr = st.session_state.setdefault(THRESHOLDS_KEY, {})
    return all_thr.setdefault(exp_name, {})


def get_threshold(sel: Selection, model: str, class_index: int | None = None) -> float:
    """The model's threshold on the probability of `class_index` (default: the sidebar class); 0.5 if unset."""
    ci = sel.class_index if class_index is None else int(class_index)
    key = threshold_key(model, None if sel.binary else ci)
    return float(_store(sel.exp.name).get(key, DEFAULT_THRESHOLD))


def set_threshold(
    sel: Selection, model: str, value: float, class_index: int | None = None, *, source: str | None = None
) -> None:
    """Set a model's threshold (shared by every page of this session), with where it came from.

    `source` says how it was chosen ("Youden's J on val", "sensitivity ≥ 0.95 on test (optimistic)"); a value
    set without one that differs from the stored value is a manual setting.
    """
    if not (isinstance(value, (int, float)) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise invalid_argument("value", "a threshold in [0, 1]", repr(value))
    ci = sel.class_index if class_index is None else int(class_index)
    key = threshold_key(model, None if sel.binary else ci)
    store = _store(sel.exp.name)
    sources = st.session_state.setdefault(THRESHOLD_SOURCES_KEY, {}).setdefault(sel.exp.name, {})
    if source is not None:
        sources[key] = source
    elif abs(store.get(key, DEFAULT_THRESHOLD) - float(value)) > 1e-12:
        sources[key] = "set by hand" if abs(float(value) - DEFAULT_THRESHOLD) > 1e-12 else "default 0.5"
    store[key] = float(value)


def threshold_source(sel: Selection, model: str, class_index: int | None = None) -> str:
    """Where a model's threshold came from: how and on which set it was chosen, 'set by hand' or 'default 0.5'."""
    ci = sel.class_index if class_index is None else int(class_index)
    key = threshold_key(model, None if sel.binary else ci)
    sources = st.session_state.get(THRESHOLD_SOURCES_KEY, {}).get(sel.exp.name, {})
    if key in sources:
        return str(sources[key])
    value = _store(sel.exp.name).get(key, DEFAULT_THRESHOLD)
    return "default 0.5" if abs(value - DEFAULT_THRESHOLD) <= 1e-12 else "from the link"


def choice_sets(sel: Selection, model: str, available: list[str]) -> list[str]:
    """Sets a threshold can be chosen on, validation first: `val`, else the model's out-of-fold `oof` (k-fold
    runs), then the other evaluation sets; the set being reported comes last (choosing there is optimistic)."""
    first = [s for s in ("val", "oof") if s in available][:1]
    rest = [s for s in available if s not in first and s != sel.eval_set]
    return first + rest + ([sel.eval_set] if sel.eval_set in available and sel.eval_set not in first else [])


def decision_threshold(sel: Selection, model: str) -> float | None:
    """Threshold used for hard predictions: the binary threshold, or None (argmax) for multiclass."""
    return get_threshold(sel, model) if sel.binary else None


# ---------------------------------------------------------------- URL query parameters


def encode_thresholds(thresholds: Mapping[str, float]) -> str:
    """`{"A": 0.3, "B@2": 0.41}` -> `"A:0.3,B@2:0.41"` (sorted, defaults omitted)."""
    items = [(k, v) for k, v in sorted(thresholds.items()) if abs(v - DEFAULT_THRESHOLD) > 1e-12]
    return ",".join(f"{k}:{v:.6g}" for k, v in items)


def decode_thresholds(text: str) -> dict[str, float]:
    """Inverse of `encode_thresholds`; malformed or out-of-range entries are dropped."""
    out: dict[str, float] = {}
    for part in (text or "").split(","):
        key, sep, val = part.rpartition(":")
        if not sep or not key:
            continue
        try:
            v = float(val)
        except ValueError:
            continue
        if math.isfinite(v) and 0.0 <= v <= 1.0:
            out[key] = v
    return out


def restore_from_url() -> None:
    """On a session's first run, copy the query parameters into session state (validated later by the sidebar)."""
    if st.session_state.get(URL_RESTORED_KEY):
        return
    st.session_state[URL_RESTORED_KEY] = True
    qp = st.query_params
    if qp.get("exp"):
        st.session_state[EXP_KEY] = qp["exp"]
        if qp.get("thr"):
            st.session_state.setdefault(THRESHOLDS_KEY, {})[qp["exp"]] = decode_thresholds(qp["thr"])
    if "models" in qp:
        st.session_state[MODELS_KEY] = [m for m in qp["models"].split(",") if m]
    if qp.get("eval"):
        st.session_state[EVAL_KEY] = qp["eval"]
    if qp.get("cls"):
        st.session_state[CLASS_KEY] = qp["cls"]
    st.session_state[URL_PAGE_KEY] = qp.get("page")


def requested_page() -> str | None:
    """The `page` query parameter of the session's first URL, once (None afterwards)."""
    return st.session_state.pop(URL_PAGE_KEY, None)


def url_params(sel: Selection | None, page: str | None) -> dict[str, str]:
    """The query parameters that describe this view."""
    if sel is None:
        return {"page": page} if page else {}
    params = {"exp": sel.exp.name, "models": ",".join(sel.models), "eval": sel.eval_set}
    if not sel.binary:
        params["cls"] = sel.class_name
    thr = encode_thresholds(st.session_state.get(THRESHOLDS_KEY, {}).get(sel.exp.name, {}))
    if thr:
        params["thr"] = thr
    if page:
        params["page"] = page
    return params


def sync_url(sel: Selection | None, page: str | None) -> None:
    """Write the view into the URL, only when it changed (each write is a message to the browser)."""
    params = url_params(sel, page)
    current = {k: st.query_params[k] for k in st.query_params}
    if current != params:
        st.query_params.from_dict(params)
