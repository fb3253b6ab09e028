"""Serve the dashboard exactly as `make run` does, on a free loopback port, for browser tests."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

from bench.soak import serve


@contextlib.contextmanager
def serve_dashboard(artifacts: Path, timeout: float = 90, extra_env: dict[str, str] | None = None) -> Iterator[str]:
    """Start `streamlit run dashboard/app.py` over `artifacts`; yield its base URL; stop it afterwards."""
    with serve(Path(artifacts), Path(artifacts) / "streamlit.log", startup_s=timeout, extra_env=extra_env) as (url, _):
        yield url
