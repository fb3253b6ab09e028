"""Where training runs and batch predictions execute: `local` (this machine, the default) or `ray` (a cluster).

The local engine lives in `pipeline.experiment` (in-process, or a spawned process pool with `--jobs`). The Ray
engine (`pipeline.engines.ray_train`, `pipeline.engines.ray_predict`) is imported only when asked for, so
`import pipeline` and every local path work on a machine without Ray installed.

Both engines keep one contract: every run writes only its own model folder (config.json last, atomically),
a run that fails is reported by its name while the others go on, and the failures are raised together at the
end (`RunsFailed`); a rerun skips the finished runs and redoes only the failed ones.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from pipeline.errors import invalid_argument

ENGINES = ("local", "ray")
RAY_INSTALL_HINT = 'install ray[data] (pip install -e ".[ray]" or pip install -r requirements-dev.txt)'
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:/")


@dataclass(frozen=True)
class RunFailure:
    """One run that did not finish: its model folder name and what went wrong."""

    model: str
    error: str


class RunsFailed(RuntimeError):
    """Some runs failed (the others finished and wrote their artifacts); rerun to retry only the failed ones."""

    def __init__(self, failures: Sequence[RunFailure], total: int):
        self.failures = list(failures)
        self.total = int(total)
        lines = "\n".join(f"  {f.model}: {f.error}" for f in self.failures)
        super().__init__(
            f"training failed for {len(self.failures)} of {self.total} runs (the others are complete; "
            f"rerun the same command to retry only these):\n{lines}"
        )


class RayNotInstalled(ImportError):
    """`--engine ray` was asked for on a machine without Ray."""


class UnreachablePath(ValueError):
    """A path the runs need that a cluster node cannot see (or cannot write)."""


def check_engine(engine: Any) -> str:
    """`engine` validated: one of ENGINES."""
    if engine not in ENGINES:
        raise invalid_argument("engine", f"one of {list(ENGINES)}", repr(engine))
    return str(engine)


def import_ray() -> ModuleType:
    """The `ray` module, or RayNotInstalled (an ImportError) that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise RayNotInstalled(f"--engine ray needs Ray, which is not installed here: {RAY_INSTALL_HINT}") from exc


def check_plain_path(path: Path | str, what: str) -> Path:
    """`path` as a filesystem path; a URI (s3://, gs://, ...) is refused with a message saying what to do."""
    text = str(path)
    if _URI.match(text):
        raise UnreachablePath(
            f"Invalid value for {what}. Expected a filesystem path that every node sees (a shared filesystem, "
            f"or object storage mounted at the same path on each node). Received: {text!r} (URIs are not "
            "supported; see README, 'Running on a cluster')"
        )
    return Path(text)
