"""The Ray engine against the local engine (issue 15), on this machine, side by side and interleaved.

(a) Training grid: the same small grid (SmallCNN and MobileNetV2 x 2 seeds on generated histology patches)
    built by the CLI in a fresh process each round, `--engine local --jobs 2` against `--engine ray` (which
    starts its own local Ray instance, as a user's first command does); ratio of the median wall times.
(b) Batch prediction: the same saved model over N generated PNGs, the local path (load the model, then
    `pipeline.predict.predict_paths`, as `predict_missing` does) against Ray Data
    (`pipeline.engines.ray_predict.predict_files_ray`, actors started per call, Ray already running);
    throughput ratio and the largest probability difference.
(c) On paper: the full IDC set on a cluster of GPUs, from the per-run and per-image costs measured in (a), (b).

    python -m bench.bench_ray                                   # the bench/RESULTS.md settings
    python -m bench.bench_ray --patients 12 --n-images 2000 --repeats 1   # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench import common as c

GRID_BACKBONES = ("SmallCNN", "MobileNetV2")
IDC_PATCHES = 277_524  # breast histopathology IDC patches (50 x 50 px)


def grid_config(root: Path, n_patients: int, images_per_patient: int, epochs: int) -> Path:
    """Generate (once) a histology set and write the grid's config under `root`."""
    from pipeline.synthetic import make_histology

    data = root / f"data-{n_patients}x{images_per_patient}"
    if not (data / ".complete").is_file():
        make_histology(data, n_patients=n_patients, images_per_patient=images_per_patient, size=32, seed=3)
        (data / ".complete").write_text("ok")
    path = root / "grid.toml"
    path.write_text(
        f"""
[experiment]
name = "grid"
output = "{root / "artifacts"}"
[dataset]
layout = "patient_class_folders"
root = "{data}"
image_size = 32
[split]
seed = 1
[train]
backbones = {json.dumps(list(GRID_BACKBONES))}
epochs = {epochs}
batch_size = 32
seeds = [0, 1]
augment = []
input_policy = "native"
patience = 100
[audit]
enabled = false
""",
        encoding="utf-8",
    )
    return path


def cli_run(cfg: Path, out: Path, engine: str) -> float:
    """Build the grid from scratch with `engine` in a fresh process; returns its wall seconds."""
    extra = ["--jobs", "2"] if engine == "local" else ["--engine", "ray"]
    cmd = [sys.executable, "-m", "pipeline", "run", "--config", str(cfg), "--force", "--output", str(out), *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds


def run_costs(exp_dir: Path) -> list[dict[str, Any]]:
    """Per run, from its config.json and history.csv: the steady cost per training image-epoch (median of the
    epochs after the first, which also traces), the fixed cost (build, tracing, first-epoch extra) and the
    prediction cost per image."""
    from pipeline import artifacts as art

    rows = []
    for model in art.list_models(exp_dir):
        cfg = art.read_model_config(exp_dir, model)
        seconds = art.read_history(exp_dir, model)["seconds"].to_numpy(float)
        steady = float(np.median(seconds[1:])) if len(seconds) > 1 else float(seconds[0])
        rows.append(
            {
                "run": model,
                "train images": int(cfg["n_train"]),
                "epochs": int(cfg["epochs_run"]),
                "train s": float(cfg["train_seconds"]),
                "train CPU s": float(cfg.get("cpu_seconds", float("nan"))),
                "steady ms/img-epoch": 1000 * steady / max(int(cfg["n_train"]), 1),
                "fixed s/run": float(cfg["train_seconds"]) - steady * len(seconds),
                "predict ms/img": float(cfg["infer_ms_per_image"]),
            }
        )
    return rows


def bench_grid(root: Path, n_patients: int, images_per_patient: int, epochs: int, repeats: int) -> dict[str, Any]:
    """(a): interleaved CLI builds of the grid with each engine."""
    cfg = grid_config(root, n_patients, images_per_patient, epochs)
    outs = {"local --jobs 2": root / "out-local", "ray": root / "out-ray"}
    t = c.interleaved(
        {
            "local --jobs 2": lambda: cli_run(cfg, outs["local --jobs 2"], "local"),
            "ray": lambda: cli_run(cfg, outs["ray"], "ray"),
        },
        repeats,
        warmup=0,
    )
    local, ray_ = t.median_wall("local --jobs 2"), t.median_wall("ray")
    ratios = [b / a for a, b in zip(t.wall["local --jobs 2"], t.wall["ray"])]
    costs = {e: run_costs(outs[e] / "grid") for e in outs}
    # Ray workers are not this process's children (rusage misses them): compare the runs' own CPU seconds
    cpu = {e: sum(r["train CPU s"] for r in costs[e]) for e in outs}
    return {
        "runs": 2 * len(GRID_BACKBONES),
        "train images": int(n_patients * images_per_patient * 0.6),
        "epochs": epochs,
        "local s": local,
        "ray s": ray_,
        "ray/local (median of rounds)": c.median(ratios),
        "target <= 1.15x": c.verdict(c.median(ratios), 1.15, higher_is_better=False),
        "runs' train CPU s local": cpu["local --jobs 2"],
        "runs' train CPU s ray": cpu["ray"],
        "train CPU ray/local": c.ratio(cpu["ray"], cpu["local --jobs 2"]),
        "wall": t.wall,
        "costs local": costs["local --jobs 2"],
        "costs ray": costs["ray"],
    }


def bench_predict(root: Path, n_images: int, size: int, backbone: str, batch_size: int, repeats: int) -> dict[str, Any]:
    """(b): local path against Ray Data on the same PNGs and the same saved model."""
    import keras
    import ray

    from pipeline.backbones import build_classifier, preprocess_layer_class
    from pipeline.engines.ray_predict import predict_files_ray
    from pipeline.experiment import save_model_atomic
    from pipeline.predict import predict_paths

    paths = c.png_paths(c.png_folder(n_images, size, root=root))
    keras.utils.set_random_seed(0)
    model_file = root / f"{backbone}-{size}.keras"
    save_model_atomic(build_classifier(backbone, size, 2), model_file)
    start = time.perf_counter()
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    ray_start = time.perf_counter() - start
    preprocess_layer_class()
    outputs: dict[str, np.ndarray] = {}

    def local() -> np.ndarray:
        model = keras.saving.load_model(model_file, safe_mode=True)
        return predict_paths(model, paths, batch_size).probs

    def ray_data() -> np.ndarray:
        return predict_files_ray(model_file, paths, batch_size=batch_size).probs

    def keep(name: str, _r: int, _s: float, value: Any) -> None:
        outputs[name] = np.asarray(value)

    try:
        t = c.interleaved({"local": local, "ray data": ray_data}, repeats, warmup=0, on_result=keep)
    finally:
        if started:
            ray.shutdown()
    ratios = [a / b for a, b in zip(t.wall["local"], t.wall["ray data"])]  # throughput ratio = time ratio
    return {
        "backbone": backbone,
        "input px": size,
        "images": len(paths),
        "local img/s": len(paths) / t.median_wall("local"),
        "ray data img/s": len(paths) / t.median_wall("ray data"),
        "ray/local throughput": c.median(ratios),
        "target >= 0.9x": c.verdict(c.median(ratios), 0.9),
        "max |p diff|": float(np.abs(outputs["local"] - outputs["ray data"]).max()),
        "ray start s": ray_start,
        "wall": t.wall,
    }


def idc_estimate(grid: dict[str, Any], pred: dict[str, Any], gpus: int = 8, folds: int = 5) -> dict[str, Any]:
    """(c): the full IDC set x the 16 registry backbones x `folds` folds on `gpus` GPUs, on paper.

    Work per run = epochs x training images x (per image-epoch cost) + evaluated images x (per image cost),
    the costs measured here for MobileNetV2 on one CPU core and scaled to every backbone by the registry's
    relative cost; the GPU speed-up over one core is an assumption (no GPU was measured), shown as a range.
    """
    from pipeline.backbones import BACKBONES

    mnv2 = [r for r in grid["costs ray"] if r["run"].startswith("MobileNetV2")]
    # the grid trains at 32 px; IDC's 50 px patches train at 64 px (the fair policy): cost ~ pixels
    train_ms = c.median([r["steady ms/img-epoch"] for r in mnv2]) * (64 / 32) ** 2
    fixed_s = c.median([r["fixed s/run"] for r in mnv2])
    pred_ms = 1000 / pred["local img/s"] * 2 * (64 / pred["input px"]) ** 2  # (b) ran on 2 cores
    pool = 0.8 * IDC_PATCHES  # train + val splits; each fold trains on 4/5 of the pool
    train_imgs, eval_imgs = pool * (folds - 1) / folds, pool / folds + 0.2 * IDC_PATCHES
    epochs = 30
    mnv2_cost = BACKBONES["MobileNetV2"].relative_cost
    names = sorted(n for n in BACKBONES if n != "SmallCNN")  # the 16 ImageNet backbones
    core_s = {
        n: ((epochs * train_imgs * train_ms + eval_imgs * pred_ms) / 1000 + fixed_s)
        * BACKBONES[n].relative_cost
        / mnv2_cost
        for n in names
    }
    total_core_h = folds * sum(core_s.values()) / 3600
    longest_core_h = max(core_s.values()) / 3600
    rows = []
    for speedup in (25, 100, 400):
        # list scheduling, longest first: makespan <= total / gpus + the longest run
        lower = max(total_core_h / speedup / gpus, longest_core_h / speedup)
        rows.append(
            {
                "GPU = x cores": speedup,
                "total GPU-hours": total_core_h / speedup,
                "longest run h": longest_core_h / speedup,
                f"wall h on {gpus} GPUs (lower bound)": lower,
                "wall h (LPT upper bound)": total_core_h / speedup / gpus + longest_core_h / speedup,
            }
        )
    return {
        "assumptions": {
            "patches": IDC_PATCHES,
            "backbones": len(names),
            "folds": folds,
            "runs": folds * len(names),
            "epochs per run": epochs,
            "train images per run": int(train_imgs),
            "evaluated images per run": int(eval_imgs),
            "MobileNetV2 train ms/img-epoch (1 core, 64 px)": train_ms,
            "MobileNetV2 fixed s/run": fixed_s,
            "MobileNetV2 predict ms/img (1 core, 64 px)": pred_ms,
            "longest backbone": max(names, key=lambda n: BACKBONES[n].relative_cost),
        },
        "total core-hours": total_core_h,
        "rows": rows,
    }


def run(
    *,
    n_patients: int = 40,
    images_per_patient: int = 8,
    epochs: int = 3,
    n_images: int = 20_000,
    size: int = 64,
    backbone: str = "MobileNetV2",
    batch_size: int = 64,
    repeats: int = 2,
    predict_repeats: int = 1,
    root: Path | None = None,
    parts: Sequence[str] = ("grid", "predict"),
) -> dict[str, Any]:
    """(a), (b) and, with both, (c); returns every number."""
    c.quiet_tensorflow()
    root = Path(root) if root is not None else c.cache_dir("ray")
    grid = pred = None
    if "grid" in parts:
        grid = bench_grid(root, n_patients, images_per_patient, epochs, repeats)
        print(f"  grid: local {grid['local s']:.1f}s, ray {grid['ray s']:.1f}s", flush=True)
    if "predict" in parts:
        pred = bench_predict(root, n_images, size, backbone, batch_size, predict_repeats)
        print(f"  predict: local {pred['local img/s']:.0f} img/s, ray data {pred['ray data img/s']:.0f} img/s")
    return {
        "settings": {
            "patients": n_patients,
            "images_per_patient": images_per_patient,
            "epochs": epochs,
            "n_images": n_images,
            "size": size,
            "backbone": backbone,
            "batch_size": batch_size,
            "repeats": repeats,
            "predict_repeats": predict_repeats,
        },
        "grid": grid,
        "predict": pred,
        "idc": idc_estimate(grid, pred) if grid and pred else None,
    }


GRID_COLUMNS = (
    "runs",
    "train images",
    "epochs",
    "local s",
    "ray s",
    "ray/local (median of rounds)",
    "target <= 1.15x",
    "runs' train CPU s local",
    "runs' train CPU s ray",
    "train CPU ray/local",
)
PRED_COLUMNS = (
    "backbone",
    "input px",
    "images",
    "local img/s",
    "ray data img/s",
    "ray/local throughput",
    "target >= 0.9x",
    "max |p diff|",
    "ray start s",
)


def report(result: dict[str, Any]) -> str:
    """Markdown tables of a `run` result."""
    s, idc, out = result["settings"], result["idc"], []
    if result["grid"]:
        out += [
            f"(a) Training grid ({', '.join(GRID_BACKBONES)} x 2 seeds, {s['patients']} x {s['images_per_patient']} "
            f"images, {s['epochs']} epochs, CLI in a fresh process, {s['repeats']} interleaved rounds, medians)",
            c.table([result["grid"]], GRID_COLUMNS),
            "Per-run costs (Ray engine): " + c.table(result["grid"]["costs ray"]),
        ]
    if result["predict"]:
        out += [
            f"(b) Batch prediction ({s['n_images']} PNGs, {s['size']} px, {s['backbone']}, batch {s['batch_size']}, "
            f"{s['predict_repeats']} interleaved rounds)",
            c.table([result["predict"]], PRED_COLUMNS),
        ]
    if idc:
        out += [
            f"(c) IDC on paper: {json.dumps(idc['assumptions'])}; {idc['total core-hours']:.0f} core-hours",
            c.table(idc["rows"]),
        ]
    return "\n\n".join(out)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run, print the tables, save bench/out/ray.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--images-per-patient", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--n-images", type=int, default=20_000)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--backbone", default="MobileNetV2")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds of the grid")
    ap.add_argument("--predict-repeats", type=int, default=1, help="interleaved rounds of the prediction")
    ap.add_argument("--root", type=Path, default=None, help="work folder (default .cache/bench/ray)")
    ap.add_argument("--parts", default="grid,predict", help="comma-separated: grid, predict (both: also the estimate)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    result = run(
        n_patients=args.patients,
        images_per_patient=args.images_per_patient,
        epochs=args.epochs,
        n_images=args.n_images,
        size=args.size,
        backbone=args.backbone,
        repeats=args.repeats,
        predict_repeats=args.predict_repeats,
        root=args.root,
        parts=parts,
    )
    print(report(result), flush=True)
    if not args.no_save:
        name = "ray" if {"grid", "predict"} <= set(parts) else "ray-" + "-".join(parts)
        c.save_result(name, {"command": "python -m bench.bench_ray " + " ".join(argv or sys.argv[1:]), **result})
    return result


if __name__ == "__main__":
    main()
