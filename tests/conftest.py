"""Shared fixtures: small fake experiments (no TensorFlow) and an AppTest factory pointed at them."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from pipeline.fake import make_fake_experiment

REPO_ROOT = Path(__file__).resolve().parents[1]
APP_PATH = REPO_ROOT / "dashboard" / "app.py"


@pytest.fixture(scope="session")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root with a binary (two eval sets), a 7-class, a one-model and a 3-runs-per-backbone experiment."""
    root = tmp_path_factory.mktemp("artifacts")
    make_fake_experiment(
        root, "binary", n_samples=300, n_models=3, n_classes=2, seed=1, eval_sets=("test", "uncropped")
    )
    make_fake_experiment(root, "multi7", n_samples=420, n_models=2, n_classes=7, seed=2)
    make_fake_experiment(root, "single", n_samples=200, n_models=1, n_classes=2, seed=3)
    make_fake_experiment(
        root, "runs", n_samples=240, n_models=3, n_classes=2, seed=8, runs=3, eval_sets=("test", "val")
    )
    return root


@pytest.fixture(scope="session")
def broken_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root with one good experiment, one with bad JSON, and one with a bad model."""
    root = tmp_path_factory.mktemp("broken")
    make_fake_experiment(root, "good", n_samples=150, n_models=2, seed=4)
    bad = make_fake_experiment(root, "bad_json", n_samples=60, n_models=1, seed=5)
    (bad / "experiment.json").write_text('{"name": "bad_json", "task": ', encoding="utf-8")
    mixed = make_fake_experiment(root, "bad_model", n_samples=150, n_models=3, seed=6)
    # Truncate one model's predictions and corrupt another model's history and config values.
    preds = mixed / "models" / "ResNet50" / "predictions.parquet"
    preds.write_bytes(preds.read_bytes()[:200])
    cfg_path = mixed / "models" / "EfficientNetB0" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["params"] = "many"
    cfg_path.write_text(json.dumps(cfg))
    (mixed / "models" / "EfficientNetB0" / "history.csv").write_bytes(b"\x00\x01garbage\n\xff")
    # A valid experiment whose second evaluation set holds benign samples only (AUCs undefined there).
    one = make_fake_experiment(root, "one_class", n_samples=120, n_models=2, seed=7, eval_sets=("test", "benign_only"))
    samples = pd.read_parquet(one / "samples.parquet")
    samples.loc[samples["eval_set"] == "benign_only", "label"] = 0
    samples.to_parquet(one / "samples.parquet", index=False)
    return root


@pytest.fixture()
def artifacts_env(monkeypatch: pytest.MonkeyPatch):
    """Point the dashboard at an artifacts root: `artifacts_env(root)`."""

    def _set(root: Path) -> Path:
        monkeypatch.setenv("MEDCOMPARE_ARTIFACTS", str(root))
        return root

    return _set


# ---------------------------------------------------------------- AppTest helpers


def _registry() -> dict[str, tuple[str, str, str, str]]:
    """The app's own page registry (dashboard.app.PAGES): {file stem: (AppTest path, title, url path, section)}."""
    from dashboard.app import PAGES

    return {
        Path(file).stem: (f"app_pages/{file}", title, url, section)
        for section, entries in PAGES.items()
        for file, title, _, url in entries
    }


PAGES = _registry()  # every registered page, in navigation order
PAGE_FILES = {name: path for name, (path, _, _, _) in PAGES.items()}
PAGE_TITLES = {name: title for name, (_, title, _, _) in PAGES.items()}
PAGE_URLS = {name: url for name, (_, _, url, _) in PAGES.items()}
PAGE_SECTIONS = {name: section for name, (_, _, _, section) in PAGES.items()}
# Each page's st.title: its navigation title, except where the navigation uses a short form.
PAGE_HEADINGS = {**PAGE_TITLES, "curves": "ROC & precision-recall curves"}


def open_app(exp: str | None = None, page: str | None = None, **query: str):
    """Run the app once (optionally with ?exp=...), then switch to `page` and run again."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    if exp:
        at.query_params["exp"] = exp
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    if page:
        at.switch_page(PAGE_FILES[page]).run()
    return at


def no_exceptions(at) -> None:
    """Fail with the exception text when the script raised."""
    assert not at.exception, [e.value for e in at.exception]


def plotly_specs(at) -> list[dict]:
    """The figure JSON of every st.plotly_chart on the page, with the element id under '_id'."""
    out = []
    for el in at.get("plotly_chart"):
        spec = json.loads(el.proto.spec)
        spec["_id"] = el.proto.id
        out.append(spec)
    return out


def click_chart(at, key: str, point: dict):
    """Send a plotly point selection for the chart whose key is `key`, the way the browser does, and rerun."""
    from streamlit.proto.WidgetStates_pb2 import WidgetStates

    charts = [el for el in at.get("plotly_chart") if el.proto.id.endswith(f"-{key}")]
    assert charts, f"no plotly chart with key {key!r}"
    states = WidgetStates()
    states.CopyFrom(at._tree.get_widget_states())
    ws = states.widgets.add()
    ws.id = charts[0].proto.id
    ws.string_value = json.dumps(
        {"selection": {"points": [point], "point_indices": [point.get("point_index", 0)], "box": [], "lasso": []}}
    )
    return at._run(states)


def truth(root: Path, exp: str, model: str, eval_set: str = "test"):
    """(y, P, groups) read straight from the Parquet files with pandas, independent of the dashboard code."""
    import numpy as np
    import pandas as pd

    samples = pd.read_parquet(root / exp / "samples.parquet")
    preds = pd.read_parquet(root / exp / "models" / model / "predictions.parquet")
    preds = preds[preds["eval_set"] == eval_set].merge(samples[["sample_id", "label", "group"]], on="sample_id")
    pcols = sorted((c for c in preds.columns if c.startswith("prob_")), key=lambda c: int(c.split("_")[1]))
    return preds["label"].to_numpy(), preds[pcols].to_numpy(np.float64), preds["group"].to_numpy()


def plotly_array(value):
    """A Plotly JSON array as NumPy: plain lists, or typed arrays {"dtype", "bdata"[, "shape"]}."""
    import base64

    import numpy as np

    if isinstance(value, dict) and "bdata" in value:
        arr = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        if shape:
            arr = arr.reshape([int(s) for s in str(shape).split(",")])
        return arr
    return np.asarray(value)
