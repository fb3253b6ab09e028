"""tf.data input pipelines: parallel decode from any supported file, caching, augmentation, prefetch.

Decoding goes through `pipeline.preprocess.load_image` (the same code live inference uses), so the
pixels a model was trained on and the pixels it sees in the dashboard are decoded identically. OpenCV
releases the GIL while decoding, so the parallel map scales across cores.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from pipeline.preprocess import ImageDecodeError, load_image, resize_square

AUTOTUNE = -1  # tf.data.AUTOTUNE


def decode_resized(path: str, size: int, crop: str = "none") -> tuple[np.ndarray, bool]:
    """Decode one file (optionally ultrasound-cropped) to size x size RGB uint8; (zeros, False) on failure."""
    try:
        rgb = load_image(path).rgb
        if crop != "none":
            from pipeline.segment import apply_crop

            rgb = apply_crop(rgb, crop)
        return resize_square(rgb, size), True
    except (ImageDecodeError, OSError):
        return np.zeros((size, size, 3), np.uint8), False


DECODE_CHUNK = 32  # files decoded per Python call (see image_dataset)


def image_dataset(paths: Sequence[str], size: int, labels: Sequence[int] | None = None, crop: str = "none") -> Any:
    """Unbatched dataset of (image uint8 HxWx3, ok flag[, label]) decoded in parallel, in order.

    Files are decoded DECODE_CHUNK at a time per `tf.numpy_function` call, chunks in parallel: one call per
    file cost about 0.2 ms of CPU per image on top of a 0.5 ms PNG decode (bench/RESULTS.md, item 1).
    """
    import tensorflow as tf

    def load(chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        images = np.empty((len(chunk), size, size, 3), np.uint8)
        ok = np.empty(len(chunk), np.bool_)
        for i, p in enumerate(chunk):
            images[i], ok[i] = decode_resized(p.decode("utf-8"), size, crop)
        return images, ok

    def tf_load(p: Any) -> tuple[Any, Any]:
        img, ok = tf.numpy_function(load, [p], (tf.uint8, tf.bool), stateful=False)
        return tf.ensure_shape(img, (None, size, size, 3)), tf.ensure_shape(ok, (None,))

    ds = tf.data.Dataset.from_tensor_slices(np.asarray([str(p) for p in paths], dtype=str))
    ds = ds.batch(DECODE_CHUNK).map(tf_load, num_parallel_calls=AUTOTUNE, deterministic=True).unbatch()
    if labels is not None:
        lab = tf.data.Dataset.from_tensor_slices(np.asarray(labels, np.int32))
        ds = tf.data.Dataset.zip((ds, lab)).map(lambda x, y: (x[0], x[1], y))
    return ds


def augmentation_model(names: Sequence[str], seed: int) -> Any:
    """Keras preprocessing layers for the named augmentations (identity when empty)."""
    import keras
    from keras import layers

    table = {
        "flip": lambda: layers.RandomFlip("horizontal", seed=seed),
        "vflip": lambda: layers.RandomFlip("vertical", seed=seed + 1),
        "rotate": lambda: layers.RandomRotation(0.08, fill_mode="reflect", seed=seed + 2),
        "zoom": lambda: layers.RandomZoom(0.1, fill_mode="reflect", seed=seed + 3),
        "translate": lambda: layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 4),
        "contrast": lambda: layers.RandomContrast(0.15, value_range=(0, 255), seed=seed + 5),
        "brightness": lambda: layers.RandomBrightness(0.1, value_range=(0, 255), seed=seed + 6),
    }
    unknown = [n for n in names if n not in table]
    if unknown:
        raise ValueError(f"Invalid value for argument `augment`. Expected names among {sorted(table)}. "
                         f"Received: {unknown}")
    return keras.Sequential([table[n]() for n in names], name="augmentation")


def training_dataset(images: Any, labels: np.ndarray, batch_size: int, augment: Sequence[str], seed: int,
                     shuffle: bool = True) -> Any:
    """Batched (image float32, label) dataset from decoded images, shuffled and augmented per epoch."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int32)))
    if shuffle:
        ds = ds.shuffle(min(len(labels), 10_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if augment:
        aug = augmentation_model(augment, seed)
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def decode_all(paths: Sequence[str], size: int, crop: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Decode every path in parallel into one (n, size, size, 3) uint8 array and an ok mask."""
    import tensorflow as tf

    n = len(paths)
    images = np.zeros((n, size, size, 3), np.uint8)
    ok = np.zeros(n, bool)
    ds = image_dataset(paths, size, crop=crop).batch(256).prefetch(AUTOTUNE)
    i = 0
    for img, flag in ds.as_numpy_iterator():
        images[i:i + len(img)] = img
        ok[i:i + len(img)] = flag
        i += len(img)
    del tf
    return images, ok
