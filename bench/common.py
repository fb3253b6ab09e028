"""Timing helpers shared by the benchmarks: interleaved repeats, medians, ratios, a tiny table printer.

The machine is small and shared, so a single timing means little. Every benchmark therefore runs the
baseline and ours in the same process, alternating (A B C, then B C A, ...), several times, and reports
the median of each and the ratio of the medians: background load slows all contenders alike.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO_ROOT / ".cache" / "bench"
OUT_DIR = REPO_ROOT / "bench" / "out"


def cache_dir(*parts: str) -> Path:
    """A folder under .cache/bench (created), for generated inputs reused between runs."""
    path = CACHE_DIR.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Timings:
    """Wall and process-CPU seconds of each contender, one entry per timed round."""

    wall: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)

    def median_wall(self, name: str) -> float:
        """Median wall seconds of `name`."""
        return median(self.wall[name])

    def median_cpu(self, name: str) -> float:
        """Median process CPU seconds (all threads) of `name`."""
        return median(self.cpu[name])


def interleaved(
    fns: Mapping[str, Callable[[], Any]],
    repeats: int,
    warmup: int = 1,
    on_result: Callable[[str, int, float, Any], None] | None = None,
) -> Timings:
    """Wall and CPU seconds of each callable over `repeats` rounds, rotating the order every round.

    Each callable first runs `warmup` untimed times (tracing, caches, page-in). `on_result(name, round,
    seconds, value)` sees every timed call, e.g. to check or keep what the callable returned.
    CPU time is the whole process's (every thread), so it measures cost independently of how much of the
    machine other processes take, which wall time on a shared machine does not.
    """
    if repeats < 1:
        raise ValueError(f"Invalid value for argument `repeats`. Expected >= 1. Received: {repeats}")
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    out = Timings({n: [] for n in names}, {n: [] for n in names})
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            cpu0, start = time.process_time(), time.perf_counter()
            value = fns[name]()
            seconds = time.perf_counter() - start
            out.wall[name].append(seconds)
            out.cpu[name].append(time.process_time() - cpu0)
            if on_result is not None:
                on_result(name, r, seconds, value)
    return out


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (NaN when empty)."""
    return float(statistics.median(values)) if len(values) else float("nan")


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is zero or either is NaN."""
    try:
        return float(a) / float(b) if float(b) != 0 else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def spread(values: Sequence[float]) -> str:
    """'min..max' of a sequence, for showing how noisy a median is."""
    return f"{min(values):.3g}..{max(values):.3g}" if len(values) else "-"


def fmt(value: Any, digits: int = 3) -> str:
    """A number with `digits` significant digits (thousands separated when large), anything else as str."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if abs(value) >= 10**digits:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """A GitHub-markdown table of `rows` (dicts), columns in first-seen order unless given."""
    if not rows:
        return "(no rows)"
    cols = list(columns) if columns is not None else list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def verdict(value: float, target: float, higher_is_better: bool = True) -> str:
    """'met' or 'MISSED' for a value against its target."""
    if value != value:
        return "n/a"
    ok = value >= target if higher_is_better else value <= target
    return "met" if ok else "MISSED"


def machine() -> str:
    """One line describing the machine: CPU model, cores, memory, Python."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(
            next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal")).split()[1]
        )
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{mem}, Python {platform.python_version()}"


def rss_mb(pid: int | None = None) -> tuple[float, float]:
    """(current RSS, peak RSS) of a process in MiB, read from /proc/<pid>/status (Linux)."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    fields = {ln.split(":")[0]: ln.split(":")[1] for ln in status.splitlines() if ":" in ln}
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def save_result(name: str, payload: dict[str, Any]) -> Path:
    """Write a benchmark's result (with the machine line and a timestamp) to bench/out/<name>.json."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"{name}.json"
    payload = {
        "bench": name,
        "machine": machine(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_1_5_15min": os.getloadavg(),
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2, default=_jsonable), encoding="utf-8")
    return path


def _jsonable(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    return str(value)


def quiet_tensorflow() -> None:
    """Silence TensorFlow's C++ start-up chatter (call before importing TensorFlow)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def png_folder(n_images: int, size: int, seed: int = 0, n_classes: int = 2, root: Path | None = None) -> Path:
    """`n_images` synthetic RGB PNGs (size x size) in class folders under .cache/bench, generated once.

    Smooth colour noise plus a few dark blobs, so the files compress like real patches (tens of kB at
    96 px, not the few hundred bytes of a flat image) and decoding costs what it costs on real data.
    Layout: <dir>/class_<k>/img_<i>.png, the layout `flow_from_directory` expects; <dir> is under `root`
    (default .cache/bench).
    """
    import cv2
    import numpy as np

    name = f"png_{n_images}_{size}px_s{seed}"
    root = cache_dir(name) if root is None else Path(root) / name
    root.mkdir(parents=True, exist_ok=True)
    marker = root / ".complete"
    if marker.is_file():
        return root
    rng = np.random.default_rng(seed)
    for k in range(n_classes):
        (root / f"class_{k}").mkdir(exist_ok=True)
    for i in range(n_images):
        k = i % n_classes
        cells = max(size // 8, 2)
        base = rng.uniform(60, 230, (cells, cells, 3)).astype(np.float32)
        img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
        img += rng.normal(0, 12, (size, size, 3)).astype(np.float32)
        for _ in range(int(rng.integers(3, 9)) + 4 * k):
            c = rng.integers(0, size, 2)
            cv2.circle(
                img,
                (int(c[0]), int(c[1])),
                int(rng.integers(2, max(size // 10, 3))),
                tuple(float(v) for v in rng.uniform(20, 110, 3)),
                -1,
            )
        rgb = np.clip(img, 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / f"class_{k}" / f"img_{i:06d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    marker.write_text("ok", encoding="utf-8")
    return root


def png_paths(root: Path) -> list[str]:
    """The PNGs of a `png_folder` in the order `flow_from_directory` reads them (class, then file name)."""
    return [str(p) for d in sorted(q for q in root.iterdir() if q.is_dir()) for p in sorted(d.glob("*.png"))]
