"""One or more widget interactions per page, asserted on the values shown, recomputed with scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from dashboard.widgets import GALLERY_PAGE_SIZE
from tests.conftest import click_chart, no_exceptions, open_app, plotly_array, plotly_specs, truth


def gallery_captions(at) -> list[str]:
    """Captions of the gallery images in reading order (row by row across the columns)."""
    columns = []

    def walk(node) -> None:
        for child in getattr(node, "children", {}).values():
            if getattr(child, "type", None) == "column":
                imgs = [c.proto.imgs[0].caption for c in child.children.values() if getattr(c, "type", "") == "image"]
                if imgs:
                    columns.append(imgs)
            walk(child)

    walk(at.main)
    rows = max((len(c) for c in columns), default=0)
    return [col[r] for r in range(rows) for col in columns if r < len(col)]


def _metric(at, label: str) -> float:
    return float(next(m for m in at.metric if m.label == label).value)


# ---------------------------------------------------------------- overview


def test_leaderboard_values_equal_sklearn_and_rank_by_changes_order(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "overview")
    at.select_slider(key="overview_n_boot").set_value(200)
    at.toggle(key="overview_ensemble").set_value(False).run()  # models only (the ensemble row: test_compare_page)
    no_exceptions(at)
    table = at.dataframe[0].value
    for model in table.index:
        y, P, _ = truth(fake_root, "binary", model)
        auc = skm.roc_auc_score(y, P[:, 1])
        acc = skm.accuracy_score(y, (P[:, 1] >= 0.5).astype(int))
        point, lo, hi = (
            float(v)
            for v in table.loc[model, "ROC AUC"].rstrip(" ★").replace("[", "").replace("]", "").replace(",", "").split()
        )
        assert point == pytest.approx(auc, abs=5e-4) and lo <= point <= hi
        assert float(table.loc[model, "Accuracy"].split()[0]) == pytest.approx(acc, abs=5e-4)
    at.selectbox(key="overview_rank_by").set_value("sensitivity").run()
    table = at.dataframe[0].value
    sens = {
        m: skm.recall_score(*(lambda y, P: (y, (P[:, 1] >= 0.5).astype(int)))(*truth(fake_root, "binary", m)[:2]))
        for m in table.index
    }
    assert list(table.index) == sorted(sens, key=lambda m: -sens[m])
    assert list(table["Rank"]) == [1, 2, 3]
    best = max(sens, key=sens.get)
    assert table.loc[best, "Sensitivity"].endswith("★")


def test_dataset_summary_counts_classes_and_groups(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("multi7", "overview")
    import pandas as pd

    samples = pd.read_parquet(fake_root / "multi7" / "samples.parquet")
    counts = next(d.value for d in at.dataframe if "groups" in d.value.columns and "total" in d.value.columns)
    assert counts.loc["test", "total"] == len(samples)
    assert counts.loc["test", "groups"] == samples["group"].nunique()
    assert counts.loc["test", "class_0"] == (samples["label"] == 0).sum()


# ---------------------------------------------------------------- curves


def _legend_names(at) -> list[str]:
    return [t.get("name", "") for spec in plotly_specs(at) for t in spec["data"]]


def test_curves_band_toggle_and_auc_in_legend(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "curves")
    no_exceptions(at)
    roc = plotly_specs(at)[0]
    assert sum(t.get("fill") == "toself" for t in roc["data"]) == 3
    y, P, _ = truth(fake_root, "binary", "ResNet50")
    auc = skm.roc_auc_score(y, P[:, 1])
    assert any(n.startswith(f"ResNet50 (AUC {auc:.3f} [") for n in _legend_names(at))
    ap = skm.average_precision_score(y, P[:, 1])
    assert any(n.startswith(f"ResNet50 (AP {ap:.3f}") for n in _legend_names(at))
    at.toggle(key="curves_band").set_value(False).run()
    assert not any(t.get("fill") == "toself" for t in plotly_specs(at)[0]["data"])


def test_curves_hover_carries_thresholds(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("single", "curves")
    line = next(t for t in plotly_specs(at)[0]["data"] if t.get("name", "").startswith("MobileNetV2 (AUC"))
    assert "threshold" in line["hovertemplate"]
    assert line["customdata"] is not None


def test_multiclass_macro_average_equals_sklearn(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("multi7", "curves")
    at.segmented_control(key="curves_view").set_value("macro-average").run()
    no_exceptions(at)
    y, P, _ = truth(fake_root, "multi7", "ResNet50")
    macro = skm.roc_auc_score(y, P, multi_class="ovr", average="macro")
    assert any(n == f"ResNet50 (AUC {macro:.3f})" for n in _legend_names(at))
    at.segmented_control(key="curves_view").set_value("all classes").run()
    assert len(plotly_specs(at)) == 2  # one chart per model


def test_class_picker_changes_one_vs_rest_curves(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("multi7", "curves")
    at.selectbox(key="cls").set_value("class_4").run()
    y, P, _ = truth(fake_root, "multi7", "MobileNetV2")
    auc = skm.roc_auc_score(y == 4, P[:, 4])
    assert any(n.startswith(f"MobileNetV2 (AUC {auc:.3f}") for n in _legend_names(at))
    assert at.query_params["cls"] == "class_4"


# ---------------------------------------------------------------- confusion matrices


def test_confusion_matrix_counts_and_normalise_toggle(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("multi7", "confusion")
    y, P, _ = truth(fake_root, "multi7", "MobileNetV2")
    cm = skm.confusion_matrix(y, P.argmax(1), labels=range(7))
    spec = next(s for s in plotly_specs(at) if s["_id"].endswith("-cm_chart_MobileNetV2"))
    custom = np.asarray(spec["data"][0]["customdata"])
    shown = np.zeros((7, 7), int)
    shown[custom[:, 0].astype(int), custom[:, 1].astype(int)] = custom[:, 2]
    np.testing.assert_array_equal(shown, cm)
    assert spec["data"][0]["text"][0].startswith(f"{cm[0, 0]:,}")
    at.toggle(key="cm_normalize").set_value(True).run()
    spec = next(s for s in plotly_specs(at) if s["_id"].endswith("-cm_chart_MobileNetV2"))
    assert spec["data"][0]["text"][0].startswith(f"{cm[0, 0] / cm[0].sum():.0%}")


@pytest.mark.parametrize("typed_array", [True, False])
def test_clicking_a_cell_opens_exactly_its_samples(fake_root, artifacts_env, typed_array):
    artifacts_env(fake_root)
    at = open_app("binary", "confusion")
    assert any("Click a cell" in i.value for i in at.info)
    y, P, _ = truth(fake_root, "binary", "ResNet50")
    fp = int(((y == 0) & (P[:, 1] >= 0.5)).sum())
    custom = [0, 1, fp, 0.0]
    # The browser sends a typed-array row as {"0": ..., "1": ...}; plain lists must work too.
    payload = {str(i): v for i, v in enumerate(custom)} if typed_array else custom
    click_chart(
        at,
        "cm_chart_ResNet50",
        {"curve_number": 0, "point_number": 1, "point_index": 1, "x": 1, "y": 0, "customdata": payload},
    )
    no_exceptions(at)
    assert [h.value for h in at.subheader] == [
        f"ResNet50: true benign → predicted malignant ({fp:,} samples, misclassified)"
    ]
    # page 1 of the gallery: the 24 most confident of exactly those samples, each labelled true/pred/probability
    import pandas as pd

    samples = pd.read_parquet(fake_root / "binary" / "samples.parquet")
    preds = pd.read_parquet(fake_root / "binary" / "models" / "ResNet50" / "predictions.parquet")
    cell = preds[(preds["eval_set"] == "test") & (preds["prob_1"] >= 0.5)].merge(samples, on="sample_id")
    cell = cell[cell["label"] == 0].sort_values("prob_1", ascending=False)
    captions = gallery_captions(at)
    assert len(cell) == fp and len(captions) == min(fp, GALLERY_PAGE_SIZE)
    assert [c.split("\n")[0] for c in captions] == cell["sample_id"].head(GALLERY_PAGE_SIZE).tolist()
    assert all("benign → malignant" in c for c in captions)
    assert captions[0].endswith(f"p={cell['prob_1'].iloc[0]:.3f}")


def test_cell_gallery_is_paginated(tmp_path, artifacts_env):
    from pipeline.fake import make_fake_experiment

    make_fake_experiment(tmp_path, "big", n_samples=200, n_models=1, seed=9)
    artifacts_env(tmp_path)
    at = open_app("big", "confusion")
    y, P, _ = truth(tmp_path, "big", "MobileNetV2")
    tn = int(((y == 0) & (P[:, 1] < 0.5)).sum())
    size = GALLERY_PAGE_SIZE
    assert tn > size
    click_chart(at, "cm_chart_MobileNetV2", {"point_index": 0, "customdata": [0, 0, tn, 0.0]})
    pager = at.number_input(key="cm_gallery_page")
    assert pager.max == -(-tn // size)
    assert any(c.value.startswith(f"Samples 1–{size} of {tn}") for c in at.caption)
    pager.set_value(2).run()
    assert any(c.value.startswith(f"Samples {size + 1}–{min(2 * size, tn)} of {tn}") for c in at.caption)
    assert len(gallery_captions(at)) == min(size, tn - size)


# ---------------------------------------------------------------- thresholds


def test_threshold_slider_updates_metrics_like_sklearn(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "thresholds")
    at.selectbox(key="thr_model").set_value("MobileNetV2").run()
    slider = at.slider[0]
    assert slider.value == pytest.approx(0.5)
    slider.set_value(0.3).run()
    no_exceptions(at)
    y, P, _ = truth(fake_root, "binary", "MobileNetV2")
    pred = (P[:, 1] >= 0.3).astype(int)
    assert _metric(at, "Sensitivity") == pytest.approx(skm.recall_score(y, pred), abs=5e-4)
    assert _metric(at, "Specificity") == pytest.approx(skm.recall_score(y, pred, pos_label=0), abs=5e-4)
    assert _metric(at, "Precision") == pytest.approx(skm.precision_score(y, pred), abs=5e-4)
    assert _metric(at, "F1") == pytest.approx(skm.f1_score(y, pred), abs=5e-4)
    assert _metric(at, "Balanced acc.") == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=5e-4)
    assert at.query_params["thr"] == "MobileNetV2:0.3"
    # the ROC marker moved to the new operating point
    roc = next(s for s in plotly_specs(at) if s["_id"].endswith("-thr_roc"))
    marker = next(t for t in roc["data"] if t.get("mode") == "markers")
    tn, fp, fn, tp = skm.confusion_matrix(y, pred).ravel()
    assert marker["x"][0] == pytest.approx(fp / (fp + tn)) and marker["y"][0] == pytest.approx(tp / (tp + fn))


def test_youden_and_sensitivity_buttons_and_threshold_used_elsewhere(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "thresholds")
    at.selectbox(key="thr_model").set_value("ResNet50").run()
    assert at.selectbox(key="thr_choose_on").value == "uncropped"  # not the reported set, by default
    assert not at.warning
    at.selectbox(key="thr_choose_on").set_value("test").run()  # the explicit, optimistic choice
    assert any("optimistic" in w.value for w in at.warning)
    y, P, _ = truth(fake_root, "binary", "ResNet50")
    fpr, tpr, thr = skm.roc_curve(y, P[:, 1], drop_intermediate=False)
    j = tpr - fpr
    youden = thr[np.flatnonzero(j == j.max())].max()
    at.button(key="thr_btn_youden").click().run()
    assert at.slider[0].value == pytest.approx(youden)
    at.button(key="thr_btn_target").click().run()
    t95 = at.slider[0].value
    pred = (P[:, 1] >= t95).astype(int)
    assert skm.recall_score(y, pred) >= 0.95
    assert skm.recall_score(y, (P[:, 1] >= np.nextafter(t95, 1)).astype(int)) < 0.95  # the highest such threshold
    # the confusion matrix page uses the new threshold
    at.switch_page("app_pages/confusion.py").run()
    spec = next(s for s in plotly_specs(at) if s["_id"].endswith("-cm_chart_ResNet50"))
    assert f"threshold {t95:.3f}" in spec["layout"]["title"]["text"]
    custom = np.asarray(spec["data"][0]["customdata"])
    shown = {(int(a), int(b)): int(n) for a, b, n, _ in custom}
    cm = skm.confusion_matrix(y, pred)
    assert shown == {(a, b): int(cm[a, b]) for a in range(2) for b in range(2)}
    # back on the thresholds page the slider remembers it, and where it came from
    at.switch_page("app_pages/thresholds.py").run()
    at.selectbox(key="thr_model").set_value("ResNet50").run()
    assert at.slider[0].value == pytest.approx(t95)
    assert any("sensitivity ≥ 0.95 on test (optimistic" in c.value for c in at.caption)


def test_thresholds_chosen_on_validation_are_applied_unchanged_to_test(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("runs", "thresholds")
    at.selectbox(key="thr_model").set_value("MobileNetV2").run()
    assert at.selectbox(key="thr_choose_on").value == "val" and not at.warning
    at.button(key="thr_btn_target").click().run()
    t_val = at.slider[0].value
    y_val, P_val, _ = truth(fake_root, "runs", "MobileNetV2", "val")
    # on validation: the documented sensitivity, at the highest such threshold
    assert skm.recall_score(y_val, (P_val[:, 1] >= t_val).astype(int)) >= 0.95
    assert skm.recall_score(y_val, (P_val[:, 1] >= np.nextafter(t_val, 1)).astype(int)) < 0.95
    # applied unchanged to the test set shown: the page reports test metrics at exactly that threshold
    y, P, _ = truth(fake_root, "runs", "MobileNetV2", "test")
    pred = (P[:, 1] >= t_val).astype(int)
    assert _metric(at, "Sensitivity") == pytest.approx(skm.recall_score(y, pred), abs=5e-4)
    assert _metric(at, "Specificity") == pytest.approx(skm.recall_score(y, pred, pos_label=0), abs=5e-4)
    assert any("sensitivity ≥ 0.95 on val" in c.value and "optimistic" not in c.value for c in at.caption)


def test_multiclass_thresholds_are_one_vs_rest(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("multi7", "thresholds")
    at.selectbox(key="cls").set_value("class_2").run()
    at.slider[0].set_value(0.2).run()
    no_exceptions(at)
    y, P, _ = truth(fake_root, "multi7", at.selectbox(key="thr_model").value)
    assert _metric(at, "Sensitivity") == pytest.approx(skm.recall_score(y == 2, P[:, 2] >= 0.2), abs=5e-4)
    assert "@2:0.2" in at.query_params["thr"]


# ---------------------------------------------------------------- calibration


def test_calibration_table_matches_sklearn_and_bins_slider(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "calibration")
    at.slider(key="cal_bins").set_value(5).run()
    no_exceptions(at)
    table = at.dataframe[0].value.set_index("model")
    for model in table.index:
        y, P, _ = truth(fake_root, "binary", model)
        assert table.loc[model, "Brier score"] == pytest.approx(skm.brier_score_loss(y, P[:, 1]))
        edges = np.linspace(0, 1, 6)
        idx = np.clip(np.searchsorted(edges[1:-1], P[:, 1], side="right"), 0, 4)
        ece = sum(
            abs(P[idx == b, 1].mean() - y[idx == b].mean()) * (idx == b).sum() for b in range(5) if (idx == b).any()
        ) / len(y)
        assert table.loc[model, "ECE"] == pytest.approx(ece, abs=1e-9)
    rel = next(s for s in plotly_specs(at) if s["_id"].endswith("-cal_reliability"))
    assert all(len(t["x"]) <= 5 for t in rel["data"][1:])


def test_calibration_top_label_for_multiclass(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("multi7", "calibration")
    at.radio(key="cal_target").set_value("top label").run()
    no_exceptions(at)
    table = at.dataframe[0].value.set_index("model")
    y, P, _ = truth(fake_root, "multi7", "ResNet50")
    brier = np.mean(((P - np.eye(7)[y]) ** 2).sum(axis=1))
    assert table.loc["ResNet50", "Brier score"] == pytest.approx(brier)


# ---------------------------------------------------------------- training


def test_training_curves_follow_the_metric_picker(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "training")
    assert at.multiselect(key="train_metrics").value == ["loss", "accuracy"]
    assert len(at.get("plotly_chart")) == 2
    at.multiselect(key="train_metrics").set_value(["accuracy"]).run()
    specs = plotly_specs(at)
    assert len(specs) == 1 and specs[0]["layout"]["title"]["text"] == "accuracy"
    import pandas as pd

    hist = pd.read_csv(fake_root / "binary" / "models" / "ResNet50" / "history.csv")
    trace = next(t for t in specs[0]["data"] if t["name"] == "ResNet50 (val)")
    np.testing.assert_allclose(plotly_array(trace["y"]), hist["val_accuracy"])


# ---------------------------------------------------------------- evaluation sets


def test_eval_sets_side_by_side_equal_sklearn(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "eval_sets")
    at.selectbox(key="es_metric").set_value("balanced_accuracy").run()
    no_exceptions(at)
    wide = next(d.value for d in at.dataframe if "Δ uncropped − test" in d.value.columns)
    for model in wide.index:
        for es in ("test", "uncropped"):
            y, P, _ = truth(fake_root, "binary", model, es)
            expected = skm.balanced_accuracy_score(y, (P[:, 1] >= 0.5).astype(int))
            assert wide.loc[model, es] == pytest.approx(expected)
    assert (wide["Δ uncropped − test"] < 0).all()  # the fake uncropped set is harder
    at.selectbox(key="es_model").set_value("MobileNetV2").run()
    roc = next(s for s in plotly_specs(at) if s["_id"].endswith("-es_roc"))
    y, P, _ = truth(fake_root, "binary", "MobileNetV2", "uncropped")
    assert any(t.get("name") == f"uncropped (AUC {skm.roc_auc_score(y, P[:, 1]):.3f})" for t in roc["data"])
