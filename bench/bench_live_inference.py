"""Live-inference latency per backbone: our path (decode + preprocess + compiled predict) vs bare `model(x)`.

For each saved model of an experiment (default: the first `artifacts/demo-*` with model files, else
/tmp/arttest/demo-histology), on one real test image sent as upload bytes:

- load: seconds to load `model.keras` (Keras safe mode), without warm-up
- cold first: the first request on a freshly loaded model with NO warm-up (what a user would wait for)
- warm-up: what the dashboard spends once per process (one dummy prediction + one Grad-CAM)
- first: the first real request after that warm-up
- ours p50/p95: `run_live_inference` wall time (decode + resize + compiled predict), repeated
- bare p50/p95: `model(x, training=False).numpy()` on the same, already preprocessed tensor (no decode)
- predict p50: the predict part of ours alone, same tensor as bare
- Grad-CAM p50: one heat map at the image's size (not part of the latency shown to the user)

Ours and bare run interleaved in the same process, so background load slows both alike.
Run: `python -m bench.bench_live_inference [--exp DIR] [--repeats 60] [--side 0]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]  # the project is installed editable (make install): no sys.path edit


def _ms(seconds: float) -> float:
    return seconds * 1000.0


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of `values`, linear interpolation; NaN when empty."""
    import numpy as np

    return float(np.percentile(values, q)) if values else float("nan")


def find_experiment() -> Path:
    """The first artifacts/demo-* experiment with at least one model.keras, else /tmp/arttest/demo-histology."""
    from pipeline import artifacts as art

    candidates = sorted((REPO_ROOT / "artifacts").glob("demo-*")) + [Path("/tmp/arttest/demo-histology")]
    for exp in candidates:
        if any(art.model_dir(exp, m).joinpath(art.MODEL_FILE).is_file() for m in art.list_models(exp)):
            return exp
    raise SystemExit("no experiment with saved models found; run `make run` (or pass --exp DIR)")


def test_image_bytes(exp_dir: Path, side: int) -> tuple[bytes, str, str]:
    """(bytes, name, description) of the first test sample: its file if present, else its thumbnail;
    re-encoded as a `side` x `side` JPEG when side > 0 (a phone-photo-sized upload)."""
    import cv2

    from pipeline import artifacts as art
    from pipeline.preprocess import decode_image

    exp = art.load_experiment(exp_dir)
    test = exp.samples[exp.samples["split"].astype(str) == "test"]
    row = (test if len(test) else exp.samples).iloc[0]
    path = Path(str(row["path"]))
    if path.is_file():
        data, name = path.read_bytes(), path.name
    else:
        thumbs = art.read_thumbnails(exp_dir)["png"]
        data, name = bytes(thumbs.loc[str(row["sample_id"])]), f"{row['sample_id']}.png"
    rgb = decode_image(data, name).rgb
    if side > 0:
        big = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_CUBIC)
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        return buf.tobytes(), f"upload_{side}px.jpg", f"{side}x{side} JPEG ({len(buf) // 1024} kB)"
    return data, name, f"{rgb.shape[1]}x{rgb.shape[0]} {Path(name).suffix[1:].upper()} ({len(data) // 1024} kB)"


def bench_model(exp_dir: Path, model: str, data: bytes, name: str, repeats: int) -> dict[str, Any]:
    """Every timing of the table for one model."""
    from dashboard import live_inference as li
    from pipeline.preprocess import decode_image

    # 1. cold: load without warm-up, time the first request (traces the compiled predict function)
    start = time.perf_counter()
    cold = li.load_live_model(exp_dir, model, warm_up=False)
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    first_cold = li.run_live_inference(data, name, {model: cold})
    cold_ms = _ms(time.perf_counter() - start)
    assert first_cold.error is None and first_cold.answers[model].error is None, first_cold
    del cold, first_cold

    # 2. as the dashboard does it: load + warm-up once, then requests
    live = li.load_live_model(exp_dir, model, warm_up=False)
    start = time.perf_counter()
    li.warm_up_model(live)
    warm_s = time.perf_counter() - start
    start = time.perf_counter()
    li.run_live_inference(data, name, {model: live})
    first_ms = _ms(time.perf_counter() - start)

    x = li.prepare_input(live, decode_image(data, name).rgb)
    predict = li.predict_fn(live.model)
    for _ in range(3):  # untimed: the bare eager call's first runs allocate and pick kernels
        live.model(x, training=False).numpy()
    ours, bare, pred_only, inner = [], [], [], []
    for r in range(repeats):
        order = ("ours", "bare", "predict") if r % 2 == 0 else ("bare", "predict", "ours")
        for which in order:
            start = time.perf_counter()
            if which == "ours":
                res = li.run_live_inference(data, name, {model: live})
                ours.append(_ms(time.perf_counter() - start))
                inner.append(res.answers[model].latency_ms)
            elif which == "bare":
                live.model(x, training=False).numpy()
                bare.append(_ms(time.perf_counter() - start))
            else:
                predict(x).numpy()
                pred_only.append(_ms(time.perf_counter() - start))
    rgb = decode_image(data, name).rgb
    cams = []
    for _ in range(max(5, repeats // 6)):
        start = time.perf_counter()
        li.explain(live, rgb, 0)
        cams.append(_ms(time.perf_counter() - start))
    p50 = statistics.median(ours)
    return {
        "model": model,
        "input": f"{live.input_size}px",
        "params": int(live.model.count_params()),
        "load_s": load_s,
        "cold_first_ms": cold_ms,
        "warmup_s": warm_s,
        "first_ms": first_ms,
        "ours_p50_ms": p50,
        "ours_p95_ms": percentile(ours, 95),
        "measured_p50_ms": statistics.median(inner),
        "bare_p50_ms": statistics.median(bare),
        "bare_p95_ms": percentile(bare, 95),
        "predict_p50_ms": statistics.median(pred_only),
        "gradcam_p50_ms": statistics.median(cams),
        "first_over_p50": first_ms / p50,
        "cold_over_p50": cold_ms / p50,
    }


COLUMNS = [
    ("model", "model"),
    ("input", "input"),
    ("params", "params"),
    ("load_s", "load s"),
    ("cold_first_ms", "cold 1st ms"),
    ("warmup_s", "warm-up s"),
    ("first_ms", "1st after warm-up ms"),
    ("ours_p50_ms", "ours p50 ms"),
    ("ours_p95_ms", "ours p95 ms"),
    ("bare_p50_ms", "bare p50 ms"),
    ("bare_p95_ms", "bare p95 ms"),
    ("predict_p50_ms", "predict-only p50 ms"),
    ("gradcam_p50_ms", "Grad-CAM p50 ms"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.0f}" if abs(v) >= 100 else f"{v:.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the rows."""
    head = "| " + " | ".join(label for _, label in COLUMNS) + " |"
    sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_fmt(r[k]) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table (also written to bench/out/live_inference.json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exp", type=Path, default=None, help="experiment folder (default: auto)")
    parser.add_argument("--models", nargs="*", default=None, help="models to bench (default: all saved)")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--side", type=int, default=0, help="re-encode the image as a side x side JPEG (0: as is)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from pipeline import artifacts as art

    exp_dir = (args.exp or find_experiment()).resolve()
    models = args.models or [
        m for m in art.list_models(exp_dir) if art.model_dir(exp_dir, m).joinpath(art.MODEL_FILE).is_file()
    ]
    data, name, desc = test_image_bytes(exp_dir, args.side)
    import keras  # noqa: F401 - imported before timing, so the first load does not pay for it
    import tensorflow as tf

    print(
        f"experiment {exp_dir} · image {desc} · {args.repeats} repeats · TF {tf.__version__} · "
        f"{os.cpu_count()} CPUs · load average {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    rows = []
    for model in models:
        rows.append(bench_model(exp_dir, model, data, name, args.repeats))
        print(
            f"  {model}: ours p50 {rows[-1]['ours_p50_ms']:.1f} ms, bare p50 {rows[-1]['bare_p50_ms']:.1f} ms",
            flush=True,
        )
    print()
    print(table(rows))
    print(
        "\nours = run_live_inference wall time (decode + resize + compiled predict); bare = model(x, training=False)"
        " on the preprocessed tensor; cold 1st = first request on a model loaded without warm-up."
    )
    out = REPO_ROOT / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "live_inference.json").write_text(
        json.dumps(
            {
                "experiment": str(exp_dir),
                "image": desc,
                "repeats": args.repeats,
                "load_average": os.getloadavg()[0],
                "rows": rows,
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
