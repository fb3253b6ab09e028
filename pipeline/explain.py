"""Grad-CAM for every backbone in the registry, including the nested-backbone shape of transfer learning.

A classifier from `pipeline.backbones.build_classifier` is ``image -> ImagePreprocess -> <backbone model>
-> pool -> dropout -> predictions``: the layer whose activations Grad-CAM weighs lives *inside* the
nested backbone, so the usual recipe (``Model(model.inputs, [model.get_layer(name).output, model.output])``)
fails, because that layer is not in the outer graph. Here the nested backbone is split instead:

    outer layers before the backbone (preprocessing)  ->  Model(backbone.input, [cam layer, backbone out])
    ->  outer head layers after the backbone, applied one by one inside a GradientTape

The class score is the pre-softmax logit (as in Selvaraju et al.) when the last layer is a softmax Dense,
so a confident model does not give vanishing gradients. Flat models (the CAM layer in the outer graph)
work too. The gradient function is compiled once per (model, layer) and kept on the model object.

TensorFlow/Keras are imported lazily: importing this module costs only NumPy and OpenCV.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from pipeline.preprocess import resize_square

_CACHE_ATTR = "_medcompare_grad_cam_fns"  # set with object.__setattr__: invisible to Keras tracking/saving
_LOCK = threading.Lock()


@dataclass(frozen=True)
class GradCam:
    """A Grad-CAM map with the forward pass it came from."""

    heat: np.ndarray  # HxW float32 in [0, 1], at the size of the image passed in
    probs: np.ndarray  # (K,) float32 model output for the image
    class_index: int  # the class whose score was explained
    layer_name: str


def grad_cam(
    model: Any, image_uint8_rgb: np.ndarray, class_index: int | None = None, layer_name: str | None = None
) -> np.ndarray:
    """Grad-CAM heat map (HxW float32 in [0, 1], the image's own size) of `class_index` (default: argmax)."""
    return grad_cam_details(model, image_uint8_rgb, class_index, layer_name).heat


def grad_cam_details(
    model: Any, image_uint8_rgb: np.ndarray, class_index: int | None = None, layer_name: str | None = None
) -> GradCam:
    """Like `grad_cam`, also returning the probabilities and the class explained."""
    image = _as_rgb(image_uint8_rgb)
    size = _input_size(model)
    n_classes = int(model.output_shape[-1])
    if class_index is not None:
        if (
            isinstance(class_index, bool)
            or not isinstance(class_index, (int, np.integer))
            or not 0 <= int(class_index) < n_classes
        ):
            raise ValueError(
                f"Invalid value for argument `class_index`. Expected None or an int in "
                f"[0, {n_classes - 1}]. Received: {class_index!r}"
            )
    if getattr(model, "is_onnx", False):  # no gradients through onnxruntime: occlusion sensitivity instead
        return occlusion_sensitivity(model, image, class_index)
    layer = layer_name or default_cam_layer(model)
    fn = _cam_function(model, layer)
    x = resize_square(image, size).astype(np.float32)[None]
    cam, probs, used = fn(x, np.int32(-1 if class_index is None else int(class_index)))
    heat = _normalise(np.asarray(cam)[0], image.shape[:2])
    return GradCam(heat, np.asarray(probs)[0].astype(np.float32), int(used), layer)


def occlusion_sensitivity(
    predict: Any, image_uint8_rgb: np.ndarray, class_index: int | None = None, grid: int = 8
) -> GradCam:
    """Occlusion map for a model without gradients (ONNX): the drop in the class probability when each cell of
    a `grid` x `grid` partition is painted gray (Zeiler & Fergus), one batched call, in [0, 1] at the image size.

    `predict` maps a float32 (n, S, S, 3) RGB 0..255 batch to probabilities and has `input_shape`.
    """
    image = _as_rgb(image_uint8_rgb)
    size = _input_size(predict)
    x = resize_square(image, size).astype(np.float32)
    edges = np.linspace(0, size, grid + 1).round().astype(int)
    batch = [x]
    for i in range(grid):
        for j in range(grid):
            view = x.copy()
            view[edges[i] : edges[i + 1], edges[j] : edges[j + 1]] = 127.5
            batch.append(view)
    probs = np.asarray(predict(np.stack(batch)), np.float32)
    used = int(np.argmax(probs[0]) if class_index is None else class_index)
    drop = (probs[0, used] - probs[1:, used]).reshape(grid, grid)
    up = cv2.resize(drop.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    return GradCam(_normalise(up, image.shape[:2]), probs[0], used, f"occlusion {grid}x{grid}")


def overlay(
    image_rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45, colormap: int = cv2.COLORMAP_JET
) -> np.ndarray:
    """The image with the heat map blended on top in `colormap` (alpha = heat-map opacity), uint8 RGB."""
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"Invalid value for argument `alpha`. Expected a number in [0, 1]. Received: {alpha!r}")
    image = _as_rgb(image_rgb)
    h = np.asarray(heat, dtype=np.float32)
    if h.ndim != 2 or h.size == 0:
        raise ValueError(
            f"Invalid value for argument `heat`. Expected a non-empty HxW array. Received: shape {tuple(h.shape)}"
        )
    if h.shape != image.shape[:2]:
        h = cv2.resize(h, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    h8 = np.clip(np.nan_to_num(h) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    colour = cv2.cvtColor(cv2.applyColorMap(h8, colormap), cv2.COLOR_BGR2RGB)
    out = (1.0 - float(alpha)) * image.astype(np.float32) + float(alpha) * colour.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def default_cam_layer(model: Any) -> str:
    """The registry's CAM layer for this classifier, else the backbone's last layer with a 4-D output."""
    from pipeline.backbones import BACKBONES, nested_backbone

    try:
        inner = nested_backbone(model)
    except ValueError:
        inner = model
    names = {layer.name for layer in inner.layers}
    prefix = str(model.name).removesuffix("_classifier").lower()
    for entry in BACKBONES.values():
        if entry.name.lower() == prefix and entry.cam_layer in names:
            return entry.cam_layer
    for layer in reversed(inner.layers):
        if _is_feature_map(layer):
            return _deepest_feature_layer(layer).name
    raise ValueError(
        f"Invalid value for argument `model`. Expected a convolutional model with a layer "
        f"producing a 4-D feature map. Received: {model.name} with none"
    )


def clear_cache(model: Any) -> None:
    """Forget the compiled Grad-CAM functions kept on `model`."""
    with _LOCK:
        if hasattr(model, _CACHE_ATTR):
            object.__delattr__(model, _CACHE_ATTR)


# ---------------------------------------------------------------- internals


def _as_rgb(image: np.ndarray) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(
            f"Invalid value for argument `image_uint8_rgb`. Expected a non-empty HxWx3 RGB (or HxW "
            f"gray) array. Received: shape {tuple(arr.shape)}"
        )
    if arr.dtype != np.uint8:
        raise ValueError(
            f"Invalid value for argument `image_uint8_rgb`. Expected dtype uint8 (0..255 pixels). Received: {arr.dtype}"
        )
    return arr


def _input_size(model: Any) -> int:
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[1] is None or shape[1] != shape[2] or shape[3] != 3:
        raise ValueError(
            f"Invalid value for argument `model`. Expected a square RGB input (None, S, S, 3). "
            f"Received: input shape {shape}"
        )
    return int(shape[1])


def _is_feature_map(layer: Any) -> bool:
    try:
        return len(layer.output.shape) == 4
    except (AttributeError, ValueError):
        return False


def _deepest_feature_layer(layer: Any) -> Any:
    """A nested model with a 4-D output -> its own last 4-D layer, recursively (the map Grad-CAM should weigh)."""
    import keras

    while isinstance(layer, keras.Model):
        inner = [
            sub
            for sub in reversed(layer.layers)
            if _is_feature_map(sub) and not isinstance(sub, keras.layers.InputLayer)
        ]
        if not inner:
            break
        layer = inner[0]
    return layer


def _nested_path(model: Any, layer_name: str) -> list[Any] | None:
    """The nested models below `model` leading to the one that holds `layer_name` ([] when `model` does)."""
    import keras

    if layer_name in {layer.name for layer in model.layers if not isinstance(layer, keras.Model)}:
        return []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            below = _nested_path(layer, layer_name)
            if below is not None:
                return [layer, *below]
    return [] if layer_name in {layer.name for layer in model.layers} else None


def _normalise(cam: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """ReLU'd map -> the image's size -> [0, 1] (all zeros when the class has no positive evidence)."""
    cam = np.nan_to_num(np.asarray(cam, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    cam = np.maximum(cam, 0.0)
    height, width = out_hw
    up = cv2.resize(cam, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    up = np.maximum(up.reshape(height, width), 0.0)
    peak = float(up.max())
    if not np.isfinite(peak) or peak <= 1e-12:
        return np.zeros((height, width), np.float32)
    return np.clip(up / peak, 0.0, 1.0).astype(np.float32)


def _split(model: Any, layer_name: str) -> tuple[list[Any], Any, list[Any]]:
    """(outer layers before the feature model, a model -> [CAM activations, features], outer head layers)."""
    import keras

    outer = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    nested = [i for i, layer in enumerate(outer) if isinstance(layer, keras.Model)]
    for i in nested:
        # the CAM layer may sit several models deep (an imported Sequential around a backbone model): every
        # level above the one holding it is applied layer by layer, before and after
        found = _nested_path(outer[i], layer_name)
        if found is None:
            continue
        pre, post, inner = list(outer[:i]), list(outer[i + 1 :]), outer[i]
        for child in found:
            layers = [layer for layer in inner.layers if not isinstance(layer, keras.layers.InputLayer)]
            j = layers.index(child)
            pre, post, inner = pre + layers[:j], layers[j + 1 :] + post, child
        target = inner.get_layer(layer_name)
        if not _is_feature_map(target):
            raise ValueError(
                f"Invalid value for argument `layer_name`. Expected a layer with a 4-D feature "
                f"map output. Received: {layer_name!r} with output {target.output.shape}"
            )
        cam_model = keras.Model(inner.inputs, [target.output, inner.output], name=f"{inner.name}_gradcam")
        return pre, cam_model, post
    names = {layer.name for layer in outer}
    if layer_name in names:  # flat model: the classic recipe, stopping before the last layer
        target = model.get_layer(layer_name)
        if not _is_feature_map(target):
            raise ValueError(
                f"Invalid value for argument `layer_name`. Expected a layer with a 4-D feature "
                f"map output. Received: {layer_name!r} with output {target.output.shape}"
            )
        cam_model = keras.Model(model.inputs, [target.output, outer[-1].input], name=f"{model.name}_gradcam")
        return [], cam_model, outer[-1:]
    inner_names = [n for i in nested for n in (layer.name for layer in outer[i].layers)]
    raise ValueError(
        f"Invalid value for argument `layer_name`. Expected a layer of {model.name} or of its nested "
        f"backbone (e.g. {inner_names[-3:] or sorted(names)[-3:]}). Received: {layer_name!r}"
    )


def _logits_or_output(layer: Any, h: Any) -> tuple[Any, Any]:
    """(score to explain, probabilities) of the last layer: pre-softmax logits when it is a softmax Dense."""
    import keras
    from keras import ops

    if isinstance(layer, keras.layers.Dense) and layer.activation is keras.activations.softmax:
        logits = ops.matmul(h, layer.kernel)
        if layer.bias is not None:
            logits = logits + layer.bias
        return logits, ops.softmax(logits, axis=-1)
    out = layer(h, training=False)
    return out, out


def _cam_function(model: Any, layer_name: str) -> Any:
    """The compiled (image batch, class index) -> (cam, probs, class used) function, built once per layer."""
    with _LOCK:
        fns = model.__dict__.get(_CACHE_ATTR)
        if fns is None:
            fns = {}
            object.__setattr__(model, _CACHE_ATTR, fns)
        if layer_name in fns:
            return fns[layer_name]
        fn = _build_cam_function(model, layer_name)
        fns[layer_name] = fn
        return fn


def _build_cam_function(model: Any, layer_name: str) -> Any:
    import tensorflow as tf

    pre, cam_model, head = _split(model, layer_name)
    size = _input_size(model)
    body, last = head[:-1], head[-1] if head else None

    @tf.function(input_signature=[tf.TensorSpec([1, size, size, 3], tf.float32), tf.TensorSpec([], tf.int32)])
    def fn(x: Any, class_index: Any) -> tuple[Any, Any, Any]:
        for layer in pre:
            x = layer(x, training=False)
        with tf.GradientTape() as tape:
            activations, h = cam_model(x, training=False)
            tape.watch(activations)
            for layer in body:
                h = layer(h, training=False)
            if last is None:
                score, probs = h, h
            else:
                score, probs = _logits_or_output(last, h)
            used = tf.where(class_index < 0, tf.argmax(probs[0], output_type=tf.int32), class_index)
            target = score[:, used]
        grads = tape.gradient(target, activations)
        if grads is None:  # the score does not depend on the layer (a disconnected graph)
            grads = tf.zeros_like(activations)
        weights = tf.reduce_mean(grads, axis=(1, 2))  # global-average-pooled gradients: one weight per channel
        cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", activations, weights))
        return cam, probs, used

    return fn
