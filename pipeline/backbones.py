"""The one registry of backbones: name -> builder, preprocessing, minimum input size, Grad-CAM layer.

The registry itself (`BACKBONES`) is plain data and imports no TensorFlow; `build_classifier` imports
Keras lazily. Every classifier takes raw RGB pixels in [0, 255] and carries its backbone's
preprocessing inside the model (a serialisable layer), so a saved `.keras` file needs no other code
than this module to predict, and loads with Keras safe mode on.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

WEIGHTS_HOST = "storage.googleapis.com"

# Preprocessing modes, as in keras.applications.imagenet_utils.preprocess_input.
PREPROCESS_MODES = {
    "tf": "x / 127.5 - 1 (scale to [-1, 1])",
    "caffe": "RGB -> BGR, subtract ImageNet mean (no scaling)",
    "torch": "x / 255, subtract ImageNet mean, divide by ImageNet std",
    "none": "raw 0..255 (the backbone rescales and normalises internally)",
    "unit": "x / 255 (scale to [0, 1])",
}


@dataclass(frozen=True)
class Backbone:
    """One entry of the registry."""

    name: str
    family: str
    application: str | None  # attribute of keras.applications, None for the custom CNN
    preprocess_mode: str  # key of PREPROCESS_MODES
    preprocess_function: str  # the keras.applications function this mode reproduces
    min_size: int
    default_size: int
    cam_layer: str  # layer inside the nested backbone model whose activations Grad-CAM weighs
    relative_cost: int = 30  # training cost relative to SmallCNN (measured on 2 CPU cores); schedules longest first
    fair_size: int = 0  # smallest input whose last feature map is 2x2 (0: min_size); see input_size

    def input_size(self, image_size: int, policy: str = "native") -> int:
        """Input size this backbone gets for images of `image_size` (never below its minimum).

        policy "fair" also lifts small images to `fair_size`: the ImageNet backbones downsample 32x, so at
        32 px their last stage sees a 1x1 map and ResNet50 trained from scratch on BreastMNIST reached
        0.73 test AUC at 32 px against 0.88 at 64 px (bench/RESULTS.md, "Training protocol").
        """
        if policy not in ("fair", "native"):
            raise ValueError(f"Invalid value for argument `policy`. Expected 'fair' or 'native'. Received: {policy!r}")
        floor = max(self.min_size, self.fair_size) if policy == "fair" else self.min_size
        return max(int(image_size), floor)


def _entry(
    name: str,
    family: str,
    mode: str,
    fn: str,
    min_size: int,
    default: int,
    cam: str,
    application: str | None = "same",
    cost: int = 30,
) -> Backbone:
    # Every keras.applications backbone here downsamples 32x. 64 px is the smallest size at which all of them
    # end in a 2x2 map: VGG and DenseNet pool with "valid" padding and need 64; the "same"-padded ones
    # (ResNet, MobileNetV2, EfficientNet) already reach 2x2 from 33 px, but half of that map is padding.
    fair = 0 if application is None else max(min_size, 64)
    return Backbone(
        name, family, name if application == "same" else application, mode, fn, min_size, default, cam, cost, fair
    )


BACKBONES: dict[str, Backbone] = {
    b.name: b
    for b in [
        _entry(
            "MobileNetV2",
            "mobilenet",
            "tf",
            "keras.applications.mobilenet_v2.preprocess_input",
            32,
            224,
            "out_relu",
            cost=5,
        ),
        _entry(
            "InceptionV3",
            "inception",
            "tf",
            "keras.applications.inception_v3.preprocess_input",
            75,
            299,
            "mixed10",
            cost=20,
        ),
        _entry("VGG16", "vgg", "caffe", "keras.applications.vgg16.preprocess_input", 32, 224, "block5_conv3", cost=12),
        _entry("VGG19", "vgg", "caffe", "keras.applications.vgg19.preprocess_input", 32, 224, "block5_conv4", cost=15),
        _entry(
            "ResNet50",
            "resnet",
            "caffe",
            "keras.applications.resnet.preprocess_input",
            32,
            224,
            "conv5_block3_out",
            cost=14,
        ),
        _entry(
            "ResNet101",
            "resnet",
            "caffe",
            "keras.applications.resnet.preprocess_input",
            32,
            224,
            "conv5_block3_out",
            cost=25,
        ),
        _entry(
            "DenseNet121", "densenet", "torch", "keras.applications.densenet.preprocess_input", 32, 224, "relu", cost=12
        ),
        _entry(
            "DenseNet201", "densenet", "torch", "keras.applications.densenet.preprocess_input", 32, 224, "relu", cost=20
        ),
        *[
            _entry(
                f"EfficientNetB{i}",
                "efficientnet",
                "none",
                "keras.applications.efficientnet.preprocess_input",
                32,
                size,
                "top_activation",
                cost=9 if i == 0 else 30,
            )
            for i, size in enumerate((224, 240, 260, 300, 380, 456, 528, 600))
        ],
        _entry("SmallCNN", "custom", "unit", "x / 255", 16, 64, "cam_conv", application=None, cost=1),
    ]
}


def get_backbone(name: str) -> Backbone:
    """Look up a backbone by name (case-insensitive)."""
    by_lower = {k.lower(): v for k, v in BACKBONES.items()}
    if name.lower() not in by_lower:
        raise ValueError(
            f"Invalid value for argument `backbone`. Expected one of {sorted(BACKBONES)}. Received: {name!r}"
        )
    return by_lower[name.lower()]


class WeightsUnavailableError(RuntimeError):
    """ImageNet weights were requested but cannot be obtained (offline, no cached file)."""


def parse_weights(weights: str | None) -> str | None:
    """Normalise the `weights` option: 'imagenet', None (random init) or an existing file path."""
    if weights is None or str(weights).lower() in ("none", "random", ""):
        return None
    if str(weights).lower() == "imagenet":
        return "imagenet"
    path = Path(str(weights)).expanduser()
    if not path.is_file():
        raise ValueError(
            f"Invalid value for argument `weights`. Expected 'imagenet', 'none' or the path of an "
            f"existing weights file. Received: {weights!r} (no such file)"
        )
    return str(path)


def _cached_weights(backbone: Backbone) -> bool:
    cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"
    stem = backbone.name.lower().replace("v2", "_v2").replace("v3", "_v3")
    return cache.is_dir() and any(stem.split("_")[0] in p.name.lower() for p in cache.iterdir())


def can_reach(host: str = WEIGHTS_HOST, port: int = 443, timeout: float = 3.0) -> bool:
    """True when a TCP connection to host:port opens within `timeout` s (DNS included)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=attempt, daemon=True)
    t.start()
    t.join(timeout + 0.5)  # a stuck DNS lookup must not hang the caller
    return bool(result and result[0])


def ensure_weights_available(backbone: Backbone, weights: str | None) -> None:
    """Fail fast when ImageNet weights are requested on a machine that cannot download them."""
    if weights != "imagenet" or backbone.application is None:
        if weights == "imagenet" and backbone.application is None:
            raise ValueError(
                f"Invalid value for argument `weights`. {backbone.name} has no ImageNet weights; "
                "expected 'none' or a weights file. Received: 'imagenet'"
            )
        return
    if _cached_weights(backbone) or can_reach():
        return
    raise WeightsUnavailableError(
        f"ImageNet weights for {backbone.name} must be downloaded from {WEIGHTS_HOST}, which cannot be "
        "reached from this machine (offline?). Either connect to the internet, or set "
        '`weights = "/path/to/weights_notop.h5"` to a local Keras weights file, or `weights = "none"` '
        "to train from scratch."
    )


# ---------------------------------------------------------------- Keras parts (lazy imports)

_PREPROCESS_LAYER: Any = None


def preprocess_layer_class() -> Any:
    """The serialisable Keras layer that applies a backbone's preprocessing inside the model."""
    global _PREPROCESS_LAYER
    if _PREPROCESS_LAYER is not None:
        return _PREPROCESS_LAYER
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="medcompare")
    class ImagePreprocess(keras.layers.Layer):
        """Backbone-specific input preprocessing (keras.applications modes) as a layer."""

        def __init__(self, mode: str = "tf", **kwargs: Any):
            super().__init__(**kwargs)
            if mode not in PREPROCESS_MODES:
                raise ValueError(
                    f"Invalid value for argument `mode`. Expected one of {list(PREPROCESS_MODES)}. Received: {mode!r}"
                )
            self.mode = mode

        def call(self, x: Any) -> Any:
            x = ops.cast(x, "float32")
            if self.mode == "tf":
                return x / 127.5 - 1.0
            if self.mode == "unit":
                return x / 255.0
            if self.mode == "caffe":
                x = ops.flip(x, axis=-1)
                return x - ops.convert_to_tensor([103.939, 116.779, 123.68], "float32")
            if self.mode == "torch":
                mean = ops.convert_to_tensor([0.485, 0.456, 0.406], "float32")
                std = ops.convert_to_tensor([0.229, 0.224, 0.225], "float32")
                return (x / 255.0 - mean) / std
            return x

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "mode": self.mode}

    _PREPROCESS_LAYER = ImagePreprocess
    return ImagePreprocess


def _small_cnn(input_shape: tuple[int, int, int]) -> Any:
    import keras
    from keras import layers

    inp = keras.Input(input_shape)
    x = inp
    for i, filters in enumerate((32, 64)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
        x = layers.BatchNormalization(name=f"bn{i + 1}")(x)
        x = layers.Activation("relu", name=f"relu{i + 1}")(x)
        x = layers.MaxPooling2D(name=f"pool{i + 1}")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name="cam_conv")(x)
    return keras.Model(inp, x, name="smallcnn")


def build_backbone(backbone: Backbone, input_size: int, weights: str | None) -> Any:
    """Feature extractor (include_top=False) as a Keras model, to be nested inside the classifier."""
    import keras

    shape = (input_size, input_size, 3)
    if backbone.application is None:
        model = _small_cnn(shape)
        if weights:
            model.load_weights(weights)
        return model
    ensure_weights_available(backbone, weights)
    builder = getattr(keras.applications, backbone.application)
    try:
        return builder(include_top=False, weights=weights, input_shape=shape, pooling=None)
    except Exception as exc:  # keras raises ValueError/OSError/URLError variants for bad weights
        raise ValueError(f"Could not build {backbone.name} with weights={weights!r} at input {shape}: {exc}") from exc


def build_classifier(
    name: str,
    image_size: int,
    n_classes: int,
    weights: str | None = None,
    dropout: float = 0.2,
    *,
    zero_head: bool = True,
) -> Any:
    """Raw-pixel input -> preprocessing -> nested backbone -> pooling -> dropout -> softmax over classes."""
    import keras
    from keras import layers

    backbone = get_backbone(name)
    if n_classes < 2:
        raise ValueError(f"Invalid value for argument `n_classes`. Expected >= 2. Received: {n_classes}")
    size = backbone.input_size(image_size)
    features = build_backbone(backbone, size, parse_weights(weights))
    inp = keras.Input((size, size, 3), name="image")
    x = preprocess_layer_class()(backbone.preprocess_mode, name="preprocess")(inp)
    x = features(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    # Zero-initialised classifier: every model starts at the uniform prediction (loss log K) instead of
    # confidently wrong logits from large pooled features (ResNet50 from scratch started at loss 2.0 and
    # never fit BreastMNIST at 32 px; with this and gradient clipping it reached 99% training accuracy).
    # float32 output under mixed precision (stable softmax).
    out = layers.Dense(
        n_classes,
        activation="softmax",
        name="predictions",
        kernel_initializer="zeros" if zero_head else "glorot_uniform",
        dtype="float32",
    )(x)
    return keras.Model(inp, out, name=f"{backbone.name.lower()}_classifier")


def nested_backbone(model: Any) -> Any:
    """The nested feature-extractor model inside a classifier built by `build_classifier`."""
    import keras

    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if len(nested) != 1:
        raise ValueError(
            f"Invalid value for argument `model`. Expected a classifier with exactly one nested "
            f"backbone model. Received: {model.name} with {len(nested)}"
        )
    return nested[0]


def count_params(model: Any) -> int:
    """Total parameter count of a Keras model."""
    return int(model.count_params())
