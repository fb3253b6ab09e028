"""Repeated runs: seeds x grouped, stratified folds; their ids, model folder names and fold assignment.

A backbone may be trained several times (`[train] seeds`, `[train] folds`). Each run is a model folder of
its own under `models/`, so it is resumable on its own and every page can open it like any model:

    <backbone>                 the backbone's first run (first seed, fold 0 when folds are used)
    <backbone>@<run_id>        every other run: run ids `s<seed>` (seeds) or `f<fold>-s<seed>` (k-fold)

`config.json` of each run carries `backbone`, `run_id`, `seed` and `fold`; `predictions.parquet` carries
`run_id`. Folds partition the training pool (the train and val splits) into k parts that never split a
patient/lesion group (nor a duplicate cluster) and keep the class balance; the test split and every extra
evaluation set stay held out. Fold f trains on the other folds and validates on fold f; its held-out
predictions are written with eval_set `oof` (out-of-fold), which label-issue detection reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

RUN_SEPARATOR = "@"
OOF_EVAL_SET = "oof"
FOLD_COLUMN = "fold"


@dataclass(frozen=True)
class RunSpec:
    """One training run of one backbone."""

    backbone: str
    seed: int
    fold: int | None
    run_id: str
    model: str  # folder name under models/


def run_id(seed: int, fold: int | None) -> str:
    """The id of the run with `seed` (and `fold`, None without cross-validation)."""
    return f"s{int(seed)}" if fold is None else f"f{int(fold)}-s{int(seed)}"


def run_plan(
    backbones: Sequence[str], seeds: Sequence[int], folds: int = 1, *, repeat: Sequence[str] | None = None
) -> list[RunSpec]:
    """Every run of every backbone; a backbone's first run keeps the backbone's own name.

    `repeat` names the backbones that get every seed and fold (None: all); the others get the first run only.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ValueError(f"Invalid value for argument `folds`. Expected an integer >= 1. Received: {folds!r}")
    if not len(seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"Invalid value for argument `seeds`. Expected distinct integers. Received: {list(seeds)}")
    fold_ids: list[int | None] = list(range(folds)) if folds > 1 else [None]
    plan = []
    for backbone in backbones:
        first = True
        for fold in fold_ids:
            for seed in seeds:
                rid = run_id(seed, fold)
                plan.append(
                    RunSpec(backbone, int(seed), fold, rid, backbone if first else f"{backbone}{RUN_SEPARATOR}{rid}")
                )
                first = False
                if repeat is not None and backbone not in repeat:
                    break
            if repeat is not None and backbone not in repeat:
                break
    return plan


def backbone_of(model: str, config: dict | None = None) -> str:
    """The backbone a model folder belongs to: config.json's `backbone`, else the name before '@'."""
    if config and isinstance(config.get("backbone"), str) and config.get("run_id"):
        return str(config["backbone"])
    return model.split(RUN_SEPARATOR, 1)[0]


def assign_folds(
    samples: pd.DataFrame,
    k: int,
    *,
    seed: int,
    group_column: str = "group",
    label_column: str = "label",
    pool: Sequence[str] = ("train", "val"),
) -> pd.Series:
    """Fold number (0..k-1) of each sample of the training pool, -1 outside it; groups whole, classes balanced.

    scikit-learn's StratifiedGroupKFold (shuffled, seeded) on the pool's groups. Pass a group column that
    already joins duplicate clusters (as the split does) so near-copies share a fold.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(f"Invalid value for argument `k`. Expected an integer >= 2. Received: {k!r}")
    in_pool = samples["split"].isin(list(pool)).to_numpy()
    folds = np.full(len(samples), -1, np.int64)
    idx = np.flatnonzero(in_pool)
    groups = samples[group_column].astype(str).to_numpy()[idx]
    labels = samples[label_column].to_numpy()[idx]
    n_groups = len(np.unique(groups))
    if n_groups < k:
        raise ValueError(
            f"Invalid value for argument `k`. Expected at most {n_groups} folds (the training pool "
            f"has {n_groups} groups). Received: {k}"
        )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=int(seed))
    for f, (_, held) in enumerate(cv.split(np.zeros(len(idx)), labels, groups)):
        folds[idx[held]] = f
    return pd.Series(folds, index=samples.index, name=FOLD_COLUMN)


def fold_masks(samples: pd.DataFrame, spec: RunSpec) -> tuple[np.ndarray, np.ndarray]:
    """(train mask, validation mask) of one run over the sample table."""
    split = samples["split"].to_numpy()
    if spec.fold is None:
        return split == "train", split == "val"
    if FOLD_COLUMN not in samples.columns:
        raise ValueError(
            f"Invalid value for argument `samples`. Expected a `{FOLD_COLUMN}` column for the k-fold "
            f"run {spec.model!r}. Received: columns {list(samples.columns)}"
        )
    fold = samples[FOLD_COLUMN].to_numpy()
    return (fold >= 0) & (fold != spec.fold), fold == spec.fold


def runs_table(exp_dir: object, models: Sequence[str]) -> pd.DataFrame:
    """model, backbone, run_id, seed, fold of each model folder (a folder without run fields is one run)."""
    from pipeline import artifacts as art

    rows = []
    for model in models:
        try:
            cfg = art.read_model_config(exp_dir, model)  # type: ignore[arg-type]
        except art.ArtifactError:
            cfg = {}
        fold = cfg.get("fold")
        rows.append(
            {
                "model": model,
                "backbone": backbone_of(model, cfg),
                "run_id": str(cfg.get("run_id") or "s0"),
                "seed": cfg.get("seed"),
                "fold": int(fold) if isinstance(fold, int) else None,
            }
        )
    return pd.DataFrame(rows, columns=["model", "backbone", "run_id", "seed", "fold"])
