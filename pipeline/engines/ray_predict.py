"""Batch prediction with Ray Data, for evaluation sets too large for one machine.

The sample table's paths become a Ray dataset in blocks of ROWS_PER_CALL rows; a pool of actors, each
loading the saved model once, decodes and predicts each block with the local code path itself
(`pipeline.predict.predict_paths`: the project's decoder, the same compiled step, TTA and crop modes
included), so a cluster adds actors, not a second implementation. The result is a `PredictResult` in input order, so
`predict_missing` writes the same `predictions.parquet` either way (equal to the local path within 1e-5;
tests/test_ray_engine.py). The model file and the images must be at paths every node sees.
"""

from __future__ import annotations

import importlib
import math
import time
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from pipeline.engines import import_ray
from pipeline.predict import PredictResult

ROWS_PER_CALL = 1024  # paths per Ray block and per actor call: the local path's per-call set-up is then negligible


class _Predictor:
    """A Ray Data actor: loads the model once, then predicts each batch of paths with the local code path."""

    def __init__(self, model_file: str, batch_size: int, tta: Any, threads: int) -> None:
        import os

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        from pipeline.engines.ray_train import cpu_threads

        if threads:
            cpu_threads(threads)
        import keras

        from pipeline.backbones import preprocess_layer_class

        preprocess_layer_class()  # registers the custom layer before loading
        self.model = keras.saving.load_model(model_file, safe_mode=True)
        self.batch_size, self.tta = int(batch_size), tta

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from pipeline.predict import predict_paths

        paths, crops = np.asarray(batch["path"]).astype(str), np.asarray(batch["crop"]).astype(str)
        probs = np.full((len(paths), int(self.model.output_shape[-1])), np.nan, np.float32)
        ok = np.zeros(len(paths), bool)
        for mode in pd.unique(crops):  # one pass per crop mode, as the local path
            idx = np.flatnonzero(crops == mode)
            part = predict_paths(self.model, paths[idx].tolist(), self.batch_size, self.tta, crop=str(mode))
            probs[idx], ok[idx] = part.probs, part.ok
        return {"row": batch["row"], "ok": ok, "probs": probs}


def predict_files_ray(
    model_file: Path | str,
    paths: Sequence[str],
    crops: Sequence[str] | None = None,
    *,
    batch_size: int = 64,
    tta: Any = False,
    actors: int | None = None,
    rows_per_call: int = ROWS_PER_CALL,
) -> PredictResult:
    """Predict every file in `paths` (each with its crop mode, default "none") on the Ray cluster.

    `actors` predictor actors (default: one per GPU on a GPU cluster, else one per CPU with one TensorFlow
    thread each), each given `rows_per_call` paths at a time, which it decodes and predicts as the local path
    does (`pipeline.predict.predict_paths`, `batch_size` images per step). Rows that fail to decode are NaN
    with ok False, as there.
    """
    ray = import_ray()
    ray_data = importlib.import_module("ray.data")
    crops = ["none"] * len(paths) if crops is None else [str(c) for c in crops]
    table = pd.DataFrame({"row": np.arange(len(paths)), "path": [str(p) for p in paths], "crop": crops})
    res = ray.cluster_resources()
    gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
    chunks = [table.iloc[i : i + rows_per_call] for i in range(0, len(table), rows_per_call)] or [table]
    actors = min(actors or (gpus if gpus else cpus), len(chunks))  # an actor without a block would only start
    start = time.perf_counter()
    ds = ray_data.from_pandas(chunks).map_batches(
        _Predictor,
        fn_constructor_kwargs={
            "model_file": str(model_file),
            "batch_size": batch_size,
            "tta": tta,
            "threads": 0 if gpus else max(1, cpus // actors),
        },
        batch_size=rows_per_call,
        batch_format="numpy",
        compute=ray_data.ActorPoolStrategy(size=actors),
        num_cpus=1,
        num_gpus=1 if gpus else 0,
    )
    probs, ok = collect_rows(ds.iter_batches(batch_format="numpy", batch_size=None), len(paths))
    return PredictResult(probs, ok, time.perf_counter() - start)


def collect_rows(batches: Iterable[dict[str, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(probs (n, K), ok (n,)) from output batches that arrive in any order, each placed by its `row`;
    rows that failed (or never came) are NaN with ok False."""
    probs: np.ndarray | None = None
    ok = np.zeros(n, bool)
    for batch in batches:
        part = np.asarray(batch["probs"], np.float32)
        if probs is None:
            probs = np.full((n, part.shape[1]), np.nan, np.float32)
        rows = np.asarray(batch["row"], np.int64)
        probs[rows], ok[rows] = part, np.asarray(batch["ok"], bool)
    if probs is None:  # no rows
        probs = np.zeros((n, 0), np.float32)
    probs[~ok] = math.nan
    return probs, ok
