"""Data-audit benchmark and the planted-duplicate image generator its tests share.

    python -m bench.bench_audit planted                  # recall/precision on planted duplicates
    python -m bench.bench_audit breastmnist [--grid PNG] # leakage of BreastMNIST's official split
    python -m bench.bench_audit scale --n 300000          # throughput and peak memory on a generated set
    python -m bench.bench_audit leakfree artifacts/breastmnist  # each model's AUC: all vs leak-free test images

Generated images: smooth multi-scale gray textures with blobs. Images of one *family* share their
low-frequency layout (look-alike distractors: same anatomy, different image); planted duplicates are a base
image resized, JPEG re-encoded, cropped by a few pixels or brightness-shifted (or two of these).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

TRANSFORMS = ("resize", "jpeg", "crop", "brightness", "resize+jpeg", "crop+brightness")


def _field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field in about [-1, 1] (cubic upsampling of a cells x cells grid)."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def base_image(rng: np.random.Generator, size: int, layout: np.ndarray) -> np.ndarray:
    """One gray uint8 image: the family layout + its own mid/high-frequency texture and blobs."""
    img = 120 + 45 * cv2.resize(layout, (size, size), interpolation=cv2.INTER_CUBIC)
    img += 28 * _field(rng, size, 7) + 14 * _field(rng, size, 15) + rng.normal(0, 5, (size, size))
    for _ in range(int(rng.integers(2, 5))):
        margin = size // 8
        centre = (int(rng.integers(margin, size - margin)), int(rng.integers(margin, size - margin)))
        lo, hi = size // 16 + 1, size // 5
        axes = (int(rng.integers(lo, hi)), int(rng.integers(lo, hi)))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, float(rng.uniform(10, 240)), -1)
    return np.clip(cv2.GaussianBlur(img, (3, 3), 0.7), 0, 255).astype(np.uint8)


def transform(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """A planted near-duplicate of `img`: each part of `kind` ('resize+jpeg', ...) applied in turn."""
    out = img
    for part in kind.split("+"):
        h, w = out.shape[:2]
        if part == "resize":
            f = float(rng.choice([rng.uniform(0.5, 0.8), rng.uniform(1.25, 1.6)]))
            out = cv2.resize(
                out,
                (max(8, round(w * f)), max(8, round(h * f))),
                interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR,
            )
        elif part == "jpeg":
            ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 86))])
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        elif part == "crop":
            t, b, left, r = (int(v) for v in rng.integers(0, 4, 4))
            t, left = max(t, 1), max(left, 1)
            out = out[t : h - b, left : w - r]
        elif part == "brightness":
            shift = int(rng.choice([-1, 1]) * rng.integers(20, 45))
            out = np.clip(out.astype(np.int16) + shift, 0, 255).astype(np.uint8)
        else:
            raise ValueError(
                f"Invalid value for argument `kind`. Expected parts among {TRANSFORMS}. Received: {kind!r}"
            )
    return np.ascontiguousarray(out)


@dataclass
class Planted:
    """A generated set: images (gray uint8), their ids, origin (base index) and how each was made."""

    images: list[np.ndarray]
    ids: list[str]
    origin: np.ndarray  # base image each one derives from (bases are their own origin)
    family: np.ndarray  # look-alike family
    kind: list[str]  # "base" or the transform
    labels: np.ndarray

    def true_pairs(self) -> set[tuple[str, str]]:
        """Every unordered pair of images with the same origin."""
        out = set()
        frame = pd.DataFrame({"id": self.ids, "origin": self.origin})
        for _, part in frame.groupby("origin"):
            members = sorted(part["id"])
            out.update((a, b) for i, a in enumerate(members) for b in members[i + 1 :])
        return out


def planted_set(
    n_families: int = 30,
    per_family: int = 5,
    n_dups: int = 100,
    seed: int = 0,
    sizes: tuple[int, int] = (64, 112),
    n_conflicts: int = 5,
) -> Planted:
    """Bases in look-alike families plus `n_dups` planted copies (cycling through TRANSFORMS).

    Labels follow the family; `n_conflicts` planted copies get the other label (conflicting duplicates).
    """
    rng = np.random.default_rng(seed)
    images, ids, origin, family, kind, labels = [], [], [], [], [], []
    for f in range(n_families):
        layout = rng.standard_normal((3, 3)).astype(np.float32)
        for _ in range(per_family):
            size = int(rng.integers(sizes[0], sizes[1] + 1))
            images.append(base_image(rng, size, layout))
            k = len(ids)
            ids.append(f"img{k:06d}")
            origin.append(k)
            family.append(f)
            kind.append("base")
            labels.append(f % 2)
    n_base = len(images)
    for d in range(n_dups):
        src = int(rng.integers(0, n_base))
        t = TRANSFORMS[d % len(TRANSFORMS)]
        images.append(transform(images[src], t, rng))
        ids.append(f"img{len(ids):06d}")
        origin.append(src)
        family.append(family[src])
        kind.append(t)
        labels.append(labels[src] if d >= n_conflicts else 1 - labels[src])
    return Planted(images, ids, np.array(origin), np.array(family), kind, np.array(labels))


def write_planted(planted: Planted, root: Path, class_names: tuple[str, str] = ("benign", "malignant")) -> pd.DataFrame:
    """Write a class-folders layout (JPEG for re-encoded copies, PNG otherwise); returns id -> path."""
    rows = []
    for img, sid, k, label in zip(planted.images, planted.ids, planted.kind, planted.labels):
        folder = Path(root) / class_names[int(label)]
        folder.mkdir(parents=True, exist_ok=True)
        ext = ".jpg" if "jpeg" in k else ".png"
        path = folder / f"{sid}{ext}"
        if ext == ".jpg":  # the copy was re-encoded already; store it losslessly-enough as high-quality JPEG
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        else:
            cv2.imwrite(str(path), img)
        rows.append((sid, str(path), int(label)))
    return pd.DataFrame(rows, columns=["sample_id", "path", "label"])


def score(found: pd.DataFrame, truth: set[tuple[str, str]], origin_of: dict[str, int]) -> dict[str, float]:
    """Pair recall (truth pairs inside one found cluster) and pair precision (found pairs with one origin)."""
    tp = sum(origin_of[a] == origin_of[b] for a, b in zip(found["a"], found["b"]))
    precision = tp / len(found) if len(found) else 1.0
    return {"found_pairs": int(len(found)), "precision": round(precision, 4), "true_pairs": len(truth)}


def cluster_recall(quality: pd.DataFrame, truth: set[tuple[str, str]]) -> float:
    """Share of true pairs whose two images ended in the same duplicate cluster."""
    cl = dict(zip(quality["sample_id"], quality["cluster"]))
    hit = sum(cl[a] >= 0 and cl[a] == cl[b] for a, b in truth)
    return hit / len(truth) if truth else 1.0


# ============================================================================ benchmarks


def peak_rss_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return round(max(own, kids) / 1024, 1)


def bench_planted(args: argparse.Namespace) -> dict:
    import tempfile

    from pipeline.audit import AuditSettings, audit_samples

    planted = planted_set(n_families=args.families, per_family=5, n_dups=args.dups, seed=args.seed)
    truth = planted.true_pairs()
    origin_of = dict(zip(planted.ids, planted.origin.tolist()))
    out = {"images": len(planted.ids), "true_pairs": len(truth), "rows": []}
    with tempfile.TemporaryDirectory() as tmp:
        table = write_planted(planted, Path(tmp))
        for threshold in args.thresholds:
            res = audit_samples(table, AuditSettings(threshold=threshold), jobs=1)
            row = {
                "threshold": threshold,
                **score(res.pairs, truth, origin_of),
                "cluster_recall": round(cluster_recall(res.quality, truth), 4),
                "candidates": res.summary["search"]["candidates"],
            }
            out["rows"].append(row)
            print(row, flush=True)
    return out


def breastmnist_table(path: Path) -> pd.DataFrame:
    """BreastMNIST's sample table the way the npz layout writes it (official split kept)."""
    with np.load(path, allow_pickle=False) as data:
        rows = []
        for split in ("train", "val", "test"):
            labels = data[f"{split}_labels"].ravel()
            for i, label in enumerate(labels.tolist()):
                sid = f"{split}_images[{i}]"
                rows.append((sid, f"{path}::{sid}", int(label), split, split if split != "train" else None))
    table = pd.DataFrame(rows, columns=["sample_id", "path", "label", "split", "eval_set"])
    table["eval_set"] = table["split"].where(table["split"].isin(["val", "test"]), None)
    return table


def bench_breastmnist(args: argparse.Namespace) -> dict:
    from pipeline.audit import AuditSettings, audit_samples

    path = Path(args.npz)
    table = breastmnist_table(path)
    out: dict = {"file": str(path), "rows": []}
    with np.load(path, allow_pickle=False) as data:
        imgs = np.concatenate([data[f"{s}_images"] for s in ("train", "val", "test")]).reshape(len(table), -1)
    # brute force on the raw 28x28 pixels, the measure
    z = imgs.astype(np.float64) - imgs.mean(1, keepdims=True)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    r = z @ z.T
    split = table["split"].to_numpy()
    test, trval = split == "test", split != "test"
    for t in (0.99, 0.95):
        out[f"raw28_r>{t}"] = int((r[np.ix_(test, trval)] > t).any(1).sum())
    for threshold in args.thresholds:
        t0 = time.perf_counter()
        res = audit_samples(table, AuditSettings(threshold=threshold), jobs=1)
        leaky = res.leaky_ids(table, "test")
        direct = cross = res.leakage(table)
        direct = set(cross.loc[cross["split_a"] == "test", "a"]) | set(cross.loc[cross["split_b"] == "test", "b"])
        direct = {s for s in direct if s.startswith("test")}
        # recall of the candidate search against brute force over the same thumbnails
        from pipeline.audit import compute_features, pearson_pairs

        feats = compute_features(table["path"].tolist(), AuditSettings(), jobs=1)
        n = len(table)
        ia, ib = np.triu_indices(n, 1)
        rb = pearson_pairs(feats.thumb, ia, ib)
        brute = int((rb >= threshold).sum())
        row = {
            "threshold": threshold,
            "test_leaky": len(leaky),
            "test_with_direct_pair": len(direct),
            "n_test": int(test.sum()),
            "pairs": res.summary["n_pairs"],
            "brute_force_pairs": brute,
            "conflicting_clusters": res.summary["conflicting_clusters"],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        row.update({k: v for k, v in out.items() if k.startswith("raw28")})
        out["rows"].append(row)
        print(row, flush=True)
        if args.grid and threshold == args.thresholds[0]:
            save_pair_grid(res.pairs, table, Path(args.grid), n=args.grid_n, seed=0)
            low = Path(args.grid).with_name(Path(args.grid).stem + "-lowest.png")
            save_pair_grid(res.pairs, table, low, n=args.grid_n, lowest=True)
            print(f"pair grids: {args.grid} (random), {low} (lowest r)")
    return out


def save_pair_grid(
    pairs: pd.DataFrame, table: pd.DataFrame, out: Path, n: int = 40, seed: int = 0, lowest: bool = False
) -> None:
    """A PNG of `n` random (or the `lowest`-r) pairs side by side (a | b) with r and splits, to check by eye."""
    from pipeline.preprocess import load_image

    path_of = dict(zip(table["sample_id"], table["path"]))
    split_of = dict(zip(table["sample_id"], table["split"]))
    rng = np.random.default_rng(seed)
    pick = pairs.iloc[rng.permutation(len(pairs))[:n]] if len(pairs) else pairs
    if lowest:
        pick = pairs.sort_values("similarity").head(n)
    tiles = []
    side = 84
    for row in pick.itertuples():
        a = cv2.resize(load_image(path_of[row.a]).rgb[..., 0], (side, side), interpolation=cv2.INTER_NEAREST)
        b = cv2.resize(load_image(path_of[row.b]).rgb[..., 0], (side, side), interpolation=cv2.INTER_NEAREST)
        tile = np.full((side + 14, 2 * side + 6), 255, np.uint8)
        tile[14:, :side], tile[14:, side + 6 :] = a, b
        text = f"{row.similarity:.3f} {str(split_of[row.a])[:2]}/{str(split_of[row.b])[:2]}"
        cv2.putText(tile, text, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.38, 0, 1)
        tiles.append(np.pad(tile, 4, constant_values=255))
    while len(tiles) % 5:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.hstack(tiles[i : i + 5]) for i in range(0, len(tiles), 5)]
    cv2.imwrite(str(out), np.vstack(rows))


def _write_chunk(args: tuple[str, int, int, int]) -> int:
    """Write images [start, stop) of the scale set (worker); every 50th image gets a planted copy."""
    root, start, stop, seed = args
    rng = np.random.default_rng(seed + start)
    layouts = np.random.default_rng(seed).standard_normal((2000, 3, 3)).astype(np.float32)
    previous = None
    for k in range(start, stop):
        folder = Path(root) / ("benign" if k % 3 else "malignant") / f"{k // 1000:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        if k % 50 == 49 and previous is not None:  # a planted copy of the previous image
            img = transform(previous, TRANSFORMS[(k // 50) % len(TRANSFORMS)], rng)
        else:
            previous = img = base_image(rng, 64, layouts[int(rng.integers(0, len(layouts)))])
        cv2.imwrite(str(folder / f"{k:07d}.png"), img)
    return stop - start


def make_scale_set(root: Path, n: int, seed: int = 0, jobs: int = 2) -> None:
    """Write `n` 64x64 PNGs (class folders), 2% of them planted copies, unless already there."""
    marker = root / f".complete-{n}"
    if marker.exists():
        return
    from concurrent.futures import ProcessPoolExecutor

    step = 5000
    with ProcessPoolExecutor(jobs) as pool:
        list(pool.map(_write_chunk, [(str(root), s, min(s + step, n), seed) for s in range(0, n, step)]))
    marker.write_text("ok")


def bench_scale(args: argparse.Namespace) -> dict:
    from pipeline.audit import AuditSettings, audit_features, compute_features
    from pipeline.datasets import ingest

    root = Path(args.data) / f"scale-{args.n}"
    t0 = time.perf_counter()
    make_scale_set(root, args.n, jobs=args.jobs)
    t_make = time.perf_counter() - t0
    t0 = time.perf_counter()
    table = ingest("class_folders", root, check="none").samples
    t_ingest = time.perf_counter() - t0
    table["split"] = np.where(np.arange(len(table)) % 7 == 0, "test", "train")
    table["eval_set"] = np.where(table["split"] == "test", "test", None)
    settings = AuditSettings()
    t0 = time.perf_counter()
    feats = compute_features(table["path"].tolist(), settings, jobs=args.jobs)
    t_feat = time.perf_counter() - t0
    t1 = time.perf_counter()
    res = audit_features(table, feats, settings)
    t_audit = time.perf_counter() - t1
    total = time.perf_counter() - t0
    # planted copies: file k (k % 50 == 49) copies file k - 1 (see _write_chunk)
    number = {sid: int(Path(sid).stem) for sid in table["sample_id"]}
    a = res.pairs["a"].map(number).to_numpy()
    b = res.pairs["b"].map(number).to_numpy()
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    true_found = int(((hi % 50 == 49) & (hi - lo == 1)).sum())
    planted = int(sum(1 for k in range(args.n) if k % 50 == 49 and k % 5000 != 0))
    out = {
        "n": len(table),
        "make_seconds": round(t_make, 1),
        "ingest_seconds": round(t_ingest, 1),
        "features_seconds": round(t_feat, 1),
        "search_verify_cluster_seconds": round(t_audit, 1),
        "audit_seconds": round(total, 1),
        "images_per_s": round(len(table) / total, 1),
        "peak_rss_mb_parent": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_mb_worker": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "pairs": res.summary["n_pairs"],
        "planted_pairs": planted,
        "planted_found": true_found,
        "recall": round(true_found / max(planted, 1), 4),
        "precision": round(true_found / max(res.summary["n_pairs"], 1), 4),
        "search": res.summary["search"],
        "jobs": args.jobs,
    }
    print(json.dumps(out, indent=1), flush=True)
    return out


def bench_leakfree(args: argparse.Namespace) -> dict:
    """Each model's AUC on all test images vs the leak-free ones (no duplicate in train/val), scikit-learn."""
    from sklearn.metrics import roc_auc_score

    from pipeline import artifacts as art
    from pipeline.audit import leaky_sample_ids

    exp = art.load_experiment(args.experiment)
    leaky = leaky_sample_ids(exp.path, args.eval_set)
    pos = exp.positive_index
    out: dict = {"experiment": str(exp.path), "eval_set": args.eval_set, "leaky": len(leaky), "rows": []}
    for model in exp.models:
        preds = art.read_predictions(exp, model)
        part = preds[preds["eval_set"] == args.eval_set].merge(exp.samples[["sample_id", "label"]], on="sample_id")
        y = (part["label"].to_numpy() == pos).astype(int)
        p = part[f"prob_{pos}"].to_numpy()
        clean = ~part["sample_id"].isin(leaky).to_numpy()
        row = {
            "model": model,
            "n_all": int(len(part)),
            "auc_all": round(float(roc_auc_score(y, p)), 4),
            "n_leak_free": int(clean.sum()),
            "auc_leak_free": round(float(roc_auc_score(y[clean], p[clean])), 4),
            "n_leaky": int((~clean).sum()),
            "auc_leaky_only": round(float(roc_auc_score(y[~clean], p[~clean])), 4)
            if len(set(y[~clean])) == 2
            else None,
        }
        out["rows"].append(row)
        print(row, flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_audit", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("planted")
    p.add_argument("--families", type=int, default=60)
    p.add_argument("--dups", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.9, 0.93, 0.95, 0.97])
    p.set_defaults(func=bench_planted)
    p = sub.add_parser("breastmnist")
    p.add_argument("--npz", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist.npz"))
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.95, 0.97, 0.99])
    p.add_argument("--grid", help="save a PNG grid of random pairs found at the first threshold")
    p.add_argument("--grid-n", type=int, default=40)
    p.set_defaults(func=bench_breastmnist)
    p = sub.add_parser("scale")
    p.add_argument("--n", type=int, default=300_000)
    p.add_argument("--data", default="/tmp/audit-bench")
    p.add_argument("--jobs", type=int, default=2)
    p.set_defaults(func=bench_scale)
    p = sub.add_parser("leakfree", help="AUC on all vs leak-free test images of a built experiment")
    p.add_argument("experiment")
    p.add_argument("--eval-set", default="test")
    p.set_defaults(func=bench_leakfree)
    for name in ("planted", "breastmnist", "scale", "leakfree"):
        sub.choices[name].add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    out = args.func(args)
    if getattr(args, "json", None):
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
