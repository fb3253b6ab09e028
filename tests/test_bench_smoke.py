"""Smoke tests of bench/: every benchmark runs end to end at a tiny size and reports sane numbers.

No timing assertions (the machine is shared and noisy): only that the scripts work, the contenders agree
on their answers where they must, and the reports contain every row.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench import common as c


def _finite_positive(x: float) -> bool:
    return isinstance(x, float) and math.isfinite(x) and x > 0


def test_interleaved_rotates_order_and_counts_every_round():
    calls: list[str] = []
    t = c.interleaved(
        {"a": lambda: calls.append("a"), "b": lambda: calls.append("b"), "c": lambda: calls.append("c")},
        repeats=3,
        warmup=1,
    )
    assert calls[:3] == ["a", "b", "c"]  # warm-up, then rotated rounds
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(v) == 3 for v in t.wall.values()) and all(len(v) == 3 for v in t.cpu.values())
    with pytest.raises(ValueError, match="repeats"):
        c.interleaved({"a": lambda: None}, repeats=0)


def test_table_ratio_and_verdict():
    text = c.table([{"name": "x", "n": 12345, "r": 0.123456}, {"name": "y", "r": float("nan")}])
    assert text.splitlines()[0] == "| name | n | r |"
    assert "12,345" in text and "0.123" in text and "nan" in text
    assert c.ratio(3.0, 1.5) == 2.0 and math.isnan(c.ratio(1.0, 0.0))
    assert c.verdict(2.1, 2.0) == "met" and c.verdict(60.0, 50.0, higher_is_better=False) == "MISSED"
    assert c.median([3.0, 1.0, 2.0]) == 2.0


def test_png_folder_is_generated_once_in_flow_from_directory_order(tmp_path):
    root = c.png_folder(6, 24, root=tmp_path)
    paths = c.png_paths(root)
    assert len(paths) == 6 and [Path(p).parent.name for p in paths] == ["class_0"] * 3 + ["class_1"] * 3
    mtime = Path(paths[0]).stat().st_mtime_ns
    assert c.png_paths(c.png_folder(6, 24, root=tmp_path)) == paths
    assert Path(paths[0]).stat().st_mtime_ns == mtime


def test_bench_predict_tiny(tmp_path):
    from bench import bench_predict

    result = bench_predict.run(n_images=20, size=32, batch_size=8, repeats=1, backbones=["SmallCNN"], root=tmp_path)
    row = result["backbones"][0]
    for key in (
        "ours img/s",
        "ImageDataGenerator img/s",
        "image_dataset_from_directory img/s",
        "ceiling img/s",
        "ours/IDG",
        "ours/ceiling",
    ):
        assert _finite_positive(row[key]), key
    assert row["max |p diff|"] < 1e-4  # same pixels, same model: same probabilities
    assert {r["input pipeline"] for r in result["input_only"]} == {
        "ours",
        "ImageDataGenerator",
        "image_dataset_from_directory",
    }
    assert "SmallCNN" in bench_predict.report(result)


def test_bench_train_input_tiny(tmp_path):
    from bench import bench_train_input

    result = bench_train_input.run(
        n_images=20, size=32, batch_size=8, repeats=1, backbones=["Tiny", "SmallCNN"], root=tmp_path
    )
    row = result["backbones"][0]
    for key in ("ours img/s", "IDG dir img/s", "IDG flow img/s", "ours/IDG dir"):
        assert _finite_positive(row[key]), key
    assert "SmallCNN" in bench_train_input.report(result)


def test_bench_dashboard_tiny(tmp_path, monkeypatch):
    from bench import bench_dashboard

    monkeypatch.delenv("MEDCOMPARE_ARTIFACTS", raising=False)
    result = bench_dashboard.run(
        n_binary=600,
        n_multi=420,
        n_boot=20,
        moves=3,
        repeats=1,
        naive_resamples=1,
        apptest=True,
        root=tmp_path,
        n_models=3,
    )
    assert [r["experiment"] for r in result["cold_load"]] == ["bin", "multi7"]
    assert all(_finite_positive(r["total s"]) for r in result["cold_load"])
    slider = result["slider"][0]  # ours and naive agreed on every count (checked inside)
    assert _finite_positive(slider["ours ms/move (page)"]) and _finite_positive(slider["naive/ours"])
    assert _finite_positive(result["leaderboard"][0]["naive/ours"])
    assert all(_finite_positive(r["confusion page rerun ms"]) for r in result["gallery"])
    assert _finite_positive(result["apptest"][0]["slider move s (whole rerun)"])
    text = bench_dashboard.report(result)
    assert "Threshold slider" in text and "multi7" in text
    assert "MEDCOMPARE_ARTIFACTS" not in __import__("os").environ  # restored


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="Debian chromium is not installed")
def test_bench_memory_tiny(tmp_path):
    pytest.importorskip("playwright")
    from bench import bench_memory

    result = bench_memory.run(n_samples=400, n_sessions=2, timeout=120, root=tmp_path, n_models=2)
    row = result["rows"][0]
    assert row["1 session MiB"] > 50 and row["2 sessions MiB"] > 50 and row["peak MiB"] >= row["idle MiB"]
    assert row["tracebacks"] == 0
    assert "per extra session" in bench_memory.report(result)


def test_run_all_rejects_unknown_names():
    from bench import run_all

    with pytest.raises(SystemExit):
        run_all.main(["--only", "nope"])


def test_bench_runs_scale_tiny(tmp_path, monkeypatch):
    from bench import bench_runs_scale

    monkeypatch.delenv("MEDCOMPARE_ARTIFACTS", raising=False)
    result = bench_runs_scale.run(
        n=600, backbones=2, runs=3, n_boot=20, moves=3, repeats=1, naive_resamples=1, runs_boot=10, root=tmp_path
    )
    cold = result["cold_load"][0]  # ours and naive read the same rows (checked inside)
    assert cold["model folders"] == 6 and _finite_positive(cold["naive/ours"])
    board = result["leaderboard"][0]  # mean/SD over runs equal the pandas + scikit-learn ones (checked inside)
    assert board["runs"] == 6 and _finite_positive(board["naive/ours"]) and _finite_positive(board["cached ms"])
    slider = result["slider"][0]  # the counts of every move agree (checked inside)
    assert slider["all runs: models"] == 6 and _finite_positive(slider["page: naive/ours"])
    assert result["runs_page"][0]["rank-first sum"] == pytest.approx(1.0)
    assert "Leaderboard with runs" in bench_runs_scale.report(result)


@pytest.mark.slow
def test_bench_ray_tiny(tmp_path):
    pytest.importorskip("ray")
    from bench import bench_ray

    pred = bench_ray.bench_predict(tmp_path, n_images=24, size=32, backbone="SmallCNN", batch_size=8, repeats=1)
    assert _finite_positive(pred["local img/s"]) and _finite_positive(pred["ray data img/s"])
    assert pred["max |p diff|"] <= 1e-5  # same files, same model: the same probabilities
    costs = [
        {"run": "MobileNetV2", "steady ms/img-epoch": 20.0, "fixed s/run": 10.0},
        {"run": "MobileNetV2@s1", "steady ms/img-epoch": 22.0, "fixed s/run": 12.0},
    ]
    grid = {"costs ray": costs, "runs": 4, "local s": 10.0, "ray s": 11.0, "ray/local (median of rounds)": 1.1}
    idc = bench_ray.idc_estimate(grid, {**pred, "local img/s": 100.0, "input px": 64})
    facts = idc["assumptions"]
    assert facts["runs"] == 80 and facts["MobileNetV2 train ms/img-epoch (1 core, 64 px)"] == 84  # median 21 x 4 px
    # by hand: per MobileNetV2 run 30 epochs x (0.8 x 277,524 x 4/5) images x 84 ms, the held-out fold and the
    # test split (0.8 x 277,524 / 5 + 0.2 x 277,524) x 20 ms (1000 / 100 img/s on 2 cores), + 11 s fixed
    pool = 0.8 * 277_524
    mnv2_s = 30 * pool * 0.8 * 0.084 + (pool / 5 + 0.2 * 277_524) * 0.020 + 11
    from pipeline.backbones import BACKBONES

    costs_sum = sum(b.relative_cost for n, b in BACKBONES.items() if n != "SmallCNN")
    expected = 5 * mnv2_s * costs_sum / BACKBONES["MobileNetV2"].relative_cost / 3600
    assert idc["total core-hours"] == pytest.approx(expected, rel=1e-6)
    result = {
        "settings": {
            "patients": 10,
            "images_per_patient": 3,
            "epochs": 1,
            "repeats": 1,
            "predict_repeats": 1,
            "n_images": 24,
            "size": 32,
            "backbone": "SmallCNN",
            "batch_size": 8,
        },
        "grid": grid,
        "predict": pred,
        "idc": idc,
    }
    assert "IDC on paper" in bench_ray.report(result) and "ray/local throughput" in bench_ray.report(result)
