"""Data audit: planted duplicates found (recall and precision), splits that respect them, official splits
reported but kept, label conflicts, artifacts, the [audit] config and the dashboard page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.bench_audit import cluster_recall, planted_set, write_planted
from pipeline import artifacts as art
from pipeline.audit import (
    AuditSettings,
    audit_samples,
    candidate_pairs,
    conflicting_sample_ids,
    leaky_sample_ids,
    read_audit,
    write_audit,
)
from pipeline.config import parse_config
from pipeline.datasets import ingest, split_samples


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """30 look-alike families x 5 images + 100 planted copies (6 transforms), as class folders on disk."""
    root = tmp_path_factory.mktemp("planted")
    data = planted_set(n_families=30, per_family=5, n_dups=100, seed=3, n_conflicts=5)
    table = write_planted(data, root)
    result = audit_samples(table, AuditSettings(), jobs=1)
    return data, table, result, root


def test_planted_duplicates_found_with_recall_and_precision_above_95_percent(planted):
    data, _, result, _ = planted
    truth = data.true_pairs()
    origin = dict(zip(data.ids, data.origin.tolist()))
    found = result.pairs
    precision = np.mean([origin[a] == origin[b] for a, b in zip(found["a"], found["b"])])
    recall = cluster_recall(result.quality, truth)
    assert recall >= 0.95, recall
    assert precision >= 0.95, precision
    # every kind of planted copy is found (each kind cycles through the 100 copies)
    clustered = set(result.quality.loc[result.quality["cluster"] >= 0, "sample_id"])
    kinds = pd.Series(data.kind, index=data.ids)
    for kind in set(kinds) - {"base"}:
        ids = kinds.index[kinds == kind]
        assert np.mean([i in clustered for i in ids]) >= 0.9, kind


def test_look_alike_distractors_are_not_paired(planted):
    data, _, result, _ = planted
    family = dict(zip(data.ids, data.family.tolist()))
    origin = dict(zip(data.ids, data.origin.tolist()))
    same_family_other_image = [
        (a, b)
        for a, b in zip(result.pairs["a"], result.pairs["b"])
        if family[a] == family[b] and origin[a] != origin[b]
    ]
    assert not same_family_other_image


def test_conflicting_labels_found(planted):
    data, table, result, _ = planted
    conflicts = result.conflicts(table)
    # the first 5 planted copies carry the other label than their base
    n_base = int((np.array(data.kind) == "base").sum())
    flipped = set(data.ids[n_base : n_base + 5])
    assert flipped <= set(conflicts["sample_id"])
    assert result.summary["conflicting_clusters"] >= 5
    for _, part in conflicts.groupby("cluster"):
        assert part["label"].nunique() > 1


def test_new_split_keeps_every_duplicate_cluster_in_one_split(planted):
    _, table, result, root = planted
    samples = ingest("class_folders", root).samples  # no patient id: each image is its own group
    assert (samples["group"] == samples["sample_id"]).all()
    # the audit's ids -> the ingested ids (relative paths), through the file paths
    ingested = dict(zip(samples["path"], samples["sample_id"]))
    rename = {sid: ingested[str(Path(p).resolve())] for sid, p in zip(table["sample_id"], table["path"])}
    pairs = result.pairs.assign(a=result.pairs["a"].map(rename), b=result.pairs["b"].map(rename))
    plain = split_samples(samples, seed=0)
    respecting = split_samples(samples, seed=0, duplicates=pairs)
    assert set(respecting.columns) == set(samples.columns)
    plain_split = dict(zip(plain["sample_id"], plain["split"]))
    split = dict(zip(respecting["sample_id"], respecting["split"]))
    assert [(a, b) for a, b in zip(pairs["a"], pairs["b"]) if split[a] != split[b]] == []
    assert any(plain_split[a] != plain_split[b] for a, b in zip(pairs["a"], pairs["b"]))  # it mattered
    assert set(split.values()) == {"train", "val", "test"}
    assert (respecting["group"] == samples["group"]).all()  # the group column itself is unchanged


def _npz_with_leak(path: Path) -> None:
    rng = np.random.default_rng(0)
    sizes = (("train", 12), ("val", 4), ("test", 6))
    images = {s: rng.integers(0, 255, (n, 28, 28)).astype(np.uint8) for s, n in sizes}
    images["test"][0] = np.clip(images["train"][3].astype(int) + 20, 0, 255)  # brightness-shifted copy
    images["test"][1] = images["val"][2]  # exact copy
    labels = {s: (np.arange(len(v)) % 2).reshape(-1, 1) for s, v in images.items()}
    labels["test"][0] = 1 - labels["train"][3]  # and its label conflicts
    labels["test"][1] = labels["val"][2]  # this one agrees
    np.savez(path, **{f"{s}_images": v for s, v in images.items()}, **{f"{s}_labels": v for s, v in labels.items()})


def test_official_split_is_kept_and_its_leakage_reported(tmp_path):
    npz = tmp_path / "tiny.npz"
    _npz_with_leak(npz)
    samples = ingest("npz", npz).samples
    result = audit_samples(samples, AuditSettings(), jobs=1)
    kept = split_samples(samples, seed=0, duplicates=result.pairs)
    assert kept["split"].tolist() == samples["split"].tolist()
    table = kept.assign(eval_set=kept["split"].where(kept["split"].isin(["val", "test"]), None))
    assert result.leaky_ids(table, "test") == {"test_images[0]", "test_images[1]"}
    leaks = result.leakage(table)
    assert len(leaks) == 2 and set(leaks["exact"]) == {True, False}
    assert set(result.conflicts(table)["sample_id"]) == {"train_images[3]", "test_images[0]"}

    exp = tmp_path / "exp"
    art.write_samples(exp, table.assign(group=table["sample_id"]))
    result.summary = {**result.summary}
    write_audit(exp, result)
    assert leaky_sample_ids(exp, "test") == {"test_images[0]", "test_images[1]"}
    assert leaky_sample_ids(exp, "val") == set()
    assert conflicting_sample_ids(exp) == {"train_images[3]", "test_images[0]"}
    back = read_audit(exp)
    assert back is not None and len(back.pairs) == len(result.pairs)
    assert leaky_sample_ids(tmp_path / "no-audit") == set()


def test_candidate_search_finds_every_pair_within_radius_without_comparing_all_pairs():
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 256, (3000, 8), dtype=np.uint8)
    near = codes[:300].copy()
    for row in near:  # flip up to 7 random bits: the radius-1, 4-band guarantee
        for bit in rng.choice(64, int(rng.integers(1, 8)), replace=False):
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    codes = np.concatenate([codes, near])
    a, b, stats = candidate_pairs(codes, radius=1, max_hamming=7)
    found = set(zip(a.tolist(), b.tolist()))
    assert all((i, 3000 + i) in found for i in range(300))
    n = len(codes)
    assert stats["bucket_pairs"] < n * (n - 1) / 2 / 20  # far fewer than all pairs


def test_quality_flags_dark_and_mixed_colour(tmp_path):
    import cv2

    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        img = rng.integers(60, 200, (48, 48, 3)).astype(np.uint8)
        if i == 0:
            img = (img // 12).astype(np.uint8)  # too dark
        if i == 1:
            img = np.repeat(img[..., :1], 3, axis=2)  # the only grayscale image in a colour set
        path = tmp_path / f"q{i}.png"
        cv2.imwrite(str(path), img)
        paths.append(str(path))
    table = pd.DataFrame({"sample_id": [f"q{i}" for i in range(12)], "path": paths, "label": 0})
    quality = audit_samples(table, AuditSettings(), jobs=1).quality.set_index("sample_id")
    assert quality.loc["q0", "flag_dark"] and not quality.loc["q5", "flag_dark"]
    assert quality["flag_mixed_colour"].tolist() == [False, True] + [False] * 10


def test_audit_config_section_parses_and_names_bad_values():
    base = {"experiment": {"name": "x"}, "dataset": {"layout": "npz", "root": "a.npz"}}
    cfg = parse_config(base)
    assert cfg.audit.enabled and cfg.audit.threshold == 0.95 and cfg.audit.drop_quality == ()
    cfg = parse_config({**base, "audit": {"threshold": 0.9, "drop_quality": ["dark"], "enabled": False}})
    assert (cfg.audit.threshold, cfg.audit.drop_quality, cfg.audit.enabled) == (0.9, ("dark",), False)
    with pytest.raises(ValueError, match="audit.threshold"):
        parse_config({**base, "audit": {"threshold": 1.5}})
    with pytest.raises(ValueError, match="audit.drop_quality"):
        parse_config({**base, "audit": {"drop_quality": ["shiny"]}})
    with pytest.raises(ValueError, match="audit"):
        parse_config({**base, "audit": {"treshold": 0.9}})


# ---------------------------------------------------------------- CLI and dashboard page


def _experiment_with_audit(root: Path) -> Path:
    """A fake experiment (test + a few train samples) with a hand-made audit: 2 leaky test images, 1 conflict."""
    from pipeline.audit import AuditResult, summarize
    from pipeline.fake import make_fake_experiment

    exp = make_fake_experiment(root, "audited", n_samples=40, n_models=2, seed=11)
    samples = pd.read_parquet(exp / "samples.parquet")
    train = samples.head(3).assign(sample_id=lambda d: "train-" + d["sample_id"], split="train", eval_set=None)
    samples = pd.concat([samples, train], ignore_index=True)
    samples.to_parquet(exp / "samples.parquet", index=False)
    ids = samples["sample_id"].tolist()
    test_ids = [i for i in ids if not i.startswith("train-")]
    pairs = pd.DataFrame(
        {
            "a": ["train-" + test_ids[0], "train-" + test_ids[1], test_ids[5]],
            "b": [test_ids[0], test_ids[1], test_ids[6]],
            "similarity": [1.0, 0.97, 0.96],
            "exact": [True, False, False],
        }
    )
    cluster = {pairs.a[0]: 0, pairs.b[0]: 0, pairs.a[1]: 1, pairs.b[1]: 1, pairs.a[2]: 2, pairs.b[2]: 2}
    quality = pd.DataFrame({"sample_id": ids, "decoded": True, "cluster": [cluster.get(i, -1) for i in ids]})
    quality["cluster_size"] = np.where(quality["cluster"] >= 0, 2, 1)
    for flag in ("dark", "light", "blurry", "low_information", "odd_aspect_ratio", "odd_size", "mixed_colour"):
        quality[f"flag_{flag}"] = False
    quality.loc[3, "flag_blurry"] = True
    labels = dict(zip(samples["sample_id"], samples["label"]))
    samples.loc[samples["sample_id"] == test_ids[6], "label"] = 1 - labels[test_ids[5]]  # a conflict
    samples.to_parquet(exp / "samples.parquet", index=False)
    result = AuditResult(pairs, quality, {})
    result.summary = summarize(samples, result, AuditSettings(), {})
    write_audit(exp, result)
    return exp


def test_cli_prints_the_stored_audit(tmp_path, capsys):
    from pipeline.__main__ import main

    exp = _experiment_with_audit(tmp_path)
    assert main(["audit", str(exp)]) == 0
    out = capsys.readouterr().out
    assert "test: 2 of 40 images have a duplicate in train/val" in out
    assert "clusters with conflicting labels: 1" in out
    assert main(["audit", str(tmp_path / "missing")]) == 2


def test_audit_page_shows_counts_pairs_conflicts_and_flags(tmp_path, artifacts_env):
    from tests.conftest import no_exceptions, open_app

    _experiment_with_audit(tmp_path)
    artifacts_env(tmp_path)
    at = open_app("audited")
    at.switch_page("app_pages/audit.py").run()
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Duplicate pairs"] == "3"
    assert metrics["test: duplicate in training"] == "2 of 40"
    assert metrics["Clusters with conflicting labels"] == "1"
    # two cross-split pairs (their test sides have thumbnails; the train sides say so) + one blurry image
    images = at.get("image")
    captions = [img.proto.imgs[0].caption for img in images]
    assert len(images) == 3, captions
    assert any(" · test · " in c for c in captions)
    at.radio(key="audit_pairs_kind").set_value("conflicting labels").run()
    no_exceptions(at)
    assert at.selectbox(key="audit_flag").value == "blurry"


def test_prepare_samples_writes_the_audit_and_reuses_it_on_resume(tmp_path):
    from pipeline.experiment import prepare_samples

    npz = tmp_path / "tiny.npz"
    _npz_with_leak(npz)
    cfg = parse_config(
        {
            "experiment": {"name": "tiny", "output": str(tmp_path / "art")},
            "dataset": {"layout": "npz", "root": str(npz)},
        }
    )
    logs: list[str] = []
    table, _, info = prepare_samples(cfg, log=logs.append)
    assert info["audit"]["leakage"]["test"] == {"n": 6, "with_duplicate_in_train_val": 2}
    assert (cfg.experiment_dir / "audit" / "summary.json").exists()
    assert not any("reusing" in line for line in logs)
    logs.clear()
    table2, _, info2 = prepare_samples(cfg, log=logs.append)
    assert any("reusing its audit" in line for line in logs)
    assert info2["audit"] == info["audit"] and table2["split"].tolist() == table["split"].tolist()
    art.write_samples(cfg.experiment_dir, table2)
    assert leaky_sample_ids(cfg.experiment_dir) == {"test_images[0]", "test_images[1]"}


def test_leak_free_switch_scores_the_kept_subset_on_every_page(tmp_path, artifacts_env):
    """The sidebar's leak-free switch leaves out the 2 leaky test images everywhere (scikit-learn as the oracle)."""
    from sklearn.metrics import roc_auc_score

    from pipeline import artifacts as art
    from tests.conftest import no_exceptions, open_app

    exp_dir = _experiment_with_audit(tmp_path)
    artifacts_env(tmp_path)
    exp = art.load_experiment(exp_dir)
    preds = art.read_predictions(exp, "MobileNetV2").query("eval_set == 'test'").set_index("sample_id")
    labels = exp.samples.set_index("sample_id").loc[preds.index, "label"]
    leaky = {"test-0000000", "test-0000001"}
    kept = ~preds.index.isin(list(leaky))
    full_auc = roc_auc_score(labels == 1, preds["prob_1"])
    free_auc = roc_auc_score(labels[kept] == 1, preds.loc[kept, "prob_1"])
    at = open_app("audited", "overview")
    no_exceptions(at)
    table = at.dataframe[0].value
    assert float(table.loc["MobileNetV2", "ROC AUC leak-free"]) == pytest.approx(free_auc, abs=5e-4)
    assert str(table.loc["MobileNetV2", "ROC AUC"]).startswith(f"{full_auc:.3f}")
    at.toggle(key="exclude_leaky").set_value(True).run()
    no_exceptions(at)
    table = at.dataframe[0].value
    assert str(table.loc["MobileNetV2", "ROC AUC"]).startswith(f"{free_auc:.3f}")
    assert "ROC AUC leak-free" not in table.columns
    at.switch_page("app_pages/confusion.py").run()  # another metric page: 38 of 40 test samples counted
    no_exceptions(at)
    assert any("2 sample(s) are left out" in c.value for c in at.sidebar.caption)


def test_audit_page_opens_a_pair_in_the_sample_card(tmp_path, artifacts_env):
    from tests.conftest import no_exceptions, open_app

    _experiment_with_audit(tmp_path)
    artifacts_env(tmp_path)
    at = open_app("audited")
    at.switch_page("app_pages/audit.py").run()
    no_exceptions(at)
    buttons = [b for b in at.button if b.key and b.key.startswith("audit_open_")]
    assert buttons, "evaluated images in a pair have an 'Open card' button"
    target = buttons[0].key.split("_", 3)[3]
    buttons[0].click().run()
    no_exceptions(at)
    assert [t.value for t in at.title] == ["Misclassifications"]
    assert any(sh.value == f"Sample {target}" for sh in at.subheader)
