"""Live inference: the pure answer function on good and bad uploads, model loading, and the page (AppTest).

The experiment is a fake one whose first two models get a real tiny SmallCNN saved as `model.keras`
(32 px, untrained), a third gets a corrupt model file and a fourth none, so the page must answer with two
models and say in one line why the other two cannot.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("tensorflow")

from pipeline import artifacts as art  # noqa: E402
from pipeline.fake import make_fake_experiment  # noqa: E402
from tests.conftest import APP_PATH, REPO_ROOT, no_exceptions  # noqa: E402
from tests.test_decode import dicom_bytes, png_with_header_size  # noqa: E402

EXP = "live"
GOOD, CORRUPT, MISSING = ("MobileNetV2", "ResNet50"), "EfficientNetB0", "DenseNet121"
SIZE = 32


def make_live_experiment(root: Path) -> Path:
    """Experiment `live` under `root`: two loadable tiny models, one corrupt model file, one missing."""
    import keras

    from pipeline.backbones import build_classifier

    exp_dir = make_fake_experiment(root, EXP, n_samples=24, n_models=4, n_classes=2, seed=7)
    for i, name in enumerate(GOOD):
        keras.utils.set_random_seed(i)
        model = build_classifier("SmallCNN", SIZE, 2)
        model.save(art.model_dir(exp_dir, name) / art.MODEL_FILE)
        cfg_path = art.model_dir(exp_dir, name) / art.MODEL_CONFIG_FILE
        cfg = json.loads(cfg_path.read_text())
        cfg.update(
            input_size=SIZE, preprocessing="unit", preprocess_function="x / 255", cam_layer="cam_conv", fake=False
        )
        art.atomic_write_json(cfg_path, cfg)
    (art.model_dir(exp_dir, CORRUPT) / art.MODEL_FILE).write_bytes(b"PK\x03\x04 this is not a keras archive")
    return exp_dir


@pytest.fixture(scope="session")
def live_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root holding `make_live_experiment`."""
    root = tmp_path_factory.mktemp("live_artifacts")
    make_live_experiment(root)
    return root


def _png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def _photo(h: int = 60, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def bad_uploads() -> dict[str, tuple[str, bytes, str]]:
    """name -> (file name, bytes, expected text of the one-line message)."""
    jpeg = _jpeg(_photo(64, 64))
    return {
        "pdf renamed": ("report.png", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", "PDF"),
        "truncated jpeg": ("photo.jpg", jpeg[: len(jpeg) // 2], "truncated JPEG"),
        "20000x20000": ("huge.png", png_with_header_size(20000, 20000), "20000x20000"),
        "dicom without pixels": ("report.dcm", dicom_bytes(pixels=False), "no pixel data"),
        "empty": ("empty.png", b"", "empty file"),
    }


def good_uploads() -> dict[str, tuple[str, bytes, str | None]]:
    """name -> (file name, bytes, expected decode note or None)."""
    rgba = np.dstack([_photo(30, 40, 1), np.full((30, 40), 128, np.uint8)])
    ok, tiff16 = cv2.imencode(".tiff", (np.arange(40 * 50).reshape(40, 50) * 30).astype(np.uint16))
    ok2, bmp = cv2.imencode(".bmp", _photo(20, 24, 2))
    return {
        "png": ("cells.png", _png(_photo()), None),
        "jpeg": ("cells.jpg", _jpeg(_photo()), None),
        "16-bit tiff": ("scan.tif", tiff16.tobytes(), "16-bit -> 8-bit"),
        "rgba png": ("overlay.png", _png(rgba), "RGBA -> RGB"),
        "bmp": ("old.bmp", bmp.tobytes(), None),
        "dicom": ("mr.dcm", dicom_bytes(), "DICOM"),
    }


# ---------------------------------------------------------------- the pure function


@pytest.fixture(scope="session")
def live_models(live_root) -> dict:
    """The models as the page gets them: loaded + warmed, or the load error as a string."""
    from dashboard.live_inference import load_live_model

    out: dict = {}
    for name in (*GOOD, CORRUPT, MISSING):
        try:
            out[name] = load_live_model(live_root / EXP, name)
        except art.ArtifactError as exc:
            out[name] = f"{name} cannot answer: {exc.problem}"
    return out


@pytest.mark.parametrize("case", list(bad_uploads()))
def test_bad_upload_gives_one_line_and_no_answers(live_models, case):
    from dashboard.live_inference import run_live_inference

    name, data, expected = bad_uploads()[case]
    start = time.perf_counter()
    result = run_live_inference(data, name, live_models)
    assert time.perf_counter() - start < 2.0
    assert result.error is not None and expected in result.error
    assert name in result.error
    assert "\n" not in result.error and len(result.error) < 300
    assert result.image is None and result.answers == {}


@pytest.mark.parametrize("case", list(good_uploads()))
def test_good_upload_every_loadable_model_answers(live_models, case):
    from dashboard.live_inference import run_live_inference

    name, data, note = good_uploads()[case]
    result = run_live_inference(data, name, live_models)
    assert result.error is None, result.error
    if note:
        assert any(note in n for n in result.decoded.notes), result.decoded.notes
    for model in GOOD:
        answer = result.answers[model]
        assert answer.error is None
        assert answer.probs.shape == (2,) and answer.probs.sum() == pytest.approx(1.0, abs=1e-5)
        assert set(answer.timings_ms) == {"decode", "preprocess", "predict", "total"}
        stages = ("decode", "preprocess", "predict")
        assert answer.latency_ms == pytest.approx(sum(answer.timings_ms[k] for k in stages))
        assert answer.latency_ms > 0
        assert any("32x32" in step for step in answer.preprocessing)
        assert any("mode 'unit'" in step and "x / 255" in step for step in answer.preprocessing)
    assert "cannot load the Keras model" in result.answers[CORRUPT].error
    assert "model file is missing" in result.answers[MISSING].error


def test_answer_equals_the_model_on_the_resized_image(live_models):
    from dashboard.live_inference import run_live_inference
    from pipeline.preprocess import resize_square

    image = _photo(50, 70, 3)
    result = run_live_inference(_png(cv2.cvtColor(image, cv2.COLOR_RGB2BGR)), "x.png", live_models)
    live = live_models[GOOD[0]]
    expected = live.model(resize_square(image, SIZE).astype(np.float32)[None], training=False).numpy()[0]
    np.testing.assert_allclose(result.answers[GOOD[0]].probs, expected, atol=1e-5)


def test_loading_reports_missing_and_corrupt_files_and_warms_up(live_root, live_models):
    from dashboard.live_inference import load_live_model

    with pytest.raises(art.ArtifactError, match="model file is missing"):
        load_live_model(live_root / EXP, MISSING)
    with pytest.raises(art.ArtifactError, match=r"cannot load the Keras model: not a .keras archive.*truncated"):
        load_live_model(live_root / EXP, CORRUPT)
    live = live_models[GOOD[0]]
    assert live.input_size == SIZE and live.n_classes == 2 and live.cam_layer == "cam_conv"
    assert live.preprocess_mode == "unit"
    assert set(live.warmup_ms) == {"first_predict", "first_grad_cam"}
    assert np.isfinite(live.warmup_ms["first_grad_cam"])


def test_a_zip_that_is_not_a_keras_model_is_reported(live_root, tmp_path):
    import shutil
    import zipfile

    from dashboard.live_inference import load_live_model

    exp_dir = tmp_path / EXP
    shutil.copytree(live_root / EXP, exp_dir)
    with zipfile.ZipFile(art.model_dir(exp_dir, GOOD[1]) / art.MODEL_FILE, "w") as zf:
        zf.writestr("config.json", "{}")
    with pytest.raises(art.ArtifactError, match=r"cannot load the Keras model \(\w+"):
        load_live_model(exp_dir, GOOD[1])
    assert load_live_model(exp_dir, GOOD[0], warm_up=False).n_classes == 2  # the others still load


def test_class_probability_figure():
    from pipeline.figures import class_probability_figure

    fig = class_probability_figure(
        ["0", "1"], np.array([0.8, 0.2]), decided=0, threshold=0.3, pos_index=1, color="#123456"
    )
    bar = fig.data[0]
    assert list(bar.y) == ["0", "1"] and list(bar.x) == [0.8, 0.2]
    assert list(bar.marker.color) == ["#123456", "#c7c7c7"]
    assert fig.layout.yaxis.type == "category"  # "0"/"1" class names must not make a numeric axis
    assert fig.layout.shapes[0].x0 == 0.3 and "threshold 0.30 on 1" in fig.layout.xaxis.title.text
    multi = class_probability_figure(["a", "b", "c"], np.array([0.2, 0.5, 0.3]), decided=1)
    assert not multi.layout.shapes and multi.layout.xaxis.title.text == "Probability"
    with pytest.raises(ValueError, match=r"`probs`.*\(3,\).*Received: \(2,\)"):
        class_probability_figure(["a", "b", "c"], np.array([0.5, 0.5]))


def test_decide_uses_the_threshold_only_for_binary():
    from dashboard.live_inference import decide

    assert decide(np.array([0.7, 0.3]), ["b", "m"], 0.25, 1) == 1
    assert decide(np.array([0.7, 0.3]), ["b", "m"], 0.5, 1) == 0
    assert decide(np.array([0.7, 0.3]), ["b", "m"], None, 1) == 0
    assert decide(np.array([0.2, 0.3, 0.5]), ["a", "b", "c"], 0.1, 1) == 2
    with pytest.raises(ValueError, match=r"`probs`.*\(3,\)"):
        decide(np.array([0.5, 0.5]), ["a", "b", "c"], None, 1)


def test_data_access_loads_once_and_reloads_when_the_file_changes(live_root, tmp_path):
    import shutil

    from dashboard import data_access as da

    exp_dir = tmp_path / EXP
    shutil.copytree(live_root / EXP, exp_dir)
    first = da.load_model(exp_dir, GOOD[0])
    assert da.load_model(exp_dir, GOOD[0]) is first
    assert da.load_live_model(exp_dir, GOOD[0]).model is first
    path = art.model_dir(exp_dir, GOOD[0]) / art.MODEL_FILE
    st_ = path.stat()
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))
    assert da.load_model(exp_dir, GOOD[0]) is not first
    with pytest.raises(art.ArtifactError, match="cannot load the Keras model"):
        da.load_model(exp_dir, CORRUPT)


def test_no_tensorflow_at_import_time():
    code = (
        "import sys; import dashboard.live_inference, pipeline.explain; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; assert not bad, bad"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---------------------------------------------------------------- the page


def open_live(root: Path, artifacts_env):
    from streamlit.testing.v1 import AppTest

    artifacts_env(root)
    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.query_params["exp"] = EXP
    at.run()
    at.switch_page("app_pages/live.py").run()
    no_exceptions(at)
    return at


def _decisions(at) -> list[str]:
    return [m.value for m in at.markdown if "class='live-decision'" in m.value]


def test_page_answers_a_test_sample_with_every_loadable_model(live_root, artifacts_env):
    at = open_live(live_root, artifacts_env)
    assert any("Upload an image" in i.value for i in at.info)
    assert any("2 of 4 selected models ready (MobileNetV2, ResNet50)" in c.value for c in at.caption)
    at.radio(key="live_source").set_value("Sample from the evaluation set").run()
    no_exceptions(at)
    assert not at.error
    assert len(_decisions(at)) == 2
    assert [s.value for s in at.subheader] == list(GOOD)
    warnings = " ".join(w.value for w in at.warning)
    assert f"{CORRUPT} cannot answer" in warnings and f"{MISSING} cannot answer" in warnings
    assert [m.label for m in at.metric] == ["Latency", "Latency"]
    assert all(m.value.endswith(" ms") for m in at.metric)
    assert len(at.get("plotly_chart")) == 2
    assert len(at.get("image")) == 3  # the input and two Grad-CAM overlays
    assert any("True class" in m.value for m in at.markdown)
    # another sample, then the opacity slider: no recomputation error, still two answers
    at.selectbox(key="live_sample").set_value(at.selectbox(key="live_sample").options[3]).run()
    at.slider(key="live_alpha").set_value(0.8).run()
    no_exceptions(at)
    assert len(_decisions(at)) == 2
    at.toggle(key="live_show_cam").set_value(False).run()
    assert len(at.get("image")) == 1


def test_page_decision_follows_the_models_threshold(live_root, artifacts_env):
    at = open_live(live_root, artifacts_env)
    at.radio(key="live_source").set_value("Sample from the evaluation set").run()
    at.session_state["thresholds"] = {EXP: {GOOD[0]: 0.0, GOOD[1]: 1.0}}
    at.run()
    no_exceptions(at)
    first, second = _decisions(at)
    assert ">malignant<" in first  # p(malignant) >= 0 always
    assert ">benign<" in second  # p(malignant) >= 1 never for an untrained softmax


def test_page_bad_upload_one_error_then_a_good_upload_works(live_root, artifacts_env):
    at = open_live(live_root, artifacts_env)
    for case, (name, data, expected) in bad_uploads().items():
        at.file_uploader(key="live_upload").set_value((name, data, "application/octet-stream")).run()
        no_exceptions(at)
        assert len(at.error) == 1, (case, [e.value for e in at.error])
        assert expected in at.error[0].value
        assert not _decisions(at)
    name, data, _ = good_uploads()["16-bit tiff"]
    at.file_uploader(key="live_upload").set_value((name, data, "image/tiff")).run()
    no_exceptions(at)
    assert not at.error
    assert len(_decisions(at)) == 2
    assert any("16-bit -> 8-bit" in m.value for m in at.markdown)


def test_page_camera_and_presenter_mode(live_root, artifacts_env):
    at = open_live(live_root, artifacts_env)
    at.radio(key="live_source").set_value("Camera").run()
    at.camera_input(key="live_camera").set_value(("shot.jpg", _jpeg(_photo(48, 64, 5)), "image/jpeg")).run()
    no_exceptions(at)
    assert len(_decisions(at)) == 2
    at.toggle(key="live_presenter").set_value(True).run()
    no_exceptions(at)
    css = " ".join(m.value for m in at.markdown)
    assert "stSidebar" in css and "display: none" in css
    assert sum("class='live-verdict'" in m.value for m in at.markdown) == 2
    assert not at.get("expandable")  # no preprocessing expanders in presenter mode
    at.toggle(key="live_presenter").set_value(False).run()
    assert "stSidebar" not in " ".join(m.value for m in at.markdown)
