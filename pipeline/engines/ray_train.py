"""The training grid on Ray: each run (backbone x seed x fold) is one Ray task with its resource request.

`run_experiment(cfg, engine="ray", address=...)` calls, in order: `connect` (an existing cluster, or a local
Ray instance), `absolute_paths` (workers may start in another folder), `check_reachable` (a tiny task on every
node checks the data and the artifact folder before any work), then `run_on_ray` after the driver decoded the
train/val images once: the array goes into the object store once (`ray.put`) and every run reads it there
(zero-copy on its node), where decoding again per run would repeat the same work 240 times on a full grid.

Runs are submitted longest first (`schedule_runs`); Ray starts tasks of one resource shape in submission order.
A run's failure (an exception, or its worker or node dying after one retry) is logged with the run's name and
the others go on; the failures come back as a list for `RunsFailed`. A finished run has written its model
folder, so a rerun skips it. Imported only when `--engine ray` is chosen; Ray is an optional extra.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from pipeline.config import ExperimentConfig
from pipeline.engines import RunFailure, UnreachablePath, check_plain_path, import_ray
from pipeline.errors import invalid_argument
from pipeline.preprocess import parse_npz_ref
from pipeline.runs import RunSpec

Log = Callable[[str], None]
PROBE_TIMEOUT_S = 120.0
README_HINT = "see README, 'Running on a cluster'"


def connect(address: str | None, log: Log = print) -> Any:
    """Join the Ray cluster at `address` ("auto", "ray://host:10001", "host:6379"), or start a local instance
    when None; reuse the connection when Ray is already initialised. Returns the `ray` module.

    Ray shuts the connection (and a local instance) down when the process exits.
    """
    ray = import_ray()
    if ray.is_initialized():
        return ray
    env = {"env_vars": {"TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}}
    if address:
        ray.init(address=address, runtime_env=env)
    else:
        ray.init(include_dashboard=False, runtime_env=env)
    res = ray.cluster_resources()
    log(
        f"ray: {'connected to ' + address if address else 'local instance'}, {len(alive_nodes(ray))} node(s), "
        f"{res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs"
    )
    return ray


def alive_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's live nodes that can run work (some CPU or GPU)."""
    return [
        n
        for n in ray.nodes()
        if n.get("Alive") and (n.get("Resources", {}).get("CPU", 0) > 0 or n.get("Resources", {}).get("GPU", 0) > 0)
    ]


def absolute_paths(cfg: ExperimentConfig, samples: pd.DataFrame) -> tuple[ExperimentConfig, Path, pd.DataFrame]:
    """(cfg, experiment folder, samples) with every path absolute, as this driver resolves it: a worker starts
    in its own folder, so a relative path would point elsewhere there. URIs are refused (not supported)."""
    output = check_plain_path(cfg.output, "the artifacts root (`output`)").resolve()
    root = check_plain_path(cfg.dataset.root, "`dataset.root`").resolve()
    evals = tuple(
        replace(e, root=check_plain_path(e.root, f"eval set {e.name!r} root").resolve()) for e in cfg.eval_sets
    )
    cfg = replace(cfg, output=output, dataset=replace(cfg.dataset, root=root), eval_sets=evals)
    paths = [os.path.abspath(p) if isinstance(p, str) and p else p for p in samples["path"]]
    return cfg, cfg.experiment_dir, samples.assign(path=paths)


def needed_paths(cfg: ExperimentConfig, samples: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The checks every node must pass, as (what, path, check): the data roots and one sample image exist
    (same size as here), the experiment folder is the driver's (a token file written here is read there)
    and writable."""
    checks = [("data root `dataset.root`", str(cfg.dataset.root), "exists")]
    checks += [(f"eval set {e.name!r} root", str(e.root), "exists") for e in cfg.eval_sets]
    for path in samples["path"].head(1):
        ref = parse_npz_ref(str(path))
        file = ref[0] if ref else str(path)
        checks.append(("a sample image", file, f"size:{os.path.getsize(file)}" if os.path.exists(file) else "exists"))
    checks.append(("the artifact folder", str(cfg.experiment_dir), "shared"))
    return checks


def _probe(checks: Sequence[tuple[str, str, str]], token_name: str, token: str) -> tuple[str, list[str]]:
    """Run on one node: (node, problems) for the checks of `needed_paths`."""
    problems = []
    for what, path, check in checks:
        p = Path(path)
        if not p.exists():
            problems.append(f"{what} {path} does not exist there")
        elif check.startswith("size:") and p.stat().st_size != int(check[5:]):
            problems.append(f"{what} {path} differs there ({p.stat().st_size} bytes, {check[5:]} on the driver)")
        elif check == "shared":
            try:
                seen = (p / token_name).read_text(encoding="utf-8")
            except OSError:
                seen = ""
            if seen != token:
                problems.append(f"{what} {path} exists there but is not the driver's (not a shared folder)")
                continue
            probe = p / f".probe-{socket.gethostname()}-{os.getpid()}.tmp"
            try:
                probe.write_bytes(b"ok")
                probe.unlink()
            except OSError as exc:
                problems.append(f"{what} {path} is not writable there ({exc.strerror or exc})")
    return f"{socket.gethostname()}", problems


def check_reachable(checks: Sequence[tuple[str, str, str]], *, log: Log = print) -> None:
    """Fail fast: a tiny task on every node checks `checks` (see `needed_paths`); raises UnreachablePath naming
    the path, the problem and the node, or what kept the node from running the pipeline at all."""
    ray = import_ray()
    strategies = importlib.import_module("ray.util.scheduling_strategies")

    shared = [Path(path) for _, path, check in checks if check == "shared"]
    for folder in shared:
        folder.mkdir(parents=True, exist_ok=True)
    token_name, token = f".reach-{uuid.uuid4().hex}.tmp", uuid.uuid4().hex
    for folder in shared:
        (folder / token_name).write_text(token, encoding="utf-8")
    probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
    try:
        nodes = alive_nodes(ray)
        refs = {
            probe.options(
                scheduling_strategy=strategies.NodeAffinitySchedulingStrategy(node_id=n["NodeID"], soft=False),
                name="check paths",
            ).remote(list(checks), token_name, token): n.get("NodeManagerAddress", n["NodeID"])
            for n in nodes
        }
        problems = []
        for ref, address in refs.items():
            try:
                host, found = ray.get(ref, timeout=PROBE_TIMEOUT_S)
            except ray.exceptions.GetTimeoutError:
                problems.append(f"node {address}: did not answer the path check within {PROBE_TIMEOUT_S:.0f} s")
                continue
            except ray.exceptions.RayError as exc:
                problems.append(
                    f"node {address}: could not run the pipeline ({_short_error(exc)}); install the project "
                    "(same version) on every node"
                )
                continue
            problems += [f"node {host} ({address}): {p}" for p in found]
    finally:
        for folder in shared:
            (folder / token_name).unlink(missing_ok=True)
    if problems:
        raise UnreachablePath(
            "Ray workers cannot reach what the runs need; every node must see the data and the artifact "
            f"folder at the same path (a shared filesystem; {README_HINT}):\n  " + "\n  ".join(problems)
        )
    log(f"ray: {len(refs)} node(s) see the data and the artifact folder")


def _short_error(exc: BaseException) -> str:
    """One line for a Ray error: the original exception of a task error, else the error's first line."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def cpu_threads(cpus: int) -> None:
    """In a Ray worker on a CPU node, before TensorFlow starts: `cpus` TensorFlow threads and twice that many
    OpenMP (oneDNN) threads, at most the node's cores.

    Ray sets OMP_NUM_THREADS to the task's CPUs (1); the local engine's workers leave it unset (all cores). With
    one OpenMP thread MobileNetV2 runs took 1.4-1.8x the local engine's wall time on 2 cores for the same CPU
    seconds (bench/RESULTS.md, "Ray engine"): a second thread fills the gaps while the other run waits.
    """
    from pipeline.experiment import _worker_init

    if "tensorflow" not in sys.modules:  # a reused worker keeps the threads its first run started with
        os.environ["OMP_NUM_THREADS"] = str(max(1, min(os.cpu_count() or 1, 2 * cpus)))
    _worker_init(cpus)


def _train_run(
    cfg: ExperimentConfig,
    exp_dir: str,
    spec: RunSpec,
    samples: pd.DataFrame,
    images: np.ndarray,
    ok: np.ndarray,
    n_classes: int,
    threads: int,
) -> dict[str, Any]:
    """One Ray task: train, predict and write run `spec` (the images arrive from the object store)."""
    from pipeline.experiment import run_backbone

    if threads:
        cpu_threads(threads)
    return run_backbone(cfg, Path(exp_dir), spec, samples, images, ok, n_classes, log=print)


def run_on_ray(
    cfg: ExperimentConfig,
    exp_dir: Path,
    todo: list[RunSpec],
    samples: pd.DataFrame,
    images: np.ndarray,
    ok: np.ndarray,
    n_classes: int,
    *,
    cpus_per_run: int = 1,
    bar: Any = None,
    log: Log = print,
) -> list[RunFailure]:
    """Submit every run in `todo` as a Ray task (one GPU each when the cluster has GPUs, else `cpus_per_run`
    CPUs and as many TensorFlow threads), longest first; wait for all; return the runs that failed."""
    from pipeline.experiment import _log_model, report_failure, schedule_runs

    if isinstance(cpus_per_run, bool) or not isinstance(cpus_per_run, int) or cpus_per_run < 1:
        raise invalid_argument("cpus_per_run", "an integer >= 1", repr(cpus_per_run))
    ray = import_ray()
    gpus = ray.cluster_resources().get("GPU", 0) > 0
    task = ray.remote(num_cpus=cpus_per_run, num_gpus=1 if gpus else 0, max_retries=1)(_train_run)
    images_ref, samples_ref, ok_ref = ray.put(images), ray.put(samples), ray.put(ok)
    refs = {
        task.options(name=f"train {spec.model}").remote(
            cfg, str(exp_dir), spec, samples_ref, images_ref, ok_ref, n_classes, 0 if gpus else cpus_per_run
        ): spec.model
        for spec in schedule_runs(todo)
    }
    log(f"ray: {len(refs)} run(s) submitted, each {'1 GPU' if gpus else f'{cpus_per_run} CPU(s)'}")
    failures: list[RunFailure] = []
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                name = refs[ref]
                try:
                    info = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failures.append(report_failure(log, name, _short_error(exc)))
                else:
                    _log_model(log, name, info)
                if bar is not None:
                    bar.set_postfix_str(name)
                    bar.update(1)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
    return failures
