"""The meeting report's Subgroups section (pipeline/report/_subgroups_section.py): the configured columns, numbers
equal to scikit-learn on each subgroup's slice at the report's thresholds, "too few" below the minimum size, the
worst subgroup and the largest gap from the same engine as the page, the forest plot, and the CLI flag."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from pipeline import artifacts as art
from pipeline import comparison as cmp
from pipeline import metrics as mt
from pipeline import report as rp
from pipeline.fake import make_fake_experiment

N_BOOT = 40
MODELS = ["ResNet50", "MobileNetV2"]


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A binary fake experiment whose experiment.json names sex and age (with a tiny first age bin)."""
    root = tmp_path_factory.mktemp("report_subgroups")
    path = make_fake_experiment(root, "sg", n_samples=300, n_models=2, n_classes=2, seed=11)
    meta = json.loads((path / "experiment.json").read_text())
    meta["config"] = {"subgroups": {"columns": ["sex", "age"], "bins": {"age": [20, 22, 55, 90]}, "min_size": 20}}
    (path / "experiment.json").write_text(json.dumps(meta))
    return path


def _section(text: str) -> str:
    return text.split('<section id="subgroups">')[1].split("</section>")[0]


def _column(section: str, column: str) -> str:
    return section.split(f'data-column="{column}"')[1].split('<div class="subgroup-column"')[0]


def _slices(exp_dir: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    samples = pd.read_parquet(exp_dir / "samples.parquet").set_index("sample_id")
    out = {}
    for model in MODELS:
        preds = pd.read_parquet(exp_dir / "models" / model / "predictions.parquet")
        preds = preds[preds["eval_set"] == "test"].set_index("sample_id")
        out[model] = preds["prob_1"]
    return samples, out


def test_report_has_a_subgroups_section_per_configured_column_equal_to_sklearn(exp_dir):
    thresholds = {"ResNet50": 0.35, "MobileNetV2": 0.5}
    text = rp.render_report_html(exp_dir, MODELS, thresholds=thresholds, n_boot=N_BOOT, n_gallery=0)
    assert "subgroups" in rp.REPORT_SECTIONS and '<a href="#subgroups">' in text
    section = _section(text)
    assert [m for m in re.findall(r'data-column="([^"]+)"', section)] == ["sex", "age"]
    samples, probs = _slices(exp_dir)
    sex_part = _column(section, "sex")
    for model, p in probs.items():
        y = samples.loc[p.index, "label"].to_numpy()
        sex = samples.loc[p.index, "sex"].to_numpy()
        for name in ("female", "male"):
            m = sex == name
            pred = p.to_numpy()[m] >= thresholds[model]
            auc = skm.roc_auc_score(y[m], p.to_numpy()[m])
            sens = skm.recall_score(y[m], pred)
            spec = skm.recall_score(1 - y[m], ~pred)
            # The row of (model, subgroup): n, then sensitivity, specificity, balanced accuracy, AUC.
            row = re.search(rf"<td>{model}</td>\s*<td>{name}</td>\s*<td>{int(m.sum())}</td>(.*?)</tr>", sex_part, re.S)
            assert row is not None, (model, name)
            cells = re.findall(r"<td>([^<]*)</td>", row.group(1))
            points = [float(c.split()[0]) for c in cells[2:6]]
            assert points == pytest.approx([sens, spec, (sens + spec) / 2, auc], abs=5e-4)
            assert all(re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", html.unescape(c)) for c in cells[2:6])
    assert "ROC AUC per sex subgroup (95% CI)" in sex_part and "plotly" in sex_part
    assert "2 subgroups; one subgroup per value" in sex_part
    # Age bins from the config: the first bin [20, 22) holds a handful of samples: "too few", no numbers.
    age_part = _column(section, "age")
    assert "3 subgroups; bins from the config [20.0, 22.0, 55.0, 90.0]" in age_part
    tiny = re.search(r"<td>ResNet50</td>\s*<td>\[20, 22\)</td>\s*<td>(\d+)</td>(.*?)</tr>", age_part, re.S)
    assert tiny is not None and int(tiny.group(1)) < 20
    assert re.findall(r"<td>([^<]*)</td>", tiny.group(2))[2:6] == ["too few"] * 4


def test_worst_subgroup_and_largest_gap_come_from_the_shared_engine(exp_dir):
    exp = art.load_experiment(exp_dir)
    aligned = cmp.load_aligned(exp, MODELS, "test")
    thr = {m: 0.5 for m in MODELS}
    groups, res = rp.compute_subgroups(exp, aligned, "sex", thr, n_boot=N_BOOT, seed=0)
    assert groups.names == ("female", "male") and res.names == groups.names
    text = rp.render_report_html(exp_dir, MODELS, n_boot=N_BOOT, n_gallery=0, subgroup_columns=["sex"])
    section = _section(text)
    assert re.findall(r'data-column="([^"]+)"', section) == ["sex"]
    for model in MODELS:
        gap = mt.largest_gap(res, model, "roc_auc")
        worst = mt.worst_subgroup(res, "roc_auc")[model]
        assert gap is not None and worst is not None
        e = gap.estimate
        assert f"{e.point:.3f} [{e.low:.3f}, {e.high:.3f}]" in section
        assert f"{gap.high} vs {gap.low}" in section and f"{worst[0]}: {worst[1].point:.3f}" in section
    # The gap rows equal the page's (one implementation for both).
    rows = rp.subgroup_gap_rows(res, "roc_auc")
    assert [r["model"] for r in rows] == MODELS and "largest gap (ROC AUC)" in rows[0]


def test_subgroup_column_flag_and_bad_columns(exp_dir, tmp_path, capsys):
    from pipeline.__main__ import main

    out = tmp_path / "r.html"
    args = ["report", str(exp_dir), "--n-boot", str(N_BOOT), "--out", str(out), "--subgroup-column", "age"]
    assert main(args) == 0
    assert re.findall(r'data-column="([^"]+)"', _section(out.read_text(encoding="utf-8"))) == ["age"]
    with pytest.raises(ValueError, match=r"subgroup_columns.*Received: \['scanner'\]"):
        rp.report_subgroup_columns(art.load_experiment(exp_dir), ["scanner"])


def test_without_config_the_first_metadata_column_and_multiclass_macro(tmp_path):
    path = make_fake_experiment(tmp_path, "m3", n_samples=150, n_models=1, n_classes=3, seed=5)
    exp = art.load_experiment(path)
    assert rp.report_subgroup_columns(exp) == ["age"]  # no [subgroups] config: the first metadata column
    text = rp.render_report_html(path, n_boot=N_BOOT, n_gallery=0, subgroup_columns=["sex"])
    section = _section(text)
    assert "Multiclass: argmax predictions, macro-averaged" in section
    samples = pd.read_parquet(path / "samples.parquet").set_index("sample_id")
    preds = pd.read_parquet(path / "models" / exp.models[0] / "predictions.parquet")
    preds = preds[preds["eval_set"] == "test"].set_index("sample_id")
    P = preds[[f"prob_{k}" for k in range(3)]].to_numpy()
    y = samples.loc[preds.index, "label"].to_numpy()
    m = samples.loc[preds.index, "sex"].to_numpy() == "female"
    macro_recall = skm.recall_score(y[m], P[m].argmax(1), average="macro")
    row = re.search(rf"<td>{exp.models[0]}</td>\s*<td>female</td>(.*?)</tr>", section, re.S)
    assert row is not None
    assert float(re.findall(r"<td>([^<]*)</td>", row.group(1))[3].split()[0]) == pytest.approx(macro_recall, abs=5e-4)
