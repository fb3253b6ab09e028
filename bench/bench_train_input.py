"""Item 2: training input pipeline, images/s of one epoch: our tf.data pipeline vs ImageDataGenerator.

Same model object, same images, same batch size, same augmentation (horizontal flip, rotation up to
+-28.8 degrees, zoom +-10 %, reflect fill), interleaved in one process:
- ours: `pipeline.tfdata.training_dataset` over the images decoded once into memory (`decode_all`, as
  `pipeline.train` does; the one-time decode is reported separately and as "ours incl. decode");
- IDG dir: legacy `ImageDataGenerator(...).flow_from_directory` + `model.fit`, decoding every epoch, the
  source projects' way (Keras 3 only ships it as `keras.src.legacy.preprocessing.image`);
- IDG flow: the same generator's `.flow(x, y)` over the same in-memory array (augmentation cost only);
- ceiling: the same epoch from memory with no augmentation and no decode (the model's own speed).
Models: Tiny (a strided conv + pooling, nearly free: the input-bound regime), SmallCNN, MobileNetV2.
Ratios are medians of per-round ratios; CPU ms/image is the process's CPU time (all threads).
The input pipelines alone (one epoch, no model) are timed too.

Run: python -m bench.bench_train_input [--n-images 5000 --size 96 --repeats 3]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench import common as c

AUGMENT = ("flip", "rotate", "zoom")
ROTATION_FRACTION = 0.08  # pipeline.tfdata: RandomRotation(0.08) = +-0.08 of a full turn
ZOOM = 0.1  # pipeline.tfdata: RandomZoom(0.1)
TINY = "Tiny"  # not a registry backbone: a near-free model that shows the input-bound regime
DEFAULT_BACKBONES = (TINY, "SmallCNN", "MobileNetV2")


def idg(**extra: Any) -> Any:
    """A legacy ImageDataGenerator with our augmentation's parameters."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    return ImageDataGenerator(horizontal_flip=True, rotation_range=ROTATION_FRACTION * 360, zoom_range=ZOOM,
                              fill_mode="reflect", **extra)


def idg_dir(root: Path, size: int, batch_size: int, seed: int = 0) -> Any:
    """Augmenting `flow_from_directory` iterator over class folders (sparse labels, shuffled)."""
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Found N images" on every call
        return idg().flow_from_directory(str(root), target_size=(size, size), batch_size=batch_size,
                                         class_mode="sparse", shuffle=True, seed=seed)


def labels_of(paths: Sequence[str]) -> np.ndarray:
    """Class index from the `class_<k>` folder of each path."""
    return np.array([int(Path(p).parent.name.split("_")[-1]) for p in paths], np.int32)


def tiny_model(size: int) -> Any:
    """A deliberately cheap classifier (strided conv + pooling): its epoch time is nearly all input pipeline."""
    import keras
    from keras import layers

    inp = keras.Input((size, size, 3))
    x = layers.Rescaling(1 / 255)(inp)
    x = layers.Conv2D(8, 3, strides=4, activation="relu")(x)
    x = layers.GlobalAveragePooling2D()(x)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(x), name="tiny")


def bench_backbone(name: str, root: Path, images: np.ndarray, labels: np.ndarray, batch_size: int,
                   repeats: int) -> dict[str, Any]:
    """Interleaved one-epoch timings of the contenders for one backbone; returns one result row."""
    import keras
    import tensorflow as tf

    from pipeline.backbones import build_classifier
    from pipeline.tfdata import training_dataset
    from pipeline.train import make_train_step, run_epoch

    size = images.shape[1]
    keras.utils.set_random_seed(0)
    model = tiny_model(size) if name == TINY else build_classifier(name, size, 2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    n = len(labels)
    x = images.astype(np.float32)
    ours_ds = training_dataset(images, labels, batch_size, AUGMENT, seed=0)
    # The model's own ceiling: the same epoch from memory, no augmentation, no decode.
    ceiling_ds = tf.data.Dataset.from_tensor_slices((x, labels)).batch(batch_size).cache().prefetch(2)
    ours_step = make_train_step(model, keras.optimizers.Adam(1e-3), None, 2)  # pipeline.train's own step
    fns = {
        "ours": lambda: run_epoch(ours_step, ours_ds),
        "IDG dir": lambda: model.fit(idg_dir(root, size, batch_size), epochs=1, verbose=0),
        "IDG flow": lambda: model.fit(idg().flow(x, labels, batch_size=batch_size, shuffle=True, seed=0),
                                      epochs=1, verbose=0),
        "ceiling": lambda: model.fit(ceiling_ds, epochs=1, verbose=0, shuffle=False),
    }
    # Warm-up: trace the train step for full and partial batches and both label dtypes; fill the cache.
    small = images[:batch_size + 1]
    run_epoch(ours_step, training_dataset(small, labels[:batch_size + 1], batch_size, AUGMENT, seed=0))
    model.fit(idg().flow(small.astype(np.float32), labels[:batch_size + 1].astype(np.float32),
                         batch_size=batch_size), epochs=1, verbose=0)
    fns["ceiling"]()
    t = c.interleaved(fns, repeats, warmup=0)
    med = {k: n / t.median_wall(k) for k in fns}

    def per_round(a: str, b: str) -> float:  # median over rounds of (a's throughput / b's)
        return c.median([wb / wa for wa, wb in zip(t.wall[a], t.wall[b])])

    row = {"backbone": name, "input px": size, "images": n,
           "ours img/s": med["ours"], "IDG dir img/s": med["IDG dir"], "IDG flow img/s": med["IDG flow"],
           "ceiling img/s": med["ceiling"],
           "ours/IDG dir": per_round("ours", "IDG dir"), "ours/IDG flow": per_round("ours", "IDG flow"),
           "max possible ours/IDG dir": per_round("ceiling", "IDG dir"), "ours/ceiling": per_round("ours", "ceiling"),
           "CPU ms/img ours": 1000 * t.median_cpu("ours") / n, "CPU ms/img IDG dir": 1000 * t.median_cpu("IDG dir") / n,
           "CPU ms/img IDG flow": 1000 * t.median_cpu("IDG flow") / n,
           "CPU ms/img ceiling": 1000 * t.median_cpu("ceiling") / n,
           "CPU IDG dir/ours": c.ratio(t.median_cpu("IDG dir"), t.median_cpu("ours")),
           "wall": t.wall, "cpu": t.cpu}
    fns.clear()  # drops the closures over the model and datasets before the session is cleared
    keras.backend.clear_session()
    return row


def first_epoch(name: str, root: Path, images: np.ndarray, labels: np.ndarray, batch_size: int) -> dict[str, Any]:
    """Wall seconds of a fresh model's first epoch, tracing included: what a user waits for per model.

    ours: `pipeline.train`'s compiled step over `training_dataset` (Grappler off on CPU, as in training);
    Keras: `model.compile` + `model.fit` over ImageDataGenerator.flow_from_directory, the source projects' way.
    """
    import time

    import keras

    from pipeline.backbones import build_classifier
    from pipeline.tfdata import training_dataset
    from pipeline.train import _cpu_graph_options, make_train_step, run_epoch

    size = images.shape[1]
    out: dict[str, Any] = {"backbone": name, "images": len(labels)}
    keras.utils.set_random_seed(0)
    model = build_classifier(name, size, 2)
    t0 = time.perf_counter()
    with _cpu_graph_options():
        run_epoch(make_train_step(model, keras.optimizers.Adam(1e-3), None, 2),
                  training_dataset(images, labels, batch_size, AUGMENT, seed=0))
    out["ours first epoch s"] = time.perf_counter() - t0
    keras.backend.clear_session()
    keras.utils.set_random_seed(0)
    model = build_classifier(name, size, 2)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(idg_dir(root, size, batch_size), epochs=1, verbose=0)
    out["Keras fit + IDG dir first epoch s"] = time.perf_counter() - t0
    out["speed-up"] = c.ratio(out["Keras fit + IDG dir first epoch s"], out["ours first epoch s"])
    keras.backend.clear_session()
    return out


def input_only(root: Path, images: np.ndarray, labels: np.ndarray, batch_size: int,
               repeats: int) -> list[dict[str, Any]]:
    """Images/s of one augmented epoch of each input pipeline alone (no model), interleaved."""
    from pipeline.tfdata import training_dataset

    size = images.shape[1]
    ours_ds = training_dataset(images, labels, batch_size, AUGMENT, seed=0)

    def ours() -> int:
        return sum(int(x.shape[0]) for x, _ in ours_ds)

    def idg_d() -> int:
        it = idg_dir(root, size, batch_size)
        return sum(len(it[i][0]) for i in range(len(it)))

    def idg_f() -> int:
        it = idg().flow(images.astype(np.float32), labels, batch_size=batch_size, shuffle=True, seed=0)
        return sum(len(it[i][0]) for i in range(len(it)))

    t = c.interleaved({"ours": ours, "IDG dir": idg_d, "IDG flow": idg_f}, repeats, warmup=1)
    n = len(labels)
    return [{"input pipeline (augmented epoch)": k, "images/s": n / t.median_wall(k),
             "CPU ms/image": 1000 * t.median_cpu(k) / n, "wall s (min..max)": c.spread(t.wall[k])} for k in t.wall]


def run(n_images: int, size: int, batch_size: int, repeats: int, backbones: Sequence[str],
        root: Path | None = None) -> dict[str, Any]:
    """Generate (once) the PNGs, decode them once, time input pipelines alone, then each backbone's epoch."""
    import time

    c.quiet_tensorflow()
    from pipeline.tfdata import decode_all

    folder = c.png_folder(n_images, size, root=root)
    paths = c.png_paths(folder)
    labels = labels_of(paths)
    decode_all(paths[:2], size)  # TensorFlow start-up is not decoding
    t0 = time.perf_counter()
    images, ok = decode_all(paths, size)
    decode_s = time.perf_counter() - t0
    if not ok.all():
        raise RuntimeError(f"{int((~ok).sum())} benchmark images failed to decode")
    inputs = input_only(folder, images, labels, batch_size, repeats)
    rows = []
    for name in backbones:
        row = bench_backbone(name, folder, images, labels, batch_size, repeats)
        ours_s = len(labels) / row["ours img/s"]
        row["ours incl. decode img/s"] = len(labels) / (ours_s + decode_s)
        row["ours incl. decode/IDG dir"] = c.ratio(row["ours incl. decode img/s"], row["IDG dir img/s"])
        row["target >=1.5x"] = c.verdict(row["ours/IDG dir"], 1.5)
        rows.append(row)
        print(f"  {name}: ours {row['ours img/s']:.1f} img/s, IDG dir {row['IDG dir img/s']:.1f}, "
              f"IDG flow {row['IDG flow img/s']:.1f}", flush=True)
    firsts = []
    for name in backbones:
        if name != TINY:
            firsts.append(first_epoch(name, folder, images, labels, batch_size))
            print(f"  {name} first epoch: ours {firsts[-1]['ours first epoch s']:.1f} s, Keras fit + IDG "
                  f"{firsts[-1]['Keras fit + IDG dir first epoch s']:.1f} s", flush=True)
    return {"settings": {"n_images": n_images, "size": size, "batch_size": batch_size, "repeats": repeats,
                         "augment": list(AUGMENT), "decode_all_seconds": decode_s, "folder": str(folder)},
            "input_only": inputs, "backbones": rows, "first_epoch": firsts}


TABLE_COLUMNS = ("backbone", "input px", "images", "ours img/s", "IDG dir img/s", "IDG flow img/s", "ceiling img/s",
                 "ours/IDG dir", "max possible ours/IDG dir", "ours/IDG flow", "ours/ceiling", "ours incl. decode/IDG dir",
                 "CPU ms/img ours", "CPU ms/img IDG dir", "CPU ms/img IDG flow", "CPU ms/img ceiling", "CPU IDG dir/ours",
                 "target >=1.5x")


def report(result: dict[str, Any]) -> str:
    """Markdown tables of a `run` result."""
    s = result["settings"]
    return (f"Training input: {s['n_images']} PNGs {s['size']}x{s['size']}, batch {s['batch_size']}, augment "
            f"{'+'.join(s['augment'])}, {s['repeats']} interleaved repeats (medians); one-time decode_all "
            f"{s['decode_all_seconds']:.1f} s\n\n"
            + c.table(result["input_only"]) + "\n\n" + c.table(result["backbones"], TABLE_COLUMNS)
            + ("\n\nFirst epoch of a fresh model, tracing included (one run each):\n\n" + c.table(result["first_epoch"])
               if result.get("first_epoch") else ""))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run, print the tables, save bench/out/train_input.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=5000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backbones", default=",".join(DEFAULT_BACKBONES))
    ap.add_argument("--root", type=Path, default=None, help="where to generate the PNGs (default .cache/bench)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.n_images, args.size, args.batch_size, args.repeats,
                 [b.strip() for b in args.backbones.split(",") if b.strip()], args.root)
    print(report(result), flush=True)
    if not args.no_save:
        c.save_result("train_input", {"command": "python -m bench.bench_train_input " + " ".join(argv or []),
                                      **result})
    return result


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(__import__("sys").argv[1:])
