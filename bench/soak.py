"""Soak / concurrency run: many simultaneous browser sessions against one served dashboard.

Every session is its own Playwright (Debian chromium) browser context on 127.0.0.1, i.e. its own Streamlit
session. For a bounded time each one repeatedly moves the threshold slider of the Threshold tuning page by
a few keyboard steps from its own starting value; every third session also uploads its own image on the
Live inference page (if the page exists) and another third writes mentor notes on the Misclassifications
page (if it exists), switching pages through the sidebar so the session (and its state) is kept.

At the end it reports (and `tests/browser/test_concurrency.py` asserts):
- sessions held: sessions still connected that finished their last check;
- errors: any exception or error element any session ever saw;
- cross-talk: a session whose slider, URL or upload caption shows anything but its own value;
- notes written vs notes found in the experiment's notes.sqlite (lost / duplicated);
- the server's resident memory (VmRSS from /proc) at start, peak and end.

Short run (what the test does) or the long manual setting::

    .venv/bin/python -m bench.soak --sessions 20 --seconds 600

Needs /usr/bin/chromium and Playwright; never downloads a browser. Loopback only; every loop is bounded.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
EXPERIMENT = "binary"
SLIDER_MODEL = "EfficientNetB0"  # the first model of the fake experiment: the slider's model on Threshold tuning
ERROR_SELECTOR = '[data-testid="stException"], [data-testid="stAlertContentError"]'
NOTE_PREFIX = "soak-note"


@dataclass
class SessionLog:
    """What one session did and saw."""

    index: int
    role: str  # "slider", "upload" or "notes"
    start_threshold: float
    expected_threshold: float = float("nan")
    shown_threshold: float | None = None
    url_threshold: float | None = None
    slider_moves: int = 0
    uploads: int = 0
    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    crosstalk: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # moves the server never saw (see _wait_for_server)
    held: bool = False


@dataclass
class SoakResult:
    """The numbers of one soak run."""

    sessions: int
    seconds: float
    sessions_held: int
    slider_moves: int
    uploads: int
    notes_written: int
    notes_in_db: int
    notes_lost: int
    notes_duplicated: int
    errors: list[str]
    crosstalk: list[str]
    lost_moves: list[str]
    rss_start_mb: float
    rss_peak_mb: float
    rss_end_mb: float
    pages: dict[str, bool]
    logs: list[SessionLog] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The headline numbers (no per-session logs)."""
        out = asdict(self)
        out.pop("logs")
        out["errors"] = self.errors[:10]
        out["crosstalk"] = self.crosstalk[:10]
        out["lost_moves"] = self.lost_moves[:10]
        return out


# ---------------------------------------------------------------- artifacts and server

def make_artifacts(root: Path) -> Path:
    """The fake binary experiment the sessions share (no TensorFlow, no model.keras)."""
    from pipeline.fake import make_fake_experiment

    make_fake_experiment(root, EXPERIMENT, n_samples=400, n_models=3, seed=1, eval_sets=("test", "uncropped"))
    return root


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(root: Path, log_path: Path, startup_s: float = 90.0,
          extra_env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m streamlit run dashboard/app.py` on a free loopback port (as `make run` serves it).

    The one way the benches and the browser tests start a server (tests/browser/serve.py wraps it).
    """
    port = free_port()
    env = {**os.environ, "MEDCOMPARE_ARTIFACTS": str(root), "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.time() + startup_s
            while True:
                try:
                    if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    raise RuntimeError(f"streamlit did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.5)
            yield url, proc
        finally:
            stop_server(proc)


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate the server we started (and only it), killing it if it does not stop in 15 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (VmRSS from /proc), NaN when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def notes_in_db(exp_dir: Path) -> list[str]:
    """Texts of the soak's notes in the experiment's notes.sqlite (read-only; empty when there is none)."""
    path = exp_dir / "notes.sqlite"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)) as con:
        rows = con.execute("SELECT text FROM notes WHERE text LIKE ?", (f"{NOTE_PREFIX}%",)).fetchall()
    return [r[0] for r in rows]


def upload_png(index: int, round_: int) -> tuple[str, bytes, int, int]:
    """A small PNG whose name and size are unique to (session, round): (name, bytes, width, height)."""
    import cv2
    import numpy as np

    width, height = 40 + index, 30 + round_ % 7
    img = np.zeros((height, width, 3), np.uint8)
    img[:, :, 0] = (index * 11) % 256
    img[:, :, 1] = np.arange(width, dtype=np.uint8)[None, :]
    ok, buf = cv2.imencode(".png", img)
    assert ok
    return f"session{index:02d}-round{round_}.png", buf.tobytes(), width, height


# ---------------------------------------------------------------- one browser session

async def _settle(page: Any, timeout: float = 120.0) -> None:
    """Wait until the app is idle (no running-script indicator), bounded."""
    await asyncio.sleep(0.3)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if await page.locator('[data-testid="stStatusWidget"]').count() == 0:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)


async def _check_errors(page: Any, log: SessionLog, where: str) -> None:
    loc = page.locator(ERROR_SELECTOR)
    n = await loc.count()
    if n:
        text = (await loc.first.inner_text())[:300]
        log.errors.append(f"session {log.index} ({where}): {text}")


async def _goto_page(page: Any, title: str) -> bool:
    """Switch page through the sidebar (keeps the session); False when the page is not registered."""
    link = page.locator('[data-testid="stSidebarNav"] a', has_text=title)
    if await link.count() == 0:
        return False
    await link.first.click()
    await page.locator("h1", has_text=title).first.wait_for()  # the new page, not the old one's heading
    await _settle(page)
    return True


def _threshold_slider(page: Any) -> Any:
    """The "Threshold" slider of Threshold tuning (not another page's slider still on screen mid-switch)."""
    label = page.locator('[data-testid="stWidgetLabel"]', has_text=re.compile(r"^\s*Threshold\s*$"))
    return page.locator('[data-testid="stSlider"]').filter(has=label).first


async def _slider_value(page: Any) -> float:
    slider = _threshold_slider(page)
    await slider.wait_for()
    return float((await slider.locator('[data-testid="stSliderThumbValue"]').inner_text()).strip())


def _url_threshold(url: str) -> float | None:
    from urllib.parse import parse_qs, urlparse

    thr = parse_qs(urlparse(url).query).get("thr", [""])[0]
    for part in thr.split(","):
        key, _, value = part.rpartition(":")
        if key == SLIDER_MODEL:
            return float(value)
    return None


async def _wait_for_server(page: Any, log: SessionLog, timeout: float = 120.0) -> bool:
    """Wait until the server has run with this session's threshold: the app writes it into the URL each run.

    The slider shows a keyboard move at once but sends it after a debounce; under load the rerun comes
    seconds later, and a page switch before that would drop the move (Streamlit's frontend). Bounded.
    """
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = _url_threshold(page.url)
        if value is not None and abs(value - log.expected_threshold) < 1e-9:
            await _settle(page)
            return True
        await asyncio.sleep(0.2)
    log.lost.append(f"session {log.index}: the server never ran with {log.expected_threshold:.3f} "
                    f"(URL still {_url_threshold(page.url)}) within {timeout:.0f} s")
    return False


async def _move_slider(page: Any, log: SessionLog, rng: random.Random) -> None:
    """A few keyboard steps (0.001 each) left or right, then check the slider shows exactly the expected value."""
    steps = rng.randint(1, 3)
    key = "ArrowRight" if rng.random() < 0.5 else "ArrowLeft"
    before = await _slider_value(page)
    await _threshold_slider(page).locator('input[type="range"]').focus()
    for _ in range(steps):
        await page.keyboard.press(key)
    log.expected_threshold = round(log.expected_threshold + (steps if key == "ArrowRight" else -steps) * 0.001, 3)
    log.slider_moves += steps
    await _wait_for_server(page, log)
    shown = await _slider_value(page)
    log.history.append(f"{before:.3f} {key}x{steps} -> {shown:.3f} (expected {log.expected_threshold:.3f}, "
                       f"url {_url_threshold(page.url)})")
    if abs(shown - log.expected_threshold) > 1e-9:
        log.crosstalk.append(f"session {log.index}: slider shows {shown:.3f}, expected {log.expected_threshold:.3f}")
        log.expected_threshold = shown  # keep going from what the page holds; the mismatch is recorded


async def _upload(page: Any, log: SessionLog, round_: int) -> None:
    """Upload this session's own image on Live inference and check the caption names it, with its size."""
    name, data, width, height = upload_png(log.index, round_)
    await page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(
        files=[{"name": name, "mimeType": "image/png", "buffer": data}])
    caption = page.locator('[data-testid="stImageCaption"]', has_text=name)
    await caption.first.wait_for(timeout=120_000)
    await _settle(page)
    text = await page.locator('[data-testid="stImageCaption"]').first.inner_text()
    if name not in text or f"{width}x{height}" not in text:
        log.crosstalk.append(f"session {log.index}: upload caption {text!r}, expected {name} {width}x{height}")
    others = [c for c in await page.locator('[data-testid="stImageCaption"]').all_inner_texts()
              if "session" in c and f"session{log.index:02d}" not in c]
    if others:
        log.crosstalk.append(f"session {log.index}: sees another session's upload {others[0]!r}")
    log.uploads += 1


async def _write_note(page: Any, log: SessionLog, round_: int) -> None:
    """Open a sample on Misclassifications and save a note whose text is unique to (session, round)."""
    # text "Open" exactly: a select box's dropdown toggle is also a button *named* "Open" (aria-label)
    buttons = page.locator("button").filter(has_text=re.compile(r"^Open$"))
    await buttons.first.wait_for(timeout=120_000)
    count = await buttons.count()
    await buttons.nth((log.index + round_) % max(1, min(count, 12))).click()
    await _settle(page)
    text = f"{NOTE_PREFIX} s{log.index:02d} r{round_}"
    await page.locator('textarea[aria-label="Note"]').fill(text)
    await page.locator('input[aria-label="Author"]').fill(f"mentor{log.index:02d}")
    await page.get_by_role("button", name="Save note").click()
    saved = page.locator('[data-testid="stAlertContentSuccess"]', has_text="Saved:")
    await saved.first.wait_for(timeout=120_000)
    log.notes.append(text)
    await _settle(page)


@dataclass
class Pacing:
    """How hard the client pushes: the browser renders every session's charts on the same few cores.

    All sessions are open (connected, with their own state) at the same time; `opening` caps how many page
    loads run at once during the ramp-up and `acting` how many sessions are mid-action at once afterwards.
    """

    opening: int = 2
    acting: int = 6
    barrier: asyncio.Event = field(default_factory=asyncio.Event)
    opened: int = 0

    def __post_init__(self) -> None:
        self.open_slots = asyncio.Semaphore(self.opening)
        self.act_slots = asyncio.Semaphore(self.acting)


async def run_session(browser: Any, base_url: str, index: int, role: str, seconds: float, pages: dict[str, bool],
                      seed: int = 0, pacing: Pacing | None = None, sessions: int = 1) -> SessionLog:
    """One user: open Threshold tuning at its own threshold, wait for every session to be open, then act for
    `seconds` (at least one round); never raises."""
    pacing = pacing or Pacing()
    start = round(0.2 + 0.015 * index, 3)
    log = SessionLog(index=index, role=role, start_threshold=start, expected_threshold=start)
    rng = random.Random(seed * 1000 + index)
    context = await browser.new_context(viewport={"width": 1100, "height": 800}, reduced_motion="reduce")
    page = await context.new_page()
    page.set_default_timeout(180_000)
    try:
        try:
            async with pacing.open_slots:
                await page.goto(f"{base_url}/thresholds?exp={EXPERIMENT}&thr={SLIDER_MODEL}%3A{start}")
                await page.wait_for_selector('[data-testid="stSliderThumbValue"]')
                await _settle(page)
        finally:
            pacing.opened += 1
            if pacing.opened >= sessions:
                pacing.barrier.set()
        await pacing.barrier.wait()  # every session is open (held) before any starts acting
        shown = await _slider_value(page)
        if abs(shown - start) > 1e-9:
            log.crosstalk.append(f"session {index}: opened with slider {shown:.3f}, expected {start:.3f}")
        round_ = 0
        deadline = time.time() + seconds
        while round_ == 0 or time.time() < deadline:
            async with pacing.act_slots:
                await _move_slider(page, log, rng)
                await _check_errors(page, log, "threshold tuning")
                if role == "upload" and pages.get("Live inference") and await _goto_page(page, "Live inference"):
                    await _upload(page, log, round_)
                    await _check_errors(page, log, "live inference")
                    await _goto_page(page, "Threshold tuning")
                elif role == "notes" and pages.get("Misclassifications") and await _goto_page(page, "Misclassifications"):
                    await _write_note(page, log, round_)
                    await _check_errors(page, log, "misclassifications")
                    await _goto_page(page, "Threshold tuning")
            round_ += 1
            await asyncio.sleep(0)  # let a waiting session take the slot
        # The last check: still this session's own threshold, in the slider and in the URL.
        await _wait_for_server(page, log)
        log.shown_threshold = await _slider_value(page)
        log.url_threshold = _url_threshold(page.url)
        if abs(log.shown_threshold - log.expected_threshold) > 1e-9:
            log.crosstalk.append(f"session {index}: final slider {log.shown_threshold:.3f}, "
                                 f"expected {log.expected_threshold:.3f}")
        if log.url_threshold is None or abs(log.url_threshold - log.expected_threshold) > 1e-9:
            log.crosstalk.append(f"session {index}: URL threshold {log.url_threshold}, "
                                 f"expected {log.expected_threshold:.3f}")
        await _check_errors(page, log, "final check")
        log.held = True
    except Exception as exc:  # noqa: BLE001 - a failed session is a result to report, not a crash of the run
        log.errors.append(f"session {index}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    finally:
        await context.close()
    return log


# ---------------------------------------------------------------- the whole run

async def run_soak(base_url: str, server_pid: int, exp_dir: Path, sessions: int = 20, seconds: float = 30.0,
                   seed: int = 0, opening: int = 2, acting: int = 6) -> SoakResult:
    """`sessions` concurrent browser sessions for `seconds` of activity each; returns the numbers."""
    from playwright.async_api import async_playwright

    roles = ["upload", "notes", "slider"]
    notes_before = set(notes_in_db(exp_dir))
    rss_start = rss_mb(server_pid)
    peak = [rss_start]
    stop = asyncio.Event()

    async def sample_rss() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(server_pid))
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--disable-dev-shm-usage", "--disable-renderer-backgrounding",
            "--disable-background-timer-throttling", "--disable-backgrounding-occluded-windows"])
        try:
            probe = await browser.new_page()
            await probe.goto(f"{base_url}/?exp={EXPERIMENT}")
            await probe.wait_for_selector('[data-testid="stSidebarNav"]', timeout=120_000)
            nav = " | ".join(await probe.locator('[data-testid="stSidebarNav"] a').all_inner_texts())
            await probe.close()
            pages = {t: t in nav for t in ("Threshold tuning", "Live inference", "Misclassifications")}
            sampler = asyncio.create_task(sample_rss())
            pacing = Pacing(opening=opening, acting=acting)
            logs = await asyncio.gather(*[
                run_session(browser, base_url, i, roles[i % 3], seconds, pages, seed, pacing, sessions)
                for i in range(sessions)])
            stop.set()
            await sampler
        finally:
            await browser.close()
    written = [n for log in logs for n in log.notes]
    in_db = [n for n in notes_in_db(exp_dir) if n not in notes_before]
    return SoakResult(
        sessions=sessions, seconds=seconds, sessions_held=sum(log.held for log in logs),
        slider_moves=sum(log.slider_moves for log in logs), uploads=sum(log.uploads for log in logs),
        notes_written=len(written), notes_in_db=len(in_db), notes_lost=len(set(written) - set(in_db)),
        notes_duplicated=len(in_db) - len(set(in_db)),
        errors=[e for log in logs for e in log.errors], crosstalk=[c for log in logs for c in log.crosstalk],
        lost_moves=[m for log in logs for m in log.lost],
        rss_start_mb=round(rss_start, 1), rss_peak_mb=round(peak[0], 1), rss_end_mb=round(rss_mb(server_pid), 1),
        pages=pages, logs=list(logs))


def main(argv: list[str] | None = None) -> int:
    """CLI: serve fake artifacts, run the soak, print (and save) the numbers; exit 1 on any failure."""
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=600.0, help="activity time of every session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opening", type=int, default=2, help="page loads at once during the ramp-up")
    parser.add_argument("--acting", type=int, default=6, help="sessions mid-action at once")
    parser.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "soak.json"))
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: install Debian's chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        root = make_artifacts(Path(tmp) / "artifacts")
        with serve(root, Path(tmp) / "streamlit.log") as (url, proc):
            result = asyncio.run(run_soak(url, proc.pid, root / EXPERIMENT, args.sessions, args.seconds, args.seed,
                                          args.opening, args.acting))
    summary = result.summary()
    print(json.dumps(summary, indent=2))
    for log in result.logs:
        if log.crosstalk or log.errors or log.lost:
            print(f"session {log.index} ({log.role}):", *log.history, *log.crosstalk, *log.lost, sep="\n  ")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2))
    bad = (result.errors or result.crosstalk or result.lost_moves or result.notes_lost
           or result.sessions_held < result.sessions)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
