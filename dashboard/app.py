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
ROOT_URL = "start"  # the pathname the hidden root page reserves (Streamlit serves the default page at "/")

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
        ("subgroups.py", "Subgroups", ":material/diversity_3:", "subgroups"),
        ("runs.py", "Runs & stability", ":material/stacked_line_chart:", "runs"),
    ],
    "Images": [
        ("review.py", "Misclassifications", ":material/image_search:", "misclassifications"),
        ("segmentation.py", "Segmentation preview", ":material/blur_on:", "segmentation"),
    ],
    "Demo day": [("live.py", "Live inference", ":material/bolt:", "live")],
    "Data": [("audit.py", "Data audit", ":material/fact_check:", "audit")],
}


def build_pages() -> dict[str, list[st.Page]]:
    """st.Page objects for every registered page file that exists, each at its registered url.

    Streamlit serves its default page at the root URL only, so a registered page that is the default cannot be
    linked to (`/overview` answered "Page not found"). Hence the default is a hidden page at the root that
    `main` sends on to the first registered page, under that page's own url.
    """
    out: dict[str, list[st.Page]] = {}
    for section, entries in PAGES.items():
        for file, title, icon, url in entries:
            path = PAGES_DIR / file
            if path.is_file():
                if not out:
                    out[section] = [
                        st.Page(_root, title=title, icon=icon, url_path=ROOT_URL, default=True, visibility="hidden")
                    ]
                out.setdefault(section, []).append(st.Page(path, title=title, icon=icon, url_path=url))
    return out


def _root() -> None:
    """The root URL's page; never drawn (`main` switches to the first registered page first)."""


def main() -> None:
    """Draw the sidebar, then run the current page with the selection in session state."""
    st.set_page_config(page_title="MedCompare: compare CNN backbones", page_icon=":material/biotech:", layout="wide")
    state.restore_from_url()
    pages = build_pages()
    # expanded: with 15 pages a collapsed menu hid Live inference and Misclassifications behind "View more"
    current = st.navigation(pages, position="sidebar", expanded=True)
    listed = [p for ps in pages.values() for p in ps if p.url_path]  # the registered pages (not the root's)
    url_of = {title: url for entries in PAGES.values() for _, title, _, url in entries}
    wanted = state.requested_page()
    if not current.url_path:  # the root URL: the page a shared link names (?page=), else the first page
        match = [p for p in listed if p.url_path == wanted] or listed[:1]
        if match:
            st.switch_page(match[0], query_params=st.query_params.to_dict())
    if wanted and wanted != url_of.get(current.title):
        match = [p for p in listed if p.url_path == wanted]
        if match:
            st.switch_page(match[0])
    sel = widgets.sidebar_ui(da.artifacts_root())
    state.set_selection(sel)
    state.sync_url(sel, url_of.get(current.title))
    if sel is not None:
        current.run()


if __name__ == "__main__":  # streamlit runs this file as __main__; tests import PAGES without running the app
    main()
