"""The Paired comparison page (AppTest) and the Overview's ensemble row, checked against independent references:
DeLong from `metrics.delong_test` on arrays read with pandas, McNemar and Holm from statsmodels, AUCs from
scikit-learn."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from pipeline import metrics as M
from pipeline.comparison import ENSEMBLE
from tests.conftest import APP_PATH, no_exceptions, open_app, plotly_specs, truth

COMPARE = "app_pages/compare.py"


def open_compare(exp: str, n_boot: int = 200, **query: str):
    """Open the app on `exp`, switch to the compare page and use `n_boot` resamples."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_PATH), default_timeout=120)
    at.query_params["exp"] = exp
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(COMPARE).run()
    if at.select_slider(key="compare_n_boot").value != n_boot:
        at.select_slider(key="compare_n_boot").set_value(n_boot).run()
    return at


def pair_table(at):
    """The two-model test table (index: test name; p-values as floats)."""
    return next(d.value for d in at.dataframe if any(str(i).startswith("McNemar") for i in d.value.index))


def chart_ids(at) -> list[str]:
    return [s["_id"].rsplit("-", 1)[-1] for s in plotly_specs(at)]


def _sm_mcnemar(y, pred_a, pred_b):
    ca, cb = pred_a == y, pred_b == y
    table = [[int(np.sum(ca & cb)), int(np.sum(ca & ~cb))], [int(np.sum(~ca & cb)), int(np.sum(~ca & ~cb))]]
    discordant = table[0][1] + table[1][0]
    return sm_mcnemar(table, exact=discordant < 25, correction=True).pvalue, table[0][1], table[1][0]


# ---------------------------------------------------------------- smoke tests


def test_binary_page_draws_every_section(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_compare("binary")
    no_exceptions(at)
    assert at.title[0].value == "Paired comparison"
    verdict = at.markdown[0].value
    assert verdict.startswith("##### EfficientNetB0 vs MobileNetV2: AUC difference") and "DeLong p" in verdict
    assert "Holm" in verdict  # three models: three pairs, Holm-corrected
    assert {"compare_matrix", "compare_disagreement", "compare_unique", "compare_ens_roc", "compare_ens_pr"} <= set(
        chart_ids(at)
    )
    pairs = next(d.value for d in at.dataframe if "DeLong p (Holm)" in d.value.columns)
    assert len(pairs) == 3
    assert at.button(key="compare_build_report").label == "Build meeting report"


def test_multiclass_page_has_delong_per_class(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_compare("multi7")
    no_exceptions(at)
    assert "macro ROC AUC difference" in at.markdown[0].value
    per_class = next(d.value for d in at.dataframe if d.value.index.name == "class")
    assert list(per_class.index) == [f"class_{k}" for k in range(7)]
    y, Pa, _ = truth(fake_root, "multi7", "MobileNetV2")
    _, Pb, _ = truth(fake_root, "multi7", "ResNet50")
    for k in range(7):
        ref = M.delong_test(y == k, Pa[:, k], Pb[:, k])
        assert per_class.loc[f"class_{k}", "p-value"] == pytest.approx(ref["p_value"], rel=1e-9, abs=1e-15)
        assert per_class.loc[f"class_{k}", "AUC A"] == pytest.approx(skm.roc_auc_score(y == k, Pa[:, k]))
    assert "compare_class_grid" in chart_ids(at)
    assert "McNemar" in " ".join(map(str, pair_table(at).index))


def test_one_model_says_a_comparison_needs_two(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("single")
    at.switch_page(COMPARE).run()
    no_exceptions(at)
    assert any("A comparison needs two models" in i.value for i in at.info)
    assert not at.dataframe and not plotly_specs(at)


# ---------------------------------------------------------------- interactions against references


def test_picking_two_models_shows_delong_and_mcnemar_equal_to_references(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_compare("binary")
    at.selectbox(key="compare_a").set_value("ResNet50")
    at.selectbox(key="compare_b").set_value("MobileNetV2").run()
    no_exceptions(at)
    y, Pa, _ = truth(fake_root, "binary", "ResNet50")
    _, Pb, _ = truth(fake_root, "binary", "MobileNetV2")
    ref = M.delong_test(y, Pa[:, 1], Pb[:, 1])
    table = pair_table(at)
    label = next(i for i in table.index if i.startswith("DeLong"))
    assert label == f"DeLong: ROC AUC {ref['auc_a']:.3f} vs {ref['auc_b']:.3f}"
    delong = table.loc[label]
    assert delong["p-value"] == pytest.approx(ref["p_value"], rel=1e-9, abs=1e-15)
    expected = skm.roc_auc_score(y, Pa[:, 1]) - skm.roc_auc_score(y, Pb[:, 1])
    assert delong["difference (A - B)"] == pytest.approx(expected)
    assert delong["CI low"] == pytest.approx(ref["ci_low"]) and delong["CI high"] == pytest.approx(ref["ci_high"])
    p_ref, b, c = _sm_mcnemar(y, (Pa[:, 1] >= 0.5).astype(int), (Pb[:, 1] >= 0.5).astype(int))
    mc = next(i for i in table.index if i.startswith("McNemar"))
    assert f"only A right {b}, only B right {c}" in mc
    assert table.loc[mc, "p-value"] == pytest.approx(p_ref, rel=1e-9)
    assert table.loc[mc, "difference (A - B)"] == pytest.approx((b - c) / len(y))
    assert at.markdown[0].value.startswith("##### ResNet50 vs MobileNetV2: AUC difference +")
    # Swapping A and B negates the difference and keeps the p-value.
    at.selectbox(key="compare_a").set_value("MobileNetV2")
    at.selectbox(key="compare_b").set_value("ResNet50").run()
    swapped = pair_table(at)
    swapped = swapped.loc[next(i for i in swapped.index if i.startswith("DeLong"))]
    assert swapped["difference (A - B)"] == pytest.approx(-delong["difference (A - B)"])
    assert swapped["p-value"] == pytest.approx(delong["p-value"])


def test_mcnemar_uses_the_thresholds_in_force(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_compare("binary", thr="ResNet50:0.3,EfficientNetB0:0.7")
    at.selectbox(key="compare_a").set_value("EfficientNetB0")
    at.selectbox(key="compare_b").set_value("ResNet50").run()
    no_exceptions(at)
    y, Pa, _ = truth(fake_root, "binary", "EfficientNetB0")
    _, Pb, _ = truth(fake_root, "binary", "ResNet50")
    p_ref, b, c = _sm_mcnemar(y, (Pa[:, 1] >= 0.7).astype(int), (Pb[:, 1] >= 0.3).astype(int))
    table = pair_table(at)
    mc = next(i for i in table.index if i.startswith("McNemar"))
    assert f"only A right {b}, only B right {c}" in mc
    assert table.loc[mc, "p-value"] == pytest.approx(p_ref, rel=1e-9)


def test_matrix_holm_adjusted_p_values_equal_statsmodels(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_compare("binary")
    no_exceptions(at)
    pairs = next(d.value for d in at.dataframe if "DeLong p (Holm)" in d.value.columns)
    raw = []
    for a, b in zip(pairs["A"], pairs["B"]):
        y, Pa, _ = truth(fake_root, "binary", a)
        _, Pb, _ = truth(fake_root, "binary", b)
        raw.append(M.delong_test(y, Pa[:, 1], Pb[:, 1])["p_value"])
    np.testing.assert_allclose(pairs["DeLong p"], raw, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(pairs["DeLong p (Holm)"], multipletests(raw, method="holm")[1], rtol=1e-9, atol=1e-15)
    # The heatmap shows the same adjusted p-values (cell i, j = row minus column, symmetric in p).
    spec = next(s for s in plotly_specs(at) if s["_id"].endswith("-compare_matrix"))
    names = spec["layout"]["yaxis"]["ticktext"]
    text = spec["data"][0]["text"]
    i, j = names.index(pairs["A"][0]), names.index(pairs["B"][0])
    assert f"{pairs['DeLong p (Holm)'][0]:.3f}" in text[i][j] or "<0.001" in text[i][j]


def test_ensemble_row_in_overview_equals_sklearn_on_mean_probabilities(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_app("binary", "overview")
    at.select_slider(key="overview_n_boot").set_value(200).run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert ENSEMBLE in table.index and len(table) == 4
    probs = [truth(fake_root, "binary", m)[1] for m in ("EfficientNetB0", "MobileNetV2", "ResNet50")]
    y = truth(fake_root, "binary", "ResNet50")[0]
    mean = np.mean(probs, axis=0)
    auc = float(table.loc[ENSEMBLE, "ROC AUC"].split()[0])
    assert auc == pytest.approx(skm.roc_auc_score(y, mean[:, 1]), abs=5e-4)
    acc = float(table.loc[ENSEMBLE, "Accuracy"].split()[0])
    assert acc == pytest.approx(skm.accuracy_score(y, mean[:, 1] >= 0.5), abs=5e-4)
    # Its size is the sum of its members' (fake configs: 1e6 * (m + 1) ** 1.5 parameters).
    assert table.loc[ENSEMBLE, "Params (M)"] == pytest.approx(sum((m + 1) ** 1.5 for m in range(3)), abs=1e-3)
    at.toggle(key="overview_ensemble").set_value(False).run()
    assert ENSEMBLE not in at.dataframe[0].value.index


def test_ensemble_threshold_moves_its_operating_point_and_overview_row(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_compare("binary")
    at.slider(key="compare_ens_thr").set_value(0.3).run()
    no_exceptions(at)
    roc = next(s for s in plotly_specs(at) if s["_id"].endswith("-compare_ens_roc"))
    marker = next(t for t in roc["data"] if t.get("mode") == "markers" and ENSEMBLE in t["hovertemplate"])
    probs = [truth(fake_root, "binary", m)[1] for m in ("EfficientNetB0", "MobileNetV2", "ResNet50")]
    y = truth(fake_root, "binary", "ResNet50")[0]
    pred = np.mean(probs, axis=0)[:, 1] >= 0.3
    assert marker["y"][0] == pytest.approx(skm.recall_score(y, pred))
    assert "Ensemble (mean):0.3" in at.query_params["thr"]
    at.switch_page("app_pages/overview.py").run()
    table = at.dataframe[0].value
    assert table.loc[ENSEMBLE, "Threshold"] == pytest.approx(0.3)
    acc = float(table.loc[ENSEMBLE, "Accuracy"].split()[0])
    assert acc == pytest.approx(skm.accuracy_score(y, pred), abs=5e-4)


def test_report_button_offers_the_download(fake_root, artifacts_env):
    artifacts_env(fake_root)
    at = open_compare("multi7")
    at.button(key="compare_build_report").click().run()
    no_exceptions(at)
    labels = [el.proto.label for el in at.get("download_button")]
    assert "Download meeting report (HTML)" in labels


# ---------------------------------------------------------------- the report shows the numbers of its page


def _report_leaderboard(text: str) -> tuple[int, dict[str, dict[str, str]]]:
    """(samples in the header, {model: {column: cell text}}) of a meeting report's leaderboard."""
    import re

    n = int(re.search(r"Evaluation set <b>[^<]*</b> · ([\d,]+) samples", text).group(1).replace(",", ""))
    section = text[text.index('<section id="leaderboard">') :]
    section = section[: section.index("</section>")]
    rows = [
        re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, flags=re.S)
        for r in re.findall(r"<tr>(.*?)</tr>", section, flags=re.S)
    ]
    header, body = rows[0], rows[1:]
    return n, {r[0].strip(): dict(zip(header[1:], (c.strip() for c in r[1:]))) for r in body}


def test_downloaded_report_uses_the_pages_exclusions_and_thresholds(tmp_path, monkeypatch):
    """Toggle "exclude samples marked label wrong", build the report from the page, compare its numbers with the
    page's and with scikit-learn on the kept samples at the page's thresholds (the report used to read the
    files on disk and ignore the exclusion)."""
    from pipeline import notes
    from pipeline import report as rp
    from pipeline.fake import make_fake_experiment

    make_fake_experiment(tmp_path, "ex", n_samples=240, n_models=2, n_classes=2, seed=11)
    monkeypatch.setenv("MEDCOMPARE_ARTIFACTS", str(tmp_path))
    reports: list[str] = []
    build = rp.build_report

    def spy(*args, **kwargs):
        out = build(*args, **kwargs)
        reports.append(out.read_text(encoding="utf-8"))
        return out

    monkeypatch.setattr(rp, "build_report", spy)  # the page's download runs data_access -> rp.build_report
    models = ["MobileNetV2", "ResNet50"]
    thr = {models[0]: 0.3, models[1]: 0.5}
    y, P0, _ = truth(tmp_path, "ex", models[0])
    preds = pd.read_parquet(tmp_path / "ex" / "models" / models[0] / "predictions.parquet")
    ids = preds.loc[preds["eval_set"] == "test", "sample_id"].to_numpy(dtype=object)  # truth()'s order
    wrong = [sid for sid, yy, p in zip(ids, y, P0[:, 1] >= thr[models[0]]) if int(p) != yy][:8]
    for sid in wrong:
        notes.add_note(tmp_path / "ex", sid, notes.LABEL_WRONG, author="t")

    at = open_compare("ex", thr=f"{models[0]}:0.3")
    for exclude in (False, True):
        at.session_state["exclude_label_wrong"] = exclude
        at.run()
        at.button(key="compare_build_report").click().run()
        no_exceptions(at)
        n, board = _report_leaderboard(reports[-1])
        keep = ~np.isin(ids, wrong) if exclude else np.ones(len(ids), bool)
        assert n == int(keep.sum()) == len(ids) - (len(wrong) if exclude else 0)
        at.switch_page("app_pages/overview.py").run()
        page = at.dataframe[0].value
        for m in models:
            ym, Pm, _ = truth(tmp_path, "ex", m)
            pred = Pm[keep, 1] >= thr[m]
            for col, ref in (
                ("Accuracy", skm.accuracy_score(ym[keep], pred)),
                ("Sensitivity", skm.recall_score(ym[keep], pred)),
                ("ROC AUC", skm.roc_auc_score(ym[keep], Pm[keep, 1])),
            ):
                assert float(board[m][col].split()[0]) == pytest.approx(ref, abs=5e-4), (exclude, m, col)
                assert board[m][col].split()[0] == page.loc[m, col].split()[0], (exclude, m, col)
            assert float(board[m]["Threshold"]) == pytest.approx(thr[m])
        at.switch_page(COMPARE).run()
    assert "samples excluded" in reports[-1] and "samples excluded" not in reports[0]
