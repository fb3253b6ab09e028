"""Item 5: memory of the dashboard server with the 300,000 x 10 artifact, with 1 and with 10 sessions.

Starts `python -m streamlit run dashboard/app.py` (headless, loopback, a free port) against the artifact
from `bench.bench_dashboard`, opens real browser sessions with Debian's chromium through Playwright (never a
downloaded browser), and reads the server's RSS and peak RSS (VmHWM) from /proc:
- idle: server started, no session;
- 1 session: the first session has visited every page once (all shared caches built: predictions,
  sweeps, curves, leaderboard bootstrap), ending on the overview;
- 10 sessions: 9 more sessions, each on one page (cycling through the pages), all kept open.
Per extra session = (RSS with 10 - RSS with 1) / 9. Target < 50 MB.

Run: python -m bench.bench_memory [--n-samples 300000]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Sequence

from bench import common as c
from bench.soak import free_port, stop_server

CHROMIUM = Path("/usr/bin/chromium")


def page_urls() -> list[str]:
    """URL paths of every page registered in dashboard/app.py's PAGES (read with ast: the app is a script)."""
    import ast

    tree = ast.parse((c.REPO_ROOT / "dashboard" / "app.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(target, ast.Name) and target.id == "PAGES" and node.value is not None:
            pages = ast.literal_eval(node.value)
            urls = [
                url
                for entries in pages.values()
                for file, _, _, url in entries
                if (c.REPO_ROOT / "dashboard" / "app_pages" / file).is_file()
            ]
            return [""] + urls[1:]  # the first (default) page is served at the root URL
    raise RuntimeError("dashboard/app.py has no PAGES table")


def start_server(
    artifacts: Path, port: int, log_path: Path, extra_env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.Popen:
    """The dashboard exactly as `make run` serves it (headless, loopback only); waits for /_stcore/health."""
    env = {**os.environ, "MEDCOMPARE_ARTIFACTS": str(artifacts), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    log = open(log_path, "w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            "dashboard/app.py",
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(port),
            "--browser.gatherUsageStats",
            "false",
            "--server.fileWatcherType",
            "none",
        ],
        cwd=c.REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + timeout
    while True:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).read() == b"ok":
                return proc
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            stop_server(proc)
            raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
        time.sleep(0.5)


def settle(page: Any, timeout: float) -> None:
    """Wait until the page has drawn its title and the script run has finished (no running-status widget)."""
    page.locator("h1").first.wait_for(timeout=timeout * 1000)
    deadline = time.time() + timeout
    time.sleep(0.5)
    while time.time() < deadline:
        if (
            page.locator('[data-testid="stStatusWidget"]').count() == 0
            and page.locator('[data-testid="stSpinner"]').count() == 0
        ):
            break
        time.sleep(0.3)
    time.sleep(0.5)


def sample_rss(pid: int, settle_s: float = 2.0) -> tuple[float, float]:
    """(RSS, peak RSS) in MiB of the server after letting it settle."""
    time.sleep(settle_s)
    return c.rss_mb(pid)


def measure(
    artifacts: Path, n_sessions: int, timeout: float, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start a server, open sessions, return RSS readings in MiB."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    log_path = c.cache_dir("memory") / f"streamlit_{port}.log"
    proc = start_server(artifacts, port, log_path, extra_env)
    url = f"http://127.0.0.1:{port}"
    out: dict[str, Any] = {}
    try:
        out["idle"] = sample_rss(proc.pid)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=str(CHROMIUM),
                args=[
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                ],
            )
            try:
                contexts = []
                first = browser.new_context(viewport={"width": 1400, "height": 900})
                contexts.append(first)
                pg = first.new_page()
                t0 = time.perf_counter()
                urls = page_urls()
                for path in urls[1:] + urls[:1]:
                    pg.goto(f"{url}/{path}")
                    settle(pg, timeout)
                out["first session s"] = time.perf_counter() - t0
                out["1 session"] = sample_rss(proc.pid)
                for i in range(1, n_sessions):
                    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                    contexts.append(ctx)
                    page = ctx.new_page()
                    page.goto(f"{url}/{urls[i % len(urls)]}")
                    settle(page, timeout)
                out[f"{n_sessions} sessions"] = sample_rss(proc.pid)
                out["sessions open"] = len(contexts)
                out["pages"] = urls
            finally:
                browser.close()
        out["after close"] = sample_rss(proc.pid)
        errors = [ln for ln in log_path.read_text(errors="replace").splitlines() if "Traceback" in ln]
        out["server tracebacks"] = len(errors)
    finally:
        stop_server(proc)
    return out


def run(
    n_samples: int,
    n_sessions: int,
    timeout: float,
    root: Path | None = None,
    n_models: int = 10,
    arena_variant: bool = False,
) -> dict[str, Any]:
    """Measure the default server (and optionally one with MALLOC_ARENA_MAX=2) with 1 and `n_sessions` sessions."""
    from bench.bench_dashboard import make_artifacts

    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} is missing: install Debian's chromium; this benchmark never downloads one")
    artifacts = make_artifacts("bin", n_samples, 2, n_models, root)
    variants = [("default", None)] + ([("MALLOC_ARENA_MAX=2", {"MALLOC_ARENA_MAX": "2"})] if arena_variant else [])
    rows = []
    for label, env in variants:
        m = measure(artifacts, n_sessions, timeout, env)
        one, many = m["1 session"][0], m[f"{n_sessions} sessions"][0]
        per = (many - one) / max(n_sessions - 1, 1)
        rows.append(
            {
                "server": label,
                "samples x models": f"{n_samples:,} x {n_models}",
                "idle MiB": m["idle"][0],
                "1 session MiB": one,
                f"{n_sessions} sessions MiB": many,
                "peak MiB": max(m[f"{n_sessions} sessions"][1], m["after close"][1]),
                "per extra session MiB": per,
                "after close MiB": m["after close"][0],
                "first session (all pages) s": m["first session s"],
                "tracebacks": m["server tracebacks"],
                "target <50 MB": c.verdict(per * 1.048576, 50.0, higher_is_better=False),
            }
        )
        print(f"  {label}: 1 session {one:.0f} MiB, {n_sessions} sessions {many:.0f} MiB", flush=True)
    return {"settings": {"n_samples": n_samples, "n_models": n_models, "n_sessions": n_sessions}, "rows": rows}


def report(result: dict[str, Any]) -> str:
    """Markdown table of a `run` result."""
    s = result["settings"]
    return (
        f"Memory: dashboard server, {s['n_samples']:,} x {s['n_models']} binary artifact, "
        f"{s['n_sessions']} chromium sessions\n\n" + c.table(result["rows"])
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point: run, print the table, save bench/out/memory.json."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-samples", type=int, default=300_000)
    ap.add_argument("--n-models", type=int, default=10)
    ap.add_argument("--sessions", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for one page to draw")
    ap.add_argument("--arena-variant", action="store_true", help="also measure a server with MALLOC_ARENA_MAX=2")
    ap.add_argument("--root", type=Path, default=None, help="where to generate artifacts (default .cache/bench)")
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args(argv)
    result = run(args.n_samples, args.sessions, args.timeout, args.root, args.n_models, args.arena_variant)
    print(report(result), flush=True)
    if not args.no_save:
        c.save_result("memory", {"command": "python -m bench.bench_memory " + " ".join(argv or []), **result})
    return result


if __name__ == "__main__":
    main(__import__("sys").argv[1:])
