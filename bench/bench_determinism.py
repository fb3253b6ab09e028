"""What `deterministic = true` costs, and the run-to-run spread without it (issue 11).

Trains SmallCNN (and optionally more backbones) on BreastMNIST (official split, 32 px) with the same seed,
alternating deterministic on and off, in one process (same machine state for both), and reports the
median CPU and wall seconds of each and their ratio, plus the test AUC of every run: identical runs with
determinism, the rebuild spread without it.

    python -m bench.bench_determinism --rounds 3 --epochs 8
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

import numpy as np

from bench.bench_recipe import DATA, load_breastmnist


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="SmallCNN")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    from pipeline import metrics as mt
    from pipeline.config import TrainConfig
    from pipeline.predict import predict_array
    from pipeline.train import train_backbone

    data = load_breastmnist(32)
    base = TrainConfig(backbones=(args.backbone,), epochs=args.epochs, seed=0, augment=("flip", "rotate"))
    out: dict[str, dict[str, list[float]]] = {
        "on": {"wall": [], "cpu": [], "auc": []},
        "off": {"wall": [], "cpu": [], "auc": []},
    }
    for r in range(args.rounds):
        for mode in ("on", "off") if r % 2 == 0 else ("off", "on"):
            cfg = replace(base, deterministic=mode == "on")
            w0, c0 = time.perf_counter(), time.process_time()
            res = train_backbone(args.backbone, data["train"], data["val"], 2, 32, cfg)
            out[mode]["wall"].append(time.perf_counter() - w0)
            out[mode]["cpu"].append(time.process_time() - c0)
            p = predict_array(res.model, data["test"][0], 128)
            out[mode]["auc"].append(float(mt.roc_auc(data["test"][1] == 1, p[:, 1])))
            print(
                json.dumps(
                    {
                        "round": r,
                        "deterministic": mode,
                        "wall": out[mode]["wall"][-1],
                        "cpu": out[mode]["cpu"][-1],
                        "test_auc": out[mode]["auc"][-1],
                    }
                ),
                flush=True,
            )
    med = {m: {k: float(np.median(v)) for k, v in d.items() if k != "auc"} for m, d in out.items()}
    print(
        f"| {args.backbone}, {args.epochs} epochs, {args.threads} thread(s) | median wall s | median CPU s | "
        "test AUC of the runs (same seed) |"
    )
    print("|---|---|---|---|")
    for m in ("off", "on"):
        print(
            f"| deterministic {m} | {med[m]['wall']:.1f} | {med[m]['cpu']:.1f} | "
            f"{', '.join(f'{a:.4f}' for a in out[m]['auc'])} |"
        )
    print(
        f"ratio on/off: wall {med['on']['wall'] / med['off']['wall']:.2f}x, "
        f"CPU {med['on']['cpu'] / med['off']['cpu']:.2f}x; AUC range without determinism "
        f"{max(out['off']['auc']) - min(out['off']['auc']):.4f}, "
        f"with {max(out['on']['auc']) - min(out['on']['auc']):.4f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
