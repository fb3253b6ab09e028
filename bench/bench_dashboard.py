"""Item 3: the dashboard at scale, server side, through the same `dashboard/data_access.py` calls the pages make.

Artifacts (generated once with `pipeline.fake.make_fake_experiment`, 32 px thumbnails):
- bin300k: 300,000 samples x 10 models, binary; multi50k: 50,000 samples x 10 models x 7 classes.
Measured, each repeated and reported as medians:
- cold load: experiment + every model's aligned predictions + sorted sweeps, after clearing all caches
  (process-cold; the files are in the OS page cache, as on a server that has read them before);
- leaderboard: `get_leaderboard_ci` with 1,000 grouped bootstrap resamples for 10 models, then cached;
  compared against a naive loop (resample groups, scikit-learn metrics per model) timed on a few
  resamples and extrapolated to 1,000;
- threshold slider: one move = metrics at a new threshold for the page's model and its table of all 10
  models; ours (`metrics_at_threshold`, a binary search in the cached sweep) vs naive (threshold the raw
  probabilities, scikit-learn `confusion_matrix` + metric functions), interleaved move by move;
- confusion-cell gallery: predicted labels of the model, the cell's samples most confident first, and the
  first page of thumbnails; also the confusion page's whole rerun on a click (10 models' matrices + gallery);
- one AppTest run of the threshold page (cold, then a slider move), when --apptest is given.
Wall seconds are reported, and process CPU seconds for the single-threaded loads: on a shared machine the
wall time grows with other processes' load, the CPU time does not (on an idle machine they are equal).

Run: python -m bench.bench_dashboard [--n-binary 300000 --n-multi 50000 --n-boot 1000]
"""
from __future__ import annotations

import argparse
import gc
import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bench import common as c

N_MODELS = 10


def make_artifacts(name: str, n_samples: int, n_classes: int, n_models: int = N_MODELS,
                   root: Path | None = None) -> Path:
    """An artifacts root holding one fake experiment `name` (generated once, reused); returns the root."""
    from pipeline.fake import make_fake_experiment

    base = c.cache_dir("artifacts") if root is None else Path(root)
    exp_root = base / f"{name}_{n_samples}x{n_models}x{n_classes}"
    marker = exp_root / ".complete"
    if not marker.is_file():
        exp_root.mkdir(parents=True, exist_ok=True)
        make_fake_experiment(exp_root, name, n_samples=n_samples, n_models=n_models, n_classes=n_classes, seed=11,
                             thumbnails=True)
        marker.write_text("ok", encoding="utf-8")
    return exp_root


def clear_caches() -> None:
    """Empty every Streamlit cache (a fresh server process, as far as the dashboard can tell)."""
    import streamlit as st

    st.cache_data.clear()
    st.cache_resource.clear()
    gc.collect()


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def _timed_cpu(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(wall s, process CPU s, value): CPU time does not grow when other processes take the cores."""
    cpu0, start = time.process_time(), time.perf_counter()
    value = fn()
    return time.perf_counter() - start, time.process_time() - cpu0, value


def cold_load(root: Path, name: str, repeats: int) -> dict[str, Any]:
    """Seconds to open the experiment from cold caches: experiment, aligned predictions, sweeps (medians)."""
    from dashboard import data_access as da

    parts: dict[str, list[float]] = {"experiment s": [], "predictions s": [], "sweeps s": [], "total s": [],
                                     "total CPU s": []}
    for _ in range(repeats):
        clear_caches()
        t_exp, cpu_exp, exp = _timed_cpu(lambda: da.get_experiment(name, root))
        es, ci = exp.eval_sets[0], exp.positive_index
        t_pred, cpu_pred, _ = _timed_cpu(lambda: [da.get_model_data(exp, m, es) for m in exp.models])
        t_sw, cpu_sw, _ = _timed_cpu(lambda: [da.get_sweep(exp, m, es, ci) for m in exp.models])
        for k, v in zip(parts, (t_exp, t_pred, t_sw, t_exp + t_pred + t_sw, cpu_exp + cpu_pred + cpu_sw)):
            parts[k].append(v)
    return {k: c.median(v) for k, v in parts.items()} | {"total (min..max)": c.spread(parts["total s"])}


def naive_bootstrap_seconds(y: np.ndarray, probs: dict[str, np.ndarray], groups: np.ndarray, n_resamples: int,
                            pos_index: int) -> float:
    """Seconds per resample of the obvious loop: draw patients, index rows, scikit-learn metrics per model."""
    from sklearn import metrics as skm

    rng = np.random.default_rng(0)
    uniq, codes = np.unique(groups, return_inverse=True)
    rows_of = np.split(np.argsort(codes, kind="stable"), np.cumsum(np.bincount(codes))[:-1])
    start = time.perf_counter()
    for _ in range(n_resamples):
        idx = np.concatenate([rows_of[g] for g in rng.integers(0, len(uniq), len(uniq))])
        yb = y[idx] == pos_index
        for P in probs.values():
            score = P[idx, pos_index]
            pred = score >= 0.5
            skm.roc_auc_score(yb, score)
            skm.average_precision_score(yb, score)
            skm.confusion_matrix(yb, pred)
            skm.f1_score(yb, pred)
            skm.balanced_accuracy_score(yb, pred)
            skm.accuracy_score(yb, pred)
    return (time.perf_counter() - start) / n_resamples


def leaderboard(root: Path, name: str, n_boot: int, repeats: int, naive_resamples: int) -> dict[str, Any]:
    """Leaderboard with `n_boot` grouped resamples for every model: first (uncached) and cached call."""
    from dashboard import data_access as da

    exp = da.get_experiment(name, root)
    es = exp.eval_sets[0]
    binary = len(exp.class_names) == 2
    thresholds = {m: (0.5 if binary else None) for m in exp.models}
    first, first_cpu, cached = [], [], []
    for _ in range(repeats):
        da._leaderboard_ci.clear()
        t, cpu, _ = _timed_cpu(lambda: da.get_leaderboard_ci(exp, exp.models, es, thresholds, n_boot=n_boot))
        first.append(t)
        first_cpu.append(cpu)
        cached.append(_timed(lambda: da.get_leaderboard_ci(exp, exp.models, es, thresholds, n_boot=n_boot))[0])
    out = {"models": len(exp.models), "resamples": n_boot, "first s": c.median(first),
           "first (min..max)": c.spread(first), "first CPU s": c.median(first_cpu), "cached ms": 1000 * c.median(cached)}
    if binary and naive_resamples > 0:
        mds = [da.get_model_data(exp, m, es) for m in exp.models]
        per = naive_bootstrap_seconds(mds[0].y, {md.model: md.P for md in mds}, mds[0].groups, naive_resamples,
                                      exp.positive_index)
        out["naive s (extrapolated)"] = per * n_boot
        out["naive/ours"] = c.ratio(per * n_boot, out["first s"])
    return out


def naive_metrics(y_bool: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """The metrics of one slider position recomputed from the raw arrays with scikit-learn."""
    from sklearn import metrics as skm

    pred = score >= threshold
    tn, fp, fn, tp = skm.confusion_matrix(y_bool, pred, labels=[False, True]).ravel()
    return {"tp": int(tp), "fp": int(fp), "fn": int(fn), "tn": int(tn),
            "sensitivity": skm.recall_score(y_bool, pred, zero_division=0),
            "specificity": tn / (tn + fp) if tn + fp else float("nan"),
            "precision": skm.precision_score(y_bool, pred, zero_division=0),
            "npv": tn / (tn + fn) if tn + fn else float("nan"),
            "f1": skm.f1_score(y_bool, pred, zero_division=0),
            "balanced_accuracy": skm.balanced_accuracy_score(y_bool, pred),
            "accuracy": skm.accuracy_score(y_bool, pred)}


def slider(root: Path, name: str, moves: int, class_index: int | None = None) -> dict[str, Any]:
    """Per-move compute of the threshold page (its model + the all-models table): ours vs naive, interleaved."""
    from dashboard import data_access as da

    exp = da.get_experiment(name, root)
    es = exp.eval_sets[0]
    ci = exp.positive_index if class_index is None else class_index
    models = list(exp.models)
    mds = {m: da.get_model_data(exp, m, es) for m in models}
    for m in models:  # the page has these cached before the first move
        da.get_sweep(exp, m, es, ci)
        da.get_curves(exp, m, es, ci)
    rng = np.random.default_rng(1)
    thresholds = np.round(rng.uniform(0.02, 0.98, moves), 3)
    times: dict[str, list[float]] = {"ours": [], "naive": []}
    # One move reruns the page: the headline model's metrics, then the table row of every model.
    page = [models[0]] + models
    for k, thr in enumerate(thresholds):
        def ours() -> list[dict[str, float]]:
            return [da.metrics_at_threshold(exp, m, es, ci, thr) for m in page]

        def naive() -> list[dict[str, float]]:
            return [naive_metrics(mds[m].y == ci, mds[m].P[:, ci], thr) for m in page]

        got = {}
        for label, fn in ([("ours", ours), ("naive", naive)] if k % 2 == 0 else [("naive", naive), ("ours", ours)]):
            seconds, got[label] = _timed(fn)
            times[label].append(seconds)
        for a, b in zip(got["ours"], got["naive"]):  # same numbers, or the comparison means nothing
            if (a["tp"], a["fp"], a["fn"], a["tn"]) != (b["tp"], b["fp"], b["fn"], b["tn"]):
                raise AssertionError(f"slider: counts differ at threshold {thr}: {a} vs {b}")
    ours_page, naive_page = c.median(times["ours"]), c.median(times["naive"])
    return {"experiment": name, "n": mds[models[0]].n, "class": exp.class_names[ci], "moves": moves,
            "ours ms/model": 1000 * ours_page / len(page), "naive ms/model": 1000 * naive_page / len(page),
            "ours ms/move (page)": 1000 * ours_page, "naive ms/move (page)": 1000 * naive_page,
            "naive/ours": c.ratio(naive_page, ours_page),
            "target <=50 ms": c.verdict(1000 * ours_page, 50.0, higher_is_better=False)}


def gallery(root: Path, name: str, repeats: int) -> dict[str, Any]:
    """Opening a confusion cell: its samples + first page of thumbnails; and the confusion page's whole rerun."""
    from dashboard import data_access as da
    from dashboard.widgets import GALLERY_PAGE_SIZE

    exp = da.get_experiment(name, root)
    es = exp.eval_sets[0]
    binary = len(exp.class_names) == 2
    pos = exp.positive_index
    mds = {m: da.get_model_data(exp, m, es) for m in exp.models}
    model = exp.models[0]
    t_cls, p_cls = (pos, 1 - pos) if binary else (1, 0)  # a misclassified cell: false negatives / 1 -> 0

    def cell_page(md: Any, pred: np.ndarray) -> list[bytes | None]:
        idx = da.cell_indices(md.y, pred, t_cls, p_cls, confidence=md.P[:, p_cls])
        ids = [str(s) for s in md.sample_ids[idx[:GALLERY_PAGE_SIZE]]]
        return da.get_thumbnails(exp, ids)

    def one_cell() -> list[bytes | None]:
        md = mds[model]
        return cell_page(md, da.predicted_labels(md, 0.5 if binary else None, pos))

    def whole_page() -> list[bytes | None]:
        preds = {m: da.predicted_labels(md, 0.5 if binary else None, pos) for m, md in mds.items()}
        for m, md in mds.items():
            da.confusion_counts(md.y, preds[m], len(exp.class_names))
        return cell_page(mds[model], preds[model])

    da._thumbnails.clear()
    cold_thumbs, page = _timed(one_cell)  # first gallery in this process: reads thumbnails.parquet
    if sum(p is not None for p in page) == 0:
        raise AssertionError("gallery: no thumbnails found for the first page")
    t = c.interleaved({"cell": one_cell, "page": whole_page}, repeats, warmup=1)
    cell_ms, page_ms = 1000 * t.median_wall("cell"), 1000 * t.median_wall("page")
    return {"experiment": name, "cell": f"{exp.class_names[t_cls]} -> {exp.class_names[p_cls]}",
            "cell + thumbnails ms": cell_ms, "confusion page rerun ms": page_ms,
            "first open (thumbnails read) s": cold_thumbs,
            "target <=300 ms": c.verdict(page_ms, 300.0, higher_is_better=False)}


def apptest_threshold_page(root: Path, name: str) -> dict[str, Any]:
    """Wall seconds of AppTest runs of the threshold page: cold (all caches empty), then one slider move."""
    from streamlit.testing.v1 import AppTest

    old = os.environ.get("MEDCOMPARE_ARTIFACTS")
    os.environ["MEDCOMPARE_ARTIFACTS"] = str(root)
    try:
        clear_caches()
        at = AppTest.from_file(str(c.REPO_ROOT / "dashboard" / "app.py"), default_timeout=600)
        at.query_params["exp"] = name
        t_first, _ = _timed(at.run)
        t_cold, _ = _timed(lambda: at.switch_page("app_pages/thresholds.py").run())
        if at.exception:
            raise AssertionError([e.value for e in at.exception])
        sliders = [s for s in at.slider if str(s.key).startswith("thr_slider::")]
        t_move, _ = _timed(lambda: sliders[0].set_value(0.3).run())
        t_move2, _ = _timed(lambda: at.slider(sliders[0].key).set_value(0.7).run())
        if at.exception:
            raise AssertionError([e.value for e in at.exception])
    finally:
        if old is None:
            os.environ.pop("MEDCOMPARE_ARTIFACTS", None)
        else:
            os.environ["MEDCOMPARE_ARTIFACTS"] = old
    return {"experiment": name, "first page (overview) cold s": t_first, "threshold page s": t_cold,
            "slider move s (whole rerun)": c.median([t_move, t_move2])}


def run(n_binary: int, n_multi: int, n_boot: int, moves: int, repeats: int, naive_resamples: int,
        apptest: bool, root: Path | None = None, n_models: int = N_MODELS) -> dict[str, Any]:
    """Generate (once) the two artifacts and measure every item on both."""
    from streamlit.logger import set_log_level

    set_log_level("error")  # bare-mode warnings on every cached call
    exps = [("bin", make_artifacts("bin", n_binary, 2, n_models, root)),
            ("multi7", make_artifacts("multi7", n_multi, 7, n_models, root))]
    out: dict[str, Any] = {"settings": {"n_binary": n_binary, "n_multi": n_multi, "n_models": n_models,
                                        "n_boot": n_boot, "moves": moves, "repeats": repeats}}
    for key in ("cold_load", "leaderboard", "slider", "gallery", "apptest"):
        out[key] = []
    for name, exp_root in exps:
        n = n_binary if name == "bin" else n_multi
        print(f"  {name} ({n:,} samples)", flush=True)
        row = cold_load(exp_root, name, repeats)
        out["cold_load"].append({"experiment": name, "samples": n, **row,
                                 "target <=5 s": c.verdict(row["total s"], 5.0, higher_is_better=False),
                                 "CPU <=5 s": c.verdict(row["total CPU s"], 5.0, higher_is_better=False)})
        lb = leaderboard(exp_root, name, n_boot, repeats, naive_resamples)
        out["leaderboard"].append({"experiment": name, **lb,
                                   "target <=10 s": c.verdict(lb["first s"], 10.0, higher_is_better=False),
                                   "CPU <=10 s": c.verdict(lb["first CPU s"], 10.0, higher_is_better=False)})
        out["slider"].append(slider(exp_root, name, moves))
        out["gallery"].append(gallery(exp_root, name, repeats))
    if apptest:
        out["apptest"].append(apptest_threshold_page(exps[0][1], "bin"))
    return out


def report(result: dict[str, Any]) -> str:
    """Markdown tables of a `run` result."""
    s = result["settings"]
    parts = [f"Dashboard at scale: {s['n_binary']:,} x {s['n_models']} binary, {s['n_multi']:,} x {s['n_models']} "
             f"x 7 classes; {s['n_boot']} bootstrap resamples; {s['moves']} slider moves; {s['repeats']} repeats"]
    for key, title in (("cold_load", "Cold load (s)"), ("leaderboard", "Leaderboard"),
                       ("slider", "Threshold slider, per move"), ("gallery", "Confusion-cell gallery"),
                       ("apptest", "AppTest, threshold page")):
        if result[key]:
            parts.append(f"**{title}**\n\n" + c.table(result[key]))
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run, print the tables, save bench/out/dashboard.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-binary", type=int, default=300_000)
    ap.add_argument("--n-multi", type=int, default=50_000)
    ap.add_argument("--n-models", type=int, default=N_MODELS)
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--moves", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--naive-resamples", type=int, default=3,
                    help="resamples of the naive bootstrap loop actually run (then extrapolated); 0 to skip")
    ap.add_argument("--apptest", action="store_true", help="also time the threshold page through AppTest")
    ap.add_argument("--root", type=Path, default=None, help="where to generate artifacts (default .cache/bench)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.n_binary, args.n_multi, args.n_boot, args.moves, args.repeats, args.naive_resamples,
                 args.apptest, args.root, args.n_models)
    print(report(result), flush=True)
    if not args.no_save:
        c.save_result("dashboard", {"command": "python -m bench.bench_dashboard " + " ".join(argv or []), **result})
    return result


if __name__ == "__main__":
    main(__import__("sys").argv[1:])
