"""End to end on generated data: ingest -> split -> 2-epoch training -> predictions -> valid artifacts,
then resume after an interrupted model, and the CLI's validate command."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts as art
from pipeline.__main__ import main as cli_main
from pipeline.synthetic import make_histology

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def _config(tmp: Path, data: Path, extra_eval: Path | None = None) -> Path:
    text = f"""
[experiment]
name = "tiny"
output = "{tmp / 'artifacts'}"
[dataset]
layout = "patient_class_folders"
root = "{data}"
image_size = 32
positive_class = "1"
[split]
seed = 3
fractions = [0.6, 0.2, 0.2]
[train]
backbones = ["SmallCNN"]
epochs = 2
batch_size = 16
patience = 2
augment = ["flip"]
[predict]
batch_size = 32
tta = "auto"
"""
    if extra_eval:
        text += f"""
[[eval_sets]]
name = "shifted"
layout = "patient_class_folders"
root = "{extra_eval}"
"""
    path = tmp / "tiny.toml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from pipeline.config import load_config
    from pipeline.experiment import run_experiment

    tmp = tmp_path_factory.mktemp("e2e")
    data = make_histology(tmp / "data", n_patients=12, images_per_patient=4, size=32, seed=5)
    shifted = make_histology(tmp / "shifted", n_patients=4, images_per_patient=3, size=32, seed=9)
    (data / "notes.txt").write_text("not an image")
    (data / "Thumbs.db").write_bytes(b"\x00" * 10)
    cfg_path = _config(tmp, data, shifted)
    cfg = load_config(cfg_path)
    exp_dir = run_experiment(cfg, log=lambda s: None, progress=False)
    return cfg, cfg_path, exp_dir


def test_artifacts_are_complete_and_valid(built):
    cfg, _, exp_dir = built
    problems = art.validate_experiment(exp_dir)
    assert [p for p in problems if p.severity == "error"] == []
    exp = art.load_experiment(exp_dir)
    assert exp.models == ["SmallCNN"] and exp.task == "binary" and exp.class_names == ["0", "1"]
    assert exp.meta["positive_class"] == "1"
    assert exp.meta["dataset"]["skipped_count"] >= 2  # the .txt and Thumbs.db were reported, not ingested
    assert "not an image" in exp.meta["dataset"]["skipped_report"] or "system file" in exp.meta["dataset"]["skipped_report"]
    assert set(exp.eval_sets) == {"test", "val", "shifted"}
    # grouped split: no patient in two splits
    s = exp.samples[exp.samples["split"].isin(["train", "val", "test"])]
    assert s.groupby("group")["split"].nunique().max() == 1
    preds = art.read_predictions(exp, "SmallCNN")
    evaluated = exp.samples[exp.samples["eval_set"].notna()]
    assert len(preds) == len(evaluated)
    assert np.allclose(preds[["prob_0", "prob_1"]].sum(axis=1), 1, atol=1e-5)
    history = art.read_history(exp_dir, "SmallCNN")
    assert len(history) == 2 and {"loss", "val_loss", "accuracy"} <= set(history.columns)
    mc = art.read_model_config(exp_dir, "SmallCNN")
    assert mc["status"] == "complete" and mc["epochs_run"] == 2 and mc["params"] > 0
    assert mc["train_images_per_s"] > 0 and mc["infer_ms_per_image"] > 0
    assert mc["tta"] == ["hflip"]  # "auto": the flip it was trained with
    thumbs = art.read_thumbnails(exp_dir)
    assert set(evaluated["sample_id"]) <= set(thumbs.index)
    assert thumbs["mask_png"].notna().all()  # the synthetic masks travel with the thumbnails


def test_saved_model_reproduces_predictions(built):
    import keras

    from pipeline.backbones import preprocess_layer_class
    from pipeline.predict import predict_paths

    _, _, exp_dir = built
    preprocess_layer_class()
    model = keras.saving.load_model(exp_dir / "models" / "SmallCNN" / "model.keras", safe_mode=True)
    exp = art.load_experiment(exp_dir)
    preds = art.read_predictions(exp, "SmallCNN").merge(exp.samples[["sample_id", "path"]], on="sample_id")
    again = predict_paths(model, preds["path"].tolist(), 32, tta=True)
    assert np.allclose(again.probs, preds[["prob_0", "prob_1"]].to_numpy(), atol=1e-5)
    plain = predict_paths(model, preds["path"].tolist(), 32, tta=False)
    assert not np.allclose(plain.probs, again.probs, atol=1e-6)  # the flip view did change the answer


def test_live_answers_average_the_same_views_as_the_stored_predictions(built):
    from dashboard.live_inference import load_live_model, predict_probs, preprocessing_steps
    from pipeline.preprocess import load_image

    _, _, exp_dir = built
    live = load_live_model(exp_dir, "SmallCNN")
    assert live.tta == ("hflip",)
    exp = art.load_experiment(exp_dir)
    preds = art.read_predictions(exp, "SmallCNN").merge(exp.samples[["sample_id", "path"]], on="sample_id")
    row = preds.iloc[0]
    decoded = load_image(row["path"])
    rgb = decoded.rgb  # already 32 px: no resize on either path
    assert rgb.shape == (32, 32, 3)
    np.testing.assert_allclose(predict_probs(live, rgb), row[["prob_0", "prob_1"]].to_numpy(float), atol=1e-5)
    mirrored = live.model(rgb[None, :, ::-1].astype(np.float32), training=False).numpy()[0]
    plain = live.model(rgb[None].astype(np.float32), training=False).numpy()[0]
    np.testing.assert_allclose(predict_probs(live, rgb), (plain + mirrored) / 2, atol=1e-5)
    assert any("test-time augmentation" in step for step in preprocessing_steps(live, decoded))


def test_resume_redoes_only_unfinished_models(built):
    from pipeline.experiment import run_experiment

    cfg, _, exp_dir = built
    cfg_file = exp_dir / "models" / "SmallCNN" / "config.json"
    before = cfg_file.stat().st_mtime_ns
    run_experiment(cfg, log=lambda s: None, progress=False)  # complete: nothing retrained
    assert cfg_file.stat().st_mtime_ns == before
    cfg_file.unlink()  # as if killed before the model finished
    assert art.list_models(exp_dir) == []
    run_experiment(cfg, log=lambda s: None, progress=False)
    assert art.list_models(exp_dir) == ["SmallCNN"]


def test_cli_validate(built, capsys):
    _, _, exp_dir = built
    assert cli_main(["validate", str(exp_dir)]) == 0
    out = capsys.readouterr().out
    assert ": OK" in out or " 0 error(s)" in out
    broken = exp_dir.parent / "broken"
    broken.mkdir()
    (broken / "experiment.json").write_text(json.dumps({"name": "broken"}))
    assert cli_main(["validate", str(broken)]) == 1
    assert "missing key 'task'" in capsys.readouterr().out


def test_cli_ingest_subprocess(built):
    _, cfg_path, _ = built
    out = subprocess.run([sys.executable, "-m", "pipeline", "ingest", "--config", str(cfg_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "train" in out.stdout and "groups" in out.stdout


def test_new_eval_set_is_predicted_without_retraining(built):
    from dataclasses import replace

    from pipeline.config import EvalSetConfig
    from pipeline.experiment import run_experiment

    cfg, _, exp_dir = built
    cfg_file = exp_dir / "models" / "SmallCNN" / "config.json"
    before = cfg_file.stat().st_mtime_ns
    extra = EvalSetConfig(name="again", layout=cfg.eval_sets[0].layout, root=cfg.eval_sets[0].root)
    run_experiment(replace(cfg, eval_sets=(*cfg.eval_sets, extra)), log=lambda s: None, progress=False)
    assert cfg_file.stat().st_mtime_ns == before  # not retrained
    exp = art.load_experiment(exp_dir)
    assert "again" in exp.eval_sets
    preds = art.read_predictions(exp, "SmallCNN")
    again = preds[preds["eval_set"] == "again"]
    shifted = preds[preds["eval_set"] == "shifted"]
    assert len(again) == len(shifted) > 0
    # same images, same model: the same probabilities
    a = again.assign(key=again["sample_id"].str.split("/", n=1).str[1]).set_index("key").sort_index()
    b = shifted.assign(key=shifted["sample_id"].str.split("/", n=1).str[1]).set_index("key").sort_index()
    assert np.allclose(a[["prob_0", "prob_1"]].to_numpy(), b[["prob_0", "prob_1"]].to_numpy(), atol=1e-5)
    assert [p for p in art.validate_experiment(exp_dir) if p.severity == "error"] == []
