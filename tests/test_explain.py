"""Grad-CAM on every backbone family (nested-backbone classifiers), the overlay, and a map that follows the object.

The heavy families are traced eagerly (`tf.config.run_functions_eagerly`): one Grad-CAM call then costs about
2 s instead of 10-20 s of graph tracing, and the code path is the same; the compiled path is covered by
SmallCNN, MobileNetV2 and VGG16 and by the save/reload test.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from pipeline.synthetic import corner_evidence_image  # noqa: E402

SIZE = 32
IMAGE_HW = (40, 52)  # not the model's input size, not square: the map must come back at this size


def _image(seed: int = 0, hw: tuple[int, int] = IMAGE_HW) -> np.ndarray:
    return (np.random.default_rng(seed).random((*hw, 3)) * 255).astype(np.uint8)


def _check_map(heat: np.ndarray, hw: tuple[int, int]) -> None:
    assert heat.shape == hw
    assert heat.dtype == np.float32
    assert np.isfinite(heat).all()
    assert heat.min() >= 0.0 and heat.max() <= 1.0


@pytest.fixture()
def eager():
    import tensorflow as tf

    tf.config.run_functions_eagerly(True)
    yield
    tf.config.run_functions_eagerly(False)


# ---------------------------------------------------------------- every family, untrained, tiny input


@pytest.mark.parametrize("name", ["SmallCNN", "MobileNetV2", "VGG16"])
def test_grad_cam_compiled_light_families(name):
    from pipeline.backbones import build_classifier
    from pipeline.explain import grad_cam, grad_cam_details

    model = build_classifier(name, SIZE, 3)
    heat = grad_cam(model, _image())
    _check_map(heat, IMAGE_HW)
    again = grad_cam_details(model, _image(), class_index=2)
    _check_map(again.heat, IMAGE_HW)
    assert again.class_index == 2
    assert again.probs.shape == (3,) and again.probs.sum() == pytest.approx(1.0, abs=1e-4)
    expected = model(_resized(_image(), SIZE), training=False).numpy()[0]
    np.testing.assert_allclose(again.probs, expected, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name,size", [("InceptionV3", 75), ("ResNet50", SIZE), ("DenseNet121", SIZE), ("EfficientNetB0", SIZE)]
)
def test_grad_cam_heavy_families(name, size, eager):
    from pipeline.backbones import build_classifier
    from pipeline.explain import grad_cam_details

    model = build_classifier(name, size, 2)
    result = grad_cam_details(model, _image(1))
    _check_map(result.heat, IMAGE_HW)
    assert result.class_index == int(np.argmax(result.probs))


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    from pipeline.preprocess import resize_square

    return resize_square(image, size).astype(np.float32)[None]


def test_gray_input_and_flat_model():
    """A plain (non-nested) functional model works too, and a 2-D gray image is accepted."""
    import keras

    from pipeline.explain import default_cam_layer, grad_cam

    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="feat")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(2, activation="softmax")(x)
    model = keras.Model(inp, out)
    assert default_cam_layer(model) == "feat"
    heat = grad_cam(model, _image(2, (20, 30))[:, :, 0])
    _check_map(heat, (20, 30))


def test_bad_arguments_name_what_was_expected():
    from pipeline.backbones import build_classifier
    from pipeline.explain import grad_cam

    model = build_classifier("SmallCNN", 16, 2)
    with pytest.raises(ValueError, match="`layer_name`.*Received: 'nope'"):
        grad_cam(model, _image(), layer_name="nope")
    with pytest.raises(ValueError, match="`layer_name`.*4-D"):
        grad_cam(model, _image(), layer_name="predictions")
    with pytest.raises(ValueError, match=r"`class_index`.*\[0, 1\].*Received: 5"):
        grad_cam(model, _image(), class_index=5)
    with pytest.raises(ValueError, match="`image_uint8_rgb`.*uint8.*float64"):
        grad_cam(model, np.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="`image_uint8_rgb`.*HxWx3"):
        grad_cam(model, np.zeros((8, 8, 4), np.uint8))


def test_gradient_function_is_compiled_once_per_model_and_layer():
    from pipeline.backbones import build_classifier
    from pipeline.explain import _cam_function, clear_cache, grad_cam

    model = build_classifier("SmallCNN", 16, 2)
    grad_cam(model, _image())
    fn = _cam_function(model, "cam_conv")
    grad_cam(model, _image(3), class_index=0)
    assert _cam_function(model, "cam_conv") is fn
    assert fn.experimental_get_tracing_count() == 1
    assert _cam_function(model, "conv2") is not fn
    clear_cache(model)
    assert _cam_function(model, "cam_conv") is not fn
    # the cache is invisible to Keras: nothing new is tracked or saved
    assert "_medcompare_grad_cam_fns" not in [v.path for v in model.variables]


# ---------------------------------------------------------------- overlay


def test_overlay_blends_image_and_colormap():
    import cv2

    from pipeline.explain import overlay

    image = np.full((10, 12, 3), 100, np.uint8)
    heat = np.zeros((5, 6), np.float32)
    heat[0, 0] = 1.0
    np.testing.assert_array_equal(overlay(image, heat, alpha=0.0), image)
    full = overlay(image, np.ones((10, 12), np.float32), alpha=1.0)
    red = cv2.cvtColor(cv2.applyColorMap(np.array([[255]], np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)[0, 0]
    np.testing.assert_array_equal(full[3, 3], red)
    half = overlay(image, heat, alpha=0.5)
    assert half.shape == (10, 12, 3) and half.dtype == np.uint8
    with pytest.raises(ValueError, match="`alpha`.*Received: 1.5"):
        overlay(image, heat, alpha=1.5)
    with pytest.raises(ValueError, match="`heat`.*HxW"):
        overlay(image, np.zeros((2, 2, 2)))


# ---------------------------------------------------------------- the map follows the evidence


def _background(size: int, seed: int) -> np.ndarray:
    """corner_evidence_image's background without the blob: the negative class."""
    rng = np.random.default_rng(seed)
    return np.clip(90.0 + rng.normal(0, 6.0, (size, size, 3)), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def corner_model():
    """SmallCNN trained for a few seconds on 'a blob in any corner' (class 1) vs plain background (class 0)."""
    import keras

    from pipeline.backbones import build_classifier

    keras.utils.set_random_seed(0)
    corners = ("tl", "tr", "bl", "br")
    pos = [corner_evidence_image(SIZE, corners[i % 4], seed=100 + i) for i in range(96)]
    neg = [_background(SIZE, 500 + i) for i in range(96)]
    x = np.stack(pos + neg).astype(np.float32)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))].astype(np.int64)
    model = build_classifier("SmallCNN", SIZE, 2, dropout=0.0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=6, batch_size=32, shuffle=True, verbose=0)
    return model


def _quadrant_mass(heat: np.ndarray) -> dict[str, float]:
    h, w = heat.shape
    top, left = slice(0, h // 2), slice(0, w // 2)
    bottom, right = slice(h // 2, h), slice(w // 2, w)
    return {
        "tl": float(heat[top, left].sum()),
        "tr": float(heat[top, right].sum()),
        "bl": float(heat[bottom, left].sum()),
        "br": float(heat[bottom, right].sum()),
    }


def _peak_quadrant(heat: np.ndarray) -> str:
    r, c = np.unravel_index(int(np.argmax(heat)), heat.shape)
    return ("t" if r < heat.shape[0] / 2 else "b") + ("l" if c < heat.shape[1] / 2 else "r")


def test_heat_map_moves_with_the_object(corner_model):
    from pipeline.explain import grad_cam_details

    for corner, opposite in (("tl", "br"), ("br", "tl"), ("tr", "bl")):
        image = corner_evidence_image(SIZE, corner, seed=999)  # a seed not seen in training
        result = grad_cam_details(corner_model, image, class_index=1)
        assert result.probs[1] > 0.5, f"the model did not learn the blob ({corner}: {result.probs})"
        mass = _quadrant_mass(result.heat)
        assert mass[corner] == max(mass.values()), (corner, mass)
        assert mass[corner] > 1.5 * mass[opposite], (corner, mass)
        assert _peak_quadrant(result.heat) == corner
    # the map is at the image's own size, also when the image is larger than the model input
    big = corner_evidence_image(96, "bl", seed=7)
    heat = grad_cam_details(corner_model, big, class_index=1).heat
    _check_map(heat, (96, 96))
    assert _peak_quadrant(heat) == "bl"


def test_saved_and_reloaded_model_gives_the_same_map(corner_model, tmp_path):
    import keras

    from pipeline.backbones import preprocess_layer_class
    from pipeline.explain import grad_cam

    image = corner_evidence_image(SIZE, "tr", seed=5)
    path = tmp_path / "model.keras"
    corner_model.save(path)
    preprocess_layer_class()  # registers the custom preprocessing layer before loading
    reloaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_allclose(
        grad_cam(reloaded, image, class_index=1), grad_cam(corner_model, image, class_index=1), atol=1e-5
    )
    assert _peak_quadrant(grad_cam(reloaded, image, class_index=1)) == "tr"


@pytest.mark.slow
def test_reloaded_keras_applications_backbone(tmp_path, eager):
    """A keras.applications backbone nested inside the classifier deserialises (safe mode) and explains."""
    import keras

    from pipeline.backbones import build_classifier, preprocess_layer_class
    from pipeline.explain import grad_cam_details

    preprocess_layer_class()
    mobile = build_classifier("MobileNetV2", SIZE, 2)
    mobile.save(tmp_path / "mobile.keras")
    mobile2 = keras.saving.load_model(tmp_path / "mobile.keras", safe_mode=True)
    result = grad_cam_details(mobile2, _image(4))
    _check_map(result.heat, IMAGE_HW)
    np.testing.assert_allclose(result.probs, mobile(_resized(_image(4), SIZE), training=False).numpy()[0], atol=1e-5)
