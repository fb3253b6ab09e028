"""data_access and state helpers outside the app: alignment, cache invalidation, cell selection, bands, URL codec."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from dashboard import data_access as da
from dashboard import state
from pipeline import artifacts as art
from pipeline.fake import make_fake_experiment
from tests.conftest import truth


def test_artifacts_root_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv(da.ARTIFACTS_ENV, str(tmp_path))
    assert da.artifacts_root() == tmp_path.resolve()
    monkeypatch.delenv(da.ARTIFACTS_ENV)
    assert da.artifacts_root() == da.REPO_ROOT / "artifacts"


def test_model_data_is_aligned_and_read_only(fake_root):
    exp = da.get_experiment("binary", fake_root)
    md = da.get_model_data(exp, "ResNet50", "uncropped")
    y, P, _ = truth(fake_root, "binary", "ResNet50", "uncropped")
    assert md.n == len(y) == 300
    assert all(s.startswith("uncropped-") for s in md.sample_ids)
    samples = exp.samples.set_index("sample_id")
    np.testing.assert_array_equal(md.y, samples.loc[list(md.sample_ids), "label"].to_numpy())
    assert md.P.shape == (300, 2) and not md.P.flags.writeable and not md.y.flags.writeable
    assert skm.roc_auc_score(md.y, md.P[:, 1]) == pytest.approx(skm.roc_auc_score(y, P[:, 1]))


def _rewrite(path, preds):
    art.atomic_write_parquet(path, preds)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # mtime always moves


def test_alignment_is_the_same_in_table_order_and_shuffled_and_duplicates_are_errors(tmp_path, monkeypatch):
    """In-order predictions take the no-hash fast path; shuffled ones are matched by id: same arrays."""
    exp_dir = make_fake_experiment(tmp_path, "e", n_samples=120, n_models=1, seed=4)
    path = exp_dir / "models" / "MobileNetV2" / "predictions.parquet"
    with monkeypatch.context() as m:
        import pyarrow.compute

        m.setattr(pyarrow.compute, "index_in", lambda *a, **k: pytest.fail("in-order ids should not be hashed"))
        in_order = da.get_model_data(da.get_experiment("e", tmp_path), "MobileNetV2", "test")
    preds = pd.read_parquet(path)
    _rewrite(path, preds.sample(frac=1.0, random_state=0).reset_index(drop=True))
    shuffled = da.get_model_data(da.get_experiment("e", tmp_path), "MobileNetV2", "test")
    order = np.argsort(shuffled.sample_ids.astype(str))
    ref = np.argsort(in_order.sample_ids.astype(str))
    np.testing.assert_array_equal(shuffled.sample_ids[order], in_order.sample_ids[ref])
    np.testing.assert_array_equal(shuffled.y[order], in_order.y[ref])
    np.testing.assert_allclose(shuffled.P[order], in_order.P[ref])
    np.testing.assert_array_equal(shuffled.groups[order], in_order.groups[ref])
    test_rows = preds[preds["eval_set"] == "test"]
    _rewrite(path, pd.concat([preds, test_rows.iloc[:2]], ignore_index=True))
    with pytest.raises(art.ArtifactError, match=r"duplicate \(sample_id, eval_set\) rows"):
        da.get_model_data(da.get_experiment("e", tmp_path), "MobileNetV2", "test")


def test_rebuilt_predictions_are_reread(tmp_path):
    exp_dir = make_fake_experiment(tmp_path, "e", n_samples=50, n_models=1, seed=3)
    exp = da.get_experiment("e", tmp_path)
    before = da.get_model_data(exp, "MobileNetV2", "test").P.copy()
    path = exp_dir / "models" / "MobileNetV2" / "predictions.parquet"
    preds = pd.read_parquet(path)
    preds[["prob_0", "prob_1"]] = preds[["prob_1", "prob_0"]].to_numpy()
    art.atomic_write_parquet(path, preds)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # mtime always moves
    after = da.get_model_data(da.get_experiment("e", tmp_path), "MobileNetV2", "test").P
    np.testing.assert_allclose(after[:, 0], before[:, 1])


def test_cell_indices_select_exactly_the_cell_most_confident_first():
    y = np.array([0, 0, 1, 1, 0, 1])
    pred = np.array([1, 0, 1, 0, 1, 1])
    conf = np.array([0.6, 0.9, 0.7, 0.8, 0.95, 0.99])
    np.testing.assert_array_equal(da.cell_indices(y, pred, 0, 1, confidence=conf), [4, 0])
    np.testing.assert_array_equal(da.cell_indices(y, pred, 1, 1), [2, 5])
    assert da.cell_indices(y, pred, 1, 0).tolist() == [3]


def test_threshold_helpers_and_summary_match_sklearn(fake_root):
    exp = da.get_experiment("single", fake_root)
    y, P, _ = truth(fake_root, "single", "MobileNetV2")
    m = da.metrics_at_threshold(exp, "MobileNetV2", "test", 1, 0.4)
    assert m["sensitivity"] == pytest.approx(skm.recall_score(y, P[:, 1] >= 0.4))
    t = da.threshold_for_sensitivity(exp, "MobileNetV2", "test", 1, 0.9)
    assert skm.recall_score(y, P[:, 1] >= t) >= 0.9
    s = da.get_summary(exp, "MobileNetV2", "test", 0.5)
    assert s["roc_auc"] == pytest.approx(skm.roc_auc_score(y, P[:, 1]))
    assert s["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, P[:, 1] >= 0.5))


def test_curves_are_downsampled(tmp_path):
    make_fake_experiment(tmp_path, "many", n_samples=6000, n_models=1, seed=2, thumbnails=False)
    exp = da.get_experiment("many", tmp_path)
    cur = da.get_curves(exp, "MobileNetV2", "test", 1, max_points=500)
    assert len(cur["roc"][0]) <= 501 and len(cur["pr"][0]) <= 501
    assert np.isfinite(cur["roc"][2]).all() and cur["roc"][2].max() <= 1.0


def test_leaderboard_frame_reads_config_numbers():
    frame = da.leaderboard_frame(
        {"A": {"roc_auc": (0.9, 0.8, 0.95)}}, {"A": {"params": 1_000_000, "model_bytes": "big", "train_seconds": True}}
    )
    assert frame.loc["A", "roc_auc"] == 0.9 and frame.loc["A", "roc_auc_lo"] == 0.8
    assert frame.loc["A", "params"] == 1e6
    assert np.isnan(frame.loc["A", "model_bytes"]) and np.isnan(frame.loc["A", "train_seconds"])
    assert np.isnan(frame.loc["A", "accuracy"])


def test_dataset_summary(fake_root):
    exp = da.get_experiment("binary", fake_root)
    counts, per_set = da.dataset_summary(exp)
    assert list(counts.index) == ["eval", "test"]
    assert counts["total"].sum() == 600
    assert per_set.loc["uncropped", "samples"] == 300


@pytest.mark.parametrize("thresholds", [{}, {"A": 0.3}, {"A": 0.25, "B@3": 0.125, "C": 0.5}])
def test_threshold_url_codec_round_trip(thresholds):
    encoded = state.encode_thresholds(thresholds)
    assert "C:" not in encoded  # the default is left out of the link
    expected = {k: v for k, v in thresholds.items() if v != state.DEFAULT_THRESHOLD}
    assert state.decode_thresholds(encoded) == expected


def test_threshold_url_decoder_drops_bad_entries():
    assert state.decode_thresholds("A:0.2,B:nan,C:1.5,:0.3,D,E:x,F@2:1") == {"A": 0.2, "F@2": 1.0}


def test_leaderboard_ci_shares_resamples_and_handles_unaligned_models(tmp_path):
    exp_dir = make_fake_experiment(tmp_path, "lb", n_samples=120, n_models=3, seed=11)
    # The third model only predicted half of the samples: it must be bootstrapped on its own.
    path = exp_dir / "models" / "ResNet50" / "predictions.parquet"
    preds = pd.read_parquet(path)
    art.atomic_write_parquet(path, preds.iloc[::2].reset_index(drop=True))
    exp = da.get_experiment("lb", tmp_path)
    res = da.get_leaderboard_ci(exp, exp.models, "test", {m: 0.5 for m in exp.models}, n_boot=100)
    assert set(res) == set(exp.models)
    for model in exp.models:
        y, P, _ = truth(tmp_path, "lb", model)
        point, lo, hi = res[model]["roc_auc"]
        assert point == pytest.approx(skm.roc_auc_score(y, P[:, 1])) and lo <= point <= hi
        assert res[model]["accuracy"][0] == pytest.approx(skm.accuracy_score(y, P[:, 1] >= 0.5))
    alone = da.get_leaderboard_ci(exp, ["ResNet50"], "test", {"ResNet50": 0.5}, n_boot=100)
    assert alone["ResNet50"] == res["ResNet50"]
