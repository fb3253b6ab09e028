"""Subgroup columns of a sample table: which columns can split the evaluation, and each sample's subgroup.

A subgroup column is any metadata column of the sample table (CSV columns such as age, sex, localization;
DICOM header fields the dicom layout extracted: manufacturer, patient_sex, patient_age in years, view_position,
modality, and the tags named in its `dicom_tags` option), a named group of a regular expression
applied to the file names (BreakHis magnification ``-(?P<magnification>40|100|200|400)-``), or the
evaluation set itself. Numeric columns with many values are binned (bins from the config, else quantiles);
a missing value is its own subgroup, ``"missing"``. pandas + NumPy only; nothing runs on import.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from pipeline.errors import invalid_argument

MISSING = "missing"
# Columns of every sample table that describe the sample's identity or its use, not a subgroup.
CORE_COLUMNS = frozenset({"sample_id", "path", "label", "label_name", "group", "split", "mask_path", "fold"})
# A numeric column with more distinct values than this is binned (quantiles unless bins are given).
MAX_NUMERIC_LEVELS = 10
# A text column with more distinct values than this looks like an id (image_id, study_uid): not offered
# unless the config names it.
MAX_TEXT_LEVELS = 50


@dataclass(frozen=True)
class Subgroups:
    """Each sample's subgroup in one column: integer codes into `names` (one code per sample)."""

    column: str
    codes: NDArray[np.int64]
    names: tuple[str, ...]

    @property
    def n_subgroups(self) -> int:
        return len(self.names)

    def counts(self) -> NDArray[np.int64]:
        """Samples per subgroup."""
        return np.bincount(self.codes, minlength=len(self.names)).astype(np.int64)


def extract_regex(texts: Sequence[str] | pd.Series, pattern: str) -> pd.DataFrame:
    """One column per named group of `pattern`, searched in each text (a file name or path); NaN where it
    does not match. Raises ValueError when `pattern` is not a valid regex with at least one named group."""
    try:
        rx = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise invalid_argument("pattern", "a valid regular expression", f"{pattern!r} ({exc})") from None
    if not rx.groupindex:
        raise invalid_argument(
            "pattern",
            "a regular expression with named groups, e.g. '-(?P<magnification>40|100|200|400)-'",
            repr(pattern),
        )
    s = pd.Series(texts, dtype=object).astype(str)
    out = s.str.extract(rx, expand=True)
    return out[list(rx.groupindex)].reset_index(drop=True)


def _is_numeric(values: pd.Series) -> bool:
    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _fmt(x: float) -> str:
    return f"{x:g}"


def _bin_labels(edges: np.ndarray) -> list[str]:
    """'[a, b)' per bin, the last finite one closed '[a, b]'; open ends read '< a' and '> b'."""
    last = np.flatnonzero(np.isfinite(edges))[-1]
    labels = []
    for i, (a, b) in enumerate(zip(edges[:-1], edges[1:])):
        if np.isneginf(a):
            labels.append(f"< {_fmt(b)}")
        elif np.isposinf(b):
            labels.append(f"> {_fmt(a)}")
        else:
            labels.append(f"[{_fmt(a)}, {_fmt(b)}" + ("]" if i + 1 == last else ")"))
    return labels


def bin_numeric(
    values: Sequence[float] | pd.Series, bins: Sequence[float] | None = None, quantiles: int = 4
) -> tuple[NDArray[np.int64], list[str]]:
    """Bin a numeric column: (bin index per value, bin labels); -1 for missing values.

    `bins`: increasing edges, e.g. ``[0, 40, 60, 120]`` (bins ``[0, 40)``, ``[40, 60)``, ``[60, 120]``; values
    outside get an open-ended bin ``< 0`` or ``> 120``). Without bins, `quantiles` equal-count bins (fewer when
    values tie).
    """
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    ok = np.isfinite(v)
    if bins is not None:
        edges = np.asarray(bins, dtype=np.float64)
        if edges.ndim != 1 or edges.size < 2 or not np.all(np.diff(edges) > 0):
            raise invalid_argument("bins", "at least two increasing bin edges", repr(list(bins)))
    else:
        if isinstance(quantiles, bool) or not isinstance(quantiles, (int, np.integer)) or quantiles < 1:
            raise invalid_argument("quantiles", "a positive int", repr(quantiles))
        if not ok.any():
            return np.full(v.size, -1, dtype=np.int64), []
        edges = np.unique(np.quantile(v[ok], np.linspace(0.0, 1.0, int(quantiles) + 1)))
        if edges.size == 1:
            edges = np.array([edges[0], edges[0] + 1.0])
    if ok.any() and v[ok].min() < edges[0]:
        edges = np.r_[-np.inf, edges]
    if ok.any() and v[ok].max() > edges[-1]:
        edges = np.r_[edges, np.inf]
    # Bins are [a, b), the last finite one closed.
    last = int(np.flatnonzero(np.isfinite(edges))[-1])
    idx = np.searchsorted(edges, v, side="right") - 1
    idx = np.where(v == edges[last], last - 1, idx)
    idx = np.minimum(idx, edges.size - 2)
    idx = np.where(ok, idx, -1).astype(np.int64)
    return idx, _bin_labels(edges)


def _natural_key(text: str) -> tuple[int, float, str]:
    try:
        return (0, float(text), text)
    except ValueError:
        return (1, 0.0, text)


def assign_subgroups(
    column: str,
    values: Sequence[Any] | pd.Series,
    *,
    bins: Sequence[float] | None = None,
    quantiles: int = 4,
    max_levels: int = MAX_NUMERIC_LEVELS,
) -> Subgroups:
    """Each value's subgroup: bins for numeric columns given `bins` or with more than `max_levels` values
    (quantile bins), else the distinct values (numbers in numeric order, text sorted); missing values last,
    as the subgroup "missing"."""
    s = pd.Series(values).reset_index(drop=True)
    missing = s.isna().to_numpy()
    if _is_numeric(s) and (bins is not None or s.nunique(dropna=True) > max_levels):
        idx, labels = bin_numeric(s, bins, quantiles)
        present = np.unique(idx[idx >= 0])
        names = [labels[i] for i in present]
        remap = np.full(max(len(labels), 1), -1, dtype=np.int64)
        remap[present] = np.arange(present.size)
        codes = np.where(idx >= 0, remap[np.maximum(idx, 0)], -1)
    else:
        text = s.map(lambda x: _fmt(x) if isinstance(x, float) else str(x)).to_numpy(dtype=object)
        names = sorted({t for t, m in zip(text, missing) if not m}, key=_natural_key)
        lookup = {name: i for i, name in enumerate(names)}
        codes = np.array([-1 if m else lookup[t] for t, m in zip(text, missing)], dtype=np.int64)
    if (codes < 0).any():
        codes = np.where(codes < 0, len(names), codes)
        names = [*names, MISSING]
    return Subgroups(column, codes.astype(np.int64), tuple(names))


def candidate_columns(samples: pd.DataFrame, named: Sequence[str] = ()) -> list[str]:
    """The columns of `samples` offered as subgroup columns: `named` ones first (the config's), then every
    metadata column that is not an id (numeric, or text with at most MAX_TEXT_LEVELS values), and `eval_set`."""
    out = [c for c in named if c in samples.columns]
    for c in samples.columns:
        if c in out or c in CORE_COLUMNS:
            continue
        col = samples[c]
        if (
            c == "eval_set"
            or _is_numeric(col)
            or pd.api.types.is_bool_dtype(col)
            or 0 < col.nunique(dropna=True) <= MAX_TEXT_LEVELS
        ):
            out.append(str(c))
    return out


def subgroup_frame(
    samples: pd.DataFrame, *, columns: Sequence[str] = (), regex: str | None = None, regex_source: str = "sample_id"
) -> pd.DataFrame:
    """The sample table's subgroup columns (raw values, not yet binned), indexed like `samples`: the metadata
    columns from `candidate_columns`, plus one column per named group of `regex` searched in `regex_source`
    (a column of `samples`: the sample_id, which is the path relative to the data root, or the path)."""
    out = samples[candidate_columns(samples, columns)].copy()
    if regex:
        if regex_source not in samples.columns:
            raise invalid_argument(
                "regex_source", f"a column of the sample table {list(samples.columns)}", repr(regex_source)
            )
        found = extract_regex(samples[regex_source], regex)
        found.index = samples.index
        for c in found.columns:
            out[c] = found[c]
    return out


def subgroups_for(
    samples: pd.DataFrame,
    column: str,
    sample_ids: Sequence[str] | np.ndarray,
    *,
    regex: str | None = None,
    regex_source: str = "sample_id",
    bins: Mapping[str, Sequence[float]] | None = None,
    quantiles: int = 4,
) -> Subgroups:
    """The subgroups of `column` for the given samples (in that order), binned as the config says."""
    frame = subgroup_frame(
        samples, columns=[column] if column in samples.columns else (), regex=regex, regex_source=regex_source
    )
    if column not in frame.columns:
        raise invalid_argument("column", f"a subgroup column among {list(frame.columns)}", repr(column))
    values = pd.Series(frame[column].to_numpy(), index=samples["sample_id"].to_numpy())
    aligned = values.reindex(np.asarray(sample_ids, dtype=object))
    return assign_subgroups(column, aligned, bins=(bins or {}).get(column), quantiles=quantiles)


def experiment_subgroups_config(meta: Mapping[str, Any]) -> Any:
    """The `SubgroupsConfig` an experiment.json keeps (under "subgroups", or the run's "config"), else the
    defaults; a malformed entry gives the defaults, so a report or page still opens."""
    from pipeline.config import SubgroupsConfig, parse_subgroups  # noqa: PLC0415 - config imports the registry

    config = meta.get("config")
    raw = meta.get("subgroups") or (config.get("subgroups") if isinstance(config, dict) else None)
    if not isinstance(raw, dict):
        return SubgroupsConfig()
    try:
        return parse_subgroups({"subgroups": raw})
    except ValueError:
        return SubgroupsConfig()
