"""What precise-BN costs: the share of training CPU time spent in `recalibrate_batchnorm` (issue 11).

Trains each backbone for a few epochs on BreastMNIST (`../shared/data/breastmnist.npz`) with the default
protocol and times every recalibration inside the same process, so the ratio is immune to machine noise.

    python -m bench.bench_precise_bn --backbones SmallCNN,MobileNetV2 --epochs 4
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from bench.bench_recipe import DATA, load_breastmnist


def measure(backbone: str, *, epochs: int, seed: int = 0) -> dict[str, Any]:
    """Train `backbone` for `epochs` and return the CPU seconds of training and of its precise-BN passes."""
    import pipeline.train as train
    from pipeline.config import TrainConfig

    spent = {"cpu": 0.0, "n": 0}
    original = train.recalibrate_batchnorm

    def timed(model: Any, images: Any) -> None:
        t = time.process_time()
        original(model, images)
        spent["cpu"] += time.process_time() - t
        spent["n"] += 1

    data = load_breastmnist(32)
    cfg = replace(TrainConfig(backbones=(backbone,), weights="none", seed=seed), epochs=epochs)
    train.recalibrate_batchnorm = timed
    try:
        cpu0 = time.process_time()
        train.train_backbone(backbone, data["train"], data["val"], 2, 32, cfg)
        total = time.process_time() - cpu0
    finally:
        train.recalibrate_batchnorm = original
    return {"backbone": backbone, "passes": spent["n"], "precise_bn_cpu_s": spent["cpu"], "train_cpu_s": total}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", default="SmallCNN,MobileNetV2")
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args(argv)
    if not DATA.is_file():
        print(f"skipped: {DATA} not found")
        return 0
    for backbone in args.backbones.split(","):
        r = measure(backbone, epochs=args.epochs)
        share = 100 * r["precise_bn_cpu_s"] / max(r["train_cpu_s"], 1e-9)
        print(
            f"{backbone}: {r['passes']} precise-BN passes {r['precise_bn_cpu_s']:.2f} CPU-s of "
            f"{r['train_cpu_s']:.2f} CPU-s training ({share:.1f}%)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
