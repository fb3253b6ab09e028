"""Issue 12 at scale: an experiment with repeated runs, through the `dashboard/data_access.py` calls the pages make.

Artifacts (generated once with `pipeline.fake.make_fake_experiment(runs=5)`, no thumbnails): 300,000 test samples
(grouped, 3 per patient on average) x 10 backbones x 5 runs = 50 model folders, binary. Measured, each as
wall and process-CPU seconds, medians over rounds run side by side with a naive computation
(`bench.common.interleaved`, order rotated every round):

- cold load (what the Overview does on first open): the experiment, the runs table (50 config.json), every
  run's aligned predictions and the 10 shown models' sorted sweeps, caches cleared before each round;
  naive: per run, pandas `read_parquet` + filter + `merge` on sample_id with the sample table;
- leaderboard: `get_leaderboard_ci` (10 first runs, 1,000 grouped resamples) plus `get_runs_spread` (every
  metric of all 50 runs: the mean/SD/range columns), first call and cached; naive: the resample-groups +
  scikit-learn loop of `bench_dashboard` (timed on a few resamples, extrapolated to 1,000) plus the 50 runs'
  scikit-learn metrics and a pandas groupby for mean/SD, the latter interleaved with ours;
- threshold slider move: metrics of the moved model and the page's table (10 shown models) from the cached
  sweeps vs scikit-learn on the raw probabilities, interleaved move by move; also all 50 runs per move;
- Runs & stability page first open (`get_runs_comparison`, 200 resamples over 50 runs: rank stability and
  the pairwise tests), reported without a naive counterpart.

Run: python -m bench.bench_runs_scale [--n 300000 --backbones 10 --runs 5 --n-boot 1000]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from bench import common as c
from bench.bench_dashboard import clear_caches, naive_bootstrap_seconds, naive_metrics


def make_artifacts(n: int, backbones: int, runs: int, root: Path | None = None) -> tuple[Path, str]:
    """(artifacts root, experiment name) of a fake multi-run experiment, generated once and reused."""
    from pipeline.fake import make_fake_experiment

    name = "runs"
    base = c.cache_dir("artifacts") if root is None else Path(root)
    exp_root = base / f"runs_{n}x{backbones}x{runs}"
    marker = exp_root / ".complete"
    if not marker.is_file():
        exp_root.mkdir(parents=True, exist_ok=True)
        make_fake_experiment(exp_root, name, n_samples=n, n_models=backbones, runs=runs, seed=12, thumbnails=False)
        marker.write_text("ok", encoding="utf-8")
    return exp_root, name


def _timed_cpu(fn: Any) -> tuple[float, float, Any]:
    cpu0, start = time.process_time(), time.perf_counter()
    value = fn()
    return time.perf_counter() - start, time.process_time() - cpu0, value


def _shown(exp: Any) -> list[str]:
    """The sidebar's default selection: each backbone's first run."""
    from pipeline.runs import RUN_SEPARATOR

    return [m for m in exp.models if RUN_SEPARATOR not in m]


def cold_load(root: Path, name: str, repeats: int) -> dict[str, Any]:
    """First open: experiment + runs table + every run's aligned predictions + the shown models' sweeps."""
    import pandas as pd

    from dashboard import data_access as da
    from pipeline import artifacts as art

    def ours() -> int:
        clear_caches()
        exp = da.get_experiment(name, root)
        groups = da.get_backbone_runs(exp)
        es, ci = exp.eval_sets[0], exp.positive_index
        n = sum(da.get_model_data(exp, m, es).n for runs in groups.values() for m in runs)
        for m in _shown(exp):
            da.get_sweep(exp, m, es, ci)
        return n

    def naive() -> int:
        exp_dir = root / name
        samples = pd.read_parquet(exp_dir / art.SAMPLES_FILE, columns=["sample_id", "label", "group", "eval_set"])
        n = 0
        for d in sorted((exp_dir / art.MODELS_DIR).iterdir()):
            p = pd.read_parquet(d / art.PREDICTIONS_FILE)
            p = p[p["eval_set"] == "test"].merge(samples[["sample_id", "label", "group"]], on="sample_id")
            n += len(p)
        return n

    got: dict[str, int] = {}
    t = c.interleaved(
        {"ours": ours, "naive": naive}, repeats, warmup=0, on_result=lambda k, r, s, v: got.update({k: v})
    )
    if got["ours"] != got["naive"]:
        raise AssertionError(f"cold load: rows differ: ours {got['ours']} vs naive {got['naive']}")
    return {
        "backbones": len(da.get_backbone_runs(da.get_experiment(name, root))),
        "model folders": sum(1 for _ in (root / name / art.MODELS_DIR).iterdir()),
        "ours s": t.median_wall("ours"),
        "ours CPU s": t.median_cpu("ours"),
        "ours (min..max)": c.spread(t.wall["ours"]),
        "naive s": t.median_wall("naive"),
        "naive CPU s": t.median_cpu("naive"),
        "naive/ours": c.ratio(t.median_wall("naive"), t.median_wall("ours")),
        "target <=5 s": c.verdict(t.median_wall("ours"), 5.0, higher_is_better=False),
        "CPU <=5 s": c.verdict(t.median_cpu("ours"), 5.0, higher_is_better=False),
    }


def naive_runs_spread(y_bool: np.ndarray, probs: dict[str, np.ndarray], owner: dict[str, str]) -> Any:
    """The over-runs columns the obvious way: scikit-learn metrics of each run, then a pandas groupby."""
    import pandas as pd
    from sklearn import metrics as skm

    rows = []
    for m, P in probs.items():
        score = P[:, 1]
        row = naive_metrics(y_bool, score, 0.5)
        row["roc_auc"] = skm.roc_auc_score(y_bool, score)
        row["average_precision"] = skm.average_precision_score(y_bool, score)
        rows.append({"backbone": owner[m], **row})
    return pd.DataFrame(rows).groupby("backbone", sort=False).agg(["mean", "std", "min", "max"])


def leaderboard(root: Path, name: str, n_boot: int, repeats: int, naive_resamples: int) -> dict[str, Any]:
    """Leaderboard with `n_boot` grouped resamples of the shown runs plus every run's mean/SD: first and cached."""
    from dashboard import data_access as da

    exp = da.get_experiment(name, root)
    es = exp.eval_sets[0]
    shown = _shown(exp)
    groups = da.get_backbone_runs(exp)
    runs = [r for rs in groups.values() for r in rs]
    thr = {m: 0.5 for m in runs}

    def ours_first() -> Any:
        da._leaderboard_ci.clear()
        da._runs_spread.clear()
        ci = da.get_leaderboard_ci(exp, shown, es, thr, n_boot=n_boot)
        return ci, da.get_runs_spread(exp, runs, es, thr)

    def ours_cached() -> Any:
        return da.get_leaderboard_ci(exp, shown, es, thr, n_boot=n_boot), da.get_runs_spread(exp, runs, es, thr)

    first, first_cpu, cached = [], [], []
    for _ in range(repeats):
        w, cpu, (ci, spread) = _timed_cpu(ours_first)
        first.append(w)
        first_cpu.append(cpu)
        cached.append(_timed_cpu(ours_cached)[0])
    # the runs' mean/SD part alone, ours vs naive side by side
    mds = {m: da.get_model_data(exp, m, es) for m in runs}
    owner = {r: b for b, rs in groups.items() for r in rs}
    y_bool = mds[runs[0]].y == exp.positive_index
    probs = {m: md.P for m, md in mds.items()}

    def ours_spread() -> Any:
        da._runs_spread.clear()
        return da.get_runs_spread(exp, runs, es, thr)

    got: dict[str, Any] = {}
    t = c.interleaved(
        {"ours": ours_spread, "naive": lambda: naive_runs_spread(y_bool, probs, owner)},
        repeats,
        warmup=0,
        on_result=lambda k, r, s, v: got.update({k: v}),
    )
    auc = got["ours"]["roc_auc"].set_index("backbone")
    ref = got["naive"]["roc_auc"]
    if not np.allclose(auc.loc[ref.index, "mean"], ref["mean"]) or not np.allclose(
        auc.loc[ref.index, "sd"], ref["std"]
    ):
        raise AssertionError("leaderboard: mean/SD over runs differ from the naive computation")
    per = (
        naive_bootstrap_seconds(
            mds[shown[0]].y, {m: mds[m].P for m in shown}, mds[shown[0]].groups, naive_resamples, exp.positive_index
        )
        if naive_resamples > 0
        else float("nan")
    )
    naive_total = per * n_boot + t.median_wall("naive")
    return {
        "shown models": len(shown),
        "runs": len(runs),
        "resamples": n_boot,
        "first s": c.median(first),
        "first (min..max)": c.spread(first),
        "first CPU s": c.median(first_cpu),
        "cached ms": 1000 * c.median(cached),
        "runs mean/SD ours s": t.median_wall("ours"),
        "runs mean/SD naive s": t.median_wall("naive"),
        "runs mean/SD naive/ours": c.ratio(t.median_wall("naive"), t.median_wall("ours")),
        "naive total s (bootstrap extrapolated)": naive_total,
        "naive/ours": c.ratio(naive_total, c.median(first)),
        "target <=10 s": c.verdict(c.median(first), 10.0, higher_is_better=False),
        "CPU <=10 s": c.verdict(c.median(first_cpu), 10.0, higher_is_better=False),
    }


def slider(root: Path, name: str, moves: int) -> dict[str, Any]:
    """One threshold move: the moved model + the page's table of the shown models; and all runs; ours vs naive."""
    from dashboard import data_access as da

    exp = da.get_experiment(name, root)
    es, ci = exp.eval_sets[0], exp.positive_index
    runs = list(exp.models)
    page = [_shown(exp)[0], *_shown(exp)]
    mds = {m: da.get_model_data(exp, m, es) for m in runs}
    for m in runs:
        da.get_sweep(exp, m, es, ci)
    rng = np.random.default_rng(1)
    out: dict[str, Any] = {"moves": moves}
    for label, models in (("page", page), ("all runs", runs)):
        times: dict[str, list[float]] = {"ours": [], "naive": []}
        for k, thr in enumerate(np.round(rng.uniform(0.02, 0.98, moves), 3)):
            fns = {
                "ours": lambda: [da.metrics_at_threshold(exp, m, es, ci, thr) for m in models],  # noqa: B023
                "naive": lambda: [naive_metrics(mds[m].y == ci, mds[m].P[:, ci], thr) for m in models],  # noqa: B023
            }
            got = {}
            for name_ in ["ours", "naive"] if k % 2 == 0 else ["naive", "ours"]:
                start = time.perf_counter()
                got[name_] = fns[name_]()
                times[name_].append(time.perf_counter() - start)
            for a, b in zip(got["ours"], got["naive"]):
                if (a["tp"], a["fp"], a["fn"], a["tn"]) != (b["tp"], b["fp"], b["fn"], b["tn"]):
                    raise AssertionError(f"slider: counts differ at threshold {thr}")
        ours_ms, naive_ms = 1000 * c.median(times["ours"]), 1000 * c.median(times["naive"])
        out[f"{label}: models"] = len(models)
        out[f"{label}: ours ms/move"] = ours_ms
        out[f"{label}: naive ms/move"] = naive_ms
        out[f"{label}: naive/ours"] = c.ratio(naive_ms, ours_ms)
    out["target <=50 ms (page)"] = c.verdict(out["page: ours ms/move"], 50.0, higher_is_better=False)
    return out


def runs_page(root: Path, name: str, n_boot: int) -> dict[str, Any]:
    """First open of Runs & stability for every backbone: rank stability over runs x resamples, pairwise tests."""
    from dashboard import data_access as da

    exp = da.get_experiment(name, root)
    es = exp.eval_sets[0]
    runs = list(exp.models)
    da._runs_comparison.clear()
    w, cpu, res = _timed_cpu(lambda: da.get_runs_comparison(exp, runs, es, "roc_auc", {}, n_boot=n_boot))
    cached = _timed_cpu(lambda: da.get_runs_comparison(exp, runs, es, "roc_auc", {}, n_boot=n_boot))[0]
    return {
        "runs": len(runs),
        "resamples": n_boot,
        "first s": w,
        "first CPU s": cpu,
        "cached ms": 1000 * cached,
        "pairs": len(res.pairs),
        "rank-first sum": float(res.table["rank_first"].sum()),
    }


def run(
    n: int,
    backbones: int,
    runs: int,
    n_boot: int,
    moves: int,
    repeats: int,
    naive_resamples: int,
    runs_boot: int = 200,
    root: Path | None = None,
) -> dict[str, Any]:
    """Generate (once) the experiment and measure every item."""
    from streamlit.logger import set_log_level

    set_log_level("error")
    exp_root, name = make_artifacts(n, backbones, runs, root)
    out: dict[str, Any] = {
        "settings": {
            "n": n,
            "backbones": backbones,
            "runs": runs,
            "n_boot": n_boot,
            "moves": moves,
            "repeats": repeats,
            "runs_boot": runs_boot,
        }
    }
    out["load_average_before"] = os.getloadavg()
    for key, fn in (
        ("cold_load", lambda: cold_load(exp_root, name, repeats)),
        ("leaderboard", lambda: leaderboard(exp_root, name, n_boot, repeats, naive_resamples)),
        ("slider", lambda: slider(exp_root, name, moves)),
        ("runs_page", lambda: runs_page(exp_root, name, runs_boot)),
    ):
        print(f"  {key} ...", flush=True)
        out[key] = [fn()]
    out["load_average_after"] = os.getloadavg()
    return out


def report(result: dict[str, Any]) -> str:
    """Markdown tables of a `run` result."""
    s = result["settings"]
    parts = [
        f"Runs at scale: {s['n']:,} samples x {s['backbones']} backbones x {s['runs']} runs (binary); "
        f"{s['n_boot']} resamples; {s['moves']} slider moves; {s['repeats']} rounds; load average "
        f"{tuple(round(x, 2) for x in result['load_average_before'])} before, "
        f"{tuple(round(x, 2) for x in result['load_average_after'])} after"
    ]
    for key, title in (
        ("cold_load", "Cold load (first open)"),
        ("leaderboard", "Leaderboard with runs"),
        ("slider", "Threshold slider, per move"),
        ("runs_page", "Runs & stability, first open"),
    ):
        parts.append(f"**{title}**\n\n" + c.table(result[key]))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run, print the tables, save bench/out/runs_scale.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--backbones", type=int, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--runs-boot", type=int, default=200, help="resamples of the Runs & stability page")
    ap.add_argument("--moves", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--naive-resamples",
        type=int,
        default=2,
        help="resamples of the naive bootstrap loop actually run (then extrapolated); 0 to skip",
    )
    ap.add_argument("--root", type=Path, default=None, help="where to generate artifacts (default .cache/bench)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    result = run(
        args.n,
        args.backbones,
        args.runs,
        args.n_boot,
        args.moves,
        args.repeats,
        args.naive_resamples,
        args.runs_boot,
        args.root,
    )
    print(report(result), flush=True)
    if not args.no_save:
        c.save_result("runs_scale", {"command": "python -m bench.bench_runs_scale " + " ".join(argv or []), **result})
    return result


if __name__ == "__main__":
    main(__import__("sys").argv[1:])
