"""PDF export: print the self-contained HTML report with headless Debian chromium (offline flags)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pipeline import artifacts as art
from pipeline.errors import invalid_argument

DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ENV = "MEDCOMPARE_CHROMIUM"


def chromium_path() -> str:
    """The chromium used for PDF export: $MEDCOMPARE_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH."""
    env = os.environ.get(CHROMIUM_ENV, "").strip()
    if env:
        return env
    if Path(DEFAULT_CHROMIUM).exists():
        return DEFAULT_CHROMIUM
    return shutil.which("chromium") or shutil.which("chromium-browser") or DEFAULT_CHROMIUM


def find_chromium(chromium: str | None = None) -> str:
    """An executable chromium, or FileNotFoundError saying how to install one."""
    path = chromium or chromium_path()
    if not (Path(path).is_file() and os.access(path, os.X_OK)):
        raise invalid_argument(
            "chromium",
            "an executable headless chromium to print the report to PDF (Debian: apt-get install "
            f"chromium; or set {CHROMIUM_ENV})",
            f"{path} (not found). The HTML report does not need it.",
            error=FileNotFoundError,
        )
    return path


def html_to_pdf(html_path: Path | str, pdf_path: Path | str, chromium: str | None = None, timeout: float = 180) -> Path:
    """Print an HTML file to PDF with headless chromium (offline flags; a throwaway profile)."""
    exe = find_chromium(chromium)
    html_path = Path(html_path).resolve()
    pdf_path = Path(pdf_path).resolve()
    if not html_path.is_file():
        raise invalid_argument("html_path", "an existing HTML file", html_path, error=FileNotFoundError)
    pdf_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="medcompare-chromium-") as profile:
        tmp_pdf = Path(profile) / "out.pdf"
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--disable-extensions",
            "--disable-dev-shm-usage",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            "--virtual-time-budget=15000",
            "--window-size=1040,1400",
            f"--print-to-pdf={tmp_pdf}",
            html_path.as_uri(),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"chromium did not finish printing {html_path} within {timeout:.0f}s") from None
        if proc.returncode != 0 or not tmp_pdf.is_file() or tmp_pdf.stat().st_size == 0:
            tail = (proc.stderr or proc.stdout or "").strip()[-800:]
            raise RuntimeError(f"chromium failed to print {html_path} to PDF (exit {proc.returncode}): {tail}")
        art.atomic_write_bytes(pdf_path, tmp_pdf.read_bytes())
    return pdf_path
