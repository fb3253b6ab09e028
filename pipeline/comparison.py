"""The one aligned view of an experiment: models x samples of one evaluation set, with exclusions applied.

Every consumer reads predictions through `load_aligned`: the dashboard pages (through their cached loaders,
which pass their cached per-model reader as `read=`), the review gallery (`join="outer"`), the meeting report
and the CLI summary. So a sample excluded on a page (e.g. marked "label wrong") is excluded from the report
downloaded from that page, and every number is computed on the same samples.

- `read_model_data`: one model's predictions on one evaluation set, aligned with the sample table (labels and
  patient/lesion group codes from samples.parquet), read with Arrow (no per-row pandas string lookups);
- `without_samples`: the same minus a set of sample ids;
- `align_models`: several models on the samples every one of them predicted;
- `load_aligned`: all three in one call.

No Streamlit, no TensorFlow; nothing runs on import.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from pipeline import artifacts as art
from pipeline import metrics as mt
from pipeline.errors import invalid_argument

__all__ = [
    "ENSEMBLE",
    "Aligned",
    "ModelData",
    "SampleIndex",
    "align_models",
    "load_aligned",
    "read_model_data",
    "sample_index",
    "with_ensemble",
    "without_samples",
]

ENSEMBLE = "Ensemble (mean)"


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _object_index(ids: object) -> pd.Index:
    """An object-dtype Index: pandas 3 would make Arrow strings, whose isin loops in Python."""
    return pd.Index(np.asarray(ids, dtype=object), dtype=object)


# ---------------------------------------------------------------- one model


@dataclass(frozen=True)
class ModelData:
    """One model's predictions on one evaluation set, aligned with the sample table (read-only arrays)."""

    model: str
    eval_set: str
    sample_ids: np.ndarray  # str, shape (n,)
    y: np.ndarray  # int class index, shape (n,)
    P: np.ndarray  # float64 probabilities, shape (n, K)
    groups: np.ndarray  # int group code (patient/lesion), shape (n,)
    n_unknown: int = 0  # prediction rows whose sample id is not in samples.parquet (dropped)

    @property
    def n(self) -> int:
        return int(self.y.shape[0])


@dataclass(frozen=True)
class SampleIndex:
    """The sample table as arrays, for aligning predictions by sample id without pandas string lookups."""

    ids: Any  # pyarrow string Array of sample_id, for pyarrow.compute.index_in
    sample_ids: np.ndarray  # object
    labels: np.ndarray  # int64
    group_codes: np.ndarray  # int64: one code per distinct patient/lesion
    by_eval_set: dict[str, tuple[Any, np.ndarray]] = field(default_factory=dict)  # set -> (its ids, its rows)


def sample_index(exp: art.Experiment) -> SampleIndex:
    """The arrays `read_model_data` aligns with (build once per experiment and pass it on to save the work)."""
    import pyarrow as pa

    s = exp.samples
    sample_ids = s["sample_id"].to_numpy(dtype=object)
    ids = pa.array(sample_ids, type=pa.string())
    by_eval: dict[str, tuple[Any, np.ndarray]] = {}
    if "eval_set" in s:
        eval_sets = s["eval_set"].astype(object).to_numpy()
        for es in pd.unique(s["eval_set"].dropna()):
            rows = _readonly(np.flatnonzero(eval_sets == es).astype(np.int64))
            by_eval[str(es)] = (ids.take(pa.array(rows)), rows)
    return SampleIndex(
        ids=ids,
        sample_ids=_readonly(sample_ids),
        labels=_readonly(s["label"].to_numpy(dtype=np.int64)),
        group_codes=_readonly(pd.factorize(s["group"].astype(str))[0].astype(np.int64)),
        by_eval_set=by_eval,
    )


def _read_predictions_table(exp: art.Experiment, model: str) -> tuple[Any, Path]:
    """A model's predictions as an Arrow table, checked like `artifacts.read_predictions` (same messages).

    The unknown-id filter and the duplicate check are done in `read_model_data` from the aligned positions:
    pandas 3's `Series.isin` on strings loops in Python (about 7 s per 300,000 ids) and its `duplicated`
    cost ~85 ms per model; the positions give both for free.
    """
    import pyarrow.parquet as pq

    path = art.model_dir(exp.path, model) / art.PREDICTIONS_FILE
    if not path.exists():
        raise art.ArtifactError(path, "file is missing")
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for truncated/corrupt files
        raise art.ArtifactError(
            path,
            f"unreadable Parquet ({type(exc).__name__}: {str(exc)[:200]}); the file may be truncated or half-written",
        ) from None
    probs = [c for c in art.prob_columns(len(exp.class_names)) if c in table.column_names]
    head = table.select([c for c in ("sample_id", "eval_set") if c in table.column_names] + probs)
    errors = [
        p
        for p in art.check_predictions(head.to_pandas(), len(exp.class_names), path, check_duplicates=False)
        if p.severity == "error"
    ]
    if errors:
        raise art.ArtifactError(path, "; ".join(p.message for p in errors))
    return table, path


def read_model_data(exp: art.Experiment, model: str, eval_set: str, *, index: SampleIndex | None = None) -> ModelData:
    """`model`'s predictions on `eval_set`, aligned with the sample table; raises ArtifactError naming the file.

    Prediction rows whose sample id is not in samples.parquet are dropped (counted in `n_unknown`); a sample
    predicted twice is an error. `index` is `sample_index(exp)`, built here when not given.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table, path = _read_predictions_table(exp, model)
    table = table.filter(pc.equal(table["eval_set"].cast(pa.string()), eval_set))
    index = index if index is not None else sample_index(exp)
    ids = table["sample_id"].cast(pa.string()).combine_chunks()
    expected = index.by_eval_set.get(eval_set)
    if expected is not None and ids.equals(expected[0]):
        # The pipeline writes each eval set in sample-table order: the rows are known without hashing.
        pos, keep = expected[1], np.ones(len(ids), dtype=bool)
    else:
        found = pc.index_in(ids, value_set=index.ids).to_numpy(zero_copy_only=False)
        keep = ~np.isnan(found) if found.dtype.kind == "f" else np.ones(len(found), dtype=bool)
        pos = found[keep].astype(np.int64)
        if len(pos) and np.bincount(pos).max() > 1:
            raise art.ArtifactError(path, art.DUPLICATE_ROWS)
    cols = art.prob_columns(len(exp.class_names))
    n_rows = len(table)
    P = (
        np.column_stack([table[c].to_numpy().astype(np.float64, copy=False) for c in cols])
        if n_rows
        else np.zeros((0, len(cols)))
    )
    return ModelData(
        model=model,
        eval_set=eval_set,
        sample_ids=_readonly(index.sample_ids[pos]),
        y=_readonly(index.labels[pos]),
        P=_readonly(np.ascontiguousarray(P[keep])),
        groups=_readonly(index.group_codes[pos]),
        n_unknown=int((~keep).sum()),
    )


def without_samples(md: ModelData, exclude: Collection[str]) -> ModelData:
    """`md` minus the samples whose id is in `exclude` (returns `md` itself when none of them is there)."""
    if not exclude:
        return md
    keep = ~art.id_mask(md.sample_ids, list(exclude))
    if keep.all():
        return md
    return ModelData(
        model=md.model,
        eval_set=md.eval_set,
        sample_ids=_readonly(md.sample_ids[keep]),
        y=_readonly(md.y[keep]),
        P=_readonly(md.P[keep]),
        groups=_readonly(md.groups[keep]),
        n_unknown=md.n_unknown,
    )


# ---------------------------------------------------------------- several models


@dataclass(frozen=True)
class Aligned:
    """Predictions of several models on the same samples.

    Inner join (the default): the samples every model predicted, every probability finite. Outer join: the
    samples any model predicted, in sample-table order; a model's rows are NaN where `has[model]` is False.
    """

    sample_ids: np.ndarray  # str, shape (n,)
    y: np.ndarray  # int class index, shape (n,)
    groups: np.ndarray  # int group code (patient/lesion), shape (n,)
    probs: dict[str, np.ndarray]  # model -> (n, K) probabilities
    has: dict[str, np.ndarray] | None = None  # outer join only: model -> bool (n,), the model predicted it
    excluded: int = 0  # samples left out because their id was in `exclude`

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def models(self) -> list[str]:
        return list(self.probs)


PerModel = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # (sample_ids, y, groups, P)


def align_models(per_model: Mapping[str, PerModel]) -> Aligned:
    """{model: (sample_ids, y, groups, P)} -> the samples every model predicted, in the first model's order."""
    if not isinstance(per_model, Mapping) or not per_model:
        raise invalid_argument(
            "per_model", "a non-empty dict {model: (sample_ids, y, groups, P)}", type(per_model).__name__
        )
    names = list(per_model)
    first_ids, first_y, first_groups, _ = per_model[names[0]]
    first_ids = np.asarray(first_ids, dtype=object)
    same = [
        len(per_model[n][0]) == len(first_ids) and np.array_equal(np.asarray(per_model[n][0], dtype=object), first_ids)
        for n in names
    ]
    keep = np.ones(len(first_ids), dtype=bool)
    if not all(same):
        index = _object_index(first_ids)
        for name, equal in zip(names, same):
            if not equal:
                keep &= index.isin(_object_index(per_model[name][0]))
    ids = first_ids[keep]
    probs = {}
    for name, equal in zip(names, same):
        sid, _, _, P = per_model[name]
        P = np.asarray(P, dtype=np.float64)
        if equal:  # the usual case: every model scored the same samples in the same order
            probs[name] = np.ascontiguousarray(P[keep])
        else:
            probs[name] = np.ascontiguousarray(P[_object_index(sid).get_indexer(ids)])
    return Aligned(
        sample_ids=ids, y=np.asarray(first_y, dtype=np.int64)[keep], groups=np.asarray(first_groups)[keep], probs=probs
    )


def _outer(per_model: Mapping[str, ModelData], index: SampleIndex, n_classes: int) -> Aligned:
    """The union of the models' samples in sample-table order; NaN probabilities where a model has none."""
    table_ids = _object_index(index.sample_ids)
    rows = {m: table_ids.get_indexer(_object_index(md.sample_ids)) for m, md in per_model.items()}
    pos = np.unique(np.concatenate([r[r >= 0] for r in rows.values()] or [np.zeros(0, dtype=np.int64)]))
    probs: dict[str, np.ndarray] = {}
    has: dict[str, np.ndarray] = {}
    for m, md in per_model.items():
        at = np.searchsorted(pos, rows[m][rows[m] >= 0])
        P = np.full((pos.size, n_classes), np.nan)
        P[at] = md.P[rows[m] >= 0]
        mask = np.zeros(pos.size, dtype=bool)
        mask[at] = True
        probs[m], has[m] = P, mask
    return Aligned(
        sample_ids=index.sample_ids[pos], y=index.labels[pos], groups=index.group_codes[pos], probs=probs, has=has
    )


def load_aligned(
    exp: art.Experiment,
    models: Sequence[str],
    eval_set: str,
    *,
    exclude: Collection[str] = (),
    join: Literal["inner", "outer"] = "inner",
    read: Callable[[str], ModelData] | None = None,
    index: SampleIndex | None = None,
) -> Aligned:
    """`models`' predictions on `eval_set`, aligned on one sample axis, without the samples in `exclude`.

    `exclude` is a set of sample ids (e.g. the samples mentors marked "label wrong", or test images with a
    near-duplicate in train); they are left out of every number computed from the result. `join="inner"`
    keeps the samples every model predicted (metrics, paired tests, the report); `"outer"` the samples any
    model predicted (the review gallery). `read(model)` returns a model's `ModelData` on `eval_set` (a
    cached reader in the dashboard); by default `read_model_data`. `index` is `sample_index(exp)` when the
    caller has it already. Raises ArtifactError naming a bad file.
    """
    models = list(dict.fromkeys(models))
    if not models:
        raise invalid_argument("models", "at least one model", "an empty list")
    if join not in ("inner", "outer"):
        raise invalid_argument("join", "'inner' or 'outer'", repr(join))
    if index is None and (read is None or join == "outer"):
        index = sample_index(exp)
    if read is None:
        shared = index

        def read(model: str) -> ModelData:
            return read_model_data(exp, model, eval_set, index=shared)

    excluded = frozenset(map(str, exclude))
    full = {m: read(m) for m in models}
    per_model = {m: without_samples(md, excluded) for m, md in full.items()}
    if join == "outer":
        assert index is not None
        out = _outer(per_model, index, len(exp.class_names))
    else:
        out = align_models({m: (md.sample_ids, md.y, md.groups, md.P) for m, md in per_model.items()})
    n_dropped = max(full[m].n - per_model[m].n for m in models)
    return Aligned(
        sample_ids=out.sample_ids, y=out.y, groups=out.groups, probs=out.probs, has=out.has, excluded=n_dropped
    )


def with_ensemble(aligned: Aligned) -> dict[str, np.ndarray]:
    """The models' probabilities plus the mean-probability ensemble (when there are two or more models)."""
    probs = dict(aligned.probs)
    if len(probs) >= 2:
        probs[ENSEMBLE] = mt.ensemble_mean(aligned.probs)
    return probs
