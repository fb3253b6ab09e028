"""Router of the dashboard: page config, the shared sidebar, navigation. Pages live in `app_pages/`.

Run from the repository root: `python -m streamlit run dashboard/app.py` (the project is installed editable by
`make install`, so `dashboard` and `pipeline` import from anywhere).
"""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from dashboard import data_access as da
from dashboard import state, widgets

PAGES_DIR = Path(__file__).parent / "app_pages"

# Navigation sections -> (page file in app_pages/, title, icon, url path). Add new pages here.
PAGES: dict[str, list[tuple[str, str, str, str]]] = {
    "Review meeting": [
        ("overview.py", "Overview", ":material/leaderboard:", "overview"),
        ("curves.py", "ROC & PR curves", ":material/show_chart:", "curves"),
        ("confusion.py", "Confusion matrices", ":material/grid_on:", "confusion"),
        ("thresholds.py", "Threshold tuning", ":material/tune:", "thresholds"),
        ("calibration.py", "Calibration", ":material/balance:", "calibration"),
        ("training.py", "Training", ":material/timeline:", "training"),
        ("eval_sets.py", "Evaluation sets", ":material/compare:", "eval-sets"),
        ("compare.py", "Paired comparison", ":material/balance:", "compare"),
    ],
    "Images": [("review.py", "Misclassifications", ":material/image_search:", "misclassifications"),
               ("segmentation.py", "Segmentation preview", ":material/blur_on:", "segmentation")],
    "Demo day": [("live.py", "Live inference", ":material/bolt:", "live")],
    "Data": [("audit.py", "Data audit", ":material/fact_check:", "audit")],
}


def build_pages() -> dict[str, list[st.Page]]:
    """st.Page objects for every registered page file that exists."""
    out: dict[str, list[st.Page]] = {}
    first = True
    for section, entries in PAGES.items():
        for file, title, icon, url in entries:
            path = PAGES_DIR / file
            if path.is_file():
                out.setdefault(section, []).append(
                    st.Page(path, title=title, icon=icon, url_path=url, default=first))
                first = False
    return out


def main() -> None:
    """Draw the sidebar, then run the current page with the selection in session state."""
    st.set_page_config(page_title="MedCompare: compare CNN backbones", page_icon=":material/biotech:",
                       layout="wide")
    state.restore_from_url()
    pages = build_pages()
    current = st.navigation(pages, position="sidebar")
    # The default page's url_path is "" (the root URL), so pages are named by their registered url here.
    url_of = {title: url for entries in PAGES.values() for _, title, _, url in entries}
    wanted = state.requested_page()
    if wanted and wanted != url_of.get(current.title):
        match = [p for ps in pages.values() for p in ps if url_of.get(p.title) == wanted]
        if match:
            st.switch_page(match[0])
    sel = widgets.sidebar_ui(da.artifacts_root())
    state.set_selection(sel)
    state.sync_url(sel, url_of.get(current.title))
    if sel is not None:
        current.run()


main()
