"""Suspected label errors (cleanlab confident learning on out-of-fold probabilities) find injected flips."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.label_issues import OutOfFold, find_label_issues, precision_recall


def _noisy_oof(n: int = 600, k: int = 3, flip: float = 0.08, seed: int = 0) -> tuple[OutOfFold, set[str]]:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), truth] += 3.0  # models that learned the task, not perfectly
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = truth.copy()
    flipped = rng.choice(n, int(flip * n), replace=False)
    given[flipped] = (truth[flipped] + rng.integers(1, k, len(flipped))) % k
    ids = np.array([f"s{i}" for i in range(n)])
    second = np.clip(probs + rng.normal(0, 0.02, probs.shape), 1e-6, None)
    second /= second.sum(1, keepdims=True)
    oof = OutOfFold(ids, given, (probs + second) / 2, {"A": probs, "B": second})
    return oof, set(ids[flipped])


def test_queue_finds_injected_flips():
    oof, flipped = _noisy_oof()
    queue = find_label_issues(oof, class_names=["a", "b", "c"])
    found = queue.loc[queue["is_issue"], "sample_id"]
    precision, recall = precision_recall(found, flipped)
    assert precision >= 0.8 and recall >= 0.8, (precision, recall)
    top = queue.head(len(flipped))  # the ranking puts the flips first
    assert len(set(top["sample_id"]) & flipped) >= 0.8 * len(flipped)
    assert (queue.loc[queue["sample_id"].isin(flipped), "models_disagree"] >= 1).mean() > 0.9
    assert list(queue.columns[:7]) == [
        "sample_id",
        "label",
        "suggested",
        "label_quality",
        "is_issue",
        "models_disagree",
        "n_models",
    ]


def test_precision_recall_by_hand_and_one_class_refused():
    assert precision_recall(["a", "b", "c", "d"], ["a", "b", "x"]) == (0.5, pytest.approx(2 / 3))
    oof, _ = _noisy_oof(n=30)
    one = OutOfFold(oof.sample_ids, np.zeros(30, int), oof.probs, oof.by_backbone)
    with pytest.raises(ValueError, match=r"argument `oof`.*two classes.*Received: \[0\]"):
        find_label_issues(one)


def test_review_page_shows_the_queue_and_marks_label_wrong(tmp_path, artifacts_env):
    from pipeline import artifacts as art
    from pipeline import notes
    from pipeline.fake import make_fake_experiment
    from pipeline.label_issues import write_label_issues
    from tests.conftest import no_exceptions, open_app

    exp_dir = make_fake_experiment(tmp_path, "queued", n_samples=200, n_models=2, seed=3)
    exp = art.load_experiment(exp_dir)
    oof, flipped = _noisy_oof(n=200, k=2, flip=0.1, seed=4)
    ids = exp.samples["sample_id"].to_numpy()[:200]
    renamed = {f"s{i}": ids[i] for i in range(200)}
    queue = find_label_issues(OutOfFold(ids, oof.labels, oof.probs, oof.by_backbone), class_names=exp.class_names)
    queue["injected_flip"] = queue["sample_id"].isin([renamed[s] for s in flipped])
    write_label_issues(exp_dir, queue)
    artifacts_env(tmp_path)
    at = open_app("queued", "review")
    no_exceptions(at)
    table = next(d.value for d in at.dataframe if "models suggest" in d.value.columns)
    assert len(table) == int(queue["is_issue"].sum()) and table["sample"].iloc[0] == queue["sample_id"].iloc[0]
    assert any("precision" in c.value and "recall" in c.value for c in at.caption)
    first = str(table["sample"].iloc[0])
    at.selectbox(key="review_queue_pick").set_value(first).run()
    at.button(key="review_queue_mark").click().run()
    no_exceptions(at)
    assert first in notes.samples_with_tag(exp_dir, notes.LABEL_WRONG)
