"""Subgroups: columns, binning, missing values, regex extraction; per-subgroup metrics against scikit-learn on
each slice; grouped resampling; the Subgroups page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from pipeline import metrics as mt
from pipeline import subgroups as sg

# ---------------------------------------------------------------- columns, binning, regex


def test_bins_from_config_with_open_ends_and_missing_last():
    out = sg.assign_subgroups("age", [5, 39.9, 40, 59, 60, 120, 130, np.nan, -1], bins=[0, 40, 60, 120])
    assert out.names == ("< 0", "[0, 40)", "[40, 60)", "[60, 120]", "> 120", sg.MISSING)
    assert [out.names[c] for c in out.codes] == [
        "[0, 40)",
        "[0, 40)",
        "[40, 60)",
        "[40, 60)",
        "[60, 120]",
        "[60, 120]",
        "> 120",
        "missing",
        "< 0",
    ]


def test_numeric_with_many_values_gets_quantile_bins_of_equal_size():
    out = sg.assign_subgroups("age", np.arange(100.0), quantiles=4)
    assert len(out.names) == 4 and out.counts().tolist() == [25, 25, 25, 25]


def test_few_numeric_values_and_text_are_categories_in_natural_order():
    out = sg.assign_subgroups("magnification", [400, 40, 100, 200, 40])
    assert out.names == ("40", "100", "200", "400")
    text = sg.assign_subgroups("sex", ["male", None, "female", "male"])
    assert text.names == ("female", "male", "missing") and text.codes.tolist() == [1, 2, 0, 1]


def test_bad_bins_name_the_argument():
    with pytest.raises(ValueError, match="bins"):
        sg.assign_subgroups("age", [1, 2, 3], bins=[10, 5])


def test_regex_named_groups_from_generated_breakhis_names():
    names = [f"SOB_B_A-14-22549AB-{mag}-{i:03d}.png" for mag in (40, 100, 200, 400) for i in range(3)] + ["odd.png"]
    found = sg.extract_regex(names, r"-(?P<magnification>40|100|200|400)-\d+\.png$")
    assert found["magnification"].tolist()[:-1] == [m for m in ("40", "100", "200", "400") for _ in range(3)]
    assert pd.isna(found["magnification"].iloc[-1])
    groups = sg.assign_subgroups("magnification", found["magnification"])
    assert groups.names == ("40", "100", "200", "400", "missing")
    with pytest.raises(ValueError, match="named groups"):
        sg.extract_regex(names, r"-(40|100)-")
    with pytest.raises(ValueError, match="valid regular expression"):
        sg.extract_regex(names, r"(?P<x>")


def test_candidate_columns_skip_ids_and_core_columns_and_keep_eval_set():
    n = 200
    samples = pd.DataFrame(
        {
            "sample_id": [f"s{i}" for i in range(n)],
            "path": [f"/d/s{i}.png" for i in range(n)],
            "label": np.zeros(n, int),
            "group": [f"g{i}" for i in range(n)],
            "split": "test",
            "eval_set": "test",
            "image_id": [f"ISIC_{i}" for i in range(n)],
            "age": np.arange(n) % 90,
            "sex": ["f", "m"] * (n // 2),
            "modality": "MR",
        }
    )
    assert sg.candidate_columns(samples) == ["eval_set", "age", "sex", "modality"]
    assert sg.candidate_columns(samples, ["image_id"])[0] == "image_id"
    frame = sg.subgroup_frame(samples, regex=r"s(?P<last_digit>\d)\.png$", regex_source="path")
    assert frame["last_digit"].tolist()[:3] == ["0", "1", "2"]


def test_subgroups_for_aligns_to_the_requested_sample_order():
    samples = pd.DataFrame({"sample_id": ["a", "b", "c"], "label": [0, 1, 0], "sex": ["m", "f", None]})
    out = sg.subgroups_for(samples, "sex", ["c", "a", "b"])
    assert [out.names[c] for c in out.codes] == ["missing", "m", "f"]
    with pytest.raises(ValueError, match="column"):
        sg.subgroups_for(samples, "nope", ["a"])


# ---------------------------------------------------------------- metrics


def _data(n=2400, seed=0):
    rng = np.random.default_rng(seed)
    groups = rng.integers(0, n // 3, n)
    sub = rng.integers(0, 4, n)
    y = rng.integers(0, 2, n)
    score = np.clip(0.5 + (y - 0.5) * (0.35 - 0.1 * sub) + rng.normal(0, 0.2, n), 0, 1)
    return y, np.c_[1 - score, score], sub, groups


def test_subgroup_metrics_equal_sklearn_on_each_slice():
    y, P, sub, groups = _data()
    P2 = np.c_[1 - P[:, 1] ** 2, P[:, 1] ** 2]
    res = mt.subgroup_metrics(
        y,
        {"a": P, "b": P2},
        sub,
        groups,
        names=["w", "x", "y", "z"],
        thresholds={"a": 0.4, "b": None},
        n_boot=100,
        min_size=10,
    )
    assert res.names == ("w", "x", "y", "z")
    for model, probs, thr in (("a", P, 0.4), ("b", P2, None)):
        for s in range(4):
            m = sub == s
            pred = probs[m, 1] >= thr if thr is not None else probs[m].argmax(1) == 1
            v = res.values[model]
            assert v["sensitivity"][s].point == pytest.approx(skm.recall_score(y[m], pred))
            assert v["specificity"][s].point == pytest.approx(skm.recall_score(1 - y[m], ~pred))
            assert v["balanced_accuracy"][s].point == pytest.approx(skm.balanced_accuracy_score(y[m], pred))
            assert v["roc_auc"][s].point == pytest.approx(skm.roc_auc_score(y[m], probs[m, 1]))
            for metric in res.metrics:
                e = v[metric][s]
                assert e.low <= e.point <= e.high
            assert res.n[s] == m.sum() and res.n_groups[s] == np.unique(groups[m]).size


def test_too_few_and_one_class_subgroups_have_no_numbers():
    y, P, sub, groups = _data(600)
    sub = sub.copy()
    sub[:5] = 4  # a tiny subgroup
    y = y.copy()
    y[sub == 3] = 0  # a subgroup with one class: AUC and sensitivity undefined
    res = mt.subgroup_metrics(y, {"a": P}, sub, groups, n_boot=50, min_size=30)
    assert res.too_few.tolist() == [False, False, False, False, True]
    assert all(np.isnan(res.values["a"][m][4].point) for m in res.metrics)
    assert np.isnan(res.values["a"]["roc_auc"][3].point) and np.isnan(res.values["a"]["sensitivity"][3].point)
    assert np.isnan(mt.subgroup_point_metrics(y, {"a": P}, sub)["a"]["sensitivity"][3])
    assert res.values["a"]["specificity"][3].point == pytest.approx(
        skm.recall_score(1 - y[sub == 3], P[sub == 3, 1] < 0.5)
    )
    rows = res.rows()
    assert len(rows) == 5 and rows[4]["too_few"] and rows[4]["n"] == 5


def test_resamples_draw_whole_groups_in_every_subgroup():
    # Two patients whose samples all fall in subgroup 0 and are all positive with score 1 or 0: a resample's
    # sensitivity there is the share of drawn samples from patient "good", which moves in steps of a whole
    # patient (both drawn, one drawn twice, ...) and never takes per-sample values.
    n_each = 40
    y = np.ones(2 * n_each + 60, int)
    y[2 * n_each :] = np.tile([0, 1], 30)
    score = np.r_[np.ones(n_each), np.zeros(n_each), np.linspace(0, 1, 60)]
    P = np.c_[1 - score, score]
    groups = np.r_[np.zeros(n_each), np.ones(n_each), 2 + np.arange(60)]
    sub = np.r_[np.zeros(2 * n_each, int), np.ones(60, int)]
    res = mt.subgroup_metrics(y, {"a": P}, sub, groups, metrics=["sensitivity"], n_boot=300, min_size=10)
    reps = res.replicates["a"]["sensitivity"][0]
    finite = reps[~np.isnan(reps)]
    # Each patient brings all 40 samples: a value is k / (k + j) for small whole-patient counts k, j.
    allowed = np.array(sorted({k / (k + j) for k in range(9) for j in range(9) if k + j}))
    assert np.abs(finite[:, None] - allowed[None, :]).min(axis=1).max() < 1e-9
    # Per-sample resampling would spread over many values like 37/80.
    assert np.unique(np.round(finite, 6)).size < 15


def test_largest_gap_and_worst_subgroup():
    y, P, sub, groups = _data()
    res = mt.subgroup_metrics(y, {"a": P}, sub, groups, names=["w", "x", "y", "z"], n_boot=200, min_size=10)
    gap = mt.largest_gap(res, "a", "roc_auc")
    auc = [skm.roc_auc_score(y[sub == s], P[sub == s, 1]) for s in range(4)]
    assert (gap.high, gap.low) == ("w", "z")
    assert gap.estimate.point == pytest.approx(max(auc) - min(auc))
    assert 0 < gap.estimate.low <= gap.estimate.point <= gap.estimate.high
    worst = mt.worst_subgroup(res, "roc_auc")["a"]
    assert worst is not None and worst[0] == "z" and worst[1].point == pytest.approx(min(auc))
    with pytest.raises(ValueError, match="metric"):
        mt.largest_gap(res, "a", "nope")


def test_point_metrics_fast_path_and_ece_equal_the_slices():
    y, P, sub, _ = _data()
    pts = mt.subgroup_point_metrics(y, {"a": P}, sub, thresholds={"a": 0.3})["a"]
    ece = mt.subgroup_ece(y, P[:, 1], sub, n_bins=10)
    for s in range(4):
        m = sub == s
        assert pts["sensitivity"][s] == pytest.approx(skm.recall_score(y[m], P[m, 1] >= 0.3))
        assert ece[s] == pytest.approx(mt.expected_calibration_error(y[m], P[m, 1], n_bins=10))


# ---------------------------------------------------------------- config


def test_subgroups_config_section_parses_and_names_bad_keys():
    from pipeline.config import parse_config, parse_subgroups

    base = {"experiment": {"name": "x"}, "dataset": {"layout": "class_folders", "root": "d"}}
    cfg = parse_config(
        {
            **base,
            "subgroups": {
                "columns": ["age", "site"],
                "bins": {"age": [0, 40, 60, 120]},
                "regex": "-(?P<magnification>40|100|200|400)-",
                "min_size": 20,
            },
        }
    )
    assert cfg.subgroups.columns == ("age", "site") and cfg.subgroups.bins == {"age": (0.0, 40.0, 60.0, 120.0)}
    assert cfg.subgroups.min_size == 20 and parse_config(base).subgroups.min_size == 30
    for bad, key in (
        ({"bins": {"age": [3, 1]}}, "subgroups.bins.age"),
        ({"regex": "-(40)-"}, "subgroups.regex"),
        ({"min_size": 0}, "subgroups.min_size"),
        ({"colums": []}, "subgroups"),
    ):
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            parse_subgroups({"subgroups": bad})


# ---------------------------------------------------------------- the page


def test_subgroups_page_values_equal_sklearn_and_click_opens_the_samples(fake_root, artifacts_env):
    from tests.conftest import click_chart, no_exceptions, open_app, plotly_specs

    artifacts_env(fake_root)
    at = open_app("binary", "subgroups")
    no_exceptions(at)
    at.select_slider(key="sg_n_boot").set_value(200)
    at.number_input(key="sg_min_size").set_value(10)
    at.selectbox(key="sg_column").set_value("sex").run()
    no_exceptions(at)
    samples = pd.read_parquet(fake_root / "binary" / "samples.parquet").set_index("sample_id")
    preds = pd.read_parquet(fake_root / "binary" / "models" / "ResNet50" / "predictions.parquet")
    preds = preds[preds["eval_set"] == "test"]
    sex = samples.loc[preds["sample_id"], "sex"].to_numpy()
    y = samples.loc[preds["sample_id"], "label"].to_numpy()
    p = preds["prob_1"].to_numpy()
    table = at.dataframe[0].value
    for name in ("female", "male"):
        row = table[(table["model"] == "ResNet50") & (table["subgroup"] == name)].iloc[0]
        m = sex == name
        assert row["n"] == m.sum()
        assert float(row["ROC AUC"].split()[0]) == pytest.approx(skm.roc_auc_score(y[m], p[m]), abs=5e-4)
        assert float(row["Sensitivity"].split()[0]) == pytest.approx(skm.recall_score(y[m], p[m] >= 0.5), abs=5e-4)
    forest = next(s for s in plotly_specs(at) if s["_id"].endswith("-sg_forest"))
    assert [t["name"] for t in forest["data"]] == list(dict.fromkeys(table["model"]))
    # A minimum size above every subgroup: every number becomes "too few".
    at.number_input(key="sg_min_size").set_value(10_000).run()
    assert set(at.dataframe[0].value["ROC AUC"]) == {"too few"}
    at.number_input(key="sg_min_size").set_value(10).run()
    click_chart(at, "sg_forest", {"curve_number": 1, "point_index": 0, "customdata": ["ResNet50", 0]})
    no_exceptions(at)
    heading = [h.value for h in at.subheader if h.value.startswith("ResNet50: sex = female")]
    wrong = int(((p >= 0.5).astype(int) != y)[sex == "female"].sum())
    assert heading and f"({wrong:,} of {int((sex == 'female').sum()):,} samples" in heading[0]


def test_subgroups_page_multiclass_one_vs_rest_and_age_bins(fake_root, artifacts_env):
    from tests.conftest import no_exceptions, open_app

    artifacts_env(fake_root)
    at = open_app("multi7", "subgroups")
    at.select_slider(key="sg_n_boot").set_value(200)
    at.selectbox(key="sg_column").set_value("age").run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert len(set(table["subgroup"])) == 4  # quantile bins
    assert table.groupby("model")["n"].sum().tolist() == [420, 420]


# ---------------------------------------------------------------- the demo's built-in effect


def test_lesion_demo_has_a_site_column_whose_hard_site_loses_fine_detail(tmp_path):
    import cv2

    from pipeline.synthetic import make_lesions

    out = make_lesions(tmp_path / "l", n_lesions=40, size=32, seed=3)
    meta = pd.read_csv(out / "metadata.csv")
    assert set(meta["site"]) <= {"hospital A", "hospital B", "hospital C"} and meta["site"].nunique() >= 2
    assert (meta.groupby("lesion_id")["site"].nunique() == 1).all()  # a lesion is imaged at one site
    # The hard site adds sensor noise on top of the defocus: more high-frequency residual than a clean site.
    ids = meta.groupby("site")["image_id"].apply(list).to_dict()

    def texture(image_id: str) -> float:
        img = cv2.imread(str(out / "images" / f"{image_id}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float32)
        smooth = cv2.GaussianBlur(img, (0, 0), 1.0)
        return float(np.abs(img - smooth).mean())

    if "hospital C" in ids and "hospital A" in ids:
        assert np.median([texture(i) for i in ids["hospital C"]]) > np.median([texture(i) for i in ids["hospital A"]])
    samples = meta.rename(columns={"image_id": "sample_id"}).assign(label=0, group=meta["lesion_id"])
    assert "site" in sg.candidate_columns(samples, ["site"])


# ---------------------------------------------------------------- figures


def test_forest_figure_has_one_trace_per_model_with_asymmetric_intervals_and_click_data():
    from pipeline import figures

    fig = figures.forest_figure(
        ["a", "b", "c"],
        {
            "m1": [(0.8, 0.7, 0.85), (0.6, 0.5, 0.7), (np.nan,) * 3],
            "m2": [(0.9, 0.88, 0.95), (0.7, 0.6, 0.75), (np.nan,) * 3],
        },
        "ROC AUC",
        too_few=[False, False, True],
        overall={"m1": 0.75},
    )
    assert [t.name for t in fig.data] == ["m1", "m2"]
    t = fig.data[0]
    assert np.allclose(t.error_x.array[:2], [0.05, 0.1]) and np.allclose(t.error_x.arrayminus[:2], [0.1, 0.1])
    assert [list(c) for c in t.customdata] == [["m1", 0], ["m1", 1], ["m1", 2]]
    assert list(fig.layout.yaxis.ticktext) == ["a", "b", "c"]
    assert [a.text for a in fig.layout.annotations] == ["too few"] and len(fig.layout.shapes) == 1
    bars = figures.subgroup_ece_figure(["a", "b"], {"m1": [0.1, 0.2]})
    assert list(bars.data[0].y) == [0.1, 0.2]


def test_dicom_fields_extracted_at_ingest_are_subgroup_columns(tmp_path):
    from pipeline.datasets import ingest
    from tests.test_datasets import write_dicom_tree

    write_dicom_tree(tmp_path)
    samples = ingest("dicom", tmp_path, label_from="folder").samples
    cols = sg.candidate_columns(samples)
    assert "modality" in cols and "patient_id" in cols  # 3 patients: few enough values to offer
    out = sg.subgroups_for(samples, "modality", samples["sample_id"].tolist())
    assert out.names == ("MR",) and out.counts().tolist() == [len(samples)]


def test_the_page_reads_the_subgroups_config_that_experiment_json_keeps():
    from dataclasses import asdict

    from dashboard import data_access as da
    from pipeline.artifacts import Experiment
    from pipeline.config import SubgroupsConfig

    cfg = SubgroupsConfig(columns=("site",), bins={"age": (0.0, 40.0, 90.0)}, min_size=15)
    stored = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}
    stored["bins"] = {k: list(v) for k, v in cfg.bins.items()}
    exp = Experiment(path=Path("."), meta={"name": "x", "config": {"subgroups": stored}}, samples=pd.DataFrame())
    assert da.subgroups_config(exp) == cfg
    broken = Experiment(
        path=Path("."), meta={"name": "x", "config": {"subgroups": {"min_size": -1}}}, samples=pd.DataFrame()
    )
    assert da.subgroups_config(broken) == SubgroupsConfig()


def test_bench_runs_at_a_tiny_size(capsys):
    from bench import bench_subgroups

    assert (
        bench_subgroups.main(
            [
                "--n",
                "3000",
                "--models",
                "2",
                "--subgroups",
                "4",
                "--n-boot",
                "10",
                "--naive-boot",
                "1",
                "--repeats",
                "1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "first: every number" in out and "threshold move" in out
    worst = float(out.split("max |ours - scikit-learn| over every point: ")[1].split()[0])
    assert worst < 1e-12


def test_worst_subgroup_loader_for_the_leaderboard(fake_root, artifacts_env):
    from dashboard import data_access as da
    from pipeline import artifacts as art

    exp = art.load_experiment(fake_root / "binary")
    models = exp.models[:2]
    worst = da.get_worst_subgroup(exp, models, "test", "sex", "accuracy", {m: 0.5 for m in models})
    samples = pd.read_parquet(fake_root / "binary" / "samples.parquet").set_index("sample_id")
    for model in models:
        preds = pd.read_parquet(fake_root / "binary" / "models" / model / "predictions.parquet")
        preds = preds[preds["eval_set"] == "test"]
        sex = samples.loc[preds["sample_id"], "sex"].to_numpy()
        y = samples.loc[preds["sample_id"], "label"].to_numpy()
        acc = {
            s: skm.accuracy_score(y[sex == s], preds["prob_1"].to_numpy()[sex == s] >= 0.5) for s in ("female", "male")
        }
        name = min(acc, key=acc.get)
        assert worst[model][0] == name and worst[model][1] == pytest.approx(acc[name])


def test_subgroups_page_splits_by_evaluation_set(broken_root, artifacts_env):
    from tests.conftest import no_exceptions, open_app

    artifacts_env(broken_root)
    at = open_app("one_class", "subgroups")
    at.select_slider(key="sg_n_boot").set_value(200)
    at.selectbox(key="sg_column").set_value("eval_set").run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert sorted(set(table["subgroup"])) == ["benign_only", "test"]
    benign = table[table["subgroup"] == "benign_only"]
    assert (benign["n"] == 120).all() and (benign["positives"] == 0).all()
    assert set(benign["ROC AUC"]) == {"n/a"} and set(benign["Sensitivity"]) == {"n/a"}
    assert benign["Specificity"].str.match(r"^\d\.\d{3} \[").all()


def test_threshold_metrics_resampled_through_the_score_bins_equal_the_confusion_cells():
    """With the AUC asked for, binary threshold metrics come from the score bins' weights (one partition
    resampled, not two): their replicates equal those of a run without the AUC, resample for resample."""
    rng = np.random.default_rng(4)
    n = 3000
    groups = rng.integers(0, 900, n)
    sub = rng.integers(0, 5, 900)[groups]
    y = (rng.random(n) < 0.35).astype(int)
    p = np.clip(0.3 * y + rng.random(n) * 0.7, 0, 1)
    probs = {"a": np.column_stack([1 - p, p]), "b": np.column_stack([p, 1 - p])}
    thr = {"a": 0.41, "b": 0.62}
    kw = dict(thresholds=thr, n_boot=30, seed=3, min_size=20)
    both = mt.subgroup_metrics(y, probs, sub, groups, **kw)
    alone = mt.subgroup_metrics(y, probs, sub, groups, metrics=["sensitivity", "specificity"], **kw)
    for model in probs:
        for m in ("sensitivity", "specificity"):
            assert np.array_equal(both.replicates[model][m], alone.replicates[model][m], equal_nan=True)
    # Positive class 0: the same through the other column.
    flipped = mt.subgroup_metrics(1 - y, {k: v[:, ::-1] for k, v in probs.items()}, sub, groups, pos_index=0, **kw)
    assert np.array_equal(flipped.replicates["a"]["sensitivity"], both.replicates["a"]["sensitivity"], equal_nan=True)
