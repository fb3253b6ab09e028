"""Models from elsewhere: Keras and ONNX files made here, prediction tables, every bad case by its message."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline import artifacts as art
from pipeline.fake import make_fake_experiment
from pipeline.importers import ImportProblem, add_model, add_predictions, onnx_classifier, preprocess_affine

SIZE = 16


# ---------------------------------------------------------------- fixtures: a small experiment on real PNG files


def _experiment(root: Path, name: str = "exp", n: int = 12, n_classes: int = 2, thumbnails: bool = False) -> Path:
    """A fake experiment (val + test) whose sample paths point at real 16x16 PNG files."""
    exp_dir = make_fake_experiment(
        root,
        name,
        n_samples=n,
        n_models=1,
        n_classes=n_classes,
        seed=3,
        eval_sets=("val", "test"),
        thumbnails=thumbnails,
        group_size=2,
    )
    samples = pd.read_parquet(exp_dir / art.SAMPLES_FILE)
    rng = np.random.default_rng(0)
    img_dir = root / f"{name}-images"
    img_dir.mkdir()
    paths = []
    for sid, label in zip(samples["sample_id"], samples["label"]):
        img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
        img[4:12, 4:12, int(label) % 3] = 255
        path = img_dir / f"{sid}.png"
        cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(str(path))
    samples["path"] = paths
    art.write_samples(exp_dir, samples)
    return exp_dir


def _pixels(exp_dir: Path) -> tuple[pd.DataFrame, np.ndarray]:
    samples = pd.read_parquet(exp_dir / art.SAMPLES_FILE)
    imgs = np.stack([cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in samples["path"]]).astype(np.float32)
    return samples, imgs


def _snapshot(exp_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(exp_dir)): p.read_bytes() for p in sorted(exp_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exp_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("imports")


@pytest.fixture(scope="module")
def sigmoid_keras(exp_root: Path) -> dict[str, Path]:
    """A small CNN with ONE sigmoid output, saved as .keras and as legacy .h5."""
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(1, activation="sigmoid")(x)
    model = keras.Model(inp, out)
    files = {"keras": exp_root / "sigmoid.keras", "h5": exp_root / "sigmoid.h5"}
    model.save(files["keras"])
    model.save(files["h5"])
    return files


def _onnx_file(
    path: Path, n_out: int, softmax: bool, seed: int = 0, channels: int = 3
) -> tuple[Path, np.ndarray, np.ndarray]:
    """A real ONNX graph (NCHW input -> Flatten -> Gemm [-> Softmax]) built with the onnx helper API."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    w = rng.normal(0, 0.05, (channels * SIZE * SIZE, n_out)).astype(np.float32)
    b = rng.normal(0, 0.1, n_out).astype(np.float32)
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits" if softmax else "y"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["logits"], ["y"], axis=1))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n_out])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path, w, b


# ---------------------------------------------------------------- Keras


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_keras_single_sigmoid_becomes_two_columns_equal_to_the_files_own_output(exp_root, sigmoid_keras, fmt):
    import keras

    exp_dir = _experiment(exp_root, f"k-{fmt}")
    cfg = add_model(exp_dir, name=f"mine-{fmt}", file=sigmoid_keras[fmt], preprocessing="tf")
    assert cfg["source"] == "imported" and cfg["outputs"] == "probabilities" and cfg["output_units"] == 1
    assert len(cfg["sha256"]) == 64 and cfg["preprocessing"] == "tf" and cfg["input_size"] == SIZE
    exp = art.load_experiment(exp_dir)
    assert f"mine-{fmt}" in exp.models
    preds = art.read_predictions(exp, f"mine-{fmt}").set_index("sample_id")
    samples, imgs = _pixels(exp_dir)
    evaluated = samples["eval_set"].notna().to_numpy()
    assert set(preds["eval_set"]) == {"val", "test"} and len(preds) == evaluated.sum()
    own = keras.saving.load_model(sigmoid_keras[fmt], safe_mode=True)
    p = np.asarray(own(imgs[evaluated] / 127.5 - 1.0))[:, 0]
    got = preds.loc[samples.loc[evaluated, "sample_id"]]
    np.testing.assert_allclose(got["prob_1"], p, atol=1e-5)
    np.testing.assert_allclose(got["prob_0"], 1 - p, atol=1e-5)
    mdir = art.model_dir(exp_dir, f"mine-{fmt}")
    assert (mdir / art.MODEL_FILE).is_file() and (mdir / f"source.{fmt}").is_file()
    assert not [p for p in exp_dir.iterdir() if p.name.startswith(".import-")]  # staging folder gone


def test_imported_keras_model_is_a_normal_live_model_with_grad_cam(exp_root, sigmoid_keras):
    from dashboard.live_inference import load_live_model, predict_probs
    from pipeline.explain import grad_cam

    exp_dir = _experiment(exp_root, "k-live")
    add_model(
        exp_dir, name="mine", file=sigmoid_keras["keras"], preprocessing="tf", class_order=["benign", "malignant"]
    )
    live = load_live_model(exp_dir, "mine", warm_up=False)
    _, imgs = _pixels(exp_dir)
    probs = predict_probs(live, imgs[0].astype(np.uint8))
    assert probs.shape == (2,) and abs(probs.sum() - 1) < 1e-5
    heat = grad_cam(live.model, imgs[0].astype(np.uint8))
    assert heat.shape == (SIZE, SIZE) and 0 <= heat.min() and heat.max() <= 1


def test_keras_logits_are_recognised_and_class_order_respected(exp_root):
    import keras

    exp_dir = _experiment(exp_root, "k-logits", n_classes=3)
    keras.utils.set_random_seed(2)
    inp = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Flatten()(inp)
    model = keras.Model(inp, keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(0, 0.5))(x))
    path = exp_root / "logits.keras"
    model.save(path)
    order = ["class_2", "class_0", "class_1"]
    cfg = add_model(exp_dir, name="logit", file=path, preprocessing="unit", class_order=order)
    assert cfg["outputs"] == "logits"
    samples, imgs = _pixels(exp_dir)
    ev = samples["eval_set"].notna().to_numpy()
    z = np.asarray(model(imgs[ev] / 255.0), np.float64)
    soft = np.exp(z - z.max(1, keepdims=True))
    soft /= soft.sum(1, keepdims=True)
    preds = art.read_predictions(art.load_experiment(exp_dir), "logit").set_index("sample_id")
    got = preds.loc[samples.loc[ev, "sample_id"], art.prob_columns(3)].to_numpy()
    np.testing.assert_allclose(got[:, [2, 0, 1]], soft, atol=1e-5)


def test_nested_sequential_backbone_gets_grad_cam(exp_root):
    """The seeds' shape: Sequential(backbone model, Flatten, Dense(1, sigmoid)) from a notebook."""
    import keras

    from dashboard.live_inference import load_live_model
    from pipeline.explain import grad_cam

    exp_dir = _experiment(exp_root, "k-nested")
    inner_in = keras.Input((SIZE, SIZE, 3))
    feat = keras.layers.Conv2D(8, 3, activation="relu", name="last_conv")(
        keras.layers.Conv2D(4, 3, activation="relu")(inner_in)
    )
    backbone = keras.Model(inner_in, feat, name="backbone")
    seq = keras.Sequential(
        [keras.Input((SIZE, SIZE, 3)), backbone, keras.layers.Flatten(), keras.layers.Dense(1, activation="sigmoid")]
    )
    path = exp_root / "nested.h5"
    seq.save(path)
    cfg = add_model(exp_dir, name="nested", file=path)
    assert cfg["cam_layer"]
    live = load_live_model(exp_dir, "nested", warm_up=False)
    _, imgs = _pixels(exp_dir)
    heat = grad_cam(live.model, imgs[1].astype(np.uint8))
    assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all()


# ---------------------------------------------------------------- ONNX


def test_onnx_model_runs_through_onnxruntime_and_equals_its_own_output(exp_root):
    import onnxruntime as ort

    exp_dir = _experiment(exp_root, "onnx")
    path, _, _ = _onnx_file(exp_root / "tiny.onnx", 2, softmax=True)
    cfg = add_model(exp_dir, name="torchish", file=path, preprocessing="torch")
    assert cfg["format"] == "onnx" and cfg["outputs"] == "probabilities" and cfg["onnx_layout"] == "nchw"
    samples, imgs = _pixels(exp_dir)
    ev = samples["eval_set"].notna().to_numpy()
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    x = ((imgs[ev] / 255.0 - mean) / std).astype(np.float32).transpose(0, 3, 1, 2)
    own = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    preds = art.read_predictions(art.load_experiment(exp_dir), "torchish").set_index("sample_id")
    np.testing.assert_allclose(preds.loc[samples.loc[ev, "sample_id"], art.prob_columns(2)], own, atol=1e-5)
    clf = onnx_classifier(exp_dir, "torchish")  # what live inference uses
    np.testing.assert_allclose(clf(imgs[ev][:3]), own[:3], atol=1e-5)
    assert (art.model_dir(exp_dir, "torchish") / "model.onnx").is_file()


def test_onnx_logits_with_a_single_unit_become_sigmoid_probabilities(exp_root):
    exp_dir = _experiment(exp_root, "onnx-logit")
    path, w, b = _onnx_file(exp_root / "logit1.onnx", 1, softmax=False, seed=4)
    cfg = add_model(exp_dir, name="one", file=path, preprocessing=([0.5], [0.25]), outputs="logits")
    assert cfg["outputs"] == "logits" and cfg["preprocessing"] == "mean_std"
    samples, imgs = _pixels(exp_dir)
    ev = samples["eval_set"].notna().to_numpy()
    x = ((imgs[ev] / 255.0 - 0.5) / 0.25).transpose(0, 3, 1, 2).reshape(int(ev.sum()), -1)
    p = 1 / (1 + np.exp(-(x @ w + b)[:, 0]))
    preds = art.read_predictions(art.load_experiment(exp_dir), "one").set_index("sample_id")
    np.testing.assert_allclose(preds.loc[samples.loc[ev, "sample_id"], "prob_1"], p, atol=1e-5)


def test_onnx_gray_input_and_tta_average_the_flipped_views(exp_root):
    import onnxruntime as ort

    exp_dir = _experiment(exp_root, "onnx-gray")
    path, _, _ = _onnx_file(exp_root / "gray.onnx", 2, softmax=True, seed=5, channels=1)
    cfg = add_model(exp_dir, name="gray", file=path, preprocessing="unit", tta=True)
    assert cfg["input_channels"] == 1 and cfg["tta"] == ["hflip"]  # the views averaged, as recorded
    samples, imgs = _pixels(exp_dir)
    ev = samples["eval_set"].notna().to_numpy()
    gray = (imgs[ev] @ np.array([0.299, 0.587, 0.114]) / 255.0).astype(np.float32)[:, None]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    own = (session.run(None, {"x": gray})[0] + session.run(None, {"x": gray[..., ::-1].copy()})[0]) / 2
    preds = art.read_predictions(art.load_experiment(exp_dir), "gray").set_index("sample_id")
    np.testing.assert_allclose(preds.loc[samples.loc[ev, "sample_id"], art.prob_columns(2)], own, atol=1e-5)


def test_preprocess_affine_reproduces_keras_applications_modes():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (5, 3))
    w, b, *_ = preprocess_affine("caffe", "bgr")
    np.testing.assert_allclose(x @ w + b, x[:, ::-1] - [103.939, 116.779, 123.68], atol=1e-3)
    w, b, *_ = preprocess_affine("tf", "bgr")
    np.testing.assert_allclose(x @ w + b, (x / 127.5 - 1)[:, ::-1], atol=1e-5)
    with pytest.raises(ValueError, match="Invalid value for argument `channel_order`"):
        preprocess_affine("caffe", "rgb")
    with pytest.raises(ValueError, match="Invalid value for argument `preprocessing`"):
        preprocess_affine("imagenet")


# ---------------------------------------------------------------- bad model files leave the experiment unchanged


def test_bad_model_files_give_one_clear_error_and_change_nothing(exp_root, sigmoid_keras):
    import keras

    exp_dir = _experiment(exp_root, "bad")
    before = _snapshot(exp_dir)
    good = sigmoid_keras["keras"].read_bytes()
    truncated = exp_root / "truncated.keras"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(ImportProblem, match="not a .keras archive"):
        add_model(exp_dir, name="x", file=truncated)
    wrong = exp_root / "wrong.h5"
    wrong.write_bytes(b"this is a CSV,not,a model\n")
    with pytest.raises(ImportProblem, match="not an HDF5 file"):
        add_model(exp_dir, name="x", file=wrong)
    bad_onnx = exp_root / "bad.onnx"
    bad_onnx.write_bytes(os.urandom(300))
    with pytest.raises(ImportProblem, match="not a loadable ONNX model"):
        add_model(exp_dir, name="x", file=bad_onnx)
    pickle_file = exp_root / "model.pth"
    pickle_file.write_bytes(b"\x80\x04junk")
    with pytest.raises(ImportProblem, match="pickles .* export the model to ONNX"):
        add_model(exp_dir, name="x", file=pickle_file)
    saved_model = exp_root / "savedmodel"
    saved_model.mkdir()
    (saved_model / "saved_model.pb").write_bytes(b"x")
    with pytest.raises(ImportProblem, match="SavedModel folder cannot be imported"):
        add_model(exp_dir, name="x", file=saved_model)
    with pytest.raises(ValueError, match="Invalid value for argument `file`. Expected at most 0 MB"):
        add_model(exp_dir, name="x", file=sigmoid_keras["keras"], max_bytes=10)
    inp = keras.Input((SIZE, SIZE, 3))
    lam = keras.Model(
        inp,
        keras.layers.Dense(2, activation="softmax")(
            keras.layers.Lambda(lambda t: t * 2.0)(keras.layers.GlobalAveragePooling2D()(inp))
        ),
    )
    lam_path = exp_root / "lambda.keras"
    lam.save(lam_path)
    with pytest.raises(ImportProblem, match="refused by Keras safe mode"):
        add_model(exp_dir, name="x", file=lam_path)
    lam.save(exp_root / "lambda.h5")  # legacy HDF5: safe mode applies too
    with pytest.raises(ImportProblem, match="refused by Keras safe mode"):
        add_model(exp_dir, name="x", file=exp_root / "lambda.h5")
    lam.save_weights(exp_root / "only.weights.h5")
    os.replace(exp_root / "only.weights.h5", exp_root / "only-weights.h5")
    with pytest.raises(ImportProblem, match="holds weights only, not a model"):
        add_model(exp_dir, name="x", file=exp_root / "only-weights.h5")
    three = exp_root / "three.onnx"
    _onnx_file(three, 3, softmax=True)
    with pytest.raises(
        ImportProblem,
        match=r"expected \(None, 2\) for the classes \['benign', 'malignant'\].*"
        r"received \(None, 3\)",
    ):
        add_model(exp_dir, name="x", file=three)
    with pytest.raises(ValueError, match="Invalid value for argument `class_order`"):
        add_model(exp_dir, name="x", file=sigmoid_keras["keras"], class_order=["benign", "tumour"])
    with pytest.raises(ValueError, match="Invalid value for argument `name`"):
        add_model(exp_dir, name="../escape", file=sigmoid_keras["keras"])
    with pytest.raises(ValueError, match="Invalid value for argument `name`.*exists"):
        add_model(exp_dir, name="MobileNetV2", file=sigmoid_keras["keras"])
    with pytest.raises(ImportProblem, match="is not a usable experiment folder.*experiment.json: file is missing"):
        add_model(exp_root / "nowhere", name="x", file=sigmoid_keras["keras"])
    assert _snapshot(exp_dir) == before
    assert not [p for p in exp_dir.iterdir() if p.name.startswith(".import-")]


# ---------------------------------------------------------------- prediction tables


def _truth_table(exp_dir: Path) -> pd.DataFrame:
    samples = pd.read_parquet(exp_dir / art.SAMPLES_FILE)
    ev = samples[samples["eval_set"].notna()].reset_index(drop=True)
    p = np.linspace(0.05, 0.95, len(ev))
    return pd.DataFrame({"sample_id": ev["sample_id"], "path": ev["path"], "benign": 1 - p, "malignant": p})


def test_predictions_keyed_by_id_and_by_file_name(exp_root, tmp_path):
    exp_dir = _experiment(exp_root, "csv")
    table = _truth_table(exp_dir)
    by_id = tmp_path / "by_id.csv"
    table[["sample_id", "benign", "malignant"]].to_csv(by_id, index=False)
    cfg = add_predictions(exp_dir, name="from-csv", file=by_id)
    assert cfg["predictions_only"] is True and cfg["source"] == "imported"
    preds = art.read_predictions(art.load_experiment(exp_dir), "from-csv").set_index("sample_id")
    np.testing.assert_allclose(preds.loc[table["sample_id"], "prob_1"], table["malignant"])
    by_name = tmp_path / "by_name.parquet"
    pd.DataFrame({"file": [Path(p).name for p in table["path"]], "score": table["malignant"]}).to_parquet(by_name)
    add_predictions(exp_dir, name="from-names", file=by_name)
    preds = art.read_predictions(art.load_experiment(exp_dir), "from-names").set_index("sample_id")
    np.testing.assert_allclose(preds.loc[table["sample_id"], "prob_1"], table["malignant"])
    np.testing.assert_allclose(preds.loc[table["sample_id"], "prob_0"], table["benign"])
    cfg_path = art.model_dir(exp_dir, "from-names") / art.MODEL_CONFIG_FILE
    assert json.loads(cfg_path.read_text())["predictions_only"] is True


def test_every_problem_of_a_bad_table_is_named_with_examples(exp_root, tmp_path):
    exp_dir = _experiment(exp_root, "csv-bad")
    before = _snapshot(exp_dir)
    table = _truth_table(exp_dir)[["sample_id", "benign", "malignant"]]
    bad = pd.concat(
        [
            table.iloc[2:],
            table.iloc[[2]],
            pd.DataFrame({"sample_id": ["nope-1", "nope-2"], "benign": [0.5, 0.5], "malignant": [0.5, 0.5]}),
        ]
    )
    bad.loc[bad.index[3], "malignant"] = 1.7
    bad.loc[bad.index[4], "benign"] = 0.1
    path = tmp_path / "bad.csv"
    bad.to_csv(path, index=False)
    with pytest.raises(ImportProblem) as info:
        add_predictions(exp_dir, name="bad", file=path)
    text = str(info.value)
    for expected in (
        "rows have sample_id values not in the experiment's sample table, e.g. ['nope-1', 'nope-2']",
        "samples of evaluation set",
        "have no row",
        "more than one row",
        "outside [0, 1]",
        "do not sum to 1",
        "--normalise",
    ):
        assert expected in text, (expected, text)
    assert _snapshot(exp_dir) == before


def test_sums_are_fixed_by_normalise_but_not_out_of_range(exp_root, tmp_path):
    exp_dir = _experiment(exp_root, "csv-norm")
    table = _truth_table(exp_dir)[["sample_id", "benign", "malignant"]].rename(
        columns={"benign": "prob_0", "malignant": "prob_1"}
    )
    table["prob_1"] *= 0.5
    path = tmp_path / "half.csv"
    table.to_csv(path, index=False)
    with pytest.raises(ImportProblem, match="do not sum to 1"):
        add_predictions(exp_dir, name="half", file=path)
    zero = table.copy()
    zero.loc[0, ["prob_0", "prob_1"]] = 0.0
    zero.to_csv(tmp_path / "zero.csv", index=False)
    with pytest.raises(ImportProblem, match="1 rows are all zero and cannot be normalised"):
        add_predictions(exp_dir, name="half", file=tmp_path / "zero.csv", normalise=True)
    add_predictions(exp_dir, name="half", file=path, normalise=True)
    preds = art.read_predictions(art.load_experiment(exp_dir), "half")
    np.testing.assert_allclose(preds[["prob_0", "prob_1"]].sum(axis=1), 1.0)


def test_class_columns_that_do_not_match_are_named(exp_root, tmp_path):
    exp_dir = _experiment(exp_root, "csv-cols", n_classes=3)
    samples = pd.read_parquet(exp_dir / art.SAMPLES_FILE)
    ev = samples[samples["eval_set"].notna()]
    path = tmp_path / "cols.csv"
    pd.DataFrame({"sample_id": ev["sample_id"], "class_0": 0.5, "class_1": 0.5, "cancer": 0.0}).to_csv(path)
    with pytest.raises(ImportProblem, match=r"class columns do not match.*missing class columns \['class_2'\]"):
        add_predictions(exp_dir, name="cols", file=path)
    path.write_text("not,a\nreal\x00table")
    with pytest.raises(ImportProblem, match="no key column|class columns do not match|unreadable CSV"):
        add_predictions(exp_dir, name="cols", file=path)


# ---------------------------------------------------------------- dashboard: imported models on the pages


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory: pytest.TempPathFactory, sigmoid_keras: dict[str, Path]) -> Path:
    """An artifacts root whose experiment `mixed` holds a fake model, a Keras, an ONNX and a CSV import."""
    root = tmp_path_factory.mktemp("mixed")
    exp_dir = _experiment(root, "mixed", thumbnails=True)
    add_model(exp_dir, name="imported-keras", file=sigmoid_keras["keras"], preprocessing="tf")
    add_model(
        exp_dir, name="imported-onnx", file=_onnx_file(root / "m.onnx", 2, softmax=True)[0], preprocessing="torch"
    )
    table = _truth_table(exp_dir)[["sample_id", "malignant"]]
    table.to_csv(root / "p.csv", index=False)
    add_predictions(exp_dir, name="csv-only", file=root / "p.csv")
    return root


def test_pages_show_imported_and_predictions_only_models(mixed_root, artifacts_env):
    from tests.conftest import no_exceptions, open_app

    artifacts_env(mixed_root)
    at = open_app("mixed", "overview")
    no_exceptions(at)
    shown = " ".join(str(df.value) for df in at.dataframe)
    assert all(m in shown for m in ("imported-keras", "imported-onnx", "csv-only"))
    at = open_app("mixed", "live")
    at.radio(key="live_source").set_value("Sample from the evaluation set").run()
    no_exceptions(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "csv-only cannot answer" in warnings and "predictions only" in warnings
    assert "imported-onnx cannot" not in warnings and "imported-keras cannot" not in warnings
    at = open_app("mixed", "review")
    at.button[0].click().run()
    at.button(key="review_cam_button").click().run()
    no_exceptions(at)
    from tests.test_dashboard_pages import gallery_captions

    captions = " ".join(c.value for c in at.caption)
    assert "csv-only was imported as predictions only; a heat map needs a model file" in captions
    cams = [c for c in gallery_captions(at) if ": evidence for" in c]
    assert any(c.startswith("imported-onnx:") and "occlusion sensitivity" in c for c in cams), cams
    assert any(c.startswith("imported-keras:") for c in cams), cams


@pytest.mark.parametrize(
    "page", ["curves", "confusion", "thresholds", "calibration", "training", "eval_sets", "compare"]
)
def test_every_metric_page_opens_with_imported_models(mixed_root, artifacts_env, page):
    from tests.conftest import no_exceptions, open_app

    artifacts_env(mixed_root)
    at = open_app("mixed", page)
    no_exceptions(at)


# ---------------------------------------------------------------- CLI


def test_cli_add_model_and_add_predictions(exp_root, tmp_path, capsys):
    from pipeline.__main__ import main

    exp_dir = _experiment(exp_root, "cli")
    path, _, _ = _onnx_file(exp_root / "cli.onnx", 2, softmax=False, seed=7)
    assert (
        main(
            [
                "add-model",
                str(exp_dir),
                "--name",
                "onnx-cli",
                "--file",
                str(path),
                "--preprocessing",
                "0.485,0.456,0.406:0.229,0.224,0.225",
                "--class-order",
                "malignant,benign",
                "--outputs",
                "logits",
            ]
        )
        == 0
    )
    cfg = art.read_model_config(exp_dir, "onnx-cli")
    assert cfg["class_order"] == ["malignant", "benign"] and cfg["preprocessing"] == "mean_std"
    assert "onnx-cli: imported onnx model (logits" in capsys.readouterr().out
    table = _truth_table(exp_dir)[["sample_id", "malignant"]]
    table["malignant"] *= 3
    table.to_csv(tmp_path / "p.csv", index=False)
    assert main(["add-predictions", str(exp_dir), "--name", "csv", "--file", str(tmp_path / "p.csv")]) == 2
    assert "outside [0, 1]" in capsys.readouterr().err
    assert "csv" not in art.list_models(exp_dir)


def test_occlusion_map_points_at_the_only_pixels_an_onnx_model_reads(exp_root):
    """A model whose score reads the top-left quadrant only: graying that quadrant is all that matters."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from pipeline.explain import grad_cam_details

    w = np.zeros((3, SIZE, SIZE, 2), np.float32)
    w[:, : SIZE // 2, : SIZE // 2, 1] = 0.02
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["y"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "quadrant",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            numpy_helper.from_array(w.reshape(-1, 2), "W"),
            numpy_helper.from_array(np.zeros(2, np.float32), "B"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = exp_root / "quadrant.onnx"
    onnx.save(model, str(path))
    exp_dir = _experiment(exp_root, "occlusion")
    add_model(exp_dir, name="quad", file=path, preprocessing="unit")
    clf = onnx_classifier(exp_dir, "quad")
    image = np.full((SIZE * 2, SIZE * 2, 3), 250, np.uint8)
    cam = grad_cam_details(clf, image, 1)
    assert cam.layer_name.startswith("occlusion") and cam.class_index == 1
    assert cam.heat[: SIZE - 2, : SIZE - 2].min() > 0.5 and cam.heat[SIZE + 2 :, :].max() == 0.0
    assert cam.heat[:, SIZE + 2 :].max() == 0.0


def test_input_size_is_asked_for_only_when_the_file_cannot_tell(exp_root, sigmoid_keras):
    import keras

    exp_dir = _experiment(exp_root, "sizes")
    inp = keras.Input((None, None, 3))
    out = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3, activation="relu")(inp))
    )
    path = exp_root / "anysize.keras"
    keras.Model(inp, out).save(path)
    with pytest.raises(ValueError, match="Invalid value for argument `input_size`. Expected a size in pixels"):
        add_model(exp_dir, name="any", file=path)
    with pytest.raises(ValueError, match=r"Invalid value for argument `input_size`. Expected 16 \(the model's fixed"):
        add_model(exp_dir, name="fixed", file=sigmoid_keras["keras"], input_size=32)
    cfg = add_model(exp_dir, name="any", file=path, input_size=24)
    assert cfg["input_size"] == 24 and cfg["outputs"] == "probabilities"
    assert len(art.read_predictions(art.load_experiment(exp_dir), "any")) == 12 * 2
