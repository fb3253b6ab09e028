"""AppTest of the Segmentation preview page: values shown are recomputed here with plain NumPy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.fake import make_fake_experiment
from tests.conftest import APP_PATH, no_exceptions

PAGE = "app_pages/segmentation.py"
H, W = 48, 64


def _sample_images(i: int) -> tuple[np.ndarray, np.ndarray]:
    """(gray image, ground-truth mask) of sample i: a dark disk (60) and a paler blob (120) on 180 + noise."""
    rng = np.random.default_rng(i)
    gray = (180 + rng.integers(-8, 9, (H, W))).astype(np.uint8)
    cx, cy, r = 20 + i % 5, 22, 9 + i % 3
    cv2.circle(gray, (cx, cy), r, 60, -1)
    cv2.circle(gray, (50, 36), 5, 120, -1)
    truth = np.zeros((H, W), np.uint8)
    cv2.circle(truth, (cx + 2, cy), r, 255, -1)  # the annotator's disk is 2 px to the right
    return gray, truth


def _png(gray: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", gray)
    assert ok
    return buf.tobytes()


@pytest.fixture(scope="module")
def seg_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An experiment whose even samples have ground-truth masks in thumbnails.parquet, and one without masks."""
    root = tmp_path_factory.mktemp("seg_artifacts")
    exp = make_fake_experiment(root, "masks", n_samples=30, n_models=2, seed=7)
    make_fake_experiment(root, "nomasks", n_samples=12, n_models=1, seed=8)
    ids = pd.read_parquet(exp / "samples.parquet")["sample_id"].tolist()
    rows = []
    for i, sid in enumerate(ids):
        gray, truth = _sample_images(i)
        rows.append(
            {"sample_id": sid, "png": _png(np.dstack([gray] * 3)), "mask_png": _png(truth) if i % 2 == 0 else None}
        )
    pd.DataFrame(rows).to_parquet(exp / "thumbnails.parquet", index=False)
    return root


def open_page(exp: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.query_params["exp"] = exp
    at.run()
    at.switch_page(PAGE).run()
    no_exceptions(at)
    return at


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def number(at, label: str) -> float:
    return float(metric(at, label).replace(",", ""))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def otsu(gray: np.ndarray) -> int:
    """Otsu's threshold t (foreground: gray > t), maximising the between-class variance, in NumPy."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    omega = np.cumsum(p)
    mu = np.cumsum(p * np.arange(256))
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu[-1] * omega - mu) ** 2 / (omega * (1 - omega))
    return int(np.nanargmax(between))


def test_smoke_sample_with_mask_shows_dice_iou_and_regions(seg_root, artifacts_env):
    artifacts_env(seg_root)
    at = open_page("masks")
    assert at.title[0].value == "Segmentation preview"
    sid = at.selectbox(key="seg_sample").value
    i = int(sid.split("-")[1])
    assert i % 2 == 0  # only samples with a mask are offered by default
    gray, truth = _sample_images(i)
    mask = gray <= otsu(gray)  # the defaults: Otsu, dark = foreground
    assert number(at, "Threshold") == otsu(gray)
    assert number(at, "Foreground area (px)") == mask.sum()
    assert number(at, "Dice") == pytest.approx(dice(mask, truth), abs=5e-5)
    assert number(at, "IoU") == pytest.approx(iou(mask, truth), abs=5e-5)
    regions = at.dataframe[0].value
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    assert len(regions) == n - 1 == int(metric(at, "Regions"))
    assert sorted(regions["area_px"], reverse=True) == sorted(stats[1:, cv2.CC_STAT_AREA], reverse=True)
    assert len(at.get("plotly_chart")) == 1
    assert any(e.label == "Ultrasound clean-up" for e in at.expander)


def test_global_slider_and_invert_change_area_and_dice_to_recomputed_values(seg_root, artifacts_env):
    artifacts_env(seg_root)
    at = open_page("masks")
    gray, truth = _sample_images(int(at.selectbox(key="seg_sample").value.split("-")[1]))
    at.selectbox(key="seg_method").set_value("global").run()
    seen = set()
    for value in (150, 100, 50):
        at.slider(key="seg_value").set_value(value).run()
        no_exceptions(at)
        mask = gray <= value
        assert number(at, "Threshold") == value
        assert number(at, "Foreground area (px)") == mask.sum()
        assert number(at, "Dice") == pytest.approx(dice(mask, truth), abs=5e-5)
        seen.add(metric(at, "Dice"))
    assert len(seen) == 3  # the paler blob in (150), out (100), everything out (50: Dice 0)
    assert number(at, "Dice") == 0.0 and number(at, "Regions") == 0
    at.slider(key="seg_value").set_value(150).run()
    at.checkbox(key="seg_invert").uncheck().run()
    assert number(at, "Foreground area (px)") == (gray > 150).sum()
    assert number(at, "Dice") == pytest.approx(dice(gray > 150, truth), abs=5e-5)


def test_morphology_and_other_sample(seg_root, artifacts_env):
    artifacts_env(seg_root)
    at = open_page("masks")
    at.selectbox(key="seg_method").set_value("global").run()
    at.slider(key="seg_value").set_value(150).run()
    ids = at.selectbox(key="seg_sample").options
    at.selectbox(key="seg_sample").set_value(ids[3]).run()
    gray, truth = _sample_images(int(ids[3].split(" · ")[0].split("-")[1]))
    assert number(at, "Dice") == pytest.approx(dice(gray <= 150, truth), abs=5e-5)
    at.selectbox(key="seg_morph").set_value("open").run()
    at.slider(key="seg_morph_size").set_value(15).run()
    no_exceptions(at)
    opened = cv2.morphologyEx(
        (gray <= 150).astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15))
    )
    assert number(at, "Foreground area (px)") == opened.sum()
    assert int(metric(at, "Regions")) == 1  # the 5 px blob is opened away, the disk stays


def test_all_samples_toggle_offers_samples_without_masks(seg_root, artifacts_env):
    artifacts_env(seg_root)
    at = open_page("masks")
    assert len(at.selectbox(key="seg_sample").options) == 15
    at.checkbox(key="seg_only_masked").uncheck().run()
    options = at.selectbox(key="seg_sample").options
    assert len(options) == 30
    at.selectbox(key="seg_sample").set_value(options[1]).run()
    no_exceptions(at)
    assert not [m for m in at.metric if m.label == "Dice"]
    assert number(at, "Foreground area (px)") > 0


def test_experiment_without_masks_and_adaptive_and_cleanup(seg_root, artifacts_env):
    artifacts_env(seg_root)
    at = open_page("nomasks")
    assert any("has a ground-truth mask; Dice and IoU need one" in c.value for c in at.caption)
    assert not [m for m in at.metric if m.label == "Dice"]
    at.selectbox(key="seg_method").set_value("adaptive_gaussian").run()
    at.slider(key="seg_block").set_value(11).run()
    no_exceptions(at)
    assert metric(at, "Threshold") == "adaptive"
    at.checkbox(key="seg_cleanup").check().run()
    no_exceptions(at)
    assert any("uncropped" in c.value or "cropped" in c.value for c in at.caption)


def test_choices_survive_runs_where_their_widgets_are_hidden(seg_root, artifacts_env):
    artifacts_env(seg_root)
    at = open_page("masks")
    at.selectbox(key="seg_method").set_value("global").run()
    at.slider(key="seg_value").set_value(77).run()
    at.checkbox(key="seg_invert").uncheck().run()
    at.selectbox(key="seg_method").set_value("triangle").run()  # the threshold slider is not drawn
    assert not [s for s in at.slider if s.key == "seg_value"]
    at.radio(key="seg_source").set_value("Upload an image").run()  # no upload: no controls at all
    no_exceptions(at)
    assert not [s for s in at.selectbox if s.key == "seg_method"]
    at.radio(key="seg_source").set_value("Sample from the evaluation set").run()
    assert at.selectbox(key="seg_method").value == "triangle"
    assert at.checkbox(key="seg_invert").value is False
    at.selectbox(key="seg_method").set_value("global").run()
    assert at.slider(key="seg_value").value == 77


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_missing_or_corrupt_thumbnails_give_one_message(tmp_path, artifacts_env, damage):
    exp = make_fake_experiment(tmp_path, "damaged", n_samples=12, n_models=1, seed=9, thumbnails=damage != "missing")
    if damage == "truncated":
        path = exp / "thumbnails.parquet"
        path.write_bytes(path.read_bytes()[:100])
    artifacts_env(tmp_path)
    at = open_page("damaged")
    assert len(at.error) == 1 and "thumbnails.parquet" in at.error[0].value
    assert not at.metric
