"""Engines (issue 15): the training grid on Ray and batch prediction with Ray Data, on one local Ray instance
(2 CPUs) for the module; plus the contracts that hold without Ray: the local path never imports it, asking
for it without it says how to install it, and both engines report a failed run by name while the others go on.

A worker failure is real: a setup hook installed in every Ray worker (Ray workers are separate processes, so a
monkeypatch in this process would not reach them) makes the worker process exit in the middle of one marked
run (backbone + seed listed in a marker file); Ray retries it once, then reports it.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline import artifacts as art
from pipeline.engines import RunFailure, RunsFailed, UnreachablePath

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")  # Ray Data's own context settings


def _grid_config(tmp: Path, name: str, backbones: list[str], seeds: list[int]) -> Path:
    from pipeline.synthetic import make_histology

    data = tmp / "data"
    if not data.exists():
        make_histology(data, n_patients=10, images_per_patient=3, size=32, seed=3)
    path = tmp / f"{name}.toml"
    path.write_text(
        f"""
[experiment]
name = "{name}"
output = "{tmp / "artifacts"}"
[dataset]
layout = "patient_class_folders"
root = "{data}"
image_size = 32
[split]
seed = 1
[train]
backbones = {backbones!r}
epochs = 1
batch_size = 16
seeds = {seeds!r}
augment = []
input_policy = "native"
[predict]
batch_size = 8
tta = true
""".replace("'", '"')
    )
    return path


# ---------------------------------------------------------------- without Ray


def test_local_path_never_imports_ray():
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "import pipeline.experiment, pipeline.engines, pipeline.__main__\n"
        "from pipeline.__main__ import build_parser\n"
        "assert build_parser().parse_args(['run', '--config', 'x']).engine == 'local'\n"
        "assert 'ray' not in [m.split('.')[0] for m, v in sys.modules.items() if v is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


def test_engine_ray_without_ray_says_how_to_install(monkeypatch, tmp_path, capsys):
    from pipeline.__main__ import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as on a machine without it
    cfg = str(REPO / "configs" / "demo-histology.toml")
    assert main(["run", "--config", cfg, "--engine", "ray", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--engine ray needs Ray" in err and 'pip install -e ".[ray]"' in err and "requirements-dev" in err
    assert not (tmp_path / "demo-histology").exists(), "it must fail before any work"
    assert main(["run", "--config", cfg, "--address", "auto"]) == 2
    assert "--address needs --engine ray" in capsys.readouterr().err


def test_uri_artifact_roots_are_refused_with_a_clear_message(tmp_path):
    from pipeline.config import load_config
    from pipeline.engines.ray_train import absolute_paths

    cfg = load_config(REPO / "configs" / "demo-histology.toml")
    with pytest.raises(UnreachablePath, match=r"artifacts root.*Received: 's3:/bucket/art'.*URIs are not supported"):
        absolute_paths(replace(cfg, output=Path("s3://bucket/art")), pd.DataFrame({"path": []}))


def test_runs_are_submitted_longest_backbone_first_in_plan_order():
    from pipeline.experiment import schedule_runs
    from pipeline.runs import run_plan

    plan = run_plan(["SmallCNN", "DenseNet121", "MobileNetV2"], [0, 1], folds=2)
    order = [r.model for r in schedule_runs(plan)]
    assert order[:4] == ["DenseNet121", "DenseNet121@f0-s1", "DenseNet121@f1-s0", "DenseNet121@f1-s1"]
    assert [m.split("@")[0] for m in order[4:]] == ["MobileNetV2"] * 4 + ["SmallCNN"] * 4
    assert sorted(order) == sorted(r.model for r in plan)


def test_ray_data_rows_are_put_back_in_input_order():
    from pipeline.engines.ray_predict import collect_rows

    probs = np.arange(12, dtype=np.float32).reshape(6, 2)
    ok = np.array([True, True, False, True, True, True])
    blocks = [np.array([4, 5]), np.array([0, 1]), np.array([2, 3])]  # as actors may return them
    batches = [{"row": b, "probs": probs[b], "ok": ok[b]} for b in blocks]
    got, got_ok = collect_rows(batches, 6)
    assert (got_ok == ok).all() and np.isnan(got[2]).all()
    np.testing.assert_array_equal(got[ok], probs[ok])
    got, got_ok = collect_rows(batches[:1], 6)  # rows that never came back are missing, not zeros
    assert list(got_ok) == [False] * 4 + [True] * 2 and np.isnan(got[:4]).all()


@pytest.mark.slow
def test_local_engine_reports_a_failed_run_and_finishes_the_others(tmp_path, monkeypatch, capsys):
    import pipeline.train as train
    from pipeline.config import load_config
    from pipeline.experiment import run_experiment

    original = train.train_backbone

    def fail_seed_1(name, *args, **kwargs):
        if args[4].seed == 1:
            raise RuntimeError("injected failure")
        return original(name, *args, **kwargs)

    monkeypatch.setattr(train, "train_backbone", fail_seed_1)
    cfg_path = _grid_config(tmp_path, "local", ["SmallCNN"], [1, 0])
    cfg = load_config(cfg_path)  # the failing run (seed 1) comes first
    logs: list[str] = []
    with pytest.raises(RunsFailed, match=r"1 of 2 runs.*\n  SmallCNN: RuntimeError: injected failure") as info:
        run_experiment(cfg, log=logs.append, progress=False)
    assert info.value.failures == [RunFailure("SmallCNN", "RuntimeError: injected failure")]
    assert "training SmallCNN failed: RuntimeError: injected failure" in logs
    assert art.list_models(cfg.experiment_dir) == ["SmallCNN@s0"]  # the run after the failure went on
    from pipeline.__main__ import main

    # the CLI: a rerun retries only the failed run, and a run that fails again ends with exit code 1 naming it
    assert main(["run", "--config", str(cfg_path)]) == 1
    out, err = capsys.readouterr()
    assert "already complete, not retrained: SmallCNN@s0" in out
    assert "error: training failed for 1 of 1 runs" in err and "SmallCNN: RuntimeError: injected failure" in err


# ---------------------------------------------------------------- on a local Ray instance


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """One local Ray instance (2 CPUs) for the module; its workers exit mid-run for runs listed in the marker."""
    ray = pytest.importorskip("ray")
    marker = tmp_path_factory.mktemp("ray-hook") / "crash-runs.txt"

    def crash_marked_runs() -> None:  # runs in every Ray worker process at start-up (pickled by value)
        import os

        import pipeline.train as train

        original = train.train_backbone

        def train_backbone(name, *args, **kwargs):
            if marker.is_file() and f"{name} {args[4].seed}" in marker.read_text().split("\n"):
                os._exit(3)  # the worker process dies in the middle of this run
            return original(name, *args, **kwargs)

        train.train_backbone = train_backbone

    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"worker_process_setup_hook": crash_marked_runs, "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}},
    )
    yield marker
    ray.shutdown()


@pytest.fixture(scope="module")
def ray_grid(ray_cluster, tmp_path_factory):
    """A 2-backbone x 2-seed grid on Ray whose SmallCNN seed-1 worker dies; returns what the first pass left."""
    from pipeline.config import load_config
    from pipeline.experiment import run_experiment

    tmp = tmp_path_factory.mktemp("ray-grid")
    cfg_path = _grid_config(tmp, "grid", ["SmallCNN", "MobileNetV2"], [0, 1])
    cfg = load_config(cfg_path)
    ray_cluster.write_text("SmallCNN 1\n")
    logs: list[str] = []
    try:
        with pytest.raises(RunsFailed) as info:
            run_experiment(cfg, log=logs.append, progress=False, engine="ray")
    finally:
        ray_cluster.unlink(missing_ok=True)
    return cfg, cfg_path, info.value, logs


@pytest.mark.slow
def test_ray_grid_reports_the_dead_worker_and_keeps_the_other_runs(ray_grid):
    cfg, _, error, logs = ray_grid
    assert any(line.startswith("ray: 1 node(s) see the data and the artifact folder") for line in logs)
    assert [f.model for f in error.failures] == ["SmallCNN@s1"] and error.total == 4
    assert "SmallCNN@s1: " in str(error) and "died" in error.failures[0].error.lower()
    assert any(line.startswith("training SmallCNN@s1 failed:") for line in logs)
    exp_dir = cfg.experiment_dir
    assert sorted(art.list_models(exp_dir)) == ["MobileNetV2", "MobileNetV2@s1", "SmallCNN"]
    exp = art.load_experiment(exp_dir)
    for model in ("MobileNetV2", "MobileNetV2@s1", "SmallCNN"):
        run = art.read_model_config(exp_dir, model)
        assert run["status"] == "complete" and run["seed"] == (1 if "@s1" in model else 0)
        preds = art.read_predictions(exp, model)
        assert len(preds) == int(exp.samples["eval_set"].notna().sum()) and preds["run_id"].nunique() == 1


@pytest.mark.slow
def test_ray_rerun_resumes_only_the_failed_run(ray_grid):
    from pipeline.experiment import run_experiment

    cfg, _, _, _ = ray_grid
    exp_dir = cfg.experiment_dir
    kept = {m: (art.model_dir(exp_dir, m) / art.MODEL_FILE).stat().st_mtime_ns for m in art.list_models(exp_dir)}
    logs: list[str] = []
    run_experiment(cfg, log=logs.append, progress=False, engine="ray")
    assert "already complete, not retrained: SmallCNN, MobileNetV2, MobileNetV2@s1" in logs
    assert any(line.startswith("ray: 1 run(s) submitted") for line in logs)
    assert sorted(art.list_models(exp_dir)) == ["MobileNetV2", "MobileNetV2@s1", "SmallCNN", "SmallCNN@s1"]
    assert {m: (art.model_dir(exp_dir, m) / art.MODEL_FILE).stat().st_mtime_ns for m in kept} == kept
    assert [p for p in art.validate_experiment(exp_dir) if p.severity == "error"] == []
    assert art.read_model_config(exp_dir, "SmallCNN@s1")["run_id"] == "s1"


@pytest.mark.slow
def test_ray_data_prediction_equals_the_local_path(ray_grid, tmp_path):
    import keras

    from pipeline.backbones import preprocess_layer_class
    from pipeline.engines.ray_predict import predict_files_ray
    from pipeline.predict import predict_paths

    cfg, _, _, _ = ray_grid
    exp = art.load_experiment(cfg.experiment_dir)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    paths = [*exp.samples["path"], str(broken)]
    preprocess_layer_class()
    file = art.model_dir(exp.path, "SmallCNN") / art.MODEL_FILE
    local = predict_paths(keras.saving.load_model(file, safe_mode=True), paths, 8, True)
    # 2 actors, several blocks each: rows may come back out of order and must be put back in place
    ray_pred = predict_files_ray(file, paths, batch_size=8, tta=True, rows_per_call=7)
    assert (ray_pred.ok == local.ok).all() and not ray_pred.ok[-1] and ray_pred.ok[:-1].all()
    assert np.isnan(ray_pred.probs[-1]).all() and np.ptp(local.probs[:-1, 1]) > 1e-4  # not a constant output
    assert np.max(np.abs(ray_pred.probs[:-1] - local.probs[:-1])) <= 1e-5


@pytest.mark.slow
def test_cli_predict_with_ray_data_rewrites_the_same_predictions(ray_grid, capsys):
    from pipeline.__main__ import main

    cfg, cfg_path, _, _ = ray_grid
    exp = art.load_experiment(cfg.experiment_dir)
    before = art.read_predictions(exp, "SmallCNN").set_index("sample_id").sort_index()
    assert main(["predict", "--config", str(cfg_path), "--backbones", "SmallCNN", "--again", "test"]) == 0
    local = art.read_predictions(exp, "SmallCNN").set_index("sample_id").sort_index()
    argv = ["predict", "--config", str(cfg_path), "--backbones", "SmallCNN", "--again", "test", "--engine", "ray"]
    assert main(argv) == 0
    assert "SmallCNN: predicted 6 new evaluated samples (test)" in capsys.readouterr().out
    after = art.read_predictions(exp, "SmallCNN").set_index("sample_id").sort_index()
    cols = art.prob_columns(2)
    assert after.index.equals(before.index) and (after["eval_set"] == before["eval_set"]).all()
    assert (after["run_id"] == "s0").all()
    assert np.max(np.abs(after[cols].to_numpy() - local[cols].to_numpy())) <= 1e-5


@pytest.mark.slow
def test_unreachable_paths_fail_fast_naming_the_path_and_the_node(ray_cluster, tmp_path):
    from pipeline.engines.ray_train import check_reachable

    missing = tmp_path / "not-mounted" / "data"
    checks = [("data root `dataset.root`", str(missing), "exists"), ("the artifact folder", str(tmp_path), "shared")]
    with pytest.raises(UnreachablePath, match=rf"node \S+ \(\S+\): data root `dataset.root` {missing} does not exist"):
        check_reachable(checks, log=lambda s: None)
    assert not list(tmp_path.glob(".reach-*")), "the token file is removed"
    check_reachable(checks[1:], log=lambda s: None)  # the artifact folder alone is fine
