"""Backbone registry and weights handling (no training here)."""

from __future__ import annotations

import time

import pytest

from pipeline import backbones as bb


def test_registry_covers_the_issue_list():
    wanted = {
        "MobileNetV2",
        "InceptionV3",
        "VGG16",
        "VGG19",
        "ResNet50",
        "ResNet101",
        "DenseNet121",
        "DenseNet201",
        "SmallCNN",
        *[f"EfficientNetB{i}" for i in range(8)],
    }
    assert wanted <= set(bb.BACKBONES)
    for b in bb.BACKBONES.values():
        assert b.preprocess_mode in bb.PREPROCESS_MODES
        assert b.cam_layer and b.min_size >= 16 and b.input_size(8) == b.min_size


def test_lookup_errors_name_the_argument():
    assert bb.get_backbone("resnet50").name == "ResNet50"
    with pytest.raises(ValueError, match=r"argument `backbone`.*Received: 'ResNet5'"):
        bb.get_backbone("ResNet5")


def test_weights_parsing(tmp_path):
    assert bb.parse_weights("none") is None and bb.parse_weights(None) is None
    assert bb.parse_weights("ImageNet") == "imagenet"
    f = tmp_path / "w.h5"
    f.write_bytes(b"x")
    assert bb.parse_weights(str(f)) == str(f)
    with pytest.raises(ValueError, match="existing weights file.*no such file"):
        bb.parse_weights(str(tmp_path / "missing.h5"))


def test_offline_imagenet_fails_fast(monkeypatch, tmp_path):
    """No network here (and a cold Keras cache): a clear error within seconds, not a download timeout."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(bb, "WEIGHTS_HOST", "weights.invalid")
    start = time.perf_counter()
    with pytest.raises(bb.WeightsUnavailableError, match="cannot be reached.*local Keras weights file"):
        bb.ensure_weights_available(bb.get_backbone("MobileNetV2"), "imagenet")
    assert time.perf_counter() - start < 10


def test_offline_imagenet_via_build_classifier(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(bb, "can_reach", lambda *a, **k: False)
    with pytest.raises(bb.WeightsUnavailableError, match="MobileNetV2"):
        bb.build_classifier("MobileNetV2", 32, 2, weights="imagenet")


def test_custom_cnn_has_no_imagenet():
    with pytest.raises(ValueError, match="SmallCNN has no ImageNet weights"):
        bb.ensure_weights_available(bb.get_backbone("SmallCNN"), "imagenet")


def test_preprocess_layer_matches_keras_functions():
    import keras
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 8, 8, 3)).astype("float32")
    layer_cls = bb.preprocess_layer_class()
    cases = {
        "tf": keras.applications.mobilenet_v2.preprocess_input,
        "caffe": keras.applications.resnet.preprocess_input,
        "torch": keras.applications.densenet.preprocess_input,
    }
    for mode, fn in cases.items():
        ours = np.asarray(layer_cls(mode)(x))
        theirs = np.asarray(fn(x.copy()))
        assert np.allclose(ours, theirs, atol=1e-4), mode


def test_saved_classifier_reloads_in_safe_mode(tmp_path):
    import keras
    import numpy as np

    model = bb.build_classifier("SmallCNN", 24, 3)
    path = tmp_path / "m.keras"
    model.save(path)
    again = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (2, 24, 24, 3)).astype("float32")
    assert np.allclose(model.predict(x, verbose=0), again.predict(x, verbose=0), atol=1e-6)
    assert bb.nested_backbone(again).get_layer("cam_conv") is not None
