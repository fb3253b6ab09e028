"""Where subgroup columns come from, on generated files: DICOM header tags (built-in and named in the config,
PatientAge in years so it bins) and named groups of a regex on BreakHis-like file names, end to end from
ingest to the subgroup codes the page and the report use."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest

from pipeline import subgroups as sg
from pipeline.datasets import ingest
from tests.test_datasets import write_image
from tests.test_decode import dicom_bytes

# (folder, patient, age, sex, manufacturer, view) of each generated DICOM file; None: the tag is absent.
DICOM_FILES = [
    ("benign", "P1", "045Y", "F", "GE MEDICAL SYSTEMS", "CC"),
    ("benign", "P2", "067Y", "F", "SIEMENS", "MLO"),
    ("benign", "P3", "018M", "M", "SIEMENS", None),
    ("malignant", "P4", "072Y", "F", "GE MEDICAL SYSTEMS", "CC"),
    ("malignant", "P5", None, None, None, "MLO"),
    ("malignant", "P6", "030Y", "O", "HOLOGIC", "CC"),
]


def write_tagged_dicoms(root: Path) -> None:
    """Six DICOM files whose headers carry (or lack) the subgroup tags, plus one extra tag."""
    import pydicom

    for i, (folder, patient, age, sex, maker, view) in enumerate(DICOM_FILES):
        ds = pydicom.dcmread(io.BytesIO(dicom_bytes(patient_id=patient)))
        if age is not None:
            ds.PatientAge = age
        if sex is not None:
            ds.PatientSex = sex
        if maker is not None:
            ds.Manufacturer = maker
            ds.ManufacturerModelName = f"{maker.split()[0].title()} 3000"
        if view is not None:
            ds.ViewPosition = view
        ds.ImageLaterality = "LR"[i % 2]
        ds.BodyPartExamined = "BREAST"
        ds.InstitutionName = f"Hospital {'AB'[i % 2]}"
        path = root / folder / patient / f"{i}.dcm"
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path)


def test_dicom_tags_become_subgroup_columns_and_age_strings_become_years(tmp_path):
    write_tagged_dicoms(tmp_path)
    samples = ingest("dicom", tmp_path, label_from="folder", dicom_tags=["InstitutionName"]).samples
    by_patient = samples.set_index("patient_id")
    assert by_patient.loc["P1", "manufacturer"] == "GE MEDICAL SYSTEMS"
    assert by_patient.loc["P2", "manufacturer_model_name"] == "Siemens 3000"
    assert by_patient.loc["P1", "view_position"] == "CC" and pd.isna(by_patient.loc["P3", "view_position"])
    assert by_patient["laterality"].tolist() == ["L", "R", "L", "R", "L", "R"]
    assert set(by_patient["body_part_examined"]) == {"BREAST"}
    assert by_patient.loc["P6", "institution_name"] == "Hospital B"
    # "045Y" -> 45 years, "018M" -> 1.5 years; absent -> missing.
    ages = by_patient["patient_age"]
    assert ages.dtype.kind == "f" and ages.loc["P1"] == 45.0 and ages.loc["P3"] == 1.5 and pd.isna(ages.loc["P5"])
    cols = sg.candidate_columns(samples)
    for c in ("manufacturer", "patient_sex", "patient_age", "view_position", "laterality", "institution_name"):
        assert c in cols
    ids = samples["sample_id"].tolist()
    maker = sg.subgroups_for(samples, "manufacturer", ids)
    assert maker.names == ("GE MEDICAL SYSTEMS", "HOLOGIC", "SIEMENS", "missing")
    assert maker.counts().tolist() == [2, 1, 2, 1]
    # Age bins from the config, the file without PatientAge in its own subgroup.
    age = sg.subgroups_for(samples, "patient_age", ids, bins={"patient_age": [0, 40, 60, 120]})
    assert age.names == ("[0, 40)", "[40, 60)", "[60, 120]", "missing")
    got = dict(zip(samples["patient_id"], (age.names[c] for c in age.codes)))
    assert got == {
        "P1": "[40, 60)",
        "P2": "[60, 120]",
        "P3": "[0, 40)",
        "P4": "[60, 120]",
        "P5": "missing",
        "P6": "[0, 40)",
    }


def test_a_tag_named_in_the_config_is_a_column_even_when_no_file_has_it_and_bad_names_are_refused(tmp_path):
    write_tagged_dicoms(tmp_path)
    samples = ingest("dicom", tmp_path, label_from="folder", dicom_tags=["MagneticFieldStrength"]).samples
    assert "magnetic_field_strength" in samples.columns and samples["magnetic_field_strength"].isna().all()
    assert "station_name" not in samples.columns  # a built-in-only table does not grow columns nobody asked for
    with pytest.raises(ValueError, match=r"dicom_tags.*unknown keyword\(s\): \['Scanner'\]"):
        ingest("dicom", tmp_path, label_from="folder", dicom_tags=["Scanner"])
    with pytest.raises(ValueError, match=r"dicom_tags.*a list of DICOM keywords.*'Manufacturer'"):
        ingest("dicom", tmp_path, label_from="folder", dicom_tags="Manufacturer")


def test_dicom_age_strings():
    from pipeline.datasets import _dicom_age_years

    assert _dicom_age_years("045Y") == 45.0
    assert _dicom_age_years("006M") == 0.5
    assert _dicom_age_years("026W") == pytest.approx(26 / 52.1775, abs=1e-3)
    assert _dicom_age_years("073D") == pytest.approx(0.2, abs=1e-3)
    assert _dicom_age_years("52") == 52.0
    assert _dicom_age_years("unknown") is None and _dicom_age_years("") is None


def test_breakhis_magnification_from_file_names_end_to_end(tmp_path):
    """class_folders ingest of BreakHis-like names -> regex from the config -> the magnification subgroups."""
    from pipeline.config import parse_subgroups

    names = {"benign": [], "malignant": []}
    for cls, tumour in (("benign", "B_A"), ("malignant", "M_DC")):
        for mag in (40, 100, 200, 400):
            for i in range(1, 3):
                name = f"SOB_{tumour}-14-22549AB-{mag}-{i:03d}.png"
                write_image(tmp_path / cls / name)
                names[cls].append(name)
    write_image(tmp_path / "benign" / "stray_image.png")  # no magnification in its name
    samples = ingest("class_folders", tmp_path).samples
    cfg = parse_subgroups({"subgroups": {"regex": r"-(?P<magnification>40|100|200|400)-\d+\.png$"}})
    frame = sg.subgroup_frame(samples, regex=cfg.regex, regex_source=cfg.regex_source)
    assert "magnification" in frame.columns
    ids = samples["sample_id"].tolist()
    mag = sg.subgroups_for(samples, "magnification", ids, regex=cfg.regex, regex_source=cfg.regex_source)
    assert mag.names == ("40", "100", "200", "400", "missing")
    assert mag.counts().tolist() == [4, 4, 4, 4, 1]
    got = {sid: mag.names[c] for sid, c in zip(ids, mag.codes)}
    assert got["benign/SOB_B_A-14-22549AB-40-001.png"] == "40"
    assert got["malignant/SOB_M_DC-14-22549AB-400-002.png"] == "400"
    assert got["benign/stray_image.png"] == "missing"
    with pytest.raises(ValueError, match="regex_source"):
        sg.subgroup_frame(samples, regex=cfg.regex, regex_source="file_name")
