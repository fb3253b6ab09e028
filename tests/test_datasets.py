"""Ingestion of every layout (with junk files mixed in), grouped stratified splits, leakage check, fingerprint."""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline import datasets as ds
from pipeline.datasets import check_no_leakage, dataset_fingerprint, ingest, skipped_report, split_samples
from pipeline.preprocess import load_image
from tests.test_decode import dicom_bytes

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ---------------------------------------------------------------- tree builders

def write_image(path: Path, value: int = 128, size: tuple[int, int] = (12, 10)) -> Path:
    """A tiny valid image (format from the extension)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(path.suffix, np.full(size, value, np.uint8))
    assert ok
    path.write_bytes(buf.tobytes())
    return path


def add_junk(folder: Path, image_stem: str) -> None:
    """The usual junk of a real image folder, next to the image ``image_stem``."""
    write_image(folder / f"{image_stem}_mask.png", 255)
    (folder / "notes.txt").write_text("scanned on tuesday\n")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0" + b"\x00" * 60)
    (folder / "broken.png").write_bytes(bytes(range(7, 250)) * 3)  # garbage with an image extension
    (folder / "empty.jpg").write_bytes(b"")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


JUNK_REASONS = {ds.NOT_IMAGE: 1, ds.SYSTEM: 1, ds.CORRUPT: 1, ds.EMPTY: 1, ds.HIDDEN: 1, ds.MASK_ATTACHED: 1}


def reasons(result: ds.IngestResult) -> dict[str, int]:
    """Skip counts per reason."""
    return result.skipped["reason"].value_counts().to_dict()


def by_name(result: ds.IngestResult) -> pd.DataFrame:
    """Samples indexed by file name."""
    samples = result.samples
    return samples.set_index(samples["path"].map(lambda p: Path(p).name))


def assert_core_table(result: ds.IngestResult) -> None:
    """Columns, dtypes and invariants every layout shares."""
    samples = result.samples
    assert list(samples.columns[:7]) == list(ds.CORE_COLUMNS)
    assert samples["sample_id"].is_unique
    assert samples["label"].dtype == np.int64
    assert samples["label"].between(0, len(result.class_names) - 1).all()
    assert (samples["label_name"] == samples["label"].map(dict(enumerate(result.class_names)))).all()
    assert samples["group"].map(lambda g: isinstance(g, str) and g != "").all()


# ---------------------------------------------------------------- layouts

def test_class_folders_with_junk(tmp_path):
    for name in ("a", "b", "c"):
        write_image(tmp_path / "benign" / f"{name}.png", 50)
    write_image(tmp_path / "malignant" / "d.png", 200)
    write_image(tmp_path / "malignant" / "e.jpg", 200)
    write_image(tmp_path / "malignant" / "40X" / "f.tif", 200)  # nested subfolder: label is the top folder
    add_junk(tmp_path / "benign", "a")

    result = ingest("class_folders", tmp_path)
    assert_core_table(result)
    assert result.class_names == ["benign", "malignant"]
    samples = by_name(result)
    assert len(samples) == 6
    assert samples.loc[["a.png", "b.png", "c.png"], "label"].tolist() == [0, 0, 0]
    assert samples.loc[["d.png", "e.jpg", "f.tif"], "label_name"].tolist() == ["malignant"] * 3
    assert samples.at["f.tif", "sample_id"] == "malignant/40X/f.tif"
    assert samples.at["f.tif", "subfolder"] == "40X"
    assert (samples["group"] == samples["sample_id"]).all()  # no patient id in this layout
    assert samples["split"].isna().all()
    assert samples.at["a.png", "mask_path"] == str(tmp_path / "benign" / "a_mask.png")
    assert samples.at["b.png", "mask_path"] is None
    assert Path(samples.at["a.png", "path"]).is_absolute()

    assert reasons(result) == JUNK_REASONS
    corrupt = result.skipped[result.skipped["reason"] == ds.CORRUPT].iloc[0]
    assert corrupt["path"].endswith("broken.png")
    assert "not a recognised image format" in corrupt["detail"]
    assert any("each image is its own group" in note for note in result.notes)
    report = skipped_report(result)
    assert report.startswith("6 samples ingested; 6 files skipped:")
    assert "1 mask (attached to its image as mask_path): benign/a_mask.png (mask of a.png)" in report
    assert "1 empty file (0 bytes): benign/empty.jpg" in report
    assert result.report() == report


def test_class_folders_group_pattern_and_top_level_files(tmp_path):
    write_image(tmp_path / "benign" / "SOB_B_A-14-22549AB-40-001.png")
    write_image(tmp_path / "benign" / "SOB_B_A-14-22549AB-100-002.png")
    write_image(tmp_path / "malignant" / "SOB_M_DC-14-2523-40-010.png")
    write_image(tmp_path / "malignant" / "unnamed.png")
    write_image(tmp_path / "stray.png")
    result = ingest("class_folders", tmp_path, group_pattern=r"^SOB_[BM]_\w+-(?P<group>\d+-\w+)-\d+-\d+\.")
    assert sorted(result.samples["group"]) == ["14-22549AB", "14-22549AB", "14-2523"]
    assert reasons(result) == {ds.MISPLACED: 1, ds.NO_MATCH: 1}


def test_patient_class_folders_with_junk(tmp_path):
    for patient, label, name in [("10253", "0", "p1.png"), ("10253", "1", "p2.png"), ("10253", "0", "p3.png"),
                                 ("10254", "0", "q1.png"), ("10254", "1", "q2.png")]:
        write_image(tmp_path / patient / label / name)
    add_junk(tmp_path / "10253" / "0", "p1")
    write_image(tmp_path / "10254" / "stray.png")  # not inside a class folder

    result = ingest("patient_class_folders", tmp_path, label_map={"0": "no IDC", "1": "IDC"},
                    class_names=["no IDC", "IDC"])
    assert_core_table(result)
    samples = by_name(result)
    assert result.class_names == ["no IDC", "IDC"]
    assert samples["label"].to_dict() == {"p1.png": 0, "p3.png": 0, "p2.png": 1, "q1.png": 0, "q2.png": 1}
    assert samples["group"].to_dict() == {"p1.png": "10253", "p3.png": "10253", "p2.png": "10253",
                                          "q1.png": "10254", "q2.png": "10254"}
    assert samples.at["p1.png", "mask_path"].endswith("p1_mask.png")
    assert reasons(result) == {**JUNK_REASONS, ds.MISPLACED: 1}


def test_filename_prefix_with_junk(tmp_path):
    names = ["B_001-0001-0.png", "B_001-0002-1.png", "B_002-0001-0.png", "M_003-0001-0.png", "M_004-0001-1.png"]
    for name in names:
        write_image(tmp_path / name)
    add_junk(tmp_path, "B_001-0001-0")
    write_image(tmp_path / "scan.png")             # no prefix
    write_image(tmp_path / "X_005-0001-0.png")     # a prefix the label map does not know

    result = ingest("filename_prefix", tmp_path, label_map={"B": "benign", "M": "malignant"})
    assert_core_table(result)
    samples = by_name(result)
    assert len(samples) == 5
    assert samples["label_name"].value_counts().to_dict() == {"benign": 3, "malignant": 2}
    assert samples.loc[names, "group"].tolist() == ["001", "001", "002", "003", "004"]
    assert samples.at["B_001-0001-0.png", "mask_path"].endswith("B_001-0001-0_mask.png")
    assert reasons(result) == {**JUNK_REASONS, ds.NO_MATCH: 1, ds.UNKNOWN_LABEL: 1}
    unknown = result.skipped[result.skipped["reason"] == ds.UNKNOWN_LABEL].iloc[0]
    assert "label 'X' not in label_map" in unknown["detail"]


def test_filename_prefix_custom_pattern_adds_metadata(tmp_path):
    for name in ["benign-p1-a.png", "benign-p1-b.png", "malignant-p2-a.png"]:
        write_image(tmp_path / name)
    result = ingest("filename_prefix", tmp_path, pattern=r"^(?P<label>\w+)-(?P<group>p\d+)-(?P<view>\w)")
    samples = by_name(result)
    assert samples["view"].tolist() == ["a", "b", "a"]
    assert samples["group"].tolist() == ["p1", "p1", "p2"]
    with pytest.raises(ValueError, match=r"option `pattern`.*named groups.*missing \['group'\]"):
        ingest("filename_prefix", tmp_path, pattern=r"^(?P<label>\w+)-")


def write_ham(root: Path, rows: list[tuple[str, str, str]], split: list[str] | None = None) -> None:
    """A HAM10000-like metadata CSV and images spread over two folders."""
    table = pd.DataFrame(rows, columns=["image_id", "dx", "lesion_id"])
    table["age"] = [40 + i for i in range(len(rows))]
    table["sex"] = ["male", "female"] * (len(rows) // 2) + ["male"] * (len(rows) % 2)
    table["localization"] = "back"
    if split is not None:
        table["fold"] = split
    table.to_csv(root / "HAM10000_metadata.csv", index=False)


def test_metadata_csv_with_junk(tmp_path):
    rows = [("ISIC_01", "nv", "HAM_1"), ("ISIC_02", "nv", "HAM_1"), ("ISIC_03", "mel", "HAM_2"),
            ("ISIC_04", "bkl", "HAM_3"), ("ISIC_05", "mel", "HAM_4")]
    write_ham(tmp_path, rows)
    for image_id, *_ in rows[:2]:
        write_image(tmp_path / "HAM10000_images_part_1" / f"{image_id}.jpg")
    for image_id, *_ in rows[2:4]:  # ISIC_05 has no image file
        write_image(tmp_path / "HAM10000_images_part_2" / f"{image_id}.jpg")
    write_image(tmp_path / "HAM10000_images_part_2" / "ISIC_99.jpg")  # not listed in the CSV
    add_junk(tmp_path / "HAM10000_images_part_1", "ISIC_01")

    result = ingest("metadata_csv", tmp_path)
    assert_core_table(result)
    samples = by_name(result)
    assert result.class_names == ["bkl", "mel", "nv"]
    assert samples["label_name"].to_dict() == {"ISIC_01.jpg": "nv", "ISIC_02.jpg": "nv", "ISIC_03.jpg": "mel",
                                               "ISIC_04.jpg": "bkl"}
    assert samples["group"].tolist() == ["HAM_1", "HAM_1", "HAM_2", "HAM_3"]
    assert samples["age"].tolist() == [40, 41, 42, 43]  # other CSV columns kept as metadata
    assert set(samples["localization"]) == {"back"}
    assert samples.at["ISIC_01.jpg", "sample_id"] == "HAM10000_images_part_1/ISIC_01.jpg"
    assert samples.at["ISIC_01.jpg", "mask_path"].endswith("ISIC_01_mask.png")
    # the CSV itself sits at the root, outside the image folders, so it is not reported as junk
    assert reasons(result) == {**JUNK_REASONS, ds.MISSING_FILE: 1, ds.UNLISTED: 1}
    missing = result.skipped[result.skipped["reason"] == ds.MISSING_FILE].iloc[0]
    assert "ISIC_05" in missing["detail"]


def test_metadata_csv_options_and_errors(tmp_path):
    rows = [("a", "benign", "L1"), ("b", "malignant", "L2"), ("c", "benign", "L3")]
    write_ham(tmp_path, rows, split=["training", "Validation", "test"])
    for image_id, *_ in rows:
        write_image(tmp_path / "imgs" / f"{image_id}.png")
    result = ingest("metadata_csv", tmp_path, csv="HAM10000_metadata.csv", image_dir="imgs", label_column="dx",
                    group_column="lesion_id", extension="png", split_column="fold")
    assert result.samples["split"].tolist() == ["train", "val", "test"]
    with pytest.raises(ValueError, match=r"option `label_column`. Expected a column of HAM10000_metadata.csv.*"
                                         r"Received: 'diagnosis'"):
        ingest("metadata_csv", tmp_path, label_column="diagnosis")
    with pytest.raises(ValueError, match=r"option `csv`.*Received: 'nope.csv' \(not found\)"):
        ingest("metadata_csv", tmp_path, csv="nope.csv")


def write_dicom_tree(root: Path) -> None:
    """Two patients' series, a report without pixels, a garbage .dcm, a DICOMDIR and a note."""
    for patient, folder in (("PAT-1", "benign"), ("PAT-2", "malignant"), ("PAT-3", "malignant")):
        for i in range(2):
            path = root / folder / patient / f"1-{i:03d}.dcm"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(dicom_bytes(patient_id=patient))
    (root / "benign" / "PAT-1" / "report.dcm").write_bytes(dicom_bytes(pixels=False, patient_id="PAT-1"))
    (root / "benign" / "PAT-1" / "garbage.dcm").write_bytes(b"\x00\x01not dicom at all" * 10)
    (root / "DICOMDIR").write_bytes(b"\x00" * 200)
    (root / "benign" / "notes.txt").write_text("series 2 is blurry")


def test_dicom_labels_from_csv(tmp_path):
    write_dicom_tree(tmp_path)
    pd.DataFrame({"PatientID": ["PAT-1", "PAT-2"], "label": ["benign", "malignant"]}).to_csv(
        tmp_path / "labels.csv", index=False)
    result = ingest("dicom", tmp_path, labels_csv="labels.csv")
    assert_core_table(result)
    samples = result.samples
    assert len(samples) == 4  # PAT-3 has no label in the CSV
    assert samples.groupby("group")["label_name"].first().to_dict() == {"PAT-1": "benign", "PAT-2": "malignant"}
    assert set(samples["modality"]) == {"MR"} and set(samples["rows"]) == {20}
    assert reasons(result) == {ds.NO_LABEL: 2, ds.NO_PIXELS: 1, ds.CORRUPT: 1, ds.SYSTEM: 1, ds.NOT_IMAGE: 1}
    no_label = result.skipped[result.skipped["reason"] == ds.NO_LABEL].iloc[0]
    assert no_label["detail"] == "PatientID 'PAT-3' not in labels_csv"
    assert load_image(samples["path"].iloc[0]).rgb.shape == (20, 30, 3)  # the paths decode


def test_dicom_labels_from_folder_and_option_errors(tmp_path):
    write_dicom_tree(tmp_path)
    result = ingest("dicom", tmp_path, label_from="folder")
    assert result.samples.groupby("label_name")["group"].nunique().to_dict() == {"benign": 1, "malignant": 2}
    assert len(result.samples) == 6
    with pytest.raises(ValueError, match=r"Expected exactly one of `labels_csv`.*or `label_from='folder'`"):
        ingest("dicom", tmp_path)
    with pytest.raises(ValueError, match=r"option `label_from`. Expected 'folder'. Received: 'name'"):
        ingest("dicom", tmp_path, label_from="name")


def write_npz(path: Path, multilabel: bool = False) -> None:
    """A MedMNIST-like archive: 6/2/3 images of 5x5."""
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 5, 5), dtype=np.uint8)
        labels = np.array([[i % 2] for i in range(n)], dtype=np.uint8)
        arrays[f"{split}_labels"] = np.hstack([labels, labels]) if multilabel else labels
    np.savez_compressed(path, **arrays)


def test_npz_keeps_the_official_split(tmp_path):
    archive = tmp_path / "breastmnist.npz"
    write_npz(archive)
    result = ingest("npz", archive, class_names=["malignant", "normal/benign"])
    assert_core_table(result)
    samples = result.samples
    assert samples["split"].value_counts().to_dict() == {"train": 6, "test": 3, "val": 2}
    assert samples.at[7, "sample_id"] == "val_images[1]"
    assert samples.at[7, "path"] == f"{archive}::val_images[1]"
    assert (samples["group"] == samples["sample_id"]).all()
    assert samples.loc[samples["label"] == 0, "label_name"].unique().tolist() == ["malignant"]
    assert split_samples(samples)["split"].tolist() == samples["split"].tolist()
    assert load_image(samples.at[7, "path"]).rgb.shape == (5, 5, 3)
    assert result.skipped.empty


def test_npz_errors(tmp_path):
    archive = tmp_path / "chest.npz"
    write_npz(archive, multilabel=True)
    with pytest.raises(ValueError, match="multi-label archives are not supported"):
        ingest("npz", archive)
    write_npz(archive)
    with pytest.raises(ValueError, match=r"option `class_names`. Expected at least 2 names"):
        ingest("npz", archive, class_names=["only"])
    default = ingest("npz", archive)
    assert default.class_names == ["0", "1"]
    assert any("class_names not given" in note for note in default.notes)


# ---------------------------------------------------------------- validation

def test_ingest_argument_errors(tmp_path):
    with pytest.raises(ValueError, match=r"argument `layout`. Expected one of \[.*'class_folders'.*\]. "
                                         r"Received: 'folders'"):
        ingest("folders", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"argument `root`.*Received: .*nowhere.* \(not found\)"):
        ingest("class_folders", tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"Invalid option\(s\) \['patern'\] for layout 'filename_prefix'"):
        ingest("filename_prefix", tmp_path, patern="x")
    with pytest.raises(ValueError, match=r"option `check`. Expected one of"):
        ingest("class_folders", tmp_path, check="full")


def test_fewer_than_two_classes_and_no_images(tmp_path):
    (tmp_path / "only").mkdir()
    (tmp_path / "only" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=r"No images found for layout 'class_folders'.*'not an image file': 1"):
        ingest("class_folders", tmp_path)
    write_image(tmp_path / "only" / "a.png")
    with pytest.raises(ValueError, match=r"expected at least 2 classes, found 1: \['only'\]"):
        ingest("class_folders", tmp_path)


def test_verify_check_catches_a_broken_png_body(tmp_path):
    write_image(tmp_path / "a" / "ok.png")
    write_image(tmp_path / "b" / "ok.png")
    good = (tmp_path / "a" / "ok.png").read_bytes()
    broken = bytearray(good)
    broken[-20] ^= 0xFF  # inside IDAT/IEND: the header is fine, the CRC is not
    (tmp_path / "b" / "bad.png").write_bytes(bytes(broken))
    assert len(ingest("class_folders", tmp_path).samples) == 3  # header check: cheap, lets it through
    strict = ingest("class_folders", tmp_path, check="verify")
    assert len(strict.samples) == 2 and reasons(strict) == {ds.CORRUPT: 1}


# ---------------------------------------------------------------- splits

def grouped_table(n_groups: int = 60, seed: int = 0) -> pd.DataFrame:
    """Groups of 1-5 images; about 25% of groups positive."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        label = int(rng.random() < 0.25)
        for i in range(int(rng.integers(1, 6))):
            rows.append({"sample_id": f"g{g}/{i}", "label": label, "group": f"patient-{g}", "split": None})
    return pd.DataFrame(rows)


def test_grouped_stratified_split_has_no_leakage_and_keeps_proportions():
    samples = grouped_table()
    out = split_samples(samples, seed=3)
    check_no_leakage(out)
    assert set(out["split"]) == {"train", "val", "test"}
    assert out.groupby("group")["split"].nunique().max() == 1
    share = out["split"].value_counts(normalize=True)
    assert abs(share["train"] - 0.7) < 0.08 and abs(share["val"] - 0.15) < 0.08
    overall = samples["label"].mean()
    for split, part in out.groupby("split"):
        assert abs(part["label"].mean() - overall) < 0.15, split  # stratified: similar positive rate
    assert out.attrs["split_policy"] == "grouped-stratified"
    assert samples["split"].isna().all()  # the input is not modified


def test_split_is_deterministic_for_a_seed():
    samples = grouped_table()
    first = split_samples(samples, seed=7)["split"].tolist()
    assert split_samples(samples, seed=7)["split"].tolist() == first
    shuffled = samples.sample(frac=1, random_state=1)
    again = split_samples(shuffled, seed=7).sort_index()["split"].tolist()
    assert again == first  # row order does not matter, only the seed
    assert split_samples(samples, seed=8)["split"].tolist() != first


def test_tiny_data_gets_every_split():
    samples = pd.DataFrame({"sample_id": [f"s{i}" for i in range(6)], "label": [0, 0, 0, 1, 1, 1],
                            "group": [f"p{i}" for i in range(6)]})
    out = split_samples(samples)
    assert out.groupby("split")["label"].apply(sorted).to_dict() == {"test": [0, 1], "train": [0, 1], "val": [0, 1]}
    three = split_samples(samples.iloc[:3].assign(label=0))
    assert sorted(three["split"]) == ["test", "train", "val"]
    two = split_samples(samples.iloc[:2])  # fewer groups than splits: no crash
    assert two["split"].notna().all()


def test_given_split_is_kept_and_partial_split_completed():
    samples = grouped_table(20)
    official = samples.assign(split=np.where(np.arange(len(samples)) % 2, "train", "test"))
    assert split_samples(official)["split"].tolist() == official["split"].tolist()  # kept even if leaky
    partial = samples.copy().astype({"split": object})
    partial.loc[partial["group"] == "patient-0", "split"] = "test"
    out = split_samples(partial)
    assert set(out.loc[out["group"] == "patient-0", "split"]) == {"test"}
    assert out["split"].notna().all()
    check_no_leakage(out)
    with pytest.raises(ValueError, match=r"argument `fractions`"):
        split_samples(samples, fractions=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match=r"argument `group_column`.*Received: 'patient'"):
        split_samples(samples, group_column="patient")


def test_leakage_detector_names_the_group():
    samples = pd.DataFrame({"group": ["p1", "p1", "p2", "p3", "p3"],
                            "split": ["train", "test", "train", "val", "val"]})
    with pytest.raises(ValueError, match=r"1 group\(s\) in column 'group' appear in more than one split: "
                                         r"'p1' in test/train"):
        check_no_leakage(samples)
    check_no_leakage(samples.iloc[2:])


# ---------------------------------------------------------------- fingerprint

def test_fingerprint_is_stable_and_sensitive(tmp_path):
    for name in ("a", "b"):
        write_image(tmp_path / "x" / f"{name}.png")
        write_image(tmp_path / "y" / f"{name}.png")
    samples = ingest("class_folders", tmp_path).samples
    first = dataset_fingerprint(samples)
    assert len(first) == 16
    assert dataset_fingerprint(samples.iloc[::-1]) == first  # order-free
    assert dataset_fingerprint(samples.assign(label=samples["label"][::-1].to_numpy())) != first
    write_image(tmp_path / "x" / "a.png", size=(40, 40))  # the file changed
    assert dataset_fingerprint(samples) != first


# ---------------------------------------------------------------- speed

def test_ingest_of_many_files_is_fast(tmp_path):
    png = cv2.imencode(".png", np.zeros((8, 8), np.uint8))[1].tobytes()
    for label in ("a", "b"):
        folder = tmp_path / label
        folder.mkdir()
        for i in range(500):
            (folder / f"{i}.png").write_bytes(png)
    start = time.perf_counter()
    result = ingest("class_folders", tmp_path)
    assert len(result.samples) == 1000
    assert time.perf_counter() - start < 5.0  # header checks only: about 1 ms per file at most


# ---------------------------------------------------------------- real data (skipped when absent)

@pytest.mark.skipif(not (SHARED_DATA / "thyroid-ddti").is_dir(), reason="../shared/data/thyroid-ddti not present")
def test_real_thyroid_ddti():
    result = ingest("filename_prefix", SHARED_DATA / "thyroid-ddti", label_map={"B": "benign", "M": "malignant"})
    samples = result.samples
    assert len(samples) == 456
    assert samples["group"].nunique() == 290
    assert samples["label_name"].value_counts().to_dict() == {"malignant": 386, "benign": 70}
    out = split_samples(samples, seed=42)
    check_no_leakage(out)
    assert set(out["split"]) == {"train", "val", "test"}
    assert load_image(samples["path"].iloc[0]).rgb.shape == (300, 300, 3)


@pytest.mark.skipif(not (SHARED_DATA / "breastmnist.npz").is_file(), reason="../shared/data/breastmnist.npz not present")
def test_real_breastmnist():
    result = ingest("npz", SHARED_DATA / "breastmnist.npz", class_names=["malignant", "normal/benign"])
    samples = result.samples
    assert len(samples) == 780
    assert samples["split"].value_counts().to_dict() == {"train": 546, "test": 156, "val": 78}
    assert split_samples(samples)["split"].equals(samples["split"])
    assert load_image(samples["path"].iloc[-1]).rgb.shape == (28, 28, 3)
