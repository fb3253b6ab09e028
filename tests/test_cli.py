"""The CLI (python -m pipeline): commands that need no training."""

from __future__ import annotations

import re

import pytest
from sklearn import metrics as skm

from pipeline import artifacts as art
from pipeline.__main__ import build_parser, main
from pipeline.fake import make_fake_experiment


def test_summary_reads_the_aligned_view_and_matches_sklearn(tmp_path, capsys):
    exp_dir = make_fake_experiment(tmp_path, "e", n_samples=150, n_models=2, seed=5, eval_sets=("test", "uncropped"))
    assert main(["evaluate", str(exp_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    exp = art.load_experiment(exp_dir)
    assert len(lines) == len(exp.models) * 2
    for line in lines:
        model, es, n, auc = re.match(r"\s*(\S+)\s+(\S+)\s+n=(\d+)\s+AUC=([\d.]+)", line).groups()
        preds = art.read_predictions(exp, model)
        part = preds[preds["eval_set"] == es].merge(exp.samples[["sample_id", "label"]], on="sample_id")
        assert int(n) == len(part)
        assert float(auc) == pytest.approx(skm.roc_auc_score(part["label"], part["prob_1"]), abs=6e-4)


def test_every_stage_has_a_command_and_the_docstring_lists_them():
    import pipeline.__main__ as cli

    parser = build_parser()
    commands = set(parser._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert {"demo", "ingest", "run", "train", "predict", "evaluate", "validate", "report"} <= commands
    for name in commands:
        assert re.search(rf"(^|\W){name}\W", cli.__doc__), name
    args = parser.parse_args(["predict", "--config", "c.toml", "--again", "test", "--tta"])
    assert args.again == ["test"] and args.tta is True


def test_evaluate_leaves_out_what_mentors_marked_label_wrong(tmp_path, capsys):
    from pipeline import notes

    exp_dir = make_fake_experiment(tmp_path, "e", n_samples=120, n_models=1, seed=6)
    exp = art.load_experiment(exp_dir)
    marked = exp.samples.loc[exp.samples["eval_set"] == "test", "sample_id"].head(5).tolist()
    for sid in marked:
        notes.add_note(exp_dir, sid, notes.LABEL_WRONG, author="t")
    assert main(["evaluate", str(exp_dir)]) == 0
    full = capsys.readouterr().out
    assert main(["evaluate", str(exp_dir), "--eval-set", "test", "--exclude-label-wrong"]) == 0
    out = capsys.readouterr().out
    n_full = int(re.search(r"n=(\d+)", full).group(1))
    assert "5 sample(s) marked 'label wrong' left out" in out and f"n={n_full - 5} " in out
