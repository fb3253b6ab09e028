"""The meeting report (pipeline/report.py): every section, the fingerprint, self-contained HTML that renders in
headless chromium with the network blocked, the PDF, the CLI, notes in the gallery, and the paired-test helpers.

Browser and PDF tests use Debian's /usr/bin/chromium (never a downloaded browser); they are skipped when it is
missing unless REQUIRE_BROWSER=1, then they fail. Screenshots go to tests/screenshots/ (git-ignored)."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from sklearn import metrics as skm

from pipeline import artifacts as art
from pipeline import comparison as cmp
from pipeline import metrics as M
from pipeline import report as rp
from pipeline.fake import make_fake_experiment

CHROMIUM = Path("/usr/bin/chromium")
REQUIRED = os.environ.get("REQUIRE_BROWSER") == "1"
SHOTS = Path(__file__).resolve().parent / "screenshots"
N_BOOT = 200


def _needs_chromium() -> None:
    """Skip (or fail under REQUIRE_BROWSER=1) when Debian's chromium is missing."""
    if not CHROMIUM.exists():
        msg = f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)"
        if REQUIRED:
            pytest.fail(msg)
        pytest.skip(msg)


class _Refs(HTMLParser):
    """Collects the URL attributes of tags (script bodies are CDATA, so URLs inside JavaScript are not tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.tags: dict[str, int] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action") and value is not None:
                self.refs.append((tag, name, value))


def _refs(text: str) -> _Refs:
    parser = _Refs()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def exps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Binary (3 models), binary with another seed, 7-class (2 models), one model."""
    root = tmp_path_factory.mktemp("report-artifacts")
    return {
        "binary": make_fake_experiment(root, "binary", n_samples=300, n_models=3, seed=1),
        "binary_b": make_fake_experiment(root, "binary_b", n_samples=300, n_models=3, seed=11),
        "multi7": make_fake_experiment(root, "multi7", n_samples=420, n_models=2, n_classes=7, seed=2),
        "single": make_fake_experiment(root, "single", n_samples=200, n_models=1, seed=3),
    }


@pytest.fixture(scope="module")
def reports(exps, tmp_path_factory) -> dict[str, Path]:
    """One HTML report per experiment (binary with non-default thresholds)."""
    out = tmp_path_factory.mktemp("reports")
    thresholds = {"binary": {"ResNet50": 0.3, "EfficientNetB0": 0.7, cmp.ENSEMBLE: 0.4}}
    return {
        name: rp.build_report(d, n_boot=N_BOOT, thresholds=thresholds.get(name), out_html=out / f"{name}.html")
        for name, d in exps.items()
    }


# ---------------------------------------------------------------- content


@pytest.mark.parametrize("name", ["binary", "multi7", "single"])
def test_every_section_and_the_fingerprint_are_there(reports, exps, name):
    text = reports[name].read_text(encoding="utf-8")
    for sid in rp.REPORT_SECTIONS:
        assert f'<section id="{sid}">' in text, sid
    models = art.list_models(exps[name])
    fp = rp.artifact_fingerprint(exps[name], models)
    header = text[text.index("<header>") : text.index("</header>")]
    assert fp["combined"] in header and fp["predictions"] in header and fp["dataset"] in header
    assert re.search(r"created <time datetime=\"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\">", header)
    assert f'<meta name="medcompare-fingerprint" content="{fp["combined"]}">' in text
    for model in models:
        assert f"<b>{model}</b>" in text or f">{model}<" in text  # leaderboard row / config column


def test_html_is_self_contained(reports):
    for name, path in reports.items():
        text = path.read_text(encoding="utf-8")
        parsed = _refs(text)
        remote = [r for r in parsed.refs if re.match(r"\s*(https?:)?//", r[2], re.I)]
        assert not remote, (name, remote[:5])
        # No <script src> or <link href> at all: plotly.js is inline, CSS is inline.
        assert not [r for r in parsed.refs if r[0] in ("script", "link")], name
        assert 'src="http' not in re.sub(r"<script[^>]*>.*?</script>", "", text, flags=re.S)
        assert all(v.startswith("data:image/png;base64,") for t, a, v in parsed.refs if t == "img"), name
        # plotly.js itself is inlined exactly once.
        assert text.count("Plotly.newPlot") >= 6 and len(re.findall(r"plotly\.js v\d", text)) == 1, name


def test_figures_sections_and_counts(reports, exps):
    text = reports["binary"].read_text(encoding="utf-8")
    n_figs = text.count('class="plotly-graph-div"')
    # ROC + PR, 4 confusion matrices (3 models + ensemble), reliability + histogram, DeLong matrix,
    # disagreement + unique-correct, class counts, the subgroups' forest plot (first metadata column).
    assert n_figs == 2 + 4 + 2 + 1 + 2 + 1 + 1
    assert text.count('class="card"') == 24  # gallery
    assert _refs(text).tags.get("img") == 24  # one inlined thumbnail per card
    multi = reports["multi7"].read_text(encoding="utf-8")
    assert "One-vs-rest ROC AUC per class" in multi and "macro ROC AUC difference" in multi
    single = reports["single"].read_text(encoding="utf-8")
    assert "A paired comparison needs at least two models" in single and cmp.ENSEMBLE not in single


def test_thresholds_in_force_are_used(reports, exps):
    text = reports["binary"].read_text(encoding="utf-8")
    assert "ResNet50 (threshold 0.300)" in text and "EfficientNetB0 (threshold 0.700)" in text
    assert "MobileNetV2 (threshold 0.500)" in text and f"{cmp.ENSEMBLE} (threshold 0.400)" in text
    # The McNemar counts in the report match a direct count at those thresholds.
    exp = art.load_experiment(exps["binary"])
    al = cmp.load_aligned(exp, ["EfficientNetB0", "ResNet50"], "test")
    ca = (al.probs["EfficientNetB0"][:, 1] >= 0.7) == (al.y == 1)
    cb = (al.probs["ResNet50"][:, 1] >= 0.3) == (al.y == 1)
    rows = M.pairwise_comparisons(
        al.y,
        al.probs,
        al.groups,
        thresholds={"EfficientNetB0": 0.7, "ResNet50": 0.3},
        pos_index=1,
        metrics=(),
        n_boot=1,
    )
    assert (rows[0]["mcnemar_b"], rows[0]["mcnemar_c"]) == (int((ca & ~cb).sum()), int((~ca & cb).sum()))


def test_leaderboard_values_equal_sklearn(reports, exps):
    text = reports["binary"].read_text(encoding="utf-8")
    exp = art.load_experiment(exps["binary"])
    al = cmp.load_aligned(exp, exp.models, "test")
    for model in exp.models:
        auc = skm.roc_auc_score(al.y, al.probs[model][:, 1])
        assert f"{auc:.3f} [" in text, model
    mean = np.mean([al.probs[m][:, 1] for m in exp.models], axis=0)
    assert f"{skm.roc_auc_score(al.y, mean):.3f} [" in text


def test_two_experiments_have_different_fingerprints(exps, reports):
    a = rp.artifact_fingerprint(exps["binary"], ["EfficientNetB0", "MobileNetV2", "ResNet50"])
    b = rp.artifact_fingerprint(exps["binary_b"], ["EfficientNetB0", "MobileNetV2", "ResNet50"])
    assert a["dataset"] != b["dataset"] and a["predictions"] != b["predictions"] and a["combined"] != b["combined"]
    assert a == rp.artifact_fingerprint(exps["binary"], ["ResNet50", "MobileNetV2", "EfficientNetB0"])  # order-free
    assert a["combined"] != rp.artifact_fingerprint(exps["binary"], ["ResNet50"])["combined"]
    ta, tb = (reports[n].read_text(encoding="utf-8") for n in ("binary", "binary_b"))
    assert a["combined"] in ta and b["combined"] in tb and b["combined"] not in ta


def test_gallery_shows_mentor_notes(exps, tmp_path):
    from pipeline import notes

    exp = art.load_experiment(exps["single"])
    al = cmp.load_aligned(exp, exp.models, "test")
    pred = M.predict_labels(al.probs[exp.models[0]], thresholds=0.5, pos_index=1)
    wrong = al.sample_ids[pred != al.y]
    notes.add_note(exps["single"], str(wrong[0]), notes.LABEL_WRONG, "looks like a stain artefact", author="Dr. K")
    notes.add_note(exps["single"], str(wrong[0]), notes.COMMENT, "<script>alert(1)</script>", author="x")
    out = rp.build_report(exps["single"], n_boot=N_BOOT, n_gallery=len(wrong), out_html=tmp_path / "r.html")
    text = out.read_text()
    card = text[text.index(f">{wrong[0]}<") - 600 :]
    card = card[: card.index('<div class="card">', 700) if '<div class="card">' in card[700:] else None]
    assert "looks like a stain artefact" in card and "Dr. K" in card and notes.LABEL_WRONG in card
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "2 mentor notes on these samples" in text


def test_errors_name_the_argument(exps, tmp_path):
    with pytest.raises(ValueError, match=r"argument `models`\. Expected names among .*Received: \['nope'\]"):
        rp.build_report(exps["binary"], models=["nope"], out_html=tmp_path / "x.html")
    with pytest.raises(ValueError, match=r"argument `eval_set`\. Expected one of \['test'\]\. Received: 'val'"):
        rp.build_report(exps["binary"], eval_set="val", out_html=tmp_path / "x.html")
    with pytest.raises(ValueError, match=r"argument `thresholds`\. Expected a threshold in \[0, 1\]"):
        rp.build_report(exps["binary"], thresholds={"ResNet50": 1.5}, out_html=tmp_path / "x.html")
    with pytest.raises(
        FileNotFoundError,
        match=r"argument `chromium`\. Expected an executable headless chromium.*"
        r"apt-get install chromium.*Received: /nonexistent/chromium",
    ):
        rp.html_to_pdf(tmp_path / "x.html", tmp_path / "x.pdf", chromium="/nonexistent/chromium")
    assert not (tmp_path / "x.html").exists()


def test_cli_writes_the_report(exps, tmp_path, capsys):
    from pipeline.__main__ import main

    out = tmp_path / "cli.html"
    code = main(
        [
            "report",
            str(exps["binary"]),
            "--models",
            "ResNet50,MobileNetV2",
            "--n-boot",
            "200",
            "--threshold",
            "ResNet50=0.25",
            "--out",
            str(out),
        ]
    )
    assert code == 0 and out.is_file()
    text = out.read_text(encoding="utf-8")
    assert "ResNet50 (threshold 0.250)" in text and "EfficientNetB0" not in text.split("</header>")[0]
    assert "report written in" in capsys.readouterr().out
    assert main(["report", str(exps["binary"]), "--threshold", "ResNet50"]) == 2
    assert "Expected MODEL=VALUE" in capsys.readouterr().err


# ---------------------------------------------------------------- paired-test helpers


def test_orient_pair_flips_every_difference():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.4).astype(int)
    P = {
        m: np.c_[1 - s, s]
        for m, s in (
            ("a", np.clip(0.3 * y + rng.random(200) * 0.7, 0, 1)),
            ("b", np.clip(0.1 * y + rng.random(200) * 0.9, 0, 1)),
        )
    }
    rows = M.pairwise_comparisons(y, P, n_boot=N_BOOT, metrics=("roc_auc", "f1"))
    ab, ba = rp.orient_pair(rows, "a", "b"), rp.orient_pair(rows, "b", "a")
    assert ba["model_a"] == "b" and ba["auc_a"] == ab["auc_b"] and ba["auc_diff"] == -ab["auc_diff"]
    assert (ba["auc_ci_low"], ba["auc_ci_high"]) == (-ab["auc_ci_high"], -ab["auc_ci_low"])
    assert (ba["f1_ci_low"], ba["f1_ci_high"]) == (-ab["f1_ci_high"], -ab["f1_ci_low"])
    assert (ba["mcnemar_b"], ba["mcnemar_c"]) == (ab["mcnemar_c"], ab["mcnemar_b"])
    assert ba["delong_p"] == ab["delong_p"] and ba["f1_p"] == ab["f1_p"]
    ref = M.delong_test(y, P["b"][:, 1], P["a"][:, 1])
    assert ba["auc_diff"] == pytest.approx(ref["diff"]) and ba["delong_p"] == pytest.approx(ref["p_value"])
    with pytest.raises(ValueError, match=r"argument `a, b`"):
        rp.orient_pair(rows, "a", "c")


def test_verdict_reads_like_the_example():
    row = {
        "model_a": "ResNet101",
        "model_b": "VGG19",
        "auc_a": 0.9,
        "auc_b": 0.869,
        "auc_diff": 0.031,
        "auc_ci_low": -0.004,
        "auc_ci_high": 0.066,
        "delong_z": 1.7,
        "delong_p": 0.08,
        "delong_p_holm": 0.16,
        "mcnemar_b": 12,
        "mcnemar_c": 5,
        "mcnemar_p": 0.14,
        "mcnemar_p_holm": 0.28,
        "mcnemar_method": "exact",
    }
    lines = rp.verdicts(row, n_pairs=3)
    assert lines[0] == (
        "ResNet101 vs VGG19: AUC difference +0.031 (95% CI -0.004 to +0.066), DeLong p = 0.080 "
        "(Holm-adjusted 0.160) — not significant at 0.05 after Holm correction over 3 pairs."
    )
    assert "only ResNet101 right on 12 samples, only VGG19 right on 5" in lines[1]
    one = rp.verdicts({**row, "delong_p": 0.0004, "delong_p_holm": 0.0004}, n_pairs=1)[0]
    assert one.endswith("DeLong p < 0.001 — significant at 0.05 (ResNet101 is better).")


def test_pair_matrix_is_antisymmetric_with_symmetric_p():
    rng = np.random.default_rng(1)
    y = (rng.random(150) < 0.5).astype(int)
    P = {
        m: np.c_[1 - s, s]
        for m, s in ((f"m{i}", np.clip(k * y + rng.random(150), 0, 2) / 2) for i, k in enumerate((0.2, 0.5, 0.9)))
    }
    rows = M.pairwise_comparisons(y, P, n_boot=N_BOOT)
    diff, p = rp.pair_matrix(rows, list(P), "delong")
    np.testing.assert_allclose(diff, -diff.T)
    np.testing.assert_allclose(p, p.T)
    assert np.isnan(np.diag(p)).all()
    raw = [M.delong_test(y, P[a][:, 1], P[b][:, 1])["p_value"] for a, b in (("m0", "m1"), ("m0", "m2"), ("m1", "m2"))]
    m = 3
    order = np.argsort(raw)
    holm = np.maximum.accumulate(np.array(raw)[order] * np.arange(m, 0, -1)).clip(max=1)
    expect = np.empty(m)
    expect[order] = holm
    assert p[0, 1] == pytest.approx(expect[0]) and p[1, 2] == pytest.approx(expect[2])
    with pytest.raises(ValueError, match=r"argument `test`"):
        rp.pair_matrix(rows, list(P), "t-test")


def test_align_models_keeps_common_samples_in_order():
    ids_a, ids_b = np.array(["s1", "s2", "s3", "s4"], dtype=object), np.array(["s4", "s2", "s1"], dtype=object)
    Pa = np.arange(8, dtype=float).reshape(4, 2)
    Pb = np.arange(6, dtype=float).reshape(3, 2) + 100
    al = cmp.align_models(
        {
            "a": (ids_a, np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1]), Pa),
            "b": (ids_b, np.array([1, 1, 0]), np.array([1, 0, 0]), Pb),
        }
    )
    assert list(al.sample_ids) == ["s1", "s2", "s4"] and list(al.y) == [0, 1, 1]
    np.testing.assert_array_equal(al.probs["a"], Pa[[0, 1, 3]])
    np.testing.assert_array_equal(al.probs["b"], Pb[[2, 1, 0]])


# ---------------------------------------------------------------- browser and PDF


@pytest.mark.browser
def test_report_renders_offline_in_headless_chromium(reports):
    _needs_chromium()
    try:
        from playwright import sync_api
    except ImportError:  # pragma: no cover - depends on the environment
        if REQUIRED:
            raise
        pytest.skip("Playwright is not installed (pip install -r requirements-dev.txt)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 1000})
            blocked: list[str] = []

            def route(r):
                if r.request.url.startswith("file:"):
                    return r.continue_()
                blocked.append(r.request.url)
                return r.abort()

            context.route("**/*", route)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            for name in ("binary", "multi7"):
                text = reports[name].read_text(encoding="utf-8")
                page.goto(reports[name].as_uri())
                page.wait_for_selector(".js-plotly-plot", timeout=60_000)
                n_divs = text.count('class="plotly-graph-div"')
                assert page.locator(".js-plotly-plot").count() == n_divs
                assert page.locator(".js-plotly-plot .main-svg").count() >= n_divs  # drawn, not just mounted
                # Every figure was drawn no wider than its cell (nothing clipped when printed).
                overflow = page.evaluate("""() => Array.from(document.querySelectorAll('.cell')).filter(c => {
                    const svg = c.querySelector('svg.main-svg');
                    return svg && svg.getBoundingClientRect().width > c.getBoundingClientRect().width + 1; }).length""")
                assert overflow == 0, name
                assert page.locator("#fingerprint code").first.inner_text() in text
                page.screenshot(path=str(SHOTS / f"report_{name}.png"), full_page=True)
                page.locator("#leaderboard").screenshot(path=str(SHOTS / f"report_{name}_leaderboard.png"))
            assert not errors, errors
            assert not blocked, blocked
        finally:
            browser.close()


@pytest.mark.browser
def test_pdf_is_printed(exps, tmp_path):
    _needs_chromium()
    html = tmp_path / "r.html"
    pdf = tmp_path / "r.pdf"
    out = rp.build_report(exps["multi7"], n_boot=N_BOOT, out_html=html, out_pdf=pdf)
    assert out == html
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and len(data) > 50_000
    assert len(re.findall(rb"/Type\s*/Page\b", data)) >= 3  # a multi-page document, not an error page


def test_pair_tables_mcnemar_row_is_the_accuracy_difference():
    rng = np.random.default_rng(3)
    y = (rng.random(300) < 0.4).astype(int)
    P = {
        m: np.c_[1 - s, s]
        for m, s in (
            ("a", np.clip(0.35 * y + rng.random(300) * 0.65, 0, 1)),
            ("b", np.clip(0.2 * y + rng.random(300) * 0.8, 0, 1)),
        )
    }
    rows = M.pairwise_comparisons(y, P, thresholds={"a": 0.4, "b": 0.5}, n_boot=N_BOOT, metrics=("accuracy",))
    tests, per_class = rp.pair_tables(rp.orient_pair(rows, "a", "b"), ["accuracy"], ["neg", "pos"], len(y))
    assert per_class is None
    acc_a = skm.accuracy_score(y, P["a"][:, 1] >= 0.4)
    acc_b = skm.accuracy_score(y, P["b"][:, 1] >= 0.5)
    mc = tests.loc[next(i for i in tests.index if i.startswith("McNemar"))]
    boot = tests.loc["Paired bootstrap: Accuracy"]
    assert mc["difference (A - B)"] == pytest.approx(acc_a - acc_b) == pytest.approx(boot["difference (A - B)"])
    assert mc["CI low"] < mc["difference (A - B)"] < mc["CI high"]
    assert abs((mc["CI high"] - mc["CI low"]) - (boot["CI high"] - boot["CI low"])) < 0.02  # Wald ~ bootstrap
    assert tests.notna().all().all()


def test_clustering_note_warns_only_for_clustered_images(reports):
    assert rp.clustering_note(300, 300) is None and rp.clustering_note(300, 250) is None
    assert "96 images come from 12 patients/lesions" in rp.clustering_note(96, 12)
    text = reports["binary"].read_text(encoding="utf-8")  # fake data: about 3 images per patient
    assert text.count('class="caution"') == 2  # under the verdicts and in the paired tests
