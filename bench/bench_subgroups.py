"""Subgroups page compute at scale: 300,000 samples x 10 models x 20 subgroups, ours against the naive per-subgroup
scikit-learn loop, interleaved in one process (bench/common.py).

Measured:
- first: everything the page shows for a column (per model and subgroup n, sensitivity, specificity, balanced
  accuracy, AUC with patient-grouped bootstrap CIs, the largest gap with its CI, ECE per subgroup). The naive
  loop slices each subgroup and calls scikit-learn for every metric, resample and model; it runs a few resamples
  and is scaled linearly to the same resample count (its cost is linear in the resamples).
- threshold move: the per-subgroup point values at new thresholds (the fast path, one bincount per model) against
  the scikit-learn loop over the slices (points only).

Run: `nice -n 10 python -m bench.bench_subgroups` (`--n`, `--models`, `--subgroups`, `--n-boot`, `--repeats`).
Wall times on a loaded machine move with the load; the CPU column (process time, all threads) much less, so the
verdict is on CPU time (the compute is single-threaded: on a quiet machine wall equals CPU).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from sklearn import metrics as skm

from bench.common import interleaved, machine, ratio, table, verdict
from pipeline import metrics as mt


def make_data(
    n: int, n_models: int, n_subgroups: int, seed: int = 0
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Labels, probabilities, subgroup codes (unequal sizes) and patient groups (3 samples each on average)."""
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n // 3, n)
    sub_p = np.linspace(1.0, 3.0, n_subgroups)
    sub_of_group = rng.choice(n_subgroups, n // 3, p=sub_p / sub_p.sum())
    sub = sub_of_group[groups]
    y = (rng.random(n) < 0.3).astype(np.int64)
    probs = {}
    for m in range(n_models):
        skill = 0.6 + 2.0 * (m + 1) / n_models - 0.04 * sub  # later subgroups are harder
        z = skill * (2 * y - 1) + rng.normal(0, 1.0, n)
        p = 1 / (1 + np.exp(-z))
        probs[f"model{m}"] = np.column_stack([1 - p, p])
    return y, probs, sub, groups


def ours_first(y, probs, sub, groups, n_boot, thresholds):
    res = mt.subgroup_metrics(y, probs, sub, groups, thresholds=thresholds, n_boot=n_boot, min_size=30)
    gaps = {m: mt.largest_gap(res, m, "roc_auc") for m in probs}
    ece = {m: mt.subgroup_ece(y, P[:, 1], sub, n_subgroups=len(res.names)) for m, P in probs.items()}
    return res, gaps, ece


def ours_move(y, probs, sub, thresholds):
    return mt.subgroup_point_metrics(y, probs, sub, thresholds=thresholds)


def _sk_metrics(yy, pp, t):
    pred = pp >= t
    return (
        skm.recall_score(yy, pred, zero_division=0),
        skm.recall_score(1 - yy, ~pred, zero_division=0),
        skm.balanced_accuracy_score(yy, pred),
        skm.roc_auc_score(yy, pp),
    )


def naive_points(y, probs, sub, thresholds):
    out = {}
    for m, P in probs.items():
        out[m] = [_sk_metrics(y[sub == s], P[sub == s, 1], thresholds[m]) for s in range(int(sub.max()) + 1)]
    return out


def naive_first(y, probs, sub, groups, n_boot, thresholds, seed=0):
    """Points, then `n_boot` grouped resamples per subgroup and model, each scored with scikit-learn."""
    rng = np.random.default_rng(seed)
    out = naive_points(y, probs, sub, thresholds)
    for s in range(int(sub.max()) + 1):
        idx = np.flatnonzero(sub == s)
        g = groups[idx]
        uniq, inv = np.unique(g, return_inverse=True)
        members = np.split(np.argsort(inv, kind="stable"), np.cumsum(np.bincount(inv))[:-1])
        for _ in range(n_boot):
            pick = rng.integers(0, uniq.size, uniq.size)
            rows = idx[np.concatenate([members[k] for k in pick])]
            for m, P in probs.items():
                _sk_metrics(y[rows], P[rows, 1], thresholds[m])
        # ECE per subgroup, as the page shows it
        for P in probs.values():
            mt.expected_calibration_error(y[idx], P[idx, 1])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300_000)
    ap.add_argument("--models", type=int, default=10)
    ap.add_argument("--subgroups", type=int, default=20)
    ap.add_argument("--n-boot", type=int, default=200, help="resamples (the page's default)")
    ap.add_argument("--naive-boot", type=int, default=2, help="resamples the naive loop runs (scaled to --n-boot)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    y, probs, sub, groups = make_data(args.n, args.models, args.subgroups)
    thr = {m: 0.5 for m in probs}
    moved = {m: 0.42 for m in probs}
    print(machine())
    print("load average at start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        f"data: {args.n:,} samples x {args.models} models x {args.subgroups} subgroups, "
        f"{np.unique(groups).size:,} patients; {args.n_boot} resamples"
    )

    # Correctness first: our points equal scikit-learn's on every slice.
    res = mt.subgroup_metrics(y, probs, sub, groups, thresholds=thr, n_boot=20, min_size=30)
    ref = naive_points(y, probs, sub, thr)
    worst = max(
        abs(res.values[m][k][s].point - ref[m][s][j])
        for m in probs
        for s in range(args.subgroups)
        for j, k in enumerate(("sensitivity", "specificity", "balanced_accuracy", "roc_auc"))
    )
    print(f"max |ours - scikit-learn| over every point: {worst:.2e}")

    first = interleaved(
        {
            "ours": lambda: ours_first(y, probs, sub, groups, args.n_boot, thr),
            "naive": lambda: naive_first(y, probs, sub, groups, args.naive_boot, thr),
        },
        repeats=args.repeats,
        warmup=0,
    )
    naive_points_t = time.perf_counter()
    naive_points(y, probs, sub, thr)
    naive_points_t = time.perf_counter() - naive_points_t
    ours_first_s = first.median_wall("ours")
    naive_boot_part = max(first.median_wall("naive") - naive_points_t, 0.0)
    naive_first_s = naive_points_t + naive_boot_part * args.n_boot / args.naive_boot
    move = interleaved(
        {
            "ours": lambda: ours_move(y, probs, sub, moved),
            "naive": lambda: naive_points(y, probs, sub, moved),
        },
        repeats=max(args.repeats, 5),
    )
    ours_move_s, naive_move_s = move.median_wall("ours"), move.median_wall("naive")
    rows = [
        {
            "measurement": f"first: every number with {args.n_boot} grouped resamples, gaps, ECE",
            "ours s": ours_first_s,
            "ours CPU s": first.median_cpu("ours"),
            "naive s": naive_first_s,
            "naive / ours": ratio(naive_first_s, ours_first_s),
            "target": "<= 2 s (CPU)",
            "verdict": verdict(first.median_cpu("ours"), 2.0, higher_is_better=False),
        },
        {
            "measurement": "threshold move: point values at new thresholds",
            "ours s": ours_move_s,
            "ours CPU s": move.median_cpu("ours"),
            "naive s": naive_move_s,
            "naive / ours": ratio(naive_move_s, ours_move_s),
            "target": "<= 0.05 s (CPU)",
            "verdict": verdict(move.median_cpu("ours"), 0.05, higher_is_better=False),
        },
    ]
    print(table(rows))
    print("load average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(
        f"naive first: points {naive_points_t:.2f} s + {args.naive_boot} resamples measured "
        f"({naive_boot_part:.2f} s), scaled to {args.n_boot}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
