"""Run every benchmark, each in its own process, and collect their tables into bench/out/summary.md.

    python -m bench.run_all            quick settings (about 10 minutes on the 2-core machine; ResNet50 and
                                       MobileNetV2 training only with --full)
    python -m bench.run_all --full     the settings of bench/RESULTS.md (5,000 PNGs; well over an hour)
    python -m bench.run_all --only predict,dashboard

Each benchmark also runs alone (`python -m bench.bench_predict --help`); results land in bench/out/<name>.json.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import subprocess
import sys
import time
from typing import Sequence

from bench import common as c

# name -> (module, quick arguments, full arguments)
BENCHES: dict[str, tuple[str, list[str], list[str]]] = {
    "predict": ("bench.bench_predict",
                ["--n-images", "512", "--size", "64", "--repeats", "2", "--backbones", "MobileNetV2,EfficientNetB0"],
                ["--n-images", "5000", "--size", "64", "--repeats", "2",
                 "--backbones", "MobileNetV2,ResNet50,EfficientNetB0"]),
    "train_input": ("bench.bench_train_input",
                    ["--n-images", "512", "--size", "64", "--repeats", "2", "--backbones", "Tiny,SmallCNN"],
                    ["--n-images", "2000", "--size", "64", "--repeats", "3", "--backbones", "Tiny,SmallCNN,MobileNetV2"]),
    "dashboard": ("bench.bench_dashboard",
                  ["--moves", "20", "--repeats", "2", "--naive-resamples", "1"],
                  ["--moves", "30", "--repeats", "3", "--naive-resamples", "3", "--apptest"]),
    "memory": ("bench.bench_memory", [], ["--arena-variant"]),
}
LIVE = "bench.bench_live_inference"  # item 4, written separately: run when present
LIVE_ARGS = (["--repeats", "20"], [])  # quick, full (its own default: 60 repeats)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks; returns the number that failed."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the full settings (slow)")
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ", ".join(BENCHES))
    args = ap.parse_args(argv)
    chosen = [b.strip() for b in args.only.split(",") if b.strip()] or list(BENCHES)
    unknown = [b for b in chosen if b not in BENCHES and b != "live_inference"]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; expected among {list(BENCHES) + ['live_inference']}")
    plan = [(name, *BENCHES[name]) for name in chosen if name in BENCHES]
    if importlib.util.find_spec(LIVE) is not None and (not args.only or "live_inference" in chosen):
        plan.append(("live_inference", LIVE, *LIVE_ARGS))
    env_note = f"Machine: {c.machine()}. Mode: {'full' if args.full else 'quick'}."
    print(env_note, flush=True)
    sections, failed = [env_note], 0
    for name, module, quick, full in plan:
        cmd = [sys.executable, "-m", module, *(full if args.full else quick)]
        shown = "python -m " + " ".join(cmd[2:])
        print(f"\n== {name}: {shown}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call(cmd, cwd=c.REPO_ROOT)
        minutes = (time.perf_counter() - start) / 60
        print(f"== {name}: exit {rc} after {minutes:.1f} min", flush=True)
        if rc != 0:
            failed += 1
            sections.append(f"## {name}\n\n`{shown}` FAILED (exit {rc})")
            continue
        sections.append(f"## {name}\n\n`{shown}` ({minutes:.1f} min)\n\n" + _report(name, module))
    c.OUT_DIR.mkdir(parents=True, exist_ok=True)
    (c.OUT_DIR / "summary.md").write_text("\n\n".join(sections) + "\n", encoding="utf-8")
    print(f"\nSummary: {c.OUT_DIR / 'summary.md'}" + (f"; {failed} benchmark(s) failed" if failed else ""))
    return failed


def _report(name: str, module: str) -> str:
    """The benchmark's own report() of its saved JSON, when it has both."""
    path = c.OUT_DIR / f"{name}.json"
    if not path.is_file():
        return "(see its output above)"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        mod = importlib.import_module(module)
        if hasattr(mod, "report"):
            return str(mod.report(data))
        return c.table(data["rows"]) if isinstance(data, dict) and data.get("rows") else "(see its output above)"
    except Exception as exc:  # noqa: BLE001 - a summary problem must not hide the other results
        return f"(could not summarise {path}: {exc})"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
