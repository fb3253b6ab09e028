"""Misclassification review: the NumPy filters on hand-checkable data and at 100k scale, and the page in AppTest
against its own fake experiment (notes write into the experiment folder), checked against pandas/scikit-learn."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from pipeline import notes
from pipeline import review as rv
from pipeline.fake import make_fake_experiment
from tests.conftest import APP_PATH, no_exceptions, plotly_specs
from tests.test_dashboard_pages import gallery_captions

# ---------------------------------------------------------------- pipeline/review.py on tiny data


def _tiny() -> rv.ReviewArrays:
    # 5 samples, binary; model A and B; B has no prediction for s4.
    ids = np.array(["s0", "s1", "s2", "s3", "s4"], dtype=object)
    y = np.array([0, 1, 1, 0, 1])
    pa = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6], [0.45, 0.55]])
    pb = np.array([[0.3, 0.7], [0.6, 0.4], [0.8, 0.2], [0.9, 0.1]])
    return rv.align_predictions(ids, y, {"A": (ids, pa), "B": (ids[[0, 1, 2, 3]], pb)}, n_classes=2)


def test_predictions_threshold_and_missing():
    a = _tiny()
    pred = rv.predictions(a, [0.5, None])
    assert pred.tolist() == [[0, 1, 0, 1, 1], [1, 0, 0, 0, -1]]
    assert rv.predictions(a, [0.7, None])[0].tolist() == [0, 1, 0, 0, 0]
    conf = rv.confidences(a, pred)
    assert conf[0].tolist() == pytest.approx([0.9, 0.8, 0.7, 0.6, 0.55])
    assert np.isnan(conf[1, 4])
    assert rv.confidences(a, pred, np.array([3, 0]))[0].tolist() == pytest.approx([0.6, 0.9])


def test_filters_by_hand():
    a = _tiny()
    pred = rv.predictions(a, [0.5, None])
    ids = lambda m: a.sample_ids[m].tolist()  # noqa: E731
    # A wrong on s2 (FN) and s3 (FP).
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("A"))) == ["s2", "s3"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("A", error_type="fp"))) == ["s3"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("A", error_type="fn"))) == ["s2"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("A", outcome="right"))) == ["s0", "s1", "s4"]
    # B wrong on s0, s1, s2; right on s3; no answer on s4.
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("B"))) == ["s0", "s1", "s2"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("A", outcome="all", agreement="all_wrong"))) == ["s2"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("A", outcome="all", agreement="disagree"))) == ["s0", "s1", "s3"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("B", true_classes=(1,)))) == ["s1", "s2"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("B", pred_classes=(1,)))) == ["s0"]
    mid = rv.ReviewFilter("A", outcome="all", confidence=(0.55, 0.7))
    assert ids(rv.filter_mask(a, pred, mid)) == ["s2", "s3", "s4"]
    tagged = {"artefact": {"s2", "zz"}, "hard case": {"s0"}}
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("B", tag="artefact"), tagged=tagged)) == ["s2"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("B", tag=rv.TAG_TAGGED), tagged=tagged)) == ["s0", "s2"]
    assert ids(rv.filter_mask(a, pred, rv.ReviewFilter("B", tag=rv.TAG_UNTAGGED), tagged=tagged)) == ["s1"]
    mask = rv.filter_mask(a, pred, rv.ReviewFilter("A", outcome="all"))
    assert a.sample_ids[rv.sorted_indices(a, pred, mask, "A")].tolist() == ["s0", "s1", "s2", "s3", "s4"]
    assert a.sample_ids[rv.sorted_indices(a, pred, mask, "A", "confidence_asc")].tolist()[0] == "s4"


def test_filter_errors_name_the_argument():
    a = _tiny()
    pred = rv.predictions(a, [0.5, None])
    with pytest.raises(ValueError, match="argument `model`.*'C'"):
        rv.filter_mask(a, pred, rv.ReviewFilter("C"))
    with pytest.raises(ValueError, match="argument `confidence`"):
        rv.filter_mask(a, pred, rv.ReviewFilter("A", confidence=(0.8, 0.2)))
    with pytest.raises(ValueError, match="argument `sort`"):
        rv.sorted_indices(a, pred, np.ones(5, bool), "A", "random")
    with pytest.raises(ValueError, match="argument `thresholds`"):
        rv.predictions(a, [0.5])


def test_filtering_100k_samples_is_fast():
    rng = np.random.default_rng(0)
    n, m, k = 100_000, 5, 7
    ids = np.array([f"s{i:06d}" for i in range(n)], dtype=object)
    y = rng.integers(0, k, n)
    per_model = {}
    for j in range(m):
        P = rng.dirichlet(np.ones(k), n)
        per_model[f"M{j}"] = (ids, P)
    a = rv.align_predictions(ids, y, per_model, k)
    tagged = {"label wrong": set(ids[rng.choice(n, 2000, replace=False)])}
    t0 = time.process_time()  # CPU time: other jobs on the machine do not count
    for _ in range(3):
        pred = rv.predictions(a, [None] * m)
        mask = rv.filter_mask(
            a,
            pred,
            rv.ReviewFilter(
                "M2", agreement="disagree", confidence=(0.2, 0.9), true_classes=(1, 2, 3), tag=rv.TAG_UNTAGGED
            ),
            tagged=tagged,
        )
        idx = rv.sorted_indices(a, pred, mask, "M2")
    per_run = (time.process_time() - t0) / 3
    assert idx.size > 10_000
    assert per_run < 0.4, f"{per_run:.3f} s CPU per filter+sort of 100k samples x 5 models"


# ---------------------------------------------------------------- the page (AppTest)

EXP = "review"


@pytest.fixture()
def review_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private artifacts root (notes are written into it) with one binary experiment."""
    make_fake_experiment(tmp_path, EXP, n_samples=240, n_models=3, n_classes=2, seed=7)
    monkeypatch.setenv("MEDCOMPARE_ARTIFACTS", str(tmp_path))
    return tmp_path


def _open_review(**query: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.query_params["exp"] = EXP
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    at.switch_page("app_pages/review.py").run()
    no_exceptions(at)
    return at


def _truth(root: Path) -> tuple[pd.DataFrame, list[str]]:
    """Samples with each model's P(malignant), read straight from the Parquet files."""
    samples = pd.read_parquet(root / EXP / "samples.parquet")
    models = sorted(p.name for p in (root / EXP / "models").iterdir())
    table = samples[["sample_id", "label"]].copy()
    for m in models:
        preds = pd.read_parquet(root / EXP / "models" / m / "predictions.parquet")
        table = table.merge(preds[["sample_id", "prob_1"]].rename(columns={"prob_1": m}), on="sample_id")
    return table, models


def _count(at) -> int:
    return int(next(m for m in at.metric if m.label == "Matching samples").value.replace(",", ""))


def _captions(at) -> list[str]:
    return gallery_captions(at)


def test_page_smoke_default_is_the_first_models_errors(review_root):
    at = _open_review()
    table, models = _truth(review_root)
    wrong = (table[models[0]] >= 0.5).astype(int) != table["label"]
    assert _count(at) == int(wrong.sum())
    assert len(_captions(at)) == min(24, int(wrong.sum()))
    # Most confident wrong answer first.
    conf = np.where(table[models[0]] >= 0.5, table[models[0]], 1 - table[models[0]])
    first = table.loc[wrong].assign(conf=conf[wrong.to_numpy()]).sort_values("conf", ascending=False)
    assert _captions(at)[0].startswith(first["sample_id"].iloc[0])
    assert any("Press **Open**" in i.value for i in at.info)


def test_filters_match_an_independent_count(review_root):
    at = _open_review()
    table, models = _truth(review_root)
    at.selectbox(key="review_model").set_value(models[1]).run()
    at.selectbox(key="review_agreement").set_value("disagree").run()
    at.selectbox(key="review_error").set_value("fn").run()
    at.slider(key="review_conf").set_value((0.55, 1.0)).run()
    no_exceptions(at)
    pred = {m: (table[m] >= 0.5).astype(int) for m in models}
    right = pd.DataFrame({m: pred[m] == table["label"] for m in models})
    disagree = right.any(axis=1) & ~right.all(axis=1)
    fn = (table["label"] == 1) & (pred[models[1]] == 0)
    conf = 1 - table[models[1]]  # confidence of the (wrong) negative answer
    expected = int((disagree & fn & (conf >= 0.55)).sum())
    assert expected > 0
    assert _count(at) == expected
    at.selectbox(key="review_outcome").set_value("all").run()
    at.selectbox(key="review_error").set_value("any").run()
    at.slider(key="review_conf").set_value((0.0, 1.0)).run()
    at.multiselect(key="review_true").set_value([0]).run()
    assert _count(at) == int((disagree & (table["label"] == 0)).sum())


def test_adding_a_note_shows_the_tag_and_stores_it(review_root):
    at = _open_review()
    first = at.button[0]
    sid = first.key.removeprefix("review_open_")
    first.click().run()
    no_exceptions(at)
    assert at.subheader[0].value == f"Sample {sid}"
    assert any(p.get("type") == "bar" for p in __import__("json").loads(at.get("plotly_chart")[0].proto.spec)["data"])
    at.selectbox(key="review_note_tag").set_value("label wrong")
    at.text_input(key="review_note_author").input("Dr. Mentor")
    at.text_area(key="review_note_text").input("this is clearly benign")
    next(b for b in at.button if b.label == "Save note").click().run()
    no_exceptions(at)
    assert any("Current tags" in md.value and "`label wrong`" in md.value for md in at.markdown)
    assert any(c.startswith(sid) and "🏷 label wrong" in c for c in _captions(at))
    with sqlite3.connect(review_root / EXP / "notes.sqlite") as con:
        rows = con.execute("SELECT sample_id, tag, action, text, author FROM notes").fetchall()
    assert rows == [(sid, "label wrong", "add", "this is clearly benign", "Dr. Mentor")]
    # The tag filter now finds exactly that sample.
    at.selectbox(key="review_tag").set_value("label wrong").run()
    assert _count(at) == 1
    # Removing the tag from the card.
    at.button(key="review_remove_label wrong").click().run()
    no_exceptions(at)
    assert _count(at) == 0
    assert notes.samples_with_tag(review_root / EXP, "label wrong") == set()


def test_exclude_toggle_shows_metrics_without_label_wrong_samples(review_root):
    table, models = _truth(review_root)
    pred0 = (table[models[0]] >= 0.5).astype(int)
    wrong_ids = table.loc[pred0 != table["label"], "sample_id"].head(6).tolist()
    right_ids = table.loc[pred0 == table["label"], "sample_id"].head(2).tolist()
    marked = set(wrong_ids + right_ids)
    for sid in marked:
        notes.add_note(review_root / EXP, sid, "label wrong", author="t")
    notes.add_note(review_root / EXP, right_ids[0], "hard case")
    at = _open_review()
    before = next(d.value for d in at.dataframe if "Balanced acc." in d.value.columns)
    assert "Accuracy (excl.)" not in before.columns
    for m in models:
        y, p = table["label"], table[m]
        assert before.loc[m, "Accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
        assert before.loc[m, "ROC AUC"] == pytest.approx(skm.roc_auc_score(y, p))
    at.toggle(key="review_exclude_toggle").set_value(True).run()
    no_exceptions(at)
    assert at.session_state["exclude_label_wrong"] is True
    after = next(d.value for d in at.dataframe if "Balanced acc." in d.value.columns)
    kept = table[~table["sample_id"].isin(marked)]
    for m in models:
        y, p = kept["label"], kept[m]
        assert after.loc[m, "Samples (excl.)"] == len(table) - len(marked)
        assert after.loc[m, "Accuracy (excl.)"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
        assert after.loc[m, "Balanced acc. (excl.)"] == pytest.approx(skm.balanced_accuracy_score(y, p >= 0.5))
        assert after.loc[m, "ROC AUC (excl.)"] == pytest.approx(skm.roc_auc_score(y, p))
        assert after.loc[m, "Accuracy"] == pytest.approx(skm.accuracy_score(table["label"], table[m] >= 0.5))
    # Removing the 6 wrong answers of the first model raises its accuracy.
    assert after.loc[models[0], "Accuracy change"] > 0
    # The choice outlives a visit to another page (the widget's own key does not).
    at.switch_page("app_pages/overview.py").run()
    assert at.session_state["exclude_label_wrong"] is True
    assert any(
        f"{len(marked)} sample(s) are left out of every metric (marked 'label wrong'" in c.value
        for c in at.sidebar.caption
    )
    # ... and every metric page scores without them: the confusion matrix counts only the kept samples.
    at.switch_page("app_pages/confusion.py").run()
    no_exceptions(at)
    m = models[0]
    spec = next(s for s in plotly_specs(at) if s["_id"].endswith(f"-cm_chart_{m}"))
    custom = np.asarray(spec["data"][0]["customdata"])
    shown = np.zeros((2, 2), int)
    shown[custom[:, 0].astype(int), custom[:, 1].astype(int)] = custom[:, 2]
    np.testing.assert_array_equal(shown, skm.confusion_matrix(kept["label"], kept[m] >= 0.5, labels=[0, 1]))
    at.switch_page("app_pages/review.py").run()
    assert at.toggle(key="review_exclude_toggle").value is True


def test_export_button_and_multiclass_page(tmp_path, monkeypatch):
    make_fake_experiment(tmp_path, EXP, n_samples=210, n_models=2, n_classes=4, seed=8)
    monkeypatch.setenv("MEDCOMPARE_ARTIFACTS", str(tmp_path))
    notes.add_note(tmp_path / EXP, "test-0000001", "artefact", text="ruler")
    at = _open_review()
    assert not [s for s in at.selectbox if s.key == "review_error"]  # FP/FN is for binary tasks only
    samples = pd.read_parquet(tmp_path / EXP / "samples.parquet")
    models = sorted(p.name for p in (tmp_path / EXP / "models").iterdir())
    preds = pd.read_parquet(tmp_path / EXP / "models" / models[0] / "predictions.parquet")
    preds = preds.merge(samples, on="sample_id")
    argmax = preds[[f"prob_{i}" for i in range(4)]].to_numpy().argmax(axis=1)
    assert _count(at) == int((argmax != preds["label"].to_numpy()).sum())
    at.multiselect(key="review_pred").set_value([2]).run()
    assert _count(at) == int(((argmax != preds["label"].to_numpy()) & (argmax == 2)).sum())
    download = at.get("download_button")
    assert download and "Export notes as CSV" in str(download[0].proto)


def test_grad_cam_is_computed_on_demand_and_cached(review_root, monkeypatch):
    explain = pytest.importorskip("pipeline.explain")
    from dashboard import data_access as da

    calls: list[tuple] = []

    def fake_load_model(exp_dir: str, model: str) -> str:
        calls.append(("load", model))
        return model

    def fake_grad_cam(model: str, image: np.ndarray, class_index: int) -> np.ndarray:
        calls.append(("cam", model, class_index))
        h, w = image.shape[:2]
        return np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))

    monkeypatch.setattr(da, "load_model", fake_load_model, raising=False)
    monkeypatch.setattr(explain, "grad_cam", fake_grad_cam)
    _, models = _truth(review_root)
    for m in models[:2]:  # the third model has predictions only
        (review_root / EXP / "models" / m / "model.keras").write_bytes(b"stand-in")
    at = _open_review()
    at.button[0].click().run()
    assert not calls  # nothing is computed before the button is pressed
    at.button(key="review_cam_button").click().run()
    no_exceptions(at)
    cams = [c for c in gallery_captions(at) if ": evidence for" in c]
    assert sorted(c.split(":")[0] for c in cams) == sorted(models[:2])
    assert any(models[2] in c.value and "unavailable" in c.value for c in at.caption)
    assert sorted(c[1] for c in calls if c[0] == "cam") == sorted(models[:2])
    at.slider(key="review_cam_alpha").set_value(0.8).run()
    no_exceptions(at)
    assert len([c for c in calls if c[0] == "cam"]) == 2  # cached per (experiment, model, sample, class)


def test_switching_experiment_keeps_the_page_working(tmp_path, monkeypatch):
    make_fake_experiment(tmp_path, "a-multi", n_samples=120, n_models=2, n_classes=5, seed=9)
    make_fake_experiment(tmp_path, "b-binary", n_samples=120, n_models=2, n_classes=2, seed=10)
    monkeypatch.setenv("MEDCOMPARE_ARTIFACTS", str(tmp_path))
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_PATH), default_timeout=60)
    at.query_params["exp"] = "a-multi"
    at.run()
    at.switch_page("app_pages/review.py").run()
    at.multiselect(key="review_true").set_value([4]).run()
    at.multiselect(key="review_pred").set_value([3]).run()
    no_exceptions(at)
    at.selectbox(key="exp").set_value("b-binary").run()
    no_exceptions(at)
    assert at.multiselect(key="review_true").value == []
    # The filters of the 5-class experiment are gone: the count is the new experiment's default view, the
    # first model's errors at threshold 0.5 (it used to assert `>= 0`, which cannot fail).
    samples = pd.read_parquet(tmp_path / "b-binary" / "samples.parquet")
    first = sorted(p.name for p in (tmp_path / "b-binary" / "models").iterdir())[0]
    preds = pd.read_parquet(tmp_path / "b-binary" / "models" / first / "predictions.parquet")
    preds = preds[preds["eval_set"] == "test"].merge(samples[["sample_id", "label"]], on="sample_id")
    assert _count(at) == int(((preds["prob_1"] >= 0.5).astype(int) != preds["label"]).sum()) > 0


def test_without_samples_drops_exactly_the_excluded_ids():
    from pipeline import comparison as cmp

    ids = np.array(["a", "b", "c", "d"], dtype=object)
    md = cmp.ModelData("M", "test", ids, np.array([0, 1, 1, 0]), np.full((4, 2), 0.5), np.arange(4))
    out = cmp.without_samples(md, {"b", "zz"})
    assert out.sample_ids.tolist() == ["a", "c", "d"] and out.y.tolist() == [0, 1, 0]
    assert out.P.shape == (3, 2) and out.groups.tolist() == [0, 2, 3]
    assert cmp.without_samples(md, set()) is md and cmp.without_samples(md, {"zz"}) is md
