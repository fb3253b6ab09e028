"""Classification metrics for comparing models: sweeps, curves, thresholds, bootstrap CIs,
calibration, paired tests and disagreement. NumPy + SciPy only; nothing runs on import.

Conventions
-----------
- ``y``: int class indices, shape (n,). ``P``: probabilities, shape (n, K); K == 2 is binary and the
  positive score is ``P[:, pos_index]``.
- ``y_true`` / ``y_bool``: binary labels (bool or 0/1); ``score``: a 1-D positive-class score.
- ``groups``: patient/lesion ids, shape (n,), or None (each sample is its own group).
- A binary prediction is positive when ``score >= threshold``; with no threshold it is the argmax.
- Every curve and score equals scikit-learn's definition (``roc_curve(drop_intermediate=False)``,
  ``precision_recall_curve``, ``roc_auc_score``, ``average_precision_score``...), with ties.
- Divisions by zero give 0.0, as scikit-learn's default ``zero_division`` does; AUCs that are not
  defined (one class only) raise ``ValueError`` in the point functions. Inside bootstrap resamples
  any metric whose denominator is zero (an AUC without positives, a precision without predicted
  positives...) is NaN, and those resamples are left out of that metric's interval.

Layout (like scikit-learn's ``metrics``): ``_validation`` (argument checks, metric names), ``_ranking``
(sweeps, curves, AUCs, thresholds), ``_multiclass`` (decision rule, confusion matrices, one-vs-rest
curves), ``_summary`` (point metrics of a model), ``_bootstrap`` (grouped bootstrap engine, see its
docstring), ``_explicit`` (the same resamples for callable metrics), ``_curve_bands`` (bootstrap bands of
curves), ``_calibration``, ``_paired`` (paired tests, disagreement, ensemble). Import the public names from
here: ``from pipeline import metrics as mt``.
"""

from __future__ import annotations

from pipeline.metrics._bootstrap import Estimate, bootstrap_all, bootstrap_models, bootstrap_replicates
from pipeline.metrics._calibration import (
    brier_score,
    confidence_histogram,
    expected_calibration_error,
    multiclass_brier_score,
    reliability_curve,
    top_label_ece,
    top_label_reliability,
)
from pipeline.metrics._curve_bands import bootstrap_curve_bands
from pipeline.metrics._explicit import bootstrap_ci
from pipeline.metrics._multiclass import confusion_matrix, decide, micro_macro_roc, one_vs_rest_curves, predict_labels
from pipeline.metrics._paired import (
    PairedDifference,
    delong_test,
    delong_variance,
    disagreement_matrix,
    ensemble_mean,
    holm_correction,
    mcnemar_test,
    paired_bootstrap_diff,
    pairwise_comparisons,
    unique_correct,
)
from pipeline.metrics._ranking import (
    MAX_CURVE_POINTS,
    Sweep,
    average_precision,
    counts_at,
    curve_summary,
    downsample_curve,
    make_sweep,
    metrics_at,
    pr_curve,
    roc_auc,
    roc_curve,
    sweep_average_precision,
    sweep_roc_auc,
    threshold_for_sensitivity,
    youden_threshold,
)
from pipeline.metrics._runs import (
    RunsCurve,
    RunSpread,
    RunsTTest,
    corrected_resampled_ttest,
    mean_curve_over_runs,
    per_run_matrix,
    rank_first_frequency,
    run_spread,
    wins,
)
from pipeline.metrics._subgroups import (
    SUBGROUP_METRICS,
    Gap,
    SubgroupMetrics,
    largest_gap,
    subgroup_ece,
    subgroup_metrics,
    subgroup_point_metrics,
    worst_subgroup,
)
from pipeline.metrics._summary import classification_summary
from pipeline.metrics._validation import BINARY_METRICS, DEFAULT_THRESHOLD, LEADERBOARD_METRICS, MULTICLASS_METRICS

__all__ = [
    "SUBGROUP_METRICS",
    "Gap",
    "SubgroupMetrics",
    "largest_gap",
    "subgroup_ece",
    "subgroup_metrics",
    "subgroup_point_metrics",
    "worst_subgroup",
    "RunSpread",
    "RunsCurve",
    "RunsTTest",
    "corrected_resampled_ttest",
    "mean_curve_over_runs",
    "per_run_matrix",
    "rank_first_frequency",
    "run_spread",
    "wins",
    "BINARY_METRICS",
    "DEFAULT_THRESHOLD",
    "Estimate",
    "LEADERBOARD_METRICS",
    "MAX_CURVE_POINTS",
    "MULTICLASS_METRICS",
    "PairedDifference",
    "average_precision",
    "bootstrap_all",
    "bootstrap_ci",
    "bootstrap_curve_bands",
    "bootstrap_models",
    "bootstrap_replicates",
    "brier_score",
    "classification_summary",
    "confidence_histogram",
    "confusion_matrix",
    "counts_at",
    "decide",
    "curve_summary",
    "delong_test",
    "delong_variance",
    "disagreement_matrix",
    "downsample_curve",
    "ensemble_mean",
    "expected_calibration_error",
    "holm_correction",
    "make_sweep",
    "mcnemar_test",
    "metrics_at",
    "micro_macro_roc",
    "multiclass_brier_score",
    "one_vs_rest_curves",
    "paired_bootstrap_diff",
    "pairwise_comparisons",
    "pr_curve",
    "predict_labels",
    "reliability_curve",
    "roc_auc",
    "roc_curve",
    "Sweep",
    "sweep_average_precision",
    "sweep_roc_auc",
    "threshold_for_sensitivity",
    "top_label_ece",
    "top_label_reliability",
    "unique_correct",
    "youden_threshold",
]
