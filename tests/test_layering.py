"""Layers point one way: `dashboard` imports `pipeline`, never the reverse, and the pipeline never imports Streamlit.

Walks the AST of every module under pipeline/ (imports inside functions included, which is where a reversed
dependency used to hide) instead of importing them, so the check is fast and needs no TensorFlow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINE = REPO_ROOT / "pipeline"
FORBIDDEN = ("dashboard", "streamlit")


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import statement in `tree`, at any depth."""
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def _forbidden_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        f"{path.relative_to(REPO_ROOT)}:{line} imports {name}"
        for line, name in _imported_modules(tree)
        if name.split(".")[0] in FORBIDDEN
    ]


PIPELINE_FILES = sorted(PIPELINE.rglob("*.py"))


def test_pipeline_has_modules() -> None:
    assert len(PIPELINE_FILES) > 10


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_pipeline_never_imports_the_ui(path: Path) -> None:
    assert _forbidden_imports(path) == []


def test_checker_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The walker finds a lazy import in a function body and `from dashboard.x import y` alike."""
    src = tmp_path / "m.py"
    src.write_text(
        "import os\n\ndef f():\n    from dashboard import charts\n    import streamlit.runtime\n"
        "from dashboardish import x\n",
        encoding="utf-8",
    )
    tree = ast.parse(src.read_text())
    names = [n for _, n in _imported_modules(tree) if n.split(".")[0] in FORBIDDEN]
    assert names == ["dashboard", "streamlit.runtime"]
