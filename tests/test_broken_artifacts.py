"""Broken artifacts: `python -m pipeline validate` names each problem, the dashboard shows it and keeps working.

One artifacts root holds a good experiment, an experiment whose models are each broken in one way (the
first one stays good), and experiments broken at the experiment level (a newer schema, half-written JSON,
truncated or malformed sample tables). The CLI runs both as a subprocess and in-process; the dashboard
runs under Streamlit's AppTest with `MEDCOMPARE_ARTIFACTS` pointing at the root.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from pipeline import artifacts as art
from pipeline.__main__ import main as cli_main
from pipeline.fake import FAKE_BACKBONES, make_fake_experiment
from tests.conftest import no_exceptions, open_app, truth

REPO_ROOT = Path(__file__).resolve().parents[1]
GOOD_MODEL = "MobileNetV2"  # the first fake backbone: left intact in the "mixed" experiment

# model in "mixed" -> (what is broken, the file the message must name, a phrase the message must contain)
MODEL_BREAKS: dict[str, tuple[str, str, str]] = {
    "ResNet50": ("truncated Parquet", "ResNet50/predictions.parquet", "truncated"),
    "EfficientNetB0": (
        "a missing probability column",
        "EfficientNetB0/predictions.parquet",
        "missing columns ['prob_1']",
    ),
    "DenseNet121": (
        "probabilities stored as text",
        "DenseNet121/predictions.parquet",
        "probability columns must be float",
    ),
    "VGG16": ("NaN probabilities", "VGG16/predictions.parquet", "rows have NaN probabilities"),
    "InceptionV3": (
        "probabilities outside [0, 1]",
        "InceptionV3/predictions.parquet",
        "probabilities must be in [0, 1]",
    ),
}
UNKNOWN_IDS_MODEL = "ResNet101"  # rows for sample ids not in samples.parquet: a warning, the model stays usable
UNFINISHED_MODEL = "VGG19"  # config.json says "running": an interrupted run, never listed

# experiment -> (the file the message must name, a phrase the message must contain)
EXPERIMENT_BREAKS: dict[str, tuple[str, str]] = {
    "newer_schema": ("experiment.json", "newer than this dashboard understands"),
    "half_written_json": ("experiment.json", "not valid JSON"),
    "truncated_samples": ("samples.parquet", "unreadable Parquet"),
    "samples_missing_columns": ("samples.parquet", "missing columns ['label', 'group']"),
    "samples_wrong_dtype": ("samples.parquet", "label must be an integer class index"),
}


def _edit_predictions(exp_dir: Path, model: str, edit) -> None:
    path = exp_dir / "models" / model / "predictions.parquet"
    df = pd.read_parquet(path)
    edit(df).to_parquet(path, index=False)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root with one good, one model-broken and several experiment-broken experiments."""
    root = tmp_path_factory.mktemp("broken-artifacts")
    make_fake_experiment(root, "good", n_samples=150, n_models=2, seed=21)
    mixed = make_fake_experiment(root, "mixed", n_samples=150, n_models=8, seed=22)
    assert list(FAKE_BACKBONES[:8]) == [GOOD_MODEL, *MODEL_BREAKS, UNKNOWN_IDS_MODEL, UNFINISHED_MODEL]

    preds = mixed / "models" / "ResNet50" / "predictions.parquet"
    preds.write_bytes(preds.read_bytes()[: preds.stat().st_size // 2])
    _edit_predictions(mixed, "EfficientNetB0", lambda df: df.drop(columns=["prob_1"]))
    _edit_predictions(mixed, "DenseNet121", lambda df: df.assign(prob_0=df["prob_0"].map("{:.4f}".format)))
    _edit_predictions(mixed, "VGG16", lambda df: df.assign(prob_1=df["prob_1"].where(df.index % 7 != 0)))
    _edit_predictions(mixed, "InceptionV3", lambda df: df.assign(prob_1=df["prob_1"] * 1.7, prob_0=df["prob_0"] - 0.7))
    _edit_predictions(
        mixed,
        UNKNOWN_IDS_MODEL,
        lambda df: df.assign(sample_id=[f"ghost-{i}" if i < 9 else s for i, s in enumerate(df["sample_id"])]),
    )
    cfg_path = mixed / "models" / UNFINISHED_MODEL / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg_path.write_text(json.dumps({**cfg, "status": "running"}))

    newer = make_fake_experiment(root, "newer_schema", n_samples=40, n_models=1, seed=23)
    meta = json.loads((newer / "experiment.json").read_text())
    (newer / "experiment.json").write_text(
        json.dumps({**meta, "schema_version": art.SCHEMA_VERSION + 1, "new_field_from_the_future": {"x": 1}})
    )
    half = make_fake_experiment(root, "half_written_json", n_samples=40, n_models=1, seed=24)
    text = (half / "experiment.json").read_text()
    (half / "experiment.json").write_text(text[: len(text) // 2])
    cut = make_fake_experiment(root, "truncated_samples", n_samples=40, n_models=1, seed=25)
    (cut / "samples.parquet").write_bytes((cut / "samples.parquet").read_bytes()[:300])
    cols = make_fake_experiment(root, "samples_missing_columns", n_samples=40, n_models=1, seed=26)
    pd.read_parquet(cols / "samples.parquet").drop(columns=["label", "group"]).to_parquet(cols / "samples.parquet")
    dtype = make_fake_experiment(root, "samples_wrong_dtype", n_samples=40, n_models=1, seed=27)
    s = pd.read_parquet(dtype / "samples.parquet")
    s.assign(label=s["label_name"]).to_parquet(dtype / "samples.parquet")
    return root


# ---------------------------------------------------------------- pipeline validate


def _expected_lines() -> list[tuple[str, str, str]]:
    """(experiment, file fragment, message fragment) that the validate report must contain."""
    out = [("mixed", path, phrase) for _, path, phrase in MODEL_BREAKS.values()]
    out.append(("mixed", f"{UNKNOWN_IDS_MODEL}/predictions.parquet", "reference sample ids not in samples.parquet"))
    out.append(("mixed", f"{UNFINISHED_MODEL}/config.json", "not marked complete"))
    out.append(("mixed", f"{GOOD_MODEL}/model.keras", "file is missing"))
    out += [(exp, file, phrase) for exp, (file, phrase) in EXPERIMENT_BREAKS.items()]
    return out


def _check_report(text: str) -> None:
    for exp, file, phrase in _expected_lines():
        hits = [line for line in text.splitlines() if f"/{exp}/" in line and file in line and phrase in line]
        assert hits, f"validate did not report {phrase!r} for {exp}/{file}:\n{text}"
    good = re.search(r"^.*/good: (.*)$", text, re.M)
    assert good and good.group(1).startswith("0 error(s)"), text  # only warnings (no model.keras in fakes)
    # 5 broken prediction files (InceptionV3's rows also do not sum to 1: two errors) + 1 unfinished model
    assert re.search(r"/mixed: 7 error\(s\)", text), text


def test_validate_cli_subprocess_names_every_problem(root: Path) -> None:
    """`python -m pipeline validate <root>` as a user runs it: exit code 1 and one line per problem."""
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "validate", str(root)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    _check_report(proc.stdout)


def test_validate_main_in_process(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same report through `pipeline.__main__.main([...])`, and per experiment folder."""
    assert cli_main(["validate", str(root)]) == 1
    _check_report(capsys.readouterr().out)
    assert cli_main(["validate", str(root / "good")]) == 0
    assert "good: 0 error(s)" in capsys.readouterr().out
    for exp, (file, phrase) in EXPERIMENT_BREAKS.items():
        assert cli_main(["validate", str(root / exp)]) == 1
        out = capsys.readouterr().out
        assert file in out and phrase in out, (exp, out)


def test_validate_a_missing_folder_fails_cleanly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A path that does not exist is reported, not a traceback."""
    assert cli_main(["validate", str(tmp_path / "nope")]) == 1
    assert "not a folder" in capsys.readouterr().out


# ---------------------------------------------------------------- the dashboard


def _errors(at) -> str:
    return "\n".join(e.value for e in at.error)


@pytest.mark.parametrize("exp", list(EXPERIMENT_BREAKS))
def test_dashboard_shows_a_broken_experiment_and_the_others_stay_usable(root, artifacts_env, exp) -> None:
    """Opening a broken experiment shows one error naming the file; picking the good one then works."""
    artifacts_env(root)
    at = open_app(exp)
    no_exceptions(at)
    file, phrase = EXPERIMENT_BREAKS[exp]
    errors = _errors(at)
    assert f"{exp}/{file}" in errors and phrase in errors, errors
    assert "Traceback" not in errors
    at.selectbox(key="exp").set_value("good").run()
    no_exceptions(at)
    assert not at.error, _errors(at)
    assert set(at.dataframe[0].value.index) >= {"MobileNetV2", "ResNet50"}


def test_dashboard_overview_reports_each_broken_model_and_scores_the_good_ones(root, artifacts_env) -> None:
    """Each broken model gets its own message; the good model's metrics equal scikit-learn's."""
    artifacts_env(root)
    at = open_app("mixed", "overview")
    no_exceptions(at)
    assert UNFINISHED_MODEL not in at.multiselect(key="models").options
    errors = _errors(at)
    for model, (_, path, phrase) in MODEL_BREAKS.items():
        assert any(path in e.value and phrase in e.value and model in e.value for e in at.error), (model, errors)
    table = at.dataframe[0].value
    assert {GOOD_MODEL, UNKNOWN_IDS_MODEL} <= set(table.index)
    assert not set(MODEL_BREAKS) & set(table.index)
    y, P, _ = truth(root, "mixed", GOOD_MODEL)
    shown = float(str(table.loc[GOOD_MODEL, "ROC AUC"]).split()[0])
    assert shown == pytest.approx(skm.roc_auc_score(y, P[:, 1]), abs=5e-4)
    captions = " ".join(c.value for c in at.caption)
    assert f"{UNKNOWN_IDS_MODEL}: 9 prediction rows name sample ids that are not in samples.parquet" in captions


@pytest.mark.parametrize(
    "page", ["curves", "confusion", "thresholds", "calibration", "training", "eval_sets", "compare", "review", "live"]
)
def test_every_page_survives_the_broken_models(root, artifacts_env, page) -> None:
    """Every page opens on the mixed experiment without an exception and still shows the good model."""
    artifacts_env(root)
    at = open_app("mixed")
    at.switch_page(f"app_pages/{'eval_sets' if page == 'eval_sets' else page}.py").run()
    if page == "live":  # a sample from the evaluation set: no model has a model.keras, each says why
        at.radio(key="live_source").set_value("Sample from the evaluation set").run()
    no_exceptions(at)
    text = _errors(at) + "\n".join(w.value for w in at.warning)
    if page == "training":
        assert at.get("plotly_chart"), "no training curves drawn"
    elif page == "live":
        assert f"{GOOD_MODEL} cannot answer: model file is missing" in text, text
    else:
        assert "ResNet50/predictions.parquet" in text and "truncated" in text, text
        assert at.get("plotly_chart") or at.dataframe
    shown = " ".join(str(el.proto) for el in at.get("plotly_chart")) + " ".join(str(df.value) for df in at.dataframe)
    if page not in ("live",):
        assert GOOD_MODEL in shown, f"{page}: the good model is not shown"


def test_dashboard_data_layer_errors_name_the_file(root) -> None:
    """The loaders behind the pages raise ArtifactError (naming the file), never a raw pandas/pyarrow error."""
    from dashboard import data_access as da

    exp = art.load_experiment(root / "mixed")
    for model, (_, path, phrase) in MODEL_BREAKS.items():
        with pytest.raises(art.ArtifactError, match=re.escape(phrase)) as info:
            da.get_model_data(exp, model, "test")
        assert info.value.path.endswith(path)
    md = da.get_model_data(exp, UNKNOWN_IDS_MODEL, "test")
    assert md.n_unknown == 9 and md.n == 141 and np.isfinite(md.P).all()
