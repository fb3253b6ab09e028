"""Repeated runs (issue 12): run plan and names, grouped stratified folds (property test), and a k-fold x
seeds experiment end to end: every run resumable, out-of-fold predictions cover the training pool once."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline import artifacts as art
from pipeline.runs import RunSpec, assign_folds, fold_masks, run_plan, runs_table


def test_run_plan_names_the_first_run_after_the_backbone():
    plan = run_plan(["SmallCNN", "ResNet50"], [0, 1, 2])
    assert [r.model for r in plan[:3]] == ["SmallCNN", "SmallCNN@s1", "SmallCNN@s2"]
    assert [r.run_id for r in plan[3:]] == ["s0", "s1", "s2"] and len(plan) == 6
    cv = run_plan(["SmallCNN"], [7], folds=3)
    assert [(r.model, r.fold, r.seed) for r in cv] == [
        ("SmallCNN", 0, 7),
        ("SmallCNN@f1-s7", 1, 7),
        ("SmallCNN@f2-s7", 2, 7),
    ]
    some = run_plan(["SmallCNN", "ResNet50"], [0, 1], folds=2, repeat=["SmallCNN"])
    assert [r.model for r in some] == ["SmallCNN", "SmallCNN@f0-s1", "SmallCNN@f1-s0", "SmallCNN@f1-s1", "ResNet50"]
    with pytest.raises(ValueError, match=r"argument `seeds`.*Received: \[1, 1\]"):
        run_plan(["SmallCNN"], [1, 1])
    with pytest.raises(ValueError, match=r"argument `folds`.*Received: 0"):
        run_plan(["SmallCNN"], [1], folds=0)


@st.composite
def _group_structures(draw: st.DrawFn) -> pd.DataFrame:
    n_groups = draw(st.integers(30, 120))
    sizes = draw(st.lists(st.integers(1, 4), min_size=n_groups, max_size=n_groups))
    pos_rate = draw(st.floats(0.15, 0.6))
    rng = np.random.default_rng(draw(st.integers(0, 10_000)))
    rows = []
    for g, size in enumerate(sizes):
        label = int(rng.random() < pos_rate)  # a patient's images share the label, as in the IDC layout
        split = "test" if rng.random() < 0.2 else ("val" if rng.random() < 0.2 else "train")
        rows += [{"sample_id": f"g{g}-{i}", "group": f"g{g}", "label": label, "split": split} for i in range(size)]
    return pd.DataFrame(rows)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(samples=_group_structures(), k=st.integers(2, 5))
def test_folds_keep_groups_whole_hold_out_test_and_stratify(samples: pd.DataFrame, k: int):
    pool = samples["split"].isin(["train", "val"])
    if samples.loc[pool, "group"].nunique() < k or samples.loc[pool, "label"].nunique() < 2:
        return
    folds = assign_folds(samples, k, seed=3)
    assert (folds[~pool] == -1).all() and set(folds[pool]) == set(range(k))
    assert (samples[pool].assign(f=folds[pool]).groupby("group")["f"].nunique() == 1).all()
    # stratified: each fold's positive rate is close to the pool's (groups are indivisible, so not exact)
    rate = samples.loc[pool, "label"].mean()
    fold_rates = samples[pool].groupby(folds[pool])["label"].mean()
    fold_sizes = folds[pool].value_counts()
    assert (abs(fold_rates - rate) <= 0.2 + 4.0 / fold_sizes.reindex(fold_rates.index)).all()
    for f in range(k):
        tr, va = fold_masks(samples.assign(fold=folds), RunSpec("SmallCNN", 0, f, "x", "x"))
        assert not (tr & va).any() and ((tr | va) == pool.to_numpy()).all()


def test_folds_need_enough_groups():
    s = pd.DataFrame(
        {"sample_id": list("abcd"), "group": ["g1", "g1", "g2", "g2"], "label": [0, 0, 1, 1], "split": "train"}
    )
    with pytest.raises(ValueError, match=r"argument `k`.*at most 2 folds.*Received: 3"):
        assign_folds(s, 3, seed=0)


@pytest.mark.slow
def test_kfold_and_seeds_experiment_end_to_end(tmp_path):
    from pipeline.config import load_config
    from pipeline.experiment import run_experiment
    from pipeline.synthetic import make_histology

    data = make_histology(tmp_path / "data", n_patients=12, images_per_patient=3, size=24, seed=3)
    cfg_path = tmp_path / "cv.toml"
    cfg_path.write_text(f"""
[experiment]
name = "cv"
output = "{tmp_path / "artifacts"}"
[dataset]
layout = "patient_class_folders"
root = "{data}"
image_size = 24
[split]
seed = 1
[train]
backbones = ["SmallCNN"]
epochs = 1
batch_size = 16
seeds = [0, 1]
folds = 2
augment = []
""")
    cfg = load_config(cfg_path)
    exp_dir = run_experiment(cfg, log=lambda s: None, progress=False)
    models = art.list_models(exp_dir)
    assert sorted(models) == ["SmallCNN", "SmallCNN@f0-s1", "SmallCNN@f1-s0", "SmallCNN@f1-s1"]
    assert [p for p in art.validate_experiment(exp_dir) if p.severity == "error"] == []
    exp = art.load_experiment(exp_dir)
    runs = runs_table(exp_dir, models).set_index("model")
    assert runs.loc["SmallCNN@f1-s0", "fold"] == 1 and runs.loc["SmallCNN", "run_id"] == "f0-s0"
    assert set(runs["backbone"]) == {"SmallCNN"}
    pool = exp.samples[exp.samples["split"].isin(["train", "val"])]
    for seed in (0, 1):
        oof = pd.concat(
            [art.read_predictions(exp, m).query("eval_set == 'oof'") for m in runs.index[runs["seed"] == seed]]
        )
        assert sorted(oof["sample_id"]) == sorted(pool["sample_id"])  # every pool sample once, held out
    for m in models:
        preds = art.read_predictions(exp, m)
        assert (preds["run_id"] == runs.loc[m, "run_id"]).all()
        assert "val" not in set(preds["eval_set"])  # the official val split is in a fold run's training pool
        assert int((preds["eval_set"] == "test").sum()) == int((exp.samples["eval_set"] == "test").sum())
    from pipeline.label_issues import read_label_issues

    queue = read_label_issues(exp_dir)  # cleanlab's queue over the out-of-fold predictions
    assert queue is not None and sorted(queue["sample_id"]) == sorted(pool["sample_id"])
    assert set(queue["n_models"]) == {1}
    logs: list[str] = []
    run_experiment(cfg, log=logs.append, progress=False)  # resumes: nothing to retrain
    assert any("already complete" in line for line in logs)
