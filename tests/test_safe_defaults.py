"""Safe by default: Streamlit settings, Keras safe mode, no path escapes from manifests or URLs, no pickle.

The grep-style checks parse the source with `ast` (comments and strings do not count) over every .py file
in pipeline/ and dashboard/.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from pipeline import artifacts as art
from pipeline.fake import make_fake_experiment
from tests.conftest import no_exceptions, open_app

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG = REPO_ROOT / ".streamlit" / "config.toml"
SOURCE_DIRS = ("pipeline", "dashboard")


def _sources() -> list[Path]:
    return sorted(p for d in SOURCE_DIRS for p in (REPO_ROOT / d).rglob("*.py"))


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)]


def _name(func: ast.expr) -> str:
    """Dotted name of a call target: `keras.saving.load_model`, `np.load`, `load_model`."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


# ---------------------------------------------------------------- .streamlit/config.toml


def test_streamlit_config_is_safe_by_default() -> None:
    """Upload limit set, XSRF protection explicitly on, no usage stats, no tracebacks shown to users."""
    cfg = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    server, browser, client = cfg.get("server", {}), cfg.get("browser", {}), cfg.get("client", {})
    assert isinstance(server.get("maxUploadSize"), int) and 1 <= server["maxUploadSize"] <= 200, server
    assert server.get("enableXsrfProtection") is True, "server.enableXsrfProtection must be set to true explicitly"
    assert server.get("enableCORS", True) is True, "CORS protection must stay on"
    assert browser.get("gatherUsageStats") is False
    assert client.get("showErrorDetails") in ("none", "type"), (
        f"client.showErrorDetails = {client.get('showErrorDetails')!r} shows tracebacks (paths, data) to users"
    )


def test_streamlit_config_names_real_options() -> None:
    """Every key in config.toml is an option this Streamlit knows (a typo would be silently ignored)."""
    from streamlit import config as st_config

    known = set(st_config._config_options_template)  # noqa: SLF001 - the only list of option names
    cfg = tomllib.loads(CONFIG.read_text(encoding="utf-8"))
    unknown = [
        f"{section}.{key}" for section, values in cfg.items() for key in values if f"{section}.{key}" not in known
    ]
    assert not unknown, f"unknown Streamlit options in {CONFIG}: {unknown}"


# ---------------------------------------------------------------- Keras safe mode, no pickle


def test_every_model_load_uses_keras_safe_mode() -> None:
    """No `load_model(..., safe_mode=False)` and no unsafe-deserialisation switch anywhere."""
    offenders, loads = [], 0
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree):
            name = _name(call.func)
            where = f"{path.relative_to(REPO_ROOT)}:{call.lineno}"
            if name.endswith("enable_unsafe_deserialization"):
                offenders.append(f"{where}: {name}()")
            if name.split(".")[-1] != "load_model":
                continue
            loads += 1
            safe = _keyword(call, "safe_mode")
            if safe is not None and not (isinstance(safe, ast.Constant) and safe.value is True):
                offenders.append(f"{where}: {name}(..., safe_mode={ast.unparse(safe)})")
            if "keras" in name or "saving" in name or "models" in name:
                if not (isinstance(safe, ast.Constant) and safe.value is True):
                    offenders.append(f"{where}: {name}() must pass safe_mode=True explicitly")
    assert loads >= 1, "no load_model call found: the check is looking in the wrong place"
    assert not offenders, offenders


PICKLE_CALLS = (
    "pickle.load",
    "pickle.loads",
    "cPickle.load",
    "dill.load",
    "cloudpickle.load",
    "joblib.load",
    "pd.read_pickle",
    "pandas.read_pickle",
    "torch.load",
    "shelve.open",
    "marshal.load",
    "marshal.loads",
)


def test_no_pickle_from_files() -> None:
    """No pickle-based reader in pipeline/ or dashboard/, and np.load never with allow_pickle=True."""
    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if any(
                    n and n.split(".")[0] in ("pickle", "cPickle", "dill", "cloudpickle", "shelve", "marshal")
                    for n in names
                ):
                    offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}: imports {names}")
        for call in _calls(tree):
            name = _name(call.func)
            where = f"{path.relative_to(REPO_ROOT)}:{call.lineno}"
            if name.endswith(PICKLE_CALLS) or name.split(".")[-1] == "read_pickle":
                offenders.append(f"{where}: {name}()")
            allow = _keyword(call, "allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                offenders.append(f"{where}: {name}(..., allow_pickle={ast.unparse(allow)})")
            if name in ("np.load", "numpy.load") and allow is None:
                offenders.append(f"{where}: np.load without an explicit allow_pickle=False")
    assert not offenders, offenders


# ---------------------------------------------------------------- no path escapes


@pytest.fixture(scope="module")
def escape_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An artifacts root with one experiment, next to a valid experiment *outside* it that must stay unreachable."""
    base = tmp_path_factory.mktemp("escape")
    root = base / "artifacts"
    make_fake_experiment(root, "inside", n_samples=60, n_models=2, seed=31)
    make_fake_experiment(base, "outside", n_samples=60, n_models=1, seed=32)
    exp = root / "inside"
    # a model folder that is a symlink to a model of the outside experiment, marked complete
    (exp / "models" / "Escapee").symlink_to(base / "outside" / "models" / "MobileNetV2", target_is_directory=True)
    return root


@pytest.mark.parametrize("name", ["../outside", "../../etc", "/etc", "inside/../../outside", "..", ".", ""])
def test_experiment_loader_refuses_names_that_leave_the_root(escape_root: Path, name: str) -> None:
    """`data_access.get_experiment` only opens a folder directly inside the artifacts root."""
    from dashboard import data_access as da

    with pytest.raises(art.ArtifactError, match="experiment name"):
        da.get_experiment(name, escape_root)
    assert da.get_experiment("inside", escape_root).name == "inside"


@pytest.mark.parametrize("model", ["../../../outside/models/MobileNetV2", "/etc", "Escapee", "a/../../.."])
def test_model_paths_cannot_leave_the_experiment(escape_root: Path, model: str) -> None:
    """Model names (from the URL, or a symlinked folder) are resolved inside the experiment's models/ or refused."""
    from dashboard import data_access as da

    exp = art.load_experiment(escape_root / "inside")
    with pytest.raises(art.ArtifactError, match="escapes the artifact folder|must be relative"):
        da.get_model_data(exp, model, "test")
    with pytest.raises(art.ArtifactError, match="escapes the artifact folder|must be relative"):
        art.read_model_config(exp.path, model)


@pytest.mark.parametrize(
    "query",
    [
        {"exp": "../outside"},
        {"exp": "../../etc"},
        {"exp": "/etc/passwd"},
        {"exp": "inside", "models": "../../../outside/models/MobileNetV2,Escapee"},
        {"exp": "inside", "models": "/etc,..", "eval": "../x", "cls": "../y"},
    ],
)
def test_url_query_parameters_cannot_open_outside_files(escape_root: Path, artifacts_env, query: dict) -> None:
    """Hostile ?exp= / ?models= values fall back to what is inside the root; nothing outside is shown."""
    artifacts_env(escape_root)
    at = open_app(**query)
    no_exceptions(at)
    assert at.selectbox(key="exp").value == "inside"
    chosen = at.multiselect(key="models").value
    assert chosen and set(chosen) <= {"MobileNetV2", "ResNet50", "Escapee"}
    if "Escapee" in chosen:  # listed (its folder holds a complete config.json), but refused when read
        assert any("Escapee" in e.value and "escapes the artifact folder" in e.value for e in at.error)
    outside = str(escape_root.parent / "outside")
    shown = [e.value for e in [*at.error, *at.warning, *at.info, *at.markdown, *at.caption]]
    assert not [t for t in shown if outside in t], shown


@pytest.mark.parametrize(
    "page",
    [
        "overview",
        "curves",
        "confusion",
        "thresholds",
        "calibration",
        "training",
        "eval_sets",
        "compare",
        "review",
        "live",
        "segmentation",
    ],
)
def test_a_symlinked_model_folder_is_refused_on_every_page(escape_root: Path, artifacts_env, page: str) -> None:
    """A model folder that links outside the experiment is reported, never read, on every page."""
    artifacts_env(escape_root)
    at = open_app("inside")
    at.switch_page(f"app_pages/{page}.py").run()
    no_exceptions(at)
    assert "Escapee" in at.multiselect(key="models").value


def test_manifest_paths_are_never_opened_by_the_dashboard() -> None:
    """The dashboard reads images only from thumbnails.parquet, never from samples.parquet's path columns."""
    offenders = []
    for path in sorted((REPO_ROOT / "dashboard").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for call in _calls(tree):
            name = _name(call.func)
            if name.split(".")[-1] in ("load_image", "probe_image", "imread") or name in ("open", "Image.open"):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{call.lineno}: {name}()")
    assert not offenders, f"dashboard code opens files by path; check they cannot come from a manifest: {offenders}"
