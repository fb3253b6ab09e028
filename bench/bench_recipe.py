"""The training protocol against the published from-scratch baselines (issue 11).

Trains backbones from scratch on MedMNIST BreastMNIST (`../shared/data/breastmnist.npz`, official split,
28 px images resized to 32 px, 2 CPU cores) with the old recipe (Adam 1e-3 constant, early stopping on the
unweighted validation loss with patience 3, 1 seed) and the new protocol (`pipeline.train`, defaults of
`TrainConfig`, 3 seeds), side by side in one run, and reports test AUC and test ACC as the MedMNIST v2
paper scores them (binary: threshold 0.5; multiclass: argmax), mean and SD over seeds, CPU minutes and
epochs. Each run trains in its own spawned process (one TensorFlow thread pool per run, `--jobs` at once),
so the CPU seconds of one run are its own.

    python -m bench.bench_recipe                       # all five backbones, new x3 + old x1, 12 epochs,
                                                       # new protocol within 5 CPU-minutes per run
    python -m bench.bench_recipe --backbones SmallCNN --seeds 0 --protocols new
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import OUT_DIR, REPO_ROOT

DATA = REPO_ROOT.parent / "shared" / "data" / "breastmnist.npz"
BACKBONES = ("SmallCNN", "MobileNetV2", "EfficientNetB0", "ResNet50", "DenseNet121")
PAPER = {  # MedMNIST v2 (Yang et al., Scientific Data 2023), Table: BreastMNIST test AUC / ACC
    "ResNet-18 (28)": (0.901, 0.863),
    "ResNet-18 (224)": (0.891, 0.833),
    "ResNet-50 (28)": (0.857, 0.812),
    "ResNet-50 (224)": (0.866, 0.842),
    "auto-sklearn": (0.836, 0.803),
    "AutoKeras": (0.871, 0.831),
    "Google AutoML Vision": (0.919, 0.861),
}


def protocols(epochs: int) -> dict[str, dict[str, Any]]:
    """TrainConfig keyword sets of the old recipe (as before issue 11) and the new protocol."""
    old = {
        "optimizer": "adam",
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "select_on": "loss_unweighted",
        "min_epochs": 1,
        "patience": 3,
        "epochs": 15,
        "input_policy": "native",
        "precise_bn": True,
        "clip_norm": None,
        "zero_head": False,
        "augment": ("flip", "rotate", "zoom", "contrast"),
    }
    new = {"epochs": epochs}
    return {"old": old, "new": new}


def load_breastmnist(size: int = 32) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Official splits as (RGB uint8 images at size x size, labels), resized like the pipeline does."""
    from pipeline.preprocess import resize_square

    raw = np.load(DATA, allow_pickle=False)
    out = {}
    for split in ("train", "val", "test"):
        imgs = raw[f"{split}_images"]
        rgb = np.stack([resize_square(np.repeat(im[..., None], 3, -1), size) for im in imgs])
        out[split] = (rgb, raw[f"{split}_labels"].ravel().astype(int))
    return out


def _init(threads: int) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def run_one(backbone: str, protocol: str, seed: int, overrides: dict[str, Any], size: int) -> dict[str, Any]:
    """Train one (backbone, protocol, seed) and score it on the official test split."""
    from pipeline import metrics as mt
    from pipeline.config import TrainConfig
    from pipeline.predict import predict_array
    from pipeline.train import _resize_batch, train_backbone

    data = load_breastmnist(size)
    cfg = replace(TrainConfig(backbones=(backbone,), weights="none", seed=seed), **overrides)
    cpu0 = time.process_time()
    result = train_backbone(backbone, data["train"], data["val"], 2, size, cfg)
    x_test, y_test = data["test"]
    # the model's own input size: the "fair" policy trains 32x-downsampling backbones at 64 px
    side = int(result.model.input_shape[1])
    probs = predict_array(result.model, _resize_batch(x_test, side), 128)
    # flip test-time augmentation (`[predict] tta`), scored on validation too, so it is judged there first
    x_val, y_val = data["val"]
    probs_tta = predict_array(result.model, _resize_batch(x_test, side), 128, tta=("hflip",))
    val_tta = predict_array(result.model, _resize_batch(x_val, side), 128, tta=("hflip",))
    return {
        "backbone": backbone,
        "protocol": protocol,
        "seed": seed,
        "test_auc": float(mt.roc_auc(y_test == 1, probs[:, 1])),
        "test_acc": float(np.mean((probs[:, 1] >= 0.5) == (y_test == 1))),
        "test_auc_tta": float(mt.roc_auc(y_test == 1, probs_tta[:, 1])),
        "val_auc": result.info["best_val_auc"],
        "val_auc_tta": float(mt.roc_auc(y_val == 1, val_tta[:, 1])),
        "epochs_run": result.info["epochs_run"],
        "best_epoch": result.info["best_epoch"],
        "stop_reason": result.info["stop_reason"],
        "cpu_minutes": (time.process_time() - cpu0) / 60,  # training + scoring (test, and the TTA columns)
        "train_cpu_minutes": result.info["cpu_seconds"] / 60,  # what `budget_clock = "cpu"` counts
        "train_seconds": result.info["train_seconds"],
    }


def summarise(rows: list[dict[str, Any]]) -> str:
    """Markdown table: per backbone and protocol, mean and SD over seeds."""
    import pandas as pd

    df = pd.DataFrame(rows)
    lines = [
        "| backbone | protocol | seeds | test AUC mean (SD) | test ACC mean (SD) | epochs run / best | "
        "CPU min per run (max) | val AUC (selected) | val / test AUC with flip TTA | training CPU min (max) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (b, p), g in df.groupby(["backbone", "protocol"], sort=False):
        sd = lambda s: f"{s.std(ddof=1):.3f}" if len(s) > 1 else "-"  # noqa: E731
        lines.append(
            f"| {b} | {p} | {len(g)} | {g.test_auc.mean():.3f} ({sd(g.test_auc)}) | "
            f"{g.test_acc.mean():.3f} ({sd(g.test_acc)}) | "
            f"{g.epochs_run.mean():.1f} / {g.best_epoch.mean():.1f} | "
            f"{g.cpu_minutes.mean():.2f} ({g.cpu_minutes.max():.2f}) | {g.val_auc.mean():.3f} | "
            + (
                f"{g.val_auc_tta.mean():.3f} / {g.test_auc_tta.mean():.3f} |"
                if "val_auc_tta" in g and g.val_auc_tta.notna().all()
                else "- |"
            )
            + (
                f" {g.train_cpu_minutes.mean():.2f} ({g.train_cpu_minutes.max():.2f}) |"
                if "train_cpu_minutes" in g and g.train_cpu_minutes.notna().all()
                else " - |"
            )
        )
    lines.append("")
    lines.append(
        "Paper (MedMNIST v2, BreastMNIST test AUC / ACC): "
        + "; ".join(f"{k} {a:.3f} / {c:.3f}" for k, (a, c) in PAPER.items())
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default=",".join(BACKBONES))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--protocols", default="new,old")
    ap.add_argument("--epochs", type=int, default=12, help="epochs of the new protocol")
    ap.add_argument(
        "--cpu-budget-minutes",
        type=float,
        default=5.0,
        help="the new protocol's budget per run in process CPU minutes (budget_clock = cpu; 0: none), the "
        "issue's 5 CPU-minutes per model and seed, given to every backbone alike",
    )
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], help="extra TrainConfig key=value for the new protocol")
    ap.add_argument("--out", default=str(OUT_DIR / "recipe.json"))
    args = ap.parse_args(argv)
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return 0
    protos = protocols(args.epochs)
    if args.cpu_budget_minutes > 0:
        protos["new"].update(budget_minutes=args.cpu_budget_minutes, budget_clock="cpu")
    for item in args.set:
        key, value = item.split("=", 1)
        protos["new"][key] = json.loads(value)
    seeds = [int(s) for s in args.seeds.split(",")]
    jobs = [
        (b, p, s if p == "new" else seeds[0])
        for b in args.backbones.split(",")
        for p in args.protocols.split(",")
        for s in (seeds if p == "new" else seeds[:1])
    ]
    rows: list[dict[str, Any]] = []
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    with ProcessPoolExecutor(
        args.jobs, mp_context=mp.get_context("spawn"), initializer=_init, initargs=(threads,)
    ) as pool:
        futs = {pool.submit(run_one, b, p, s, protos[p], args.size): (b, p, s) for b, p, s in jobs}
        for fut in as_completed(futs):
            try:
                row = fut.result()
            except Exception as exc:  # a failed run is reported, the others go on
                print(f"FAILED {futs[fut]}: {exc}", flush=True)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)
            out.write_text(
                json.dumps(
                    {
                        "rows": rows,
                        "protocols": {
                            k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
                            for k, v in protos.items()
                        },
                    },
                    indent=1,
                )
            )
    order = {b: i for i, b in enumerate(args.backbones.split(","))}
    rows.sort(key=lambda r: (order[r["backbone"]], r["protocol"] != "new", r["seed"]))
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
