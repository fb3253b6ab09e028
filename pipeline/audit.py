"""Data audit: exact and near-duplicate images, leakage across splits, conflicting labels, image quality.

One pass decodes every sample once (``pipeline.preprocess.load_image``, so ``file.npz::key[i]`` entries work
like files) and keeps only small per-image features: a perceptual hash (``imagehash.phash``), a digest of
the decoded pixels, a T x T grayscale thumbnail and cleanvision's image properties. Then:

1. **exact duplicates**: equal pixel digests; each group is collapsed to one representative;
2. **candidates**: multi-index hashing on the perceptual hashes: the hash is cut into 16-bit bands and two
   images are candidates when some band differs in at most ``radius`` bits (pigeonhole: with 4 bands and
   radius 1, every pair within Hamming distance 7 of 64 bits is found), plus a full-Hamming cut. Work
   grows with the bucket sizes, not with n squared;
3. **verification**: Pearson r of the two mean-centred thumbnails (invariant to brightness and contrast
   changes; a resize, JPEG re-encode or few-pixel crop moves it little), kept when r >= ``threshold``;
4. **clusters**: connected components of the verified pairs (union-find);
5. **quality**: cleanvision's properties and default thresholds (dark, light, blurry, low information, odd
   aspect ratio, odd size) plus "grayscale mixed with colour" (an image whose colour kind is the minority).

Artifacts in ``<experiment>/audit/``: ``pairs.parquet`` (a, b, similarity, exact), ``quality.parquet``
(one row per sample: cluster, cluster_size, properties and ``flag_*`` columns), ``summary.json`` and
``thumbnails.parquet`` (PNG thumbnails of paired images the experiment's own thumbnails lack). Leakage is
recomputed from these and ``samples.parquet`` on read, so it always describes the split on disk.

No TensorFlow here.
"""

from __future__ import annotations

import hashlib
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

AUDIT_DIR = "audit"
PAIRS_FILE = "pairs.parquet"
QUALITY_FILE = "quality.parquet"
SUMMARY_FILE = "summary.json"
THUMBS_FILE = "thumbnails.parquet"

# Defaults chosen by measurement (bench/RESULTS.md, "Data audit").
DEFAULT_THRESHOLD = 0.95
DEFAULT_HASH_SIZE = 8
DEFAULT_THUMB_SIZE = 16
DEFAULT_RADIUS = 1
QUALITY_FLAGS = ("dark", "light", "blurry", "low_information", "odd_aspect_ratio", "odd_size", "mixed_colour")
TRAINING_SPLITS = ("train", "val")
QUALITY_MAX_SIDE = 256  # properties are measured on a copy at most this large (brightness, entropy, blur)
PARALLEL_MIN = 4000  # fewer images than this are decoded in-process (a worker start costs ~1 s)
MAX_AUDIT_THUMBS = 4000

Log = Callable[[str], None]


# ============================================================================ settings and results


@dataclass(frozen=True)
class AuditSettings:
    """How duplicates are searched and confirmed (the [audit] section of a config maps onto this)."""

    threshold: float = DEFAULT_THRESHOLD
    hash_size: int = DEFAULT_HASH_SIZE
    thumb_size: int = DEFAULT_THUMB_SIZE
    radius: int = DEFAULT_RADIUS
    max_hamming: int | None = None  # None: a quarter of the hash bits (16 of 64)

    def __post_init__(self) -> None:
        if not isinstance(self.threshold, (int, float)) or not 0 < float(self.threshold) <= 1:
            raise ValueError(
                f"Invalid value for argument `threshold`. Expected a number in (0, 1]. Received: {self.threshold!r}"
            )
        if self.hash_size not in (4, 8, 12, 16):
            raise ValueError(
                f"Invalid value for argument `hash_size`. Expected 4, 8, 12 or 16 (hash bits = "
                f"hash_size squared, cut into 16-bit bands). Received: {self.hash_size!r}"
            )
        if not isinstance(self.thumb_size, int) or not 4 <= self.thumb_size <= 64:
            raise ValueError(
                f"Invalid value for argument `thumb_size`. Expected an int in [4, 64]. Received: {self.thumb_size!r}"
            )
        if self.radius not in (0, 1, 2):
            raise ValueError(f"Invalid value for argument `radius`. Expected 0, 1 or 2. Received: {self.radius!r}")

    @property
    def hamming_limit(self) -> int:
        bits = self.hash_size**2
        return int(self.max_hamming) if self.max_hamming is not None else int(round(0.25 * bits))


@dataclass
class Features:
    """Per-image features from one decoding pass, aligned with the input paths."""

    ok: np.ndarray  # bool: decoded
    digest: np.ndarray  # uint64: hash of the decoded pixels (exact duplicates)
    phash: np.ndarray  # uint8 (n, bits/8): imagehash.phash bits, packed
    thumb: np.ndarray  # uint8 (n, T*T): grayscale thumbnail
    props: pd.DataFrame  # cleanvision raw properties + width, height, is_gray
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.ok)

    def take(self, rows: np.ndarray) -> Features:
        """The features of rows `rows`, in that order."""
        rows = np.asarray(rows, np.int64)
        return Features(
            self.ok[rows],
            self.digest[rows],
            self.phash[rows],
            self.thumb[rows],
            self.props.iloc[rows].reset_index(drop=True),
            list(self.errors),
            self.seconds,
        )

    @staticmethod
    def concat(parts: Sequence[Features]) -> Features:
        """Features of several path lists, in order."""
        return Features(
            ok=np.concatenate([p.ok for p in parts]),
            digest=np.concatenate([p.digest for p in parts]),
            phash=np.concatenate([p.phash for p in parts]),
            thumb=np.concatenate([p.thumb for p in parts]),
            props=pd.concat([p.props for p in parts], ignore_index=True),
            errors=[e for p in parts for e in p.errors],
            seconds=sum(p.seconds for p in parts),
        )


@dataclass
class AuditResult:
    """Duplicates, clusters, quality flags and leakage of one sample table."""

    pairs: pd.DataFrame  # a, b (sample ids), similarity, exact
    quality: pd.DataFrame  # one row per sample: sample_id, cluster, cluster_size, properties, flag_* columns
    summary: dict[str, Any]

    def leaky_ids(self, samples: pd.DataFrame, eval_set: str = "test") -> set[str]:
        """Samples of `eval_set` whose duplicate cluster holds a train or val image."""
        return leaky_ids_from(samples, self.quality, eval_set)

    def conflicts(self, samples: pd.DataFrame) -> pd.DataFrame:
        """Duplicate clusters whose labels differ: one row per sample of such a cluster."""
        return conflicting_clusters(samples, self.quality)

    def leakage(self, samples: pd.DataFrame) -> pd.DataFrame:
        """Pairs whose two images sit in different splits (with both splits and labels)."""
        return cross_split_pairs(samples, self.pairs)


# ============================================================================ features (one decoding pass)


def _props_calculators() -> dict[str, Any]:
    """cleanvision's property calculators, keyed by the issue they feed."""
    from cleanvision.issue_managers.image_property import (
        BlurrinessProperty,
        BrightnessProperty,
        EntropyProperty,
    )

    return {"dark": BrightnessProperty("dark"), "low_information": EntropyProperty(), "blurry": BlurrinessProperty()}


_CALC: dict[str, Any] | None = None


def image_features(
    rgb: np.ndarray, thumb_size: int = DEFAULT_THUMB_SIZE, hash_size: int = DEFAULT_HASH_SIZE
) -> tuple[int, np.ndarray, np.ndarray, dict[str, Any]]:
    """(pixel digest, packed phash bits, thumbnail, raw properties) of one decoded HxWx3 uint8 image."""
    global _CALC
    import cv2
    import imagehash
    from PIL import Image

    if _CALC is None:
        _CALC = _props_calculators()
    arr = np.ascontiguousarray(rgb)
    height, width = arr.shape[:2]
    digest = hashlib.blake2b(arr.tobytes(), digest_size=8, person=f"{height}x{width}".encode()[:16]).digest()
    is_gray = bool(
        arr.ndim == 2 or (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]))
    )
    scale = QUALITY_MAX_SIDE / max(height, width)
    small = (
        arr
        if scale >= 1
        else cv2.resize(
            arr, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
        )
    )
    gray = small[..., 0] if is_gray else cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    grow = thumb_size > min(gray.shape[:2])
    thumb = cv2.resize(gray, (thumb_size, thumb_size), interpolation=cv2.INTER_LINEAR if grow else cv2.INTER_AREA)
    pil_gray = Image.fromarray(gray)
    bits = imagehash.phash(pil_gray, hash_size=hash_size).hash
    packed = np.packbits(bits.ravel())
    pil = pil_gray if is_gray else Image.fromarray(small)
    props: dict[str, Any] = {"width": width, "height": height, "is_gray": is_gray}
    for calc in _CALC.values():
        props.update(calc.calculate(pil))
    return int.from_bytes(digest, "little"), packed, thumb.reshape(-1), props


def _features_chunk(paths: Sequence[str], thumb_size: int, hash_size: int) -> Features:
    """Decode `paths` and compute their features; undecodable files get ok=False and an error line."""
    from pipeline.preprocess import ImageDecodeError, load_image

    t0 = time.perf_counter()
    n = len(paths)
    nbytes = hash_size * hash_size // 8
    ok = np.zeros(n, bool)
    digest = np.zeros(n, np.uint64)
    ph = np.zeros((n, nbytes), np.uint8)
    thumb = np.zeros((n, thumb_size * thumb_size), np.uint8)
    rows: list[dict[str, Any]] = []
    errors = []
    for i, path in enumerate(paths):
        try:
            d, p, t, props = image_features(load_image(path).rgb, thumb_size, hash_size)
        except (ImageDecodeError, OSError, ValueError) as exc:
            errors.append(f"{path}: {exc}")
            rows.append({})
            continue
        ok[i], digest[i], ph[i], thumb[i] = True, d, p, t
        rows.append(props)
    return Features(ok, digest, ph, thumb, pd.DataFrame(rows, index=range(n)), errors, time.perf_counter() - t0)


def _worker_init() -> None:
    import cv2

    cv2.setNumThreads(1)


def compute_features(
    paths: Sequence[str],
    settings: AuditSettings = AuditSettings(),
    jobs: int | None = None,
    chunk: int = 1024,
    log: Log | None = None,
) -> Features:
    """Features of every path, decoded `jobs` processes at a time (default: up to 2, the cores here)."""
    paths = [str(p) for p in paths]
    jobs = jobs or min(2, os.cpu_count() or 1)
    t0 = time.perf_counter()
    if jobs <= 1 or len(paths) < PARALLEL_MIN:
        out = _features_chunk(paths, settings.thumb_size, settings.hash_size)
    else:
        import multiprocessing as mp

        chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
        parts: list[Features] = []
        from pipeline.experiment import _main_hidden_from_workers

        # spawn, not fork: the caller may hold TensorFlow or Streamlit threads; a script run without a
        # __main__ guard must not be re-run by the workers
        # (a worker's heap levels off near 0.5 GB: measured 494 MiB with and without replacing workers every
        # 64 chunks, so they live for the whole pass)
        with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init) as pool:
            with _main_hidden_from_workers():
                futures: list[Any] = [
                    pool.submit(_features_chunk, c, settings.thumb_size, settings.hash_size) for c in chunks
                ]
            for k, fut in enumerate(futures):
                parts.append(fut.result())
                futures[k] = None  # the result lives on in `parts` only
                if log and (k + 1) % 50 == 0:
                    log(f"audit: decoded {min((k + 1) * chunk, len(paths))}/{len(paths)} images")
        out = Features.concat(parts)
    out.seconds = time.perf_counter() - t0
    return out


# ============================================================================ candidates, verification, clusters


def _band_keys(codes: np.ndarray) -> np.ndarray:
    """(n, bytes) packed bits -> (n, bands) 16-bit band values."""
    pairs = codes.reshape(len(codes), -1, 2).astype(np.uint32)
    return (pairs[:, :, 0] << 8) | pairs[:, :, 1]


def _hamming(codes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    distance: np.ndarray = np.bitwise_count(codes[a] ^ codes[b]).sum(axis=1, dtype=np.int32)
    return distance


def _neighbour_masks(radius: int) -> list[int]:
    """XOR masks of 16-bit values within `radius` bits, excluding 0."""
    masks = [1 << k for k in range(16)] if radius >= 1 else []
    if radius >= 2:
        masks += [(1 << i) | (1 << j) for i in range(16) for j in range(i + 1, 16)]
    return masks


def iter_candidates(
    codes: np.ndarray,
    radius: int = DEFAULT_RADIUS,
    max_hamming: int | None = None,
    max_batch: int = 1 << 18,
    stats: dict[str, int] | None = None,
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """Batches of index pairs (a < b) whose hashes share a 16-bit band up to `radius` bits and differ in at
    most `max_hamming` bits overall (a pair may come once per matching band).

    Multi-index hashing: per band, images are sorted by band value; pairs come from equal buckets and from
    buckets `radius` bits apart. Cost is the sum of bucket-pair sizes, not n squared, and each batch holds at
    most `max_batch` bucket pairs, so memory stays bounded whatever the data.
    """
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    stats = {} if stats is None else stats
    stats.setdefault("bucket_pairs", 0)
    stats.setdefault("candidates", 0)
    if len(codes) < 2:
        return
    if codes.shape[1] % 2:
        raise ValueError(
            f"Invalid value for argument `codes`. Expected an even number of bytes per hash. Received: {codes.shape[1]}"
        )
    limit = codes.shape[1] * 8 if max_hamming is None else int(max_hamming)
    keys = _band_keys(codes)
    for band in range(keys.shape[1]):
        order = np.argsort(keys[:, band], kind="stable")
        values, starts, counts = np.unique(keys[order, band], return_index=True, return_counts=True)
        units = [(starts, counts, starts, counts)]  # same bucket
        for mask in _neighbour_masks(radius):
            other = values ^ mask
            pos = np.searchsorted(values, other)
            pos_c = np.minimum(pos, len(values) - 1)
            hit = (values[pos_c] == other) & (other > values)
            units.append((starts[hit], counts[hit], starts[pos_c[hit]], counts[pos_c[hit]]))
        for sa, na, sb, nb in units:
            for a, b in _expand_units(sa, na, sb, nb, max_batch):
                stats["bucket_pairs"] += len(a)
                ia, ib = order[a], order[b]
                keep = _hamming(codes, ia, ib) <= limit
                ia, ib = ia[keep], ib[keep]
                stats["candidates"] += len(ia)
                if len(ia):
                    yield np.minimum(ia, ib).astype(np.int64), np.maximum(ia, ib).astype(np.int64)


def candidate_pairs(
    codes: np.ndarray, radius: int = DEFAULT_RADIUS, max_hamming: int | None = None, max_batch: int = 1 << 18
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """All distinct candidate pairs of :func:`iter_candidates` at once (small sets, tests), with statistics."""
    stats: dict[str, int] = {}
    n = len(codes)
    keys = [a * n + b for a, b in iter_candidates(codes, radius, max_hamming, max_batch, stats)]
    key = np.unique(np.concatenate(keys)) if keys else np.zeros(0, np.int64)
    stats["distinct"] = int(len(key))
    return key // max(n, 1), key % max(n, 1), stats


def _expand_units(
    sa: np.ndarray, na: np.ndarray, sb: np.ndarray, nb: np.ndarray, max_batch: int
) -> Iterable[tuple[np.ndarray, np.ndarray]]:
    """All (a, b) sorted-positions of bucket pairs [sa, sa+na) x [sb, sb+nb), with a < b, in bounded batches."""
    sa, na, sb, nb = (np.asarray(x, np.int64) for x in (sa, na, sb, nb))
    same = sa == sb
    useful = np.where(same, na > 1, (na > 0) & (nb > 0))
    sa, na, sb, nb = sa[useful], na[useful], sb[useful], nb[useful]
    # split buckets so large that one of them alone would exceed a batch: rows of A in slices
    big = na * nb > max_batch
    if big.any():
        rows = np.maximum(1, max_batch // np.maximum(nb[big], 1))
        extra = []
        for s_a, n_a, s_b, n_b, r in zip(sa[big], na[big], sb[big], nb[big], rows):
            for r0 in range(0, int(n_a), int(r)):
                extra.append((s_a + r0, min(int(r), int(n_a) - r0), s_b, n_b))
        ex = np.array(extra, np.int64).reshape(-1, 4)
        sa, na, sb, nb = (np.concatenate([x[~big], ex[:, k]]) for k, x in enumerate((sa, na, sb, nb)))
    sizes = na * nb
    bounds = np.cumsum(sizes)
    start = 0
    while start < len(sizes):
        base = bounds[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(bounds, base + max_batch, side="right")))
        s = sizes[start:stop]
        unit = np.repeat(np.arange(start, stop), s)
        offset = np.arange(int(s.sum()), dtype=np.int64) - np.repeat(np.cumsum(s) - s, s)
        a = sa[unit] + offset // nb[unit]
        b = sb[unit] + offset % nb[unit]
        keep = a < b  # within one bucket each pair once; across buckets a < b always holds (sorted order)
        yield a[keep], b[keep]
        start = stop


def simhash(thumbs: np.ndarray, bits: int = 64, seed: int = 0) -> np.ndarray:
    """Packed sign bits of `bits` random projections of the mean-centred, unit-norm thumbnails.

    Two thumbnails with Pearson r differ in each bit with probability arccos(r)/pi (Charikar), so the
    Hamming distance tracks the verification measure; centring on the data set's mean thumbnail keeps the
    look-alikes of one modality (all ultrasound) from crowding into a few buckets.
    """
    if len(thumbs) == 0:
        return np.zeros((0, bits // 8), np.uint8)

    def unit(block: np.ndarray) -> np.ndarray:
        x = block.astype(np.float32)
        x -= x.mean(axis=1, keepdims=True)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6)
        return x

    chunk = 1 << 15  # chunks keep memory at a few MB per 32k images instead of 1 KB per image
    centre = sum(unit(thumbs[i : i + chunk]).sum(axis=0, dtype=np.float64) for i in range(0, len(thumbs), chunk))
    centre = (centre / len(thumbs)).astype(np.float32)
    planes = np.random.default_rng(seed).standard_normal((thumbs.shape[1], bits)).astype(np.float32)
    out = np.empty((len(thumbs), bits // 8), np.uint8)
    for i in range(0, len(thumbs), chunk):
        out[i : i + chunk] = np.packbits((unit(thumbs[i : i + chunk]) - centre) @ planes > 0, axis=1)
    return out


def _thumb_moments(thumbs: np.ndarray, chunk: int = 1 << 15) -> tuple[np.ndarray, np.ndarray]:
    """Per-thumbnail mean and centred norm (float32), for :func:`pearson_pairs`; chunked (bounded memory)."""
    mean = np.empty(len(thumbs), np.float32)
    norm = np.empty(len(thumbs), np.float32)
    for i in range(0, len(thumbs), chunk):
        x = thumbs[i : i + chunk].astype(np.float64)
        m = x.mean(axis=1)
        mean[i : i + chunk] = m
        norm[i : i + chunk] = np.sqrt(np.maximum((x**2).sum(axis=1) - x.shape[1] * m**2, 0))
    return mean, norm


def pearson_pairs(
    thumbs: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    batch: int = 1 << 16,
    moments: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Pearson r between thumbnail rows a[k] and b[k] (NaN when either image is flat)."""
    mean, norm = moments if moments is not None else _thumb_moments(thumbs)
    out = np.empty(len(a), np.float32)
    for i in range(0, len(a), batch):
        ia, ib = a[i : i + batch], b[i : i + batch]
        xa = thumbs[ia].astype(np.float32)
        xa -= mean[ia, None]
        xb = thumbs[ib].astype(np.float32)
        xb -= mean[ib, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[i : i + batch] = np.einsum("ij,ij->i", xa, xb) / (norm[ia] * norm[ib])
    out[~np.isfinite(out)] = np.nan
    return np.clip(out, -1, 1)


def find_duplicates(
    features: Features, settings: AuditSettings = AuditSettings()
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Duplicate pairs as row positions: a, b, similarity, exact; plus search statistics."""
    t0 = time.perf_counter()
    ok = np.flatnonzero(features.ok)
    digests = features.digest[ok]
    # exact duplicates: one representative per digest, star edges to the others
    _, first, inverse = np.unique(digests, return_index=True, return_inverse=True)
    rep_of = ok[first][inverse]
    is_copy = rep_of != ok
    exact = pd.DataFrame({"a": rep_of[is_copy], "b": ok[is_copy], "similarity": 1.0, "exact": True})
    reps = ok[first]
    # near duplicates among representatives with some contrast (Pearson r is undefined on a flat image)
    thumbs = features.thumb[reps]
    flat = thumbs.max(axis=1) == thumbs.min(axis=1)
    reps = reps[~flat]
    # Two indexes, each verified batch by batch (memory stays bounded however many candidates come):
    # imagehash's phash, and SimHash of the centred thumbnails, which finds the low-contrast pairs that phash
    # splits (BreastMNIST: phash alone reached 82% of the brute-force pairs at r >= 0.95).
    stats: dict[str, Any] = {}
    codes = {"phash": features.phash[reps], "simhash": simhash(features.thumb[reps], bits=settings.hash_size**2)}
    thumbs = features.thumb[reps]
    mean, norm = _thumb_moments(thumbs)
    found: list[np.ndarray] = []
    sims: list[np.ndarray] = []
    for name, code in codes.items():
        part: dict[str, int] = {}
        for ia, ib in iter_candidates(code, settings.radius, settings.hamming_limit, stats=part):
            r = pearson_pairs(thumbs, ia, ib, moments=(mean, norm))
            keep = r >= settings.threshold
            found.append(ia[keep] * len(reps) + ib[keep])
            sims.append(r[keep])
        stats[f"{name}_bucket_pairs"], stats[f"{name}_candidates"] = part["bucket_pairs"], part["candidates"]
    key = np.concatenate(found) if found else np.zeros(0, np.int64)
    sim = np.concatenate(sims) if sims else np.zeros(0, np.float32)
    key, first_at = np.unique(key, return_index=True)
    sim = sim[first_at]
    ia, ib = key // max(len(reps), 1), key % max(len(reps), 1)
    near = pd.DataFrame({"a": reps[ia], "b": reps[ib], "similarity": sim.astype(np.float64), "exact": False})
    t_search = time.perf_counter() - t0
    pairs = pd.concat([exact, near], ignore_index=True)
    lo, hi = np.minimum(pairs["a"], pairs["b"]), np.maximum(pairs["a"], pairs["b"])
    pairs["a"], pairs["b"] = lo.astype(np.int64), hi.astype(np.int64)
    pairs = pairs.sort_values(["a", "b"], kind="stable").reset_index(drop=True)
    info = {
        "images": int(len(features)),
        "decoded": int(len(ok)),
        "exact_copies": int(is_copy.sum()),
        "flat_images": int(flat.sum()),
        **stats,
        "candidates": int(stats.get("phash_candidates", 0) + stats.get("simhash_candidates", 0)),
        "verified": int(len(near)),
        "search_verify_seconds": round(t_search, 3),
    }
    return pairs, info


def cluster_labels(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected components (union-find) of n items joined by edges (a, b): one label per item."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    out: np.ndarray = np.asarray(labels, dtype=np.int64)
    return out


# ============================================================================ quality flags


def quality_flags(props: pd.DataFrame, ok: np.ndarray) -> pd.DataFrame:
    """cleanvision's scores and issue flags (its default thresholds) + the grayscale/colour mix flag."""
    from cleanvision.issue_managers.image_property import (
        AspectRatioProperty,
        BlurrinessProperty,
        BrightnessProperty,
        EntropyProperty,
        SizeProperty,
    )
    from cleanvision.issue_managers.image_property_issue_manager import ImagePropertyIssueManager

    params = ImagePropertyIssueManager().get_default_params()
    out = pd.DataFrame(index=props.index)
    good = props[ok].copy()
    if good.empty:
        for flag in QUALITY_FLAGS:
            out[f"flag_{flag}"] = False
        return out
    good["aspect_ratio"] = np.minimum(good["width"] / good["height"], good["height"] / good["width"])
    good["size"] = np.sqrt(good["width"].astype(float)) * np.sqrt(good["height"].astype(float))
    for issue, prop in (
        ("dark", BrightnessProperty("dark")),
        ("light", BrightnessProperty("light")),
        ("blurry", BlurrinessProperty()),
        ("low_information", EntropyProperty()),
        ("odd_aspect_ratio", AspectRatioProperty()),
        ("odd_size", SizeProperty()),
    ):
        kwargs = {k: v for k, v in params[issue].items() if k != "threshold"}
        scores = prop.get_scores(good[prop.score_columns].astype(float), issue, **kwargs)
        flags = prop.mark_issue(scores, issue, params[issue].get("threshold"))
        out[f"score_{issue}"] = scores.iloc[:, 0].astype(float)
        out[f"flag_{issue}"] = flags.iloc[:, 0].astype(bool)
    gray = good["is_gray"].astype(bool)
    minority_gray = gray.mean() < 0.5
    mixed = gray if minority_gray else ~gray
    out["flag_mixed_colour"] = mixed if 0 < gray.mean() < 1 else False
    for col in out.columns:
        if col.startswith("flag_"):
            out[col] = out[col].fillna(False).astype(bool)
    return out


# ============================================================================ the audit of a sample table


def audit_features(samples: pd.DataFrame, features: Features, settings: AuditSettings = AuditSettings()) -> AuditResult:
    """Duplicates, clusters, quality flags and a summary for `samples` (rows aligned with `features`)."""
    if len(samples) != len(features):
        raise ValueError(
            f"Invalid value for argument `features`. Expected {len(samples)} rows (one per sample). "
            f"Received: {len(features)}"
        )
    t0 = time.perf_counter()
    ids = samples["sample_id"].astype(str).to_numpy()
    pos_pairs, search = find_duplicates(features, settings)
    labels = cluster_labels(len(samples), pos_pairs["a"].to_numpy(), pos_pairs["b"].to_numpy())
    sizes = np.bincount(labels)[labels]
    quality = pd.DataFrame(
        {"sample_id": ids, "decoded": features.ok, "cluster": np.where(sizes > 1, labels, -1), "cluster_size": sizes}
    )
    props = features.props.reindex(range(len(samples)))
    for col in ("width", "height", "is_gray", "brightness", "entropy", "blurriness"):
        if col in props:
            quality[col] = props[col].to_numpy()
    flags = quality_flags(props, features.ok)
    quality = pd.concat([quality, flags.reset_index(drop=True)], axis=1)
    for col in [c for c in quality.columns if c.startswith("flag_")]:
        quality[col] = quality[col].fillna(False).astype(bool)
    quality["is_gray"] = quality["is_gray"].astype("boolean") if "is_gray" in quality else pd.NA
    pairs = pd.DataFrame(
        {
            "a": ids[pos_pairs["a"].to_numpy()],
            "b": ids[pos_pairs["b"].to_numpy()],
            "similarity": pos_pairs["similarity"].to_numpy(np.float64),
            "exact": pos_pairs["exact"].to_numpy(bool),
        }
    )
    result = AuditResult(pairs=pairs, quality=quality, summary={})
    result.summary = summarize(
        samples,
        result,
        settings,
        {
            **search,
            "decode_seconds": round(features.seconds, 3),
            "audit_seconds": round(time.perf_counter() - t0, 3),
            "undecodable": features.errors[:20],
        },
    )
    return result


def audit_samples(
    samples: pd.DataFrame, settings: AuditSettings = AuditSettings(), jobs: int | None = None, log: Log | None = None
) -> AuditResult:
    """Decode every sample of a sample table once and audit it (see the module docstring)."""
    for column in ("sample_id", "path"):
        if column not in samples.columns:
            raise ValueError(
                f"Invalid value for argument `samples`. Expected a sample table with column "
                f"{column!r}. Received columns: {list(samples.columns)}"
            )
    features = compute_features(samples["path"].astype(str).tolist(), settings, jobs=jobs, log=log)
    return audit_features(samples.reset_index(drop=True), features, settings)


# ============================================================================ leakage and conflicts


def _side(samples: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in ("sample_id", "split", "label", "label_name", "eval_set", "group") if c in samples.columns]
    side = samples[cols].copy()
    side["sample_id"] = side["sample_id"].astype(str)
    return side.drop_duplicates("sample_id").set_index("sample_id")


def cross_split_pairs(samples: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """Duplicate pairs whose images are in different splits, with split and label of each side."""
    side = _side(samples)
    out = pairs.copy()
    for end in ("a", "b"):
        for col in ("split", "label"):
            if col in side:
                out[f"{col}_{end}"] = out[end].map(side[col])
    if "split_a" not in out:
        return out.iloc[0:0]
    crossing = out["split_a"].notna() & out["split_b"].notna() & (out["split_a"] != out["split_b"])
    return out[crossing].reset_index(drop=True)


def _cluster_table(samples: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    side = _side(samples)
    clustered = quality.loc[quality["cluster"] >= 0, ["sample_id", "cluster"]].copy()
    clustered["sample_id"] = clustered["sample_id"].astype(str)
    return clustered.join(side, on="sample_id")


def leaky_ids_from(samples: pd.DataFrame, quality: pd.DataFrame, eval_set: str = "test") -> set[str]:
    """Samples evaluated in `eval_set` whose duplicate cluster holds a sample they must not have seen.

    For test and extra evaluation sets that is any train or val sample (val picks thresholds and the
    checkpoint); for val it is a train sample.
    """
    table = _cluster_table(samples, quality)
    if table.empty or "split" not in table:
        return set()
    in_train = set(table.loc[table["split"] == "train", "cluster"])
    in_val = set(table.loc[table["split"] == "val", "cluster"])
    column = "eval_set" if "eval_set" in table else "split"
    evaluated = table[table[column] == eval_set]
    # a val image leaks through train; a test or extra-set image through train or val (threshold choice)
    hit = evaluated["cluster"].isin(in_train) | ((evaluated["split"] != "val") & evaluated["cluster"].isin(in_val))
    return set(evaluated.loc[hit, "sample_id"])


def conflicting_clusters(samples: pd.DataFrame, quality: pd.DataFrame) -> pd.DataFrame:
    """One row per sample of every duplicate cluster with more than one label (sorted by cluster)."""
    table = _cluster_table(samples, quality)
    if table.empty or "label" not in table:
        return table.iloc[0:0]
    n_labels = table.groupby("cluster")["label"].transform("nunique")
    return table[n_labels > 1].sort_values(["cluster", "label", "sample_id"]).reset_index(drop=True)


def summarize(
    samples: pd.DataFrame, result: AuditResult, settings: AuditSettings, search: dict[str, Any]
) -> dict[str, Any]:
    """Counts for summary.json and the CLI: duplicates, clusters, leakage per evaluation set, conflicts, quality."""
    q = result.quality
    clusters = q.loc[q["cluster"] >= 0]
    crossing = cross_split_pairs(samples, result.pairs)
    conflicts = conflicting_clusters(samples, q)
    eval_sets = sorted(samples["eval_set"].dropna().astype(str).unique()) if "eval_set" in samples else []
    if not eval_sets and "split" in samples:
        eval_sets = [s for s in ("test",) if (samples["split"] == "test").any()]
    leak = {}
    for es in eval_sets:
        column = "eval_set" if "eval_set" in samples else "split"
        n_eval = int((samples[column] == es).sum())
        leak[es] = {"n": n_eval, "with_duplicate_in_train_val": len(leaky_ids_from(samples, q, es))}
    flags = {c[5:]: int(q[c].sum()) for c in q.columns if c.startswith("flag_")}
    split_pairs: dict[str, int] = {}
    if len(crossing):
        keys = ["/".join(sorted((str(a), str(b)))) for a, b in zip(crossing["split_a"], crossing["split_b"])]
        split_pairs = {k: int(v) for k, v in pd.Series(keys).value_counts().items()}
    return {
        "settings": {
            "threshold": float(settings.threshold),
            "hash_size": int(settings.hash_size),
            "thumb_size": int(settings.thumb_size),
            "radius": int(settings.radius),
            "max_hamming": int(settings.hamming_limit),
            "similarity": "pearson r of gray thumbnails",
        },
        "n_samples": int(len(samples)),
        "n_pairs": int(len(result.pairs)),
        "n_exact_pairs": int(result.pairs["exact"].sum()),
        "n_clusters": int(clusters["cluster"].nunique()),
        "n_in_clusters": int(len(clusters)),
        "largest_cluster": int(q["cluster_size"].max()) if len(q) else 0,
        "cross_split_pairs": int(len(crossing)),
        "cross_split_pairs_by_splits": split_pairs,
        "leakage": leak,
        "conflicting_clusters": int(conflicts["cluster"].nunique()) if len(conflicts) else 0,
        "conflicting_samples": int(len(conflicts)),
        "quality_flags": flags,
        "search": search,
    }


# ============================================================================ splits that respect duplicates


def split_groups(samples: pd.DataFrame, pairs: pd.DataFrame, group_column: str = "group") -> pd.Series:
    """Group key per sample that joins groups sharing a duplicate cluster (groups and duplicates never split).

    A pair whose two samples already have different given splits (an official split) is not joined: that
    leakage is kept and reported, never "fixed" by moving a given sample.
    """
    ids = samples["sample_id"].astype(str).to_numpy()
    groups = samples[group_column].astype(str).to_numpy()
    pos = pd.Series(np.arange(len(ids)), index=ids)
    a = pos.reindex(pairs["a"].astype(str)).to_numpy()
    b = pos.reindex(pairs["b"].astype(str)).to_numpy()
    known = ~(np.isnan(a) | np.isnan(b)) if len(pairs) else np.zeros(0, bool)
    a, b = a[known].astype(np.int64), b[known].astype(np.int64)
    if "split" in samples.columns and len(a):
        given = samples["split"].astype(object).where(samples["split"].notna(), None).to_numpy()
        clash = np.array(
            [given[i] is not None and given[j] is not None and given[i] != given[j] for i, j in zip(a, b)], bool
        )
        a, b = a[~clash], b[~clash]
    codes, uniq = pd.factorize(groups)
    n_groups = len(uniq)
    # bipartite-free trick: link each sample to its group node, and duplicate samples to each other
    edges_a = np.concatenate([np.arange(len(ids)), a])
    edges_b = np.concatenate([len(ids) + codes, b])
    labels = cluster_labels(len(ids) + n_groups, edges_a, edges_b)[: len(ids)]
    first_group = pd.Series(groups).groupby(labels).transform("min").to_numpy()
    return pd.Series(first_group, index=samples.index, name="split_group")


# ============================================================================ the audit at ingest


class IngestAudit:
    """The audit as `experiment.prepare_samples` runs it: features decoded once, used twice, kept on disk.

    `start` audits the data set before its split (duplicate pairs become split groups; flagged images are
    dropped only when the config lists their flags); `finish` adds the extra evaluation sets, audits the
    whole sample table and writes ``<experiment>/audit/``. When that folder already holds an audit of the
    same files (fingerprint) with the same settings, both reuse it instead of decoding every image again,
    so resuming a run costs no audit time.
    """

    def __init__(
        self,
        settings: AuditSettings,
        drop_quality: Sequence[str] = (),
        jobs: int | None = None,
        log: Log = print,
        exp_dir: Path | str | None = None,
    ) -> None:
        self.settings, self.drop_quality, self.jobs, self.log = settings, tuple(drop_quality), jobs, log
        self.exp_dir = Path(exp_dir) if exp_dir is not None else None
        self.pairs = pd.DataFrame(columns=["a", "b", "similarity", "exact"])
        self._features: Features | None = None
        self._ids: dict[str, int] = {}
        self._stored: AuditResult | None = None
        self.dropped = 0

    @classmethod
    def from_config(cls, cfg: Any, log: Log = print) -> IngestAudit:
        """From an ExperimentConfig's [audit] section (its experiment folder holds the stored audit)."""
        return cls(
            settings_from(cfg.audit), getattr(cfg.audit, "drop_quality", ()), log=log, exp_dir=cfg.experiment_dir
        )

    def _stored_for(self, key: str, fingerprint: str) -> AuditResult | None:
        """The stored audit when it was made with these settings over files with this fingerprint."""
        from pipeline.artifacts import ArtifactError

        if self.exp_dir is None:
            return None
        try:
            stored = read_audit(self.exp_dir)
        except ArtifactError:
            return None
        if stored is None or stored.summary.get(key) != fingerprint:
            return None
        same = (
            _settings_of(stored) == self.settings
            and stored.summary.get("settings", {}).get("max_hamming") == self.settings.hamming_limit
            and tuple(stored.summary.get("drop_quality", ())) == self.drop_quality
        )
        return stored if same else None

    def start(self, samples: pd.DataFrame) -> pd.DataFrame:
        """Audit the data set's own samples; returns them less any dropped for quality."""
        from pipeline.datasets import dataset_fingerprint

        t0 = time.perf_counter()
        self._main_fingerprint = dataset_fingerprint(samples)
        self._stored = self._stored_for("main_fingerprint", self._main_fingerprint)
        if self._stored is not None:
            ids = set(samples["sample_id"].astype(str))
            stored = self._stored
            self.pairs = stored.pairs[stored.pairs["a"].isin(ids) & stored.pairs["b"].isin(ids)].reset_index(drop=True)
            quality = stored.quality[stored.quality["sample_id"].isin(ids)]
            kept, self.dropped = drop_flagged(samples, quality, self.drop_quality)
            self.log(f"audit: data set unchanged, reusing its audit ({len(self.pairs)} duplicate pairs)")
            return kept
        self._features = compute_features(samples["path"].astype(str).tolist(), self.settings, self.jobs, log=self.log)
        self._ids = {sid: i for i, sid in enumerate(samples["sample_id"].astype(str))}
        first = audit_features(samples.reset_index(drop=True), self._features, self.settings)
        self.pairs = first.pairs
        kept, self.dropped = drop_flagged(samples, first.quality, self.drop_quality)
        self.log(
            f"audit: {len(samples)} images in {time.perf_counter() - t0:.1f}s: {len(first.pairs)} duplicate pairs "
            f"in {first.summary['n_clusters']} clusters"
            + (f"; {self.dropped} dropped for quality flags {list(self.drop_quality)}" if self.dropped else "")
        )
        return kept

    def finish(self, table: pd.DataFrame, exp_dir: Path | str | None) -> dict[str, Any]:
        """Audit the full sample table (data set + eval sets), write it under `exp_dir`; compact summary."""
        from pipeline.datasets import dataset_fingerprint

        fingerprint = dataset_fingerprint(table)
        stored = (
            self._stored
            if self._stored is not None and self._stored.summary.get("fingerprint") == fingerprint
            else None
        )
        if stored is not None:  # same files: only the leakage is recounted, against this table's split
            result = AuditResult(stored.pairs, stored.quality, {})
            result.summary = summarize(table, result, self.settings, stored.summary.get("search", {}))
        else:
            ids = table["sample_id"].astype(str).to_numpy()
            known = np.array([sid in self._ids for sid in ids], bool)
            parts_idx = np.array([self._ids.get(sid, -1) for sid in ids], np.int64)
            extra = (
                compute_features(table.loc[~known, "path"].astype(str).tolist(), self.settings, self.jobs, log=self.log)
                if (~known).any()
                else None
            )
            parts = ([self._features.take(parts_idx[known])] if self._features is not None else []) + (
                [extra] if extra is not None else []
            )
            positions = np.concatenate([np.flatnonzero(known), np.flatnonzero(~known)])
            feats = Features.concat(parts).take(np.argsort(positions, kind="stable"))
            result = audit_features(table.reset_index(drop=True), feats, self.settings)
        result.summary.update(
            {
                "dropped_for_quality": self.dropped,
                "drop_quality": list(self.drop_quality),
                "fingerprint": fingerprint,
                "main_fingerprint": getattr(self, "_main_fingerprint", None),
            }
        )
        if exp_dir is not None:
            # the experiment's thumbnails.parquet holds the evaluated samples; the audit adds the paired others
            evaluated = table.loc[table["eval_set"].notna(), "sample_id"] if "eval_set" in table else []
            thumbs = None if stored is not None else pair_thumbnails(table, result.pairs, have=evaluated)
            write_audit(exp_dir, result, thumbs)
        self.log(format_report(result, table, examples=3))
        keep = (
            "n_pairs",
            "n_exact_pairs",
            "n_clusters",
            "cross_split_pairs",
            "leakage",
            "conflicting_clusters",
            "quality_flags",
            "dropped_for_quality",
            "settings",
        )
        return {k: result.summary[k] for k in keep if k in result.summary}


# ============================================================================ artifacts


def audit_dir(exp_dir: Path | str) -> Path:
    return Path(exp_dir) / AUDIT_DIR


def write_audit(exp_dir: Path | str, result: AuditResult, thumbnails: pd.DataFrame | None = None) -> Path:
    """Write pairs.parquet, quality.parquet, summary.json (and thumbnails) atomically under <exp_dir>/audit."""
    from pipeline import artifacts as art

    folder = audit_dir(exp_dir)
    folder.mkdir(parents=True, exist_ok=True)
    art.atomic_write_parquet(folder / PAIRS_FILE, result.pairs)
    art.atomic_write_parquet(folder / QUALITY_FILE, result.quality)
    if thumbnails is not None:
        art.atomic_write_parquet(folder / THUMBS_FILE, thumbnails)
    art.atomic_write_json(folder / SUMMARY_FILE, result.summary)  # last: its presence marks a complete audit
    return folder


def read_audit(exp_dir: Path | str) -> AuditResult | None:
    """The audit of an experiment folder, or None when it has none (ArtifactError when it is damaged)."""
    from pipeline import artifacts as art

    folder = audit_dir(exp_dir)
    if not (folder / SUMMARY_FILE).exists():
        return None
    summary = art.read_json(folder / SUMMARY_FILE)
    pairs = art.read_parquet(folder / PAIRS_FILE)
    quality = art.read_parquet(folder / QUALITY_FILE)
    for name, frame, cols in (
        ("pairs", pairs, ("a", "b", "similarity", "exact")),
        ("quality", quality, ("sample_id", "cluster", "cluster_size")),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise art.ArtifactError(
                folder / (PAIRS_FILE if name == "pairs" else QUALITY_FILE), f"missing columns {missing}"
            )
    return AuditResult(pairs=pairs, quality=quality, summary=summary if isinstance(summary, dict) else {})


def read_audit_thumbnails(exp_dir: Path | str) -> dict[str, bytes]:
    """PNG thumbnails the audit saved for paired images (sample_id -> bytes); empty when none."""
    from pipeline import artifacts as art

    path = audit_dir(exp_dir) / THUMBS_FILE
    if not path.exists():
        return {}
    frame = art.read_parquet(path)
    return dict(zip(frame["sample_id"].astype(str), frame["png"]))


def leaky_sample_ids(exp_dir: Path | str, eval_set: str = "test") -> set[str]:
    """Sample ids of `eval_set` that have a near-duplicate (same duplicate cluster) in train or val.

    Computed from the audit and the experiment's samples.parquet on disk; an empty set when the experiment
    has no audit.
    """
    from pipeline import artifacts as art

    result = read_audit(exp_dir)
    if result is None:
        return set()
    samples = art.read_parquet(Path(exp_dir) / art.SAMPLES_FILE)
    return leaky_ids_from(samples, result.quality, eval_set)


def conflicting_sample_ids(exp_dir: Path | str) -> set[str]:
    """Sample ids in duplicate clusters whose labels differ (one of the labels is wrong): the mentor's queue.

    An empty set when the experiment has no audit.
    """
    from pipeline import artifacts as art

    result = read_audit(exp_dir)
    if result is None:
        return set()
    samples = art.read_parquet(Path(exp_dir) / art.SAMPLES_FILE)
    return set(conflicting_clusters(samples, result.quality)["sample_id"].astype(str))


def pair_thumbnails(
    samples: pd.DataFrame,
    pairs: pd.DataFrame,
    have: Iterable[str] = (),
    max_side: int = 96,
    limit: int = MAX_AUDIT_THUMBS,
) -> pd.DataFrame:
    """PNG thumbnails (sample_id, png) of paired images not in `have`, for the most similar pairs first."""
    from pipeline.preprocess import ImageDecodeError, load_image, thumbnail_png

    have = set(map(str, have))
    order = pairs.sort_values("similarity", ascending=False)
    wanted: list[str] = []
    seen = set(have)
    for sid in np.ravel(order[["a", "b"]].to_numpy(str)):
        if sid not in seen:
            seen.add(sid)
            wanted.append(sid)
            if len(wanted) >= limit:
                break
    path_of = dict(zip(samples["sample_id"].astype(str), samples["path"].astype(str)))
    rows = []
    for sid in wanted:
        try:
            rows.append((sid, thumbnail_png(load_image(path_of[sid]).rgb, max_side)))
        except (ImageDecodeError, OSError, KeyError, ValueError):
            continue
    return pd.DataFrame(rows, columns=["sample_id", "png"])


# ============================================================================ text report (CLI)


def format_report(result: AuditResult, samples: pd.DataFrame, examples: int = 5) -> str:
    """Counts and a few examples of each finding, for the terminal."""
    s = result.summary
    lines = [
        f"audit of {s.get('n_samples', len(samples))} samples (Pearson r >= {s['settings']['threshold']} "
        f"on {s['settings']['thumb_size']}x{s['settings']['thumb_size']} gray thumbnails)",
        f"  duplicate pairs: {s['n_pairs']} ({s['n_exact_pairs']} exact) in {s['n_clusters']} clusters "
        f"({s['n_in_clusters']} images; largest {s['largest_cluster']})",
        f"  cross-split pairs: {s['cross_split_pairs']} {s.get('cross_split_pairs_by_splits') or ''}",
    ]
    for es, row in (s.get("leakage") or {}).items():
        where = "train" if es == "val" else "train/val"
        lines.append(f"  {es}: {row['with_duplicate_in_train_val']} of {row['n']} images have a duplicate in {where}")
    crossing = result.leakage(samples)
    for row in crossing.sort_values("similarity", ascending=False).head(examples).itertuples():
        lines.append(
            f"    {row.a} ({row.split_a}) ~ {row.b} ({row.split_b})  r={row.similarity:.3f}"
            + ("  exact" if row.exact else "")
        )
    conflicts = result.conflicts(samples)
    lines.append(f"  clusters with conflicting labels: {s['conflicting_clusters']} ({s['conflicting_samples']} images)")
    name_col = "label_name" if "label_name" in conflicts else "label"
    for _, part in list(conflicts.groupby("cluster"))[:examples]:
        shown = (f"{r.sample_id} [{getattr(r, name_col)}, {r.split}]" for r in part.itertuples())
        lines.append("    " + ", ".join(shown))
    flags = s.get("quality_flags") or {}
    lines.append("  quality flags: " + (", ".join(f"{k} {v}" for k, v in flags.items()) or "none"))
    return "\n".join(lines)


def run_cli(
    experiment: str | None = None, config: str | None = None, rerun: bool = False, examples: int = 5, log: Log = print
) -> int:
    """`python -m pipeline audit`: audit a config's data (written to its experiment folder) or an experiment.

    With an experiment folder, its stored audit is printed (``rerun`` audits its samples.parquet again,
    which needs the images at their recorded paths).
    """
    from pipeline import artifacts as art

    if (experiment is None) == (config is None):
        raise ValueError(
            "Invalid arguments for `audit`. Expected an experiment folder or --config FILE (one of them). "
            f"Received: experiment={experiment!r}, config={config!r}"
        )
    if config is not None:
        from dataclasses import replace

        from pipeline.config import load_config
        from pipeline.experiment import prepare_samples

        cfg = load_config(config)
        cfg = replace(cfg, audit=replace(cfg.audit, enabled=True))
        prepare_samples(cfg, log=log)  # runs the audit, prints its report, writes <experiment>/audit
        log(f"audit written to {audit_dir(cfg.experiment_dir)}")
        return 0
    exp_dir = Path(str(experiment))
    if not (exp_dir / art.SAMPLES_FILE).is_file():
        raise FileNotFoundError(
            f"Invalid value for argument `experiment`. Expected an experiment folder with "
            f"{art.SAMPLES_FILE}. Received: {str(exp_dir)!r}"
        )
    samples = art.read_parquet(exp_dir / art.SAMPLES_FILE)
    result = None if rerun else read_audit(exp_dir)
    if result is None:
        meta = art.read_meta(exp_dir)
        settings = settings_from(_ns(meta.get("config", {}).get("audit", {})))
        result = audit_samples(samples, settings, log=log)
        evaluated = samples.loc[samples["eval_set"].notna(), "sample_id"] if "eval_set" in samples else []
        write_audit(exp_dir, result, pair_thumbnails(samples, result.pairs, have=evaluated))
        log(f"audit written to {audit_dir(exp_dir)}")
    else:  # leakage against the split on disk (the stored summary may predate it)
        result.summary.update(
            {
                k: v
                for k, v in summarize(samples, result, _settings_of(result), result.summary.get("search", {})).items()
            }
        )
    log(format_report(result, samples, examples))
    return 0


def _ns(values: dict[str, Any]) -> Any:
    from types import SimpleNamespace

    return SimpleNamespace(**{k: v for k, v in (values or {}).items() if k in ("threshold", "hash_size", "thumb_size")})


def _settings_of(result: AuditResult) -> AuditSettings:
    return settings_from(_ns(result.summary.get("settings", {})))


def settings_from(cfg: Any) -> AuditSettings:
    """AuditSettings from a config's [audit] section (anything with threshold/hash_size/thumb_size attributes)."""
    return AuditSettings(
        threshold=float(getattr(cfg, "threshold", DEFAULT_THRESHOLD)),
        hash_size=int(getattr(cfg, "hash_size", DEFAULT_HASH_SIZE)),
        thumb_size=int(getattr(cfg, "thumb_size", DEFAULT_THUMB_SIZE)),
    )


def drop_flagged(samples: pd.DataFrame, quality: pd.DataFrame, drop: Sequence[str]) -> tuple[pd.DataFrame, int]:
    """Samples without the quality flags listed in `drop` (nothing is dropped by default), and how many went."""
    unknown = sorted(set(drop) - set(QUALITY_FLAGS))
    if unknown:
        raise ValueError(
            f"Invalid value for `audit.drop_quality`. Expected names among {list(QUALITY_FLAGS)}. Received: {unknown}"
        )
    if not drop:
        return samples, 0
    flagged = quality[[f"flag_{f}" for f in drop]].any(axis=1).to_numpy()
    bad = set(quality.loc[flagged, "sample_id"].astype(str))
    keep = ~samples["sample_id"].astype(str).isin(bad)
    return samples[keep].reset_index(drop=True), int((~keep).sum())


__all__ = [
    "AuditResult",
    "AuditSettings",
    "Features",
    "IngestAudit",
    "audit_features",
    "audit_samples",
    "candidate_pairs",
    "cluster_labels",
    "compute_features",
    "conflicting_clusters",
    "conflicting_sample_ids",
    "cross_split_pairs",
    "drop_flagged",
    "find_duplicates",
    "format_report",
    "image_features",
    "iter_candidates",
    "leaky_ids_from",
    "leaky_sample_ids",
    "pair_thumbnails",
    "pearson_pairs",
    "quality_flags",
    "read_audit",
    "read_audit_thumbnails",
    "run_cli",
    "settings_from",
    "simhash",
    "split_groups",
    "summarize",
    "write_audit",
]
