"""Artifact contract: round trip, atomic writes, validation messages, path safety."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipeline import artifacts as art
from pipeline.fake import make_fake_experiment


@pytest.fixture()
def exp_dir(tmp_path):
    return make_fake_experiment(tmp_path, "exp", n_samples=60, n_models=2, n_classes=3, seed=0)


def test_round_trip(exp_dir):
    exp = art.load_experiment(exp_dir)
    assert exp.task == "multiclass" and len(exp.class_names) == 3
    assert exp.models == ["MobileNetV2", "ResNet50"]
    preds = art.read_predictions(exp, "MobileNetV2")
    assert list(preds.columns) == ["sample_id", "eval_set", "prob_0", "prob_1", "prob_2"]
    assert np.allclose(preds[art.prob_columns(3)].sum(axis=1), 1)
    assert set(preds["sample_id"]) == set(exp.samples["sample_id"])
    assert art.validate_experiment(exp_dir) == [] or all(p.severity == "warning" for p in art.validate_experiment(exp_dir))


def test_write_predictions_refuses_bad_rows(exp_dir):
    bad = pd.DataFrame({"sample_id": ["a", "b"], "eval_set": "test", "prob_0": [0.5, np.nan], "prob_1": [0.5, 1.0],
                        "prob_2": [0.0, 0.0]})
    with pytest.raises(art.ArtifactError, match="NaN probabilities"):
        art.write_predictions(exp_dir, "X", bad, 3)
    bad2 = bad.fillna(0.2).assign(prob_1=[1.5, 0.8])
    with pytest.raises(art.ArtifactError, match=r"probabilities must be in \[0, 1\]"):
        art.write_predictions(exp_dir, "X", bad2, 3)
    with pytest.raises(art.ArtifactError, match="missing columns"):
        art.write_predictions(exp_dir, "X", bad.drop(columns="prob_2"), 3)


def test_truncated_parquet_is_named(exp_dir):
    path = exp_dir / "models" / "ResNet50" / "predictions.parquet"
    path.write_bytes(path.read_bytes()[:100])
    exp = art.load_experiment(exp_dir)
    with pytest.raises(art.ArtifactError, match="ResNet50/predictions.parquet: unreadable Parquet"):
        art.read_predictions(exp, "ResNet50")
    problems = art.validate_experiment(exp_dir)
    assert any("ResNet50" in p.path and "truncated" in p.message for p in problems)
    # the other model still reads
    assert len(art.read_predictions(exp, "MobileNetV2")) == 60


def test_validation_names_every_problem(exp_dir):
    mdir = exp_dir / "models" / "MobileNetV2"
    preds = pd.read_parquet(mdir / "predictions.parquet")
    preds.loc[0, "prob_0"] = np.nan
    preds.loc[1, "sample_id"] = "nobody"
    preds.to_parquet(mdir / "predictions.parquet")
    (exp_dir / "models" / "ResNet50" / "config.json").unlink()
    s = pd.read_parquet(exp_dir / "samples.parquet").drop(columns=["group"])
    s.to_parquet(exp_dir / "samples.parquet")
    msgs = [str(p) for p in art.validate_experiment(exp_dir)]
    assert any("NaN" in m for m in msgs)
    assert any("not in samples.parquet" in m or "missing columns ['group']" in m for m in msgs)
    assert any("ResNet50/config.json" in m and "did not finish" in m for m in msgs)
    assert any("samples.parquet" in m and "missing columns ['group']" in m for m in msgs)


def test_unknown_ids_and_wrong_dtypes(exp_dir):
    mdir = exp_dir / "models" / "MobileNetV2"
    preds = pd.read_parquet(mdir / "predictions.parquet")
    preds.loc[0, "sample_id"] = "ghost"
    preds.to_parquet(mdir / "predictions.parquet")
    exp = art.load_experiment(exp_dir)
    out = art.read_predictions(exp, "MobileNetV2")
    assert "ghost" not in set(out["sample_id"]) and len(out) == 59
    preds["prob_0"] = preds["prob_0"].astype(str)
    preds.to_parquet(mdir / "predictions.parquet")
    with pytest.raises(art.ArtifactError, match="probability columns must be float"):
        art.read_predictions(exp, "MobileNetV2")


def test_newer_schema_and_half_written_json(exp_dir):
    meta = json.loads((exp_dir / "experiment.json").read_text())
    meta["schema_version"] = art.SCHEMA_VERSION + 1
    (exp_dir / "experiment.json").write_text(json.dumps(meta))
    with pytest.raises(art.ArtifactError, match="newer than this dashboard understands"):
        art.load_experiment(exp_dir)
    (exp_dir / "experiment.json").write_text('{"name": "exp", "ta')
    with pytest.raises(art.ArtifactError, match="not valid JSON.*half-written"):
        art.load_experiment(exp_dir)


def test_incomplete_model_is_not_listed(exp_dir):
    cfg = exp_dir / "models" / "ResNet50" / "config.json"
    data = json.loads(cfg.read_text())
    data["status"] = "running"
    cfg.write_text(json.dumps(data))
    assert art.list_models(exp_dir) == ["MobileNetV2"]


@pytest.mark.parametrize("bad", ["../outside", "/etc/passwd", "a/../../b"])
def test_safe_join_refuses_escapes(tmp_path, bad):
    with pytest.raises(art.ArtifactError, match="escapes the artifact folder|must be relative"):
        art.safe_join(tmp_path, bad)
    with pytest.raises(art.ArtifactError):
        art.model_dir(tmp_path, bad)


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "x.json"
    art.atomic_write_json(path, {"a": 1})

    class Boom:
        pass
    with pytest.raises(TypeError):
        art.atomic_write_json(path, {"a": Boom()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_meta_checks():
    good = {"schema_version": 1, "name": "n", "task": "binary", "class_names": ["a", "b"],
            "positive_class": "b", "created": "now"}
    assert art.check_meta(good, "e.json") == []
    assert "exactly 2" in art.check_meta({**good, "class_names": ["a", "b", "c"]}, "e.json")[0].message
    assert "positive_class" in art.check_meta({**good, "positive_class": "z"}, "e.json")[0].message
    assert "missing key 'task'" in art.check_meta({k: v for k, v in good.items() if k != "task"}, "e.json")[0].message
