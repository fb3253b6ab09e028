"""The embedded demo data generator: layouts, masks, determinism, class balance, learnability."""
from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline import synthetic
from pipeline.synthetic import (
    LESION_CLASSES,
    MARKER_FILE,
    _class_counts,
    corner_evidence_image,
    make_demo_sources,
    make_histology,
    make_lesions,
)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert image is not None, path
    return image[..., ::-1] if image.ndim == 3 else image


def _histology_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.png") if not p.name.endswith("_mask.png"))


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def histology(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_histology(tmp_path_factory.mktemp("hist") / "h", n_patients=40, images_per_patient=8,
                          size=48, seed=0)


@pytest.fixture(scope="module")
def lesions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_lesions(tmp_path_factory.mktemp("les") / "l", n_lesions=220, size=32, seed=1)


# ------------------------------------------------------------------------------------- histology
def test_histology_layout_and_masks(histology: Path) -> None:
    images = _histology_images(histology)
    assert len(images) == 40 * 8
    assert len(list(histology.rglob("*_mask.png"))) == len(images)
    for path in images:
        patient, label = path.parent.parent.name, path.parent.name
        assert label in {"0", "1"}
        assert path.parent.parent.parent == histology
        assert path.name.startswith(f"{patient}_idx") and path.name.endswith(f"_class{label}.png")
        image = _rgb(path)
        mask = _rgb(path.with_name(path.stem + "_mask.png"))
        assert image.shape == (48, 48, 3) and image.dtype == np.uint8
        assert mask.shape == (48, 48) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        # The mask marks the drawn nuclei: haematoxylin-dark pixels.
        gray = image.mean(axis=2)
        assert gray[mask > 0].mean() < gray[mask == 0].mean() - 15


def test_histology_class_balance_and_patients(histology: Path) -> None:
    images = _histology_images(histology)
    labels = np.array([int(p.parent.name) for p in images])
    assert 0.25 <= labels.mean() <= 0.45
    per_patient = pd.Series(labels).groupby([p.parent.parent.name for p in images]).agg(["min", "max"])
    assert len(per_patient) == 40
    assert ((per_patient["min"] == 0) & (per_patient["max"] == 1)).sum() >= 5  # mixed patients
    assert (per_patient["max"] == 0).sum() >= 5  # benign-only patients


def test_histology_label_noise_flips_exact_fraction(tmp_path: Path) -> None:
    # Same seed: patients and true labels are drawn before the flips, so only flipped folders differ.
    clean = make_histology(tmp_path / "clean", n_patients=10, images_per_patient=5, size=24, label_noise=0.0)
    noisy = make_histology(tmp_path / "noisy", n_patients=10, images_per_patient=5, size=24, label_noise=0.2)

    def labels(root: Path) -> dict[str, str]:
        return {p.name.split("_class")[0]: p.parent.name for p in _histology_images(root)}

    a, b = labels(clean), labels(noisy)
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a) == 10  # 20% of 50


def test_histology_is_learnable_but_not_trivial(histology: Path) -> None:
    """Mask-free colour/intensity statistics + logistic regression, patient-grouped CV."""
    images = _histology_images(histology)

    def features(path: Path) -> list[float]:
        image = _rgb(path).astype(float)
        gray = image.mean(axis=2)
        pixels = image.reshape(-1, 3)
        return [*pixels.mean(0), *pixels.std(0), *[(gray < t).mean() for t in (80, 110, 140)]]

    x = np.array([features(p) for p in images])
    y = np.array([int(p.parent.name) for p in images])
    groups = np.array([p.parent.parent.name for p in images])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    prob = cross_val_predict(model, x, y, groups=groups, cv=GroupKFold(5), method="predict_proba")[:, 1]
    auc = roc_auc_score(y, prob)
    assert 0.65 < auc < 0.99, auc


def test_histology_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="`label_noise`.*Received: 0.7"):
        make_histology(tmp_path, label_noise=0.7)
    with pytest.raises(ValueError, match="`n_patients`"):
        make_histology(tmp_path, n_patients=0)


# ---------------------------------------------------------------------------------------- lesions
def test_lesions_layout_and_masks(lesions: Path) -> None:
    meta = pd.read_csv(lesions / "metadata.csv")
    assert list(meta.columns) == ["image_id", "lesion_id", "dx", "age", "sex", "localization", "site"]
    assert meta["image_id"].is_unique
    assert set(meta["dx"]) == set(LESION_CLASSES)
    assert sorted(p.stem for p in (lesions / "images").glob("*.png")) == sorted(meta["image_id"])
    assert len(list((lesions / "masks").glob("*_mask.png"))) == len(meta)
    contrast = []
    for image_id in meta["image_id"][:60]:
        image = _rgb(lesions / "images" / f"{image_id}.png")
        mask = _rgb(lesions / "masks" / f"{image_id}_mask.png")
        assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
        assert set(np.unique(mask)) <= {0, 255} and mask.any() and not mask.all()
        # The lesion differs in colour from the skin just around it (the mask sits on the lesion).
        ring = (cv2.dilate(mask, np.ones((7, 7), np.uint8)) > 0) & (mask == 0)
        inside, outside = image[mask > 0].astype(float).mean(0), image[ring].astype(float).mean(0)
        contrast.append(np.abs(inside - outside).max())
    assert min(contrast) > 6 and np.median(contrast) > 25, sorted(contrast)


def test_lesions_imbalanced_with_every_class_present(lesions: Path) -> None:
    meta = pd.read_csv(lesions / "metadata.csv")
    per_class = meta.groupby("dx")["lesion_id"].nunique()
    assert per_class.to_dict() == dict(zip(LESION_CLASSES, [99, 33, 31, 22, 13, 11, 11]))
    assert per_class.min() >= 8
    assert per_class.idxmax() == "nv" and per_class["nv"] / per_class.sum() == pytest.approx(0.45)


def test_lesion_ids_shared_and_consistent(lesions: Path) -> None:
    meta = pd.read_csv(lesions / "metadata.csv")
    sizes = meta.groupby("lesion_id").size()
    assert sizes.between(1, 3).all() and (sizes >= 2).sum() >= 50
    assert meta["lesion_id"].str.fullmatch(r"HAM_\d{7}").all()
    assert meta["image_id"].str.fullmatch(r"ISIC_\d{7}").all()
    # Lesion-level attributes are constant across the images of one lesion.
    assert (meta.groupby("lesion_id")[["dx", "age", "sex", "localization"]].nunique() == 1).all().all()
    assert meta["age"].between(5, 85).all() and set(meta["sex"]) <= {"male", "female"}
    # Images of one lesion are different views, not copies.
    first = sizes[sizes >= 2].index[0]
    ids = meta.loc[meta["lesion_id"] == first, "image_id"].tolist()
    a, b = (_rgb(lesions / "images" / f"{i}.png") for i in ids[:2])
    assert not np.array_equal(a, b)


def test_lesions_are_learnable_but_not_trivial(lesions: Path) -> None:
    meta = pd.read_csv(lesions / "metadata.csv")

    def features(image_id: str) -> list[float]:
        image = _rgb(lesions / "images" / f"{image_id}.png").astype(float)
        gray = image.mean(axis=2)
        dark = gray < np.median(gray) - 25
        region = image[dark] if dark.sum() > 5 else image.reshape(-1, 3)
        return [*np.median(image.reshape(-1, 3), 0), *region.mean(0), *region.std(0), dark.mean()]

    x = np.array([features(i) for i in meta["image_id"]])
    y = meta["dx"].map(LESION_CLASSES.index).to_numpy()
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    prob = cross_val_predict(model, x, y, groups=meta["lesion_id"], cv=GroupKFold(5), method="predict_proba")
    auc = roc_auc_score(y, prob, multi_class="ovr", average="macro")
    assert 0.6 < auc < 0.99, auc


def test_class_counts_allocation() -> None:
    freqs = (0.45, 0.15, 0.14, 0.10, 0.06, 0.05, 0.05)
    assert _class_counts(220, freqs).tolist() == [99, 33, 31, 22, 13, 11, 11]
    assert _class_counts(7, freqs).tolist() == [1] * 7
    assert _class_counts(10, freqs).sum() == 10 and _class_counts(10, freqs).min() >= 1


# ------------------------------------------------------------------------------------ determinism
def test_same_seed_gives_identical_bytes(tmp_path: Path) -> None:
    a = _tree_bytes(make_histology(tmp_path / "a", n_patients=4, images_per_patient=3, size=32, seed=5))
    b = _tree_bytes(make_histology(tmp_path / "b", n_patients=4, images_per_patient=3, size=32, seed=5))
    c = _tree_bytes(make_histology(tmp_path / "c", n_patients=4, images_per_patient=3, size=32, seed=6))
    assert a == b and a != c
    la = _tree_bytes(make_lesions(tmp_path / "la", n_lesions=12, size=32, seed=3))
    lb = _tree_bytes(make_lesions(tmp_path / "lb", n_lesions=12, size=32, seed=3))
    lc = _tree_bytes(make_lesions(tmp_path / "lc", n_lesions=12, size=32, seed=4))
    assert la == lb and la != lc


def test_import_has_no_side_effects_and_no_tensorflow(tmp_path: Path) -> None:
    code = "import sys, pipeline.synthetic; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------- demo
def test_demo_sources_are_built_once_and_rebuilt_when_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Shrink the sets: this test is about the build-once logic, not the images.
    monkeypatch.setattr(synthetic, "make_histology", partial(make_histology, n_patients=4, images_per_patient=2))
    monkeypatch.setattr(synthetic, "make_lesions", partial(make_lesions, n_lesions=8))
    paths = make_demo_sources(tmp_path, size=24)
    assert paths == {"histology": tmp_path / "histology", "lesions": tmp_path / "lesions",
                     "histology-stainshift": tmp_path / "histology-stainshift"}
    for path in paths.values():
        assert (path / MARKER_FILE).is_file()
    assert (paths["lesions"] / "metadata.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["histology", "histology-stainshift", "lesions"]  # no scratch left

    sentinel = paths["histology"] / "sentinel.txt"
    sentinel.write_text("kept while complete")
    marker_time = (paths["lesions"] / MARKER_FILE).stat().st_mtime_ns
    assert make_demo_sources(tmp_path, size=24) == paths
    assert sentinel.exists()
    assert (paths["lesions"] / MARKER_FILE).stat().st_mtime_ns == marker_time

    (paths["histology"] / MARKER_FILE).unlink()  # an interrupted build: regenerate from scratch
    make_demo_sources(tmp_path, size=24)
    assert not sentinel.exists() and (paths["histology"] / MARKER_FILE).is_file()
    assert (paths["lesions"] / MARKER_FILE).stat().st_mtime_ns == marker_time


# ------------------------------------------------------------------------------- Grad-CAM helper
@pytest.mark.parametrize("corner", ["tl", "tr", "bl", "br"])
def test_corner_evidence_image_puts_the_blob_in_its_corner(corner: str) -> None:
    image = corner_evidence_image(40, corner, seed=2)
    assert image.shape == (40, 40, 3) and image.dtype == np.uint8
    gray = image.mean(axis=2)
    quadrants = {"tl": gray[:20, :20], "tr": gray[:20, 20:], "bl": gray[20:, :20], "br": gray[20:, 20:]}
    brightest = max(quadrants, key=lambda q: quadrants[q].mean())
    assert brightest == corner
    assert quadrants[corner].mean() > 1.3 * np.mean([v.mean() for k, v in quadrants.items() if k != corner])
    np.testing.assert_array_equal(image, corner_evidence_image(40, corner, seed=2))


def test_corner_evidence_image_rejects_unknown_corner() -> None:
    with pytest.raises(ValueError, match="`corner`.*Received: 'middle'"):
        corner_evidence_image(32, "middle")
