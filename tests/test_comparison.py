"""pipeline/comparison.py: the one aligned view every consumer reads (pages, review gallery, report, CLI)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from pipeline import artifacts as art
from pipeline import comparison as cmp
from pipeline import review as rv
from pipeline.fake import make_fake_experiment


@pytest.fixture(scope="module")
def exp(tmp_path_factory: pytest.TempPathFactory) -> art.Experiment:
    root = tmp_path_factory.mktemp("cmp")
    make_fake_experiment(root, "e", n_samples=160, n_models=2, n_classes=2, seed=21, eval_sets=("test", "uncropped"))
    return art.load_experiment(root / "e")


def _pandas_truth(exp: art.Experiment, model: str, eval_set: str) -> pd.DataFrame:
    preds = art.read_predictions(exp, model)
    preds = preds[preds["eval_set"] == eval_set]
    return preds.merge(exp.samples[["sample_id", "label"]], on="sample_id")


def test_read_model_data_matches_a_pandas_merge(exp):
    for es in exp.eval_sets:
        md = cmp.read_model_data(exp, "ResNet50", es)
        ref = _pandas_truth(exp, "ResNet50", es)
        assert md.sample_ids.tolist() == ref["sample_id"].tolist()
        np.testing.assert_array_equal(md.y, ref["label"].to_numpy())
        np.testing.assert_allclose(md.P, ref[["prob_0", "prob_1"]].to_numpy())
        assert not md.P.flags.writeable


def test_load_aligned_leaves_out_exactly_the_excluded_ids(exp):
    full = cmp.load_aligned(exp, exp.models, "test")
    drop = set(full.sample_ids[:7].tolist()) | {"not-a-sample"}
    al = cmp.load_aligned(exp, exp.models, "test", exclude=drop)
    assert al.n == full.n - 7 and al.excluded == 7 and full.excluded == 0
    assert not set(al.sample_ids.tolist()) & drop
    ref = _pandas_truth(exp, "MobileNetV2", "test")
    ref = ref[~ref["sample_id"].isin(drop)]
    assert skm.roc_auc_score(al.y, al.probs["MobileNetV2"][:, 1]) == pytest.approx(
        skm.roc_auc_score(ref["label"], ref["prob_1"])
    )
    assert set(cmp.with_ensemble(al)) == {*exp.models, cmp.ENSEMBLE}


def test_outer_join_is_the_union_with_nan_where_a_model_has_no_prediction(exp):
    a = cmp.read_model_data(exp, "MobileNetV2", "test")
    short = cmp.ModelData("ResNet50", "test", a.sample_ids[5:], a.y[5:], a.P[5:] * 0 + 0.5, a.groups[5:])
    reads = {"MobileNetV2": a, "ResNet50": short}
    al = cmp.load_aligned(exp, list(reads), "test", join="outer", read=reads.__getitem__)
    inner = cmp.load_aligned(exp, list(reads), "test", read=reads.__getitem__)
    assert al.n == a.n and inner.n == a.n - 5
    assert al.has is not None and al.has["ResNet50"].sum() == a.n - 5 and al.has["MobileNetV2"].all()
    assert np.isnan(al.probs["ResNet50"][~al.has["ResNet50"]]).all()
    # The review gallery's arrays equal the ones align_predictions builds from the same inputs.
    arrays = rv.from_aligned(al)
    ref = rv.align_predictions(al.sample_ids, al.y, {m: (md.sample_ids, md.P) for m, md in reads.items()}, n_classes=2)
    assert arrays.models == ref.models
    np.testing.assert_array_equal(arrays.has, ref.has)
    np.testing.assert_allclose(arrays.P, ref.P, equal_nan=True)
    assert arrays.sample_ids.tolist() == ref.sample_ids.tolist()


def test_bad_arguments_are_named(exp):
    with pytest.raises(ValueError, match=r"argument `models`\. Expected at least one model"):
        cmp.load_aligned(exp, [], "test")
    with pytest.raises(ValueError, match=r"argument `join`\. Expected 'inner' or 'outer'"):
        cmp.load_aligned(exp, exp.models, "test", join="left")  # type: ignore[arg-type]
