"""Verdict wording: the plain-language lines a meeting reads (p-values, significance after Holm, the
clustering caution)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from pipeline import metrics as mt
from pipeline.report._tables import _METRIC_NAMES, _delong_entry


def format_p(p: float) -> str:
    """A p-value for reading: '< 0.001', else three decimals; '—' when undefined."""
    if p is None or not np.isfinite(p):
        return "—"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _p_phrase(p: float) -> str:
    """'p < 0.001' or 'p = 0.042'."""
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _significance(p_holm: float, alpha: float, n_pairs: int) -> str:
    """'significant at 0.05 after Holm correction' or 'not significant ...'."""
    if not np.isfinite(p_holm):
        return "not testable"
    word = "significant" if p_holm < alpha else "not significant"
    return f"{word} at {alpha:g}" + (f" after Holm correction over {n_pairs} pairs" if n_pairs > 1 else "")


def verdicts(
    row: Mapping[str, Any],
    metric: str = "roc_auc",
    n_pairs: int = 1,
    alpha: float = 0.05,
    class_names: Sequence[str] | None = None,
    class_index: int | None = None,
) -> list[str]:
    """Plain-language lines for one oriented pair: AUC by DeLong, `metric` by paired bootstrap, accuracy by McNemar."""
    a, b = row["model_a"], row["model_b"]
    lines = []
    d = _delong_entry(row, class_index)
    auc_label = "AUC"
    if "delong_by_class" in row and class_names is not None:
        auc_label = f"one-vs-rest AUC of {class_names[int(class_index or 0)]}"
    if np.isfinite(d["diff"]):
        better = ""
        if np.isfinite(d["p_holm"]) and d["p_holm"] < alpha:
            better = f" ({a if d['diff'] > 0 else b} is better)"
        lines.append(
            f"{a} vs {b}: {auc_label} difference {d['diff']:+.3f} (95% CI {d['ci_low']:+.3f} to {d['ci_high']:+.3f}), "
            f"DeLong {_p_phrase(d['p_value'])}"
            + (f" (Holm-adjusted {format_p(d['p_holm'])})" if n_pairs > 1 else "")
            + f" — {_significance(d['p_holm'], alpha, n_pairs)}{better}."
        )
    else:
        lines.append(
            f"{a} vs {b}: DeLong's test is undefined here ({auc_label} needs at least 2 samples of each class)."
        )
    boot = mt.PairedDifference.of(row, metric) if metric != "roc_auc" else None
    if boot is not None:
        diff, lo, hi, p, ph = boot.diff, boot.ci_low, boot.ci_high, boot.p, boot.p_holm
        name = _METRIC_NAMES.get(metric, metric)
        lines.append(
            f"{name} difference {diff:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}, paired bootstrap of whole "
            f"patients/lesions), {_p_phrase(p)}"
            + (f" (Holm-adjusted {format_p(ph)})" if n_pairs > 1 else "")
            + f" — {_significance(ph, alpha, n_pairs)}."
        )
    ph = row.get("mcnemar_p_holm", row["mcnemar_p"])
    lines.append(
        ("Accuracy of the argmax predictions" if "delong_by_class" in row else "Accuracy at the thresholds in force")
        + f": only {a} right on {row['mcnemar_b']} samples, only {b} right on "
        f"{row['mcnemar_c']}; McNemar {_p_phrase(row['mcnemar_p'])}"
        + (f" (Holm-adjusted {format_p(ph)})" if n_pairs > 1 else "")
        + f" — {_significance(ph, alpha, n_pairs)}."
    )
    return lines


def clustering_note(n: int, n_groups: int) -> str | None:
    """A caution when images cluster in few patients/lesions (DeLong and McNemar assume independent samples)."""
    if n <= 0 or n_groups >= 0.8 * n:
        return None
    return (
        f"These {n:,} images come from {n_groups:,} patients/lesions. DeLong and McNemar treat images as "
        "independent, so with clustered images their p-values are optimistic; the paired bootstrap resamples "
        "whole patients/lesions and is the safer guide."
    )


def multiclass_verdict(
    row: Mapping[str, Any], class_names: Sequence[str], n_pairs: int = 1, alpha: float = 0.05
) -> str:
    """One line for a multiclass pair: macro AUC difference (paired bootstrap) and the classes where DeLong differs."""
    a, b = row["model_a"], row["model_b"]
    parts = [f"{a} vs {b}:"]
    if "roc_auc_diff" in row:
        ph = row.get("roc_auc_p_holm", row["roc_auc_p"])
        parts.append(
            f"macro ROC AUC difference {row['roc_auc_diff']:+.3f} (95% CI {row['roc_auc_ci_low']:+.3f} to "
            f"{row['roc_auc_ci_high']:+.3f}, paired bootstrap), {_p_phrase(row['roc_auc_p'])} — "
            f"{_significance(ph, alpha, n_pairs)};"
        )
    sig = [
        (class_names[int(d["class"])], d["diff"])
        for d in row["delong_by_class"]
        if np.isfinite(d.get("p_holm", d["p_value"])) and d.get("p_holm", d["p_value"]) < alpha
    ]
    tested = sum(np.isfinite(d["p_value"]) for d in row["delong_by_class"])
    if sig:
        detail = ", ".join(f"{c} ({a if dd > 0 else b} better)" for c, dd in sig)
        parts.append(f"DeLong one-vs-rest AUC differs for {len(sig)} of {tested} classes: {detail}.")
    else:
        parts.append(f"DeLong finds no one-vs-rest AUC difference in any of the {tested} classes.")
    return " ".join(parts)
