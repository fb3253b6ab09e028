"""The meeting report (one self-contained HTML file, optionally a PDF) and the paired-comparison helpers the
dashboard's *Paired comparison* page shares with it.

- `_tables`: comparison data: `orient_pair`, `pair_tables`, `pairs_table`, `pair_matrix`, `delong_class_grid`
  on the rows of `metrics.pairwise_comparisons`; `curve_points`, `leaderboard_frame`, `ensemble_config`,
  `dataset_summary`, `artifact_fingerprint`;
- `_verdicts`: the wording: `verdicts`, `multiclass_verdict`, `clustering_note`, `format_p`;
- `_html`: `build_report` / `render_report_html`: reads the aligned view (`pipeline.comparison.load_aligned`,
  with the caller's exclusions), computes every number with `pipeline.metrics`, draws every figure with
  `pipeline.figures`, and writes ONE HTML file with plotly.js inlined once and thumbnails as base64 PNG, so
  it opens offline;
- `_pdf`: `html_to_pdf` prints it with headless Debian chromium;
- `_subgroups_section`: the Subgroups section and the subgroup tables the *Subgroups* page shares with it
  (`subgroup_table_rows`, `subgroup_gap_rows`, `compute_subgroups`).

No Streamlit, no TensorFlow; nothing runs on import.
"""

from __future__ import annotations

from pipeline.report._html import REPORT_SECTIONS, build_report, render_report_html
from pipeline.report._pdf import CHROMIUM_ENV, DEFAULT_CHROMIUM, chromium_path, find_chromium, html_to_pdf
from pipeline.report._subgroups_section import (
    SUBGROUP_METRIC_LABELS,
    compute_subgroups,
    format_subgroup_estimate,
    report_subgroup_columns,
    subgroup_gap_rows,
    subgroup_table_rows,
)
from pipeline.report._tables import (
    artifact_fingerprint,
    curve_points,
    dataset_summary,
    delong_class_grid,
    ensemble_config,
    leaderboard_frame,
    orient_pair,
    pair_matrix,
    pair_tables,
    pairs_table,
)
from pipeline.report._verdicts import clustering_note, format_p, multiclass_verdict, verdicts

__all__ = [
    "CHROMIUM_ENV",
    "DEFAULT_CHROMIUM",
    "REPORT_SECTIONS",
    "SUBGROUP_METRIC_LABELS",
    "artifact_fingerprint",
    "build_report",
    "chromium_path",
    "clustering_note",
    "compute_subgroups",
    "curve_points",
    "dataset_summary",
    "delong_class_grid",
    "ensemble_config",
    "find_chromium",
    "format_p",
    "format_subgroup_estimate",
    "html_to_pdf",
    "leaderboard_frame",
    "multiclass_verdict",
    "orient_pair",
    "pair_matrix",
    "pair_tables",
    "pairs_table",
    "render_report_html",
    "report_subgroup_columns",
    "subgroup_gap_rows",
    "subgroup_table_rows",
    "verdicts",
]
