"""tf.data input pipelines: parallel decode from any supported file, caching, augmentation, prefetch.

Decoding goes through `pipeline.preprocess.load_image` (the same code live inference uses), so the
pixels a model was trained on and the pixels it sees in the dashboard are decoded identically. OpenCV
releases the GIL while decoding, so the parallel map scales across cores.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

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
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def native_png_eligible(paths: Sequence[str], size: int) -> bool:
    """True when every path is an 8-bit grayscale or RGB PNG of exactly `size` x `size` (headers only).

    For such files TensorFlow's own PNG decoder gives the same pixels as `load_image` (no alpha, palette,
    16-bit or resize to reconcile; tested), at a third of the CPU cost: prediction then runs within a few
    percent of the model's in-memory ceiling (bench/RESULTS.md, item 1). Anything else takes our decoder.
    """
    if not len(paths):
        return False
    for p in paths:
        if not str(p).lower().endswith(".png"):
            return False
        try:
            with open(p, "rb") as fh:
                head = fh.read(29)
        except OSError:
            return False
        # signature, IHDR length + type, width, height, bit depth, colour type (0 gray, 2 RGB), ..., interlace
        if len(head) < 29 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
            return False
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        if (width, height) != (size, size) or head[24] != 8 or head[25] not in (0, 2):
            return False
    return True


def image_dataset(
    paths: Sequence[str], size: int, labels: Sequence[int] | None = None, crop: str = "none", native: bool = True
) -> Any:
    """Unbatched dataset of (image uint8 HxWx3, ok flag[, label]) decoded in parallel, in order.

    Files are decoded DECODE_CHUNK at a time per `tf.numpy_function` call, chunks in parallel: one call per
    file cost about 0.2 ms of CPU per image on top of a 0.5 ms PNG decode (bench/RESULTS.md, item 1).
    With `native` and files that `native_png_eligible` accepts, TensorFlow decodes them itself; a file
    that then fails to decode raises `tf.errors.InvalidArgumentError` (callers retry with native=False,
    which marks it not-ok instead).
    """
    import tensorflow as tf

    if native and crop == "none" and native_png_eligible(paths, size):

        def native_load(p: Any) -> tuple[Any, Any]:
            img = tf.io.decode_png(tf.io.read_file(p), channels=3)
            return tf.ensure_shape(img, (size, size, 3)), tf.constant(True)

        ds = tf.data.Dataset.from_tensor_slices(np.asarray([str(p) for p in paths], dtype=str))
        ds = ds.map(native_load, num_parallel_calls=AUTOTUNE, deterministic=True)
        return _with_labels(ds, labels)

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
    return _with_labels(ds, labels)


def _with_labels(ds: Any, labels: Sequence[int] | None) -> Any:
    import tensorflow as tf

    if labels is None:
        return ds
    lab = tf.data.Dataset.from_tensor_slices(np.asarray(labels, np.int32))
    return tf.data.Dataset.zip((ds, lab)).map(lambda x, y: (x[0], x[1], y))


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
        raise ValueError(
            f"Invalid value for argument `augment`. Expected names among {sorted(table)}. Received: {unknown}"
        )
    return keras.Sequential([table[n]() for n in names], name="augmentation")


def training_dataset(
    images: Any,
    labels: np.ndarray,
    batch_size: int,
    augment: Sequence[str],
    seed: int,
    shuffle: bool = True,
    *,
    deterministic: bool = False,
) -> Any:
    """Batched (image float32, label) dataset from decoded images, shuffled and augmented per epoch.

    With `deterministic`, augmentation runs on one thread: its random state advances in batch order, so
    two runs with the same seed see the same pixels (in parallel, batches race for the generator).
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((images, np.asarray(labels, np.int32)))
    if shuffle:
        ds = ds.shuffle(min(len(labels), 10_000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=AUTOTUNE)
    if augment:
        aug = augmentation_model(augment, seed)
        ds = ds.map(lambda x, y: (aug(x, training=True), y), num_parallel_calls=None if deterministic else AUTOTUNE)
    return ds.prefetch(AUTOTUNE)


def decoded_batches(
    paths: Sequence[str], size: int, batch_size: int, crop: str = "none", as_float: bool = False
) -> Iterator[tuple[int, Any, np.ndarray]]:
    """(offset, image batch tensor, ok flags) over `paths` in order, decoded in parallel and prefetched.

    The native PNG path is tried first; if a file turns out damaged there, decoding starts over with our
    decoder, which marks it not-ok. Callers write results by offset, so batches seen twice are overwritten.
    """
    import tensorflow as tf

    for native in (True, False):
        ds = image_dataset(paths, size, crop=crop, native=native).batch(batch_size)
        if as_float:
            ds = ds.map(lambda x, ok: (tf.cast(x, tf.float32), ok), num_parallel_calls=AUTOTUNE)
        offset = 0
        try:
            for x, flag in ds.prefetch(AUTOTUNE):
                yield offset, x, flag.numpy()
                offset += len(flag)
            return
        except tf.errors.InvalidArgumentError:  # raised by the dataset (a damaged PNG), not by the caller
            if not native:
                raise


def decode_all(paths: Sequence[str], size: int, crop: str = "none") -> tuple[np.ndarray, np.ndarray]:
    """Decode every path in parallel into one (n, size, size, 3) uint8 array and an ok mask."""
    n = len(paths)
    images = np.zeros((n, size, size, 3), np.uint8)
    ok = np.zeros(n, bool)
    for offset, img, flag in decoded_batches(paths, size, 256, crop=crop):
        images[offset : offset + len(flag)] = img.numpy()
        ok[offset : offset + len(flag)] = flag
    return images, ok
