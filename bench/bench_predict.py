"""Item 1: batch prediction throughput from PNG files on disk, ours vs the Keras ways, vs the model's ceiling.

Contenders, same model object, same files, same batch size, interleaved in one process:
- ours: `pipeline.predict.predict_paths` (tf.data parallel decode + prefetch + one compiled step);
- ImageDataGenerator: `flow_from_directory` + `model.predict`, the source projects' way. Keras 3 no longer
  exports it (`keras.preprocessing.image.ImageDataGenerator` is gone); it survives, deprecated, as
  `keras.src.legacy.preprocessing.image.ImageDataGenerator`, which is what runs here;
- image_dataset_from_directory: `keras.utils.image_dataset_from_directory` + `model.predict`, the
  replacement Keras recommends (TensorFlow-native PNG decode);
- ceiling: the faster of two in-memory runs, no I/O and no decode: our compiled step over the decoded
  array, and `model.predict` over the same array.
Ratios are medians of per-round ratios (the contenders of a round run back to back). CPU ms/image is
the whole process's CPU time (all threads), which other processes' load does not inflate the way it
inflates wall time; on an idle machine whose cores the model saturates, the throughput ratio tends to the
CPU ratio.
The input pipelines alone (no model) are timed too. ceiling/IDG is the most any input pipeline could win
over the baseline for that model on this machine (ours = ceiling).

Run: python -m bench.bench_predict [--n-images 5000 --size 96 --repeats 3]
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

DEFAULT_BACKBONES = ("MobileNetV2", "ResNet50", "EfficientNetB0", "SmallCNN")
IDG = "ImageDataGenerator"
IDFD = "image_dataset_from_directory"
STEP = "in-memory step"  # our compiled step over batches already decoded in memory
PREDICT = "in-memory predict"  # model.predict over the same in-memory array


def idg_iterator(root: Path, size: int, batch_size: int) -> Any:
    """The legacy Keras `flow_from_directory` iterator over `root` (class folders), in file order."""
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    with contextlib.redirect_stdout(io.StringIO()):  # it prints "Found N images" on every call
        return ImageDataGenerator().flow_from_directory(str(root), target_size=(size, size), batch_size=batch_size,
                                                        class_mode=None, shuffle=False)


def idfd_dataset(root: Path, size: int, batch_size: int) -> Any:
    """`keras.utils.image_dataset_from_directory` over `root`, unlabelled, in file order."""
    import keras

    return keras.utils.image_dataset_from_directory(str(root), labels=None, image_size=(size, size),
                                                    batch_size=batch_size, shuffle=False, verbose=False)


def input_only(root: Path, paths: Sequence[str], size: int, batch_size: int, repeats: int) -> list[dict[str, Any]]:
    """Images/s of each input pipeline alone (decode + batch, no model), interleaved."""
    import tensorflow as tf

    from pipeline.tfdata import AUTOTUNE, image_dataset

    def ours() -> int:
        ds = image_dataset(paths, size).batch(batch_size).map(
            lambda x, ok: (tf.cast(x, tf.float32), ok), num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)
        return sum(int(x.shape[0]) for x, _ in ds)

    def idg() -> int:
        it = idg_iterator(root, size, batch_size)
        return sum(len(it[i]) for i in range(len(it)))

    def idfd() -> int:
        return sum(int(x.shape[0]) for x in idfd_dataset(root, size, batch_size))

    t = c.interleaved({"ours": ours, IDG: idg, IDFD: idfd}, repeats, warmup=1)
    n = len(paths)
    return [{"input pipeline": name, "images/s": n / t.median_wall(name),
             "CPU ms/image": 1000 * t.median_cpu(name) / n, "wall s (min..max)": c.spread(t.wall[name])}
            for name in t.wall]


def bench_backbone(name: str, root: Path, paths: Sequence[str], size: int, batch_size: int,
                   repeats: int) -> dict[str, Any]:
    """Interleaved timings of the four contenders for one backbone; returns one result row."""
    import keras
    import tensorflow as tf

    from pipeline.backbones import build_classifier
    from pipeline.predict import predict_paths, predict_step
    from pipeline.tfdata import decode_all

    keras.utils.set_random_seed(0)
    model = build_classifier(name, size, 2)
    size = int(model.input_shape[1])
    images, ok = decode_all(paths, size)
    if not ok.all():
        raise RuntimeError(f"{int((~ok).sum())} benchmark images failed to decode")
    x = images.astype(np.float32)
    del images
    step = predict_step(model)
    n = len(paths)

    fns = {
        "ours": lambda: predict_paths(model, paths, batch_size).probs,
        IDG: lambda: model.predict(idg_iterator(root, size, batch_size), verbose=0),
        IDFD: lambda: model.predict(idfd_dataset(root, size, batch_size), verbose=0),
        STEP: lambda: np.concatenate([step(x[i:i + batch_size]).numpy() for i in range(0, n, batch_size)]),
        PREDICT: lambda: model.predict(x, batch_size=batch_size, verbose=0),
    }
    # Warm-up on a slice with a full and a partial batch: traces every compiled function once.
    model.predict(x[:2 * batch_size + 1], batch_size=batch_size, verbose=0)
    predict_paths(model, paths[:batch_size + 1], batch_size)
    outputs: dict[str, np.ndarray] = {}

    def keep(contender: str, _round: int, _seconds: float, value: Any) -> None:
        outputs[contender] = np.asarray(value)

    t = c.interleaved(fns, repeats, warmup=0, on_result=keep)
    med = {k: n / t.median_wall(k) for k in fns}
    # The ceiling is the faster of the two in-memory runs; ratios are taken within each round (the runs
    # of one round are minutes apart at most, so they share the machine's load), then the median.
    ceiling = [min(a, b) for a, b in zip(t.wall[STEP], t.wall[PREDICT])]
    per_round = {k: c.median([b / a for a, b in zip(t.wall["ours"], t.wall[k])]) for k in (IDG, IDFD)}
    per_round["ceiling"] = c.median([b / a for a, b in zip(t.wall["ours"], ceiling)])
    # Even a free input pipeline cannot beat the ceiling: the most any pipeline could win over IDG.
    per_round["max"] = c.median([a / b for a, b in zip(t.wall[IDG], ceiling)])
    ceiling_cpu = min(t.median_cpu(STEP), t.median_cpu(PREDICT))
    diff = max(float(np.abs(outputs[k] - outputs[STEP]).max()) for k in ("ours", IDG, PREDICT))
    row = {
        "backbone": name, "input px": size, "images": n,
        "ours img/s": med["ours"], f"{IDG} img/s": med[IDG], f"{IDFD} img/s": med[IDFD],
        f"{STEP} img/s": med[STEP], f"{PREDICT} img/s": med[PREDICT], "ceiling img/s": n / c.median(ceiling),
        "ours/IDG": per_round[IDG], "max possible ours/IDG": per_round["max"], "ours/IDFD": per_round[IDFD], "ours/ceiling": per_round["ceiling"],
        "CPU ms/img ours": 1000 * t.median_cpu("ours") / n, "CPU ms/img IDG": 1000 * t.median_cpu(IDG) / n,
        "CPU ms/img IDFD": 1000 * t.median_cpu(IDFD) / n, "CPU ms/img ceiling": 1000 * ceiling_cpu / n,
        "CPU IDG/ours": c.ratio(t.median_cpu(IDG), t.median_cpu("ours")),
        "CPU ceiling/ours": c.ratio(ceiling_cpu, t.median_cpu("ours")),
        "max |p diff|": diff,
        "wall": {k: v for k, v in t.wall.items()}, "cpu": {k: v for k, v in t.cpu.items()},
    }
    del model, step, x
    keras.backend.clear_session()
    return row


def run(n_images: int, size: int, batch_size: int, repeats: int, backbones: Sequence[str],
        root: Path | None = None) -> dict[str, Any]:
    """Generate (once) the PNGs, time the input pipelines, then every backbone; returns the results."""
    c.quiet_tensorflow()
    folder = c.png_folder(n_images, size, root=root)
    paths = c.png_paths(folder)
    inputs = input_only(folder, paths, size, batch_size, repeats)
    rows = []
    for name in backbones:
        row = bench_backbone(name, folder, paths, size, batch_size, repeats)
        row["target >=2x IDG"] = c.verdict(row["ours/IDG"], 2.0)
        row["target >=85% ceiling"] = c.verdict(row["ours/ceiling"], 0.85)
        rows.append(row)
        print(f"  {name}: ours {row['ours img/s']:.1f} img/s, IDG {row[f'{IDG} img/s']:.1f}, "
              f"ceiling {row['ceiling img/s']:.1f}", flush=True)
    return {"settings": {"n_images": n_images, "size": size, "batch_size": batch_size, "repeats": repeats,
                         "folder": str(folder)}, "input_only": inputs, "backbones": rows}


TABLE_COLUMNS = ("backbone", "input px", "ours img/s", f"{IDG} img/s", f"{IDFD} img/s", f"{STEP} img/s",
                 f"{PREDICT} img/s", "ours/IDG", "max possible ours/IDG", "ours/IDFD", "ours/ceiling",
                 "CPU ms/img ours", "CPU ms/img IDG", "CPU ms/img IDFD", "CPU ms/img ceiling", "CPU IDG/ours",
                 "CPU ceiling/ours", "max |p diff|", "target >=2x IDG", "target >=85% ceiling")


def report(result: dict[str, Any]) -> str:
    """Markdown tables of a `run` result."""
    s = result["settings"]
    return (f"Batch prediction: {s['n_images']} PNGs {s['size']}x{s['size']}, batch {s['batch_size']}, "
            f"{s['repeats']} interleaved repeats (medians)\n\n"
            + c.table(result["input_only"]) + "\n\n" + c.table(result["backbones"], TABLE_COLUMNS))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run, print the tables, save bench/out/predict.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-images", type=int, default=5000)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backbones", default=",".join(DEFAULT_BACKBONES))
    ap.add_argument("--root", type=Path, default=None, help="where to generate the PNGs (default .cache/bench)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.n_images, args.size, args.batch_size, args.repeats,
                 [b.strip() for b in args.backbones.split(",") if b.strip()], args.root)
    print(report(result), flush=True)
    if not args.no_save:
        c.save_result("predict", {"command": "python -m bench.bench_predict " + " ".join(argv or []), **result})
    return result


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main(__import__("sys").argv[1:])
