"""The CLI's stage commands on a tiny generated data set: train, then predict without retraining (a new
evaluation set; an evaluation set again, with TTA switched off), then evaluate. Trains a 2-epoch SmallCNN."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline import artifacts as art
from pipeline.__main__ import main
from pipeline.synthetic import make_histology

pytestmark = pytest.mark.slow


def _config(tmp: Path, data: Path, extra: Path | None) -> Path:
    text = f"""
[experiment]
name = "stages"
output = "{tmp / "artifacts"}"
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
[predict]
batch_size = 32
tta = true
"""
    if extra:
        text += f"""
[[eval_sets]]
name = "shifted"
layout = "patient_class_folders"
root = "{extra}"
"""
    path = tmp / ("stages-shifted.toml" if extra else "stages.toml")
    path.write_text(text)
    return path


def test_train_then_predict_without_retraining_then_evaluate(tmp_path, capsys):
    data = make_histology(tmp_path / "data", n_patients=10, images_per_patient=4, size=32, seed=5)
    shifted = make_histology(tmp_path / "shifted", n_patients=3, images_per_patient=3, size=32, seed=9)
    assert main(["train", "--config", str(_config(tmp_path, data, None))]) == 0
    exp_dir = tmp_path / "artifacts" / "stages"
    model_file = exp_dir / "models" / "SmallCNN" / "model.keras"
    trained = model_file.stat().st_mtime_ns
    before = art.read_predictions(art.load_experiment(exp_dir), "SmallCNN")
    assert set(before["eval_set"]) == {"test", "val"}

    # A new evaluation set in the config: predicted by the saved model, nothing retrained.
    assert main(["predict", "--config", str(_config(tmp_path, data, shifted))]) == 0
    after = art.read_predictions(art.load_experiment(exp_dir), "SmallCNN")
    assert set(after["eval_set"]) == {"test", "val", "shifted"} and model_file.stat().st_mtime_ns == trained
    same = before.merge(after, on=["sample_id", "eval_set"])
    assert len(same) == len(before) and np.allclose(same["prob_1_x"], same["prob_1_y"])

    # The test set again without TTA: its predictions are replaced, the others kept.
    assert main(["predict", "--config", str(_config(tmp_path, data, shifted)), "--again", "test", "--no-tta"]) == 0
    again = art.read_predictions(art.load_experiment(exp_dir), "SmallCNN")
    assert len(again) == len(after) and model_file.stat().st_mtime_ns == trained
    test = after[after["eval_set"] == "test"].merge(again, on=["sample_id", "eval_set"])
    assert len(test) == int((after["eval_set"] == "test").sum())
    assert not np.allclose(test["prob_1_x"], test["prob_1_y"])  # TTA off changes the probabilities
    with pytest.raises(ValueError, match="argument `--again`"):
        from pipeline.__main__ import build_parser

        args = build_parser().parse_args(
            ["predict", "--config", str(_config(tmp_path, data, shifted)), "--again", "nope"]
        )
        args.func(args)

    capsys.readouterr()
    assert main(["evaluate", str(exp_dir), "--eval-set", "shifted"]) == 0
    out = capsys.readouterr().out
    assert "SmallCNN" in out and "shifted" in out and "n=9 " in out
