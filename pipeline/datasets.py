"""Dataset layouts -> one sample table; grouped, stratified splits; leakage check; fingerprint.

Every supported layout (DESIGN.md, "Supported dataset layouts") ends in the same table::

    sample_id   str   unique and stable: the path relative to the dataset root (or ``key[i]`` for .npz)
    path        str   absolute file path, or ``<file.npz>::<key>[<index>]``
    label       int   index into ``class_names``
    label_name  str
    group       str   patient / lesion id; the sample_id itself when the layout has none
    split       str   "train" / "val" / "test", or missing when the data does not say
    mask_path   str   the ``<image>_mask.png`` next to the image, or missing
    ...               metadata columns (CSV columns, DICOM header fields, parts of the file name)

Files that are not usable images are never mixed in as samples and never crash the ingest: they
are listed in ``IngestResult.skipped`` with a reason, and :func:`skipped_report` summarises them.
The corruption check reads file headers only (magic bytes, then Pillow's lazy ``open``), so
ingesting 100k files stays fast; full decoding happens later, where each image is used.

No TensorFlow here.
"""
from __future__ import annotations

import hashlib
import os
import re
import zipfile
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.preprocess import (
    DEFAULT_MAX_PIXELS,
    DICOM_EXTENSIONS,
    IMAGE_EXTENSIONS,
    PIL_FORMATS,
    ImageDecodeError,
    describe_non_image,
    parse_npz_ref,
    probe_image,
    sniff_format,
)

LAYOUTS = ("class_folders", "patient_class_folders", "filename_prefix", "metadata_csv", "dicom", "npz")
CORE_COLUMNS = ("sample_id", "path", "label", "label_name", "group", "split", "mask_path")
SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "dev": "val", "test": "test", "testing": "test"}
CHECKS = ("none", "magic", "header", "verify")

# The thyroid-ultrasound naming: label prefix, "_", then the patient number ("B_001-0002-1.png").
DEFAULT_PREFIX_PATTERN = r"^(?P<label>[^_]+)_\D*(?P<group>\d+)"
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "dicomdir"})
HIDDEN_FOLDERS = frozenset({"__macosx"})
MASK_NAME = re.compile(r"^(?P<image>.+?)[_-]mask(?:[_-]?\d+)?$", re.IGNORECASE)

COMMON_OPTIONS = ("class_names", "label_map", "check", "extensions")
LAYOUT_OPTIONS: dict[str, tuple[str, ...]] = {
    "class_folders": COMMON_OPTIONS + ("group_pattern",),
    "patient_class_folders": COMMON_OPTIONS,
    "filename_prefix": COMMON_OPTIONS + ("pattern",),
    "metadata_csv": COMMON_OPTIONS + ("csv", "image_dir", "id_column", "label_column", "group_column",
                                      "extension", "split_column"),
    "dicom": ("class_names", "label_map", "labels_csv", "label_from", "key_column", "label_column", "dicom_tags"),
    "npz": ("class_names",),
}
DICOM_KEYS = ("PatientID", "SeriesInstanceUID", "StudyInstanceUID", "SOPInstanceUID")
# Header fields kept as sample-table columns (possible subgroups) where a file has them; option `dicom_tags`
# adds more by keyword. PatientAge ("045Y") becomes years, so it can be binned.
DICOM_SUBGROUP_TAGS = ("Manufacturer", "ManufacturerModelName", "PatientSex", "PatientAge", "BodyPartExamined",
                       "ViewPosition", "ImageLaterality", "Laterality")

# Skip reasons (the categories counted by skipped_report; details go in the "detail" column).
HIDDEN = "hidden file or folder"
SYSTEM = "system file"
NOT_IMAGE = "not an image file"
EMPTY = "empty file (0 bytes)"
CORRUPT = "corrupt or unreadable image"
TOO_LARGE = "image too large"
MASK_ATTACHED = "mask (attached to its image as mask_path)"
MASK_ORPHAN = "mask without a matching image"
MISPLACED = "not inside the expected folders"
NO_MATCH = "file name does not match the pattern"
UNLISTED = "image not listed in the CSV"
MISSING_FILE = "listed in the CSV but no image file found"
NO_LABEL = "no label"
DUPLICATE = "duplicate id"
UNKNOWN_LABEL = "label not in label_map / class_names"
NO_PIXELS = "DICOM without pixel data"


# ============================================================================ public API

def ingest(layout: str, root: str | Path, **options: Any) -> IngestResult:
    """Read a dataset in one of ``LAYOUTS`` into a sample table, skipping and reporting non-images."""
    if layout not in LAYOUTS:
        raise ValueError(f"Invalid value for argument `layout`. Expected one of {list(LAYOUTS)}. Received: {layout!r}")
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"Invalid value for argument `root`. Expected an existing "
                                f"{'.npz file' if layout == 'npz' else 'folder'}. Received: {str(root)!r} (not found)")
    root = root.resolve()
    if layout != "npz" and not root.is_dir():
        raise ValueError(f"Invalid value for argument `root`. Expected a folder for layout {layout!r}. "
                         f"Received: {str(root)!r} (a file)")
    unknown = sorted(set(options) - set(LAYOUT_OPTIONS[layout]))
    if unknown:
        raise ValueError(f"Invalid option(s) {unknown} for layout {layout!r}. Expected some of "
                         f"{list(LAYOUT_OPTIONS[layout])}. Received: {sorted(options)}")
    _validate_common_options(options)
    reader = {
        "class_folders": _read_class_folders,
        "patient_class_folders": _read_patient_class_folders,
        "filename_prefix": _read_filename_prefix,
        "metadata_csv": _read_metadata_csv,
        "dicom": _read_dicom,
        "npz": _read_npz,
    }[layout]
    batch = _Batch(root=root)
    reader(root, batch, **{k: v for k, v in options.items() if k not in ("class_names", "label_map")})
    return _finish(batch, layout, root, options.get("class_names"), options.get("label_map"))


def skipped_report(result: IngestResult, examples: int = 3) -> str:
    """Counts of skipped files per reason, each with a few example paths and details."""
    skipped = result.skipped
    if skipped.empty:
        return f"{len(result.samples)} samples ingested; nothing skipped."
    lines = [f"{len(result.samples)} samples ingested; {len(skipped)} files skipped:"]
    counts = skipped["reason"].value_counts(sort=True)
    for reason, count in counts.items():
        rows = skipped[skipped["reason"] == reason].head(examples)
        shown = ", ".join(_example(row.path, row.detail, result.root) for row in rows.itertuples())
        more = ", ..." if count > examples else ""
        lines.append(f"  {count:>6} {reason}: {shown}{more}")
    return "\n".join(lines)


def split_samples(samples: pd.DataFrame, seed: int = 42,
                  fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
                  group_column: str = "group", label_column: str = "label",
                  duplicates: pd.DataFrame | None = None) -> pd.DataFrame:
    """Fill ``split`` with train/val/test, grouped (no group in two splits) and stratified by label.

    ``duplicates`` (pairs ``a``, ``b`` of sample ids, as ``pipeline.audit`` finds them) joins the groups that
    share a duplicate image, so a new split puts no duplicate in two splits; a given split is kept as is.
    """
    _validate_split_args(samples, seed, fractions, group_column, label_column)
    out = samples.copy()
    if "split" not in out.columns:
        out["split"] = None
    given = out["split"].astype(object).where(out["split"].notna(), None)
    if len(out) and given.notna().all():
        bad = sorted(set(given) - set(SPLITS) - {"eval"})
        if bad:
            raise ValueError(f"Invalid values in column `split`. Expected {list(SPLITS)}. Received: {bad}")
        out.attrs["split_policy"] = "given"
        return out  # an official or user-provided split is kept exactly as is
    check_no_leakage(out.assign(split=given), group_column=group_column)

    split_by = group_column
    if duplicates is not None and len(duplicates):
        from pipeline.audit import split_groups

        split_by = "_split_group"
        out[split_by] = split_groups(out.assign(split=given), duplicates, group_column).to_numpy()
    groups = _group_table(out, given, split_by, label_column)
    assigned = _assign_groups(groups, np.random.default_rng(seed), np.asarray(fractions, dtype=float))
    out["split"] = out[split_by].astype(str).map(assigned).astype(object)
    if split_by != group_column:
        out = out.drop(columns=[split_by])
        out.attrs["split_duplicate_groups"] = True
    out.attrs["split_policy"] = "grouped-stratified" if given.isna().all() else "given+grouped-stratified"
    out.attrs["split_seed"] = int(seed)
    out.attrs["split_fractions"] = tuple(float(f) for f in fractions)
    return out


def check_no_leakage(samples: pd.DataFrame, group_column: str = "group", split_column: str = "split") -> None:
    """Raise ValueError naming the groups (patients/lesions) that appear in more than one split."""
    for column, arg in ((group_column, "group_column"), (split_column, "split_column")):
        if column not in samples.columns:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected a column of the sample table "
                             f"{list(samples.columns)}. Received: {column!r}")
    known = samples.loc[samples[split_column].notna(), [group_column, split_column]]
    per_group = known.groupby(known[group_column].astype(str))[split_column].agg(lambda s: sorted(set(map(str, s))))
    crossing = per_group[per_group.map(len) > 1]
    if len(crossing):
        shown = "; ".join(f"{g!r} in {'/'.join(s)}" for g, s in crossing.head(5).items())
        more = f" (and {len(crossing) - 5} more)" if len(crossing) > 5 else ""
        raise ValueError(f"Leakage: {len(crossing)} group(s) in column {group_column!r} appear in more than one "
                         f"split: {shown}{more}. Split by group so that each patient/lesion is in one split.")


def dataset_fingerprint(samples: pd.DataFrame) -> str:
    """A short stable hash of (sample_id, label, file size or npz entry) for the experiment metadata."""
    missing = [c for c in ("sample_id", "path", "label") if c not in samples.columns]
    if missing:
        raise ValueError(f"Invalid value for argument `samples`. Expected columns sample_id, path, label. "
                         f"Received a table without {missing}")
    sizes: dict[str, int] = {}
    digest = hashlib.sha256()
    # file size rather than mtime: a copy of the same data on another machine keeps its fingerprint
    rows = sorted(zip(samples["sample_id"].astype(str), samples["label"].astype(str), samples["path"].astype(str)))
    for sample_id, label, path in rows:
        ref = parse_npz_ref(path)
        if ref:
            archive, key, index = ref
            if archive not in sizes:
                sizes[archive] = _file_size(archive)
            token = f"{os.path.basename(archive)}:{sizes[archive]}::{key}[{index}]"
        else:
            token = str(_file_size(path))
        digest.update(f"{sample_id}\t{label}\t{token}\n".encode())
    return digest.hexdigest()[:16]


# ============================================================================ layouts

def _read_class_folders(root: Path, batch: _Batch, check: str = "header", extensions: Iterable[str] | None = None,
                        group_pattern: str | None = None) -> None:
    """``root/<class>/**/<image>``: label = top folder; group from ``group_pattern`` or per image."""
    group_re = _compile_pattern(group_pattern, "group_pattern", ("group",)) if group_pattern else None
    if group_re is None:
        batch.notes.append("layout has no patient/lesion id: each image is its own group (pass group_pattern "
                           "to group images of one patient, or near-duplicates may leak across splits)")
    for file in _image_files(root, batch, check, extensions):
        parts = file.rel.split("/")
        if len(parts) < 2:
            batch.skip(file.path, MISPLACED, "file at the top level; expected root/<class>/<image>")
            continue
        group = None
        if group_re is not None:
            found = group_re.search(file.name)
            if not found:
                batch.skip(file.path, NO_MATCH, f"group_pattern {group_re.pattern!r}")
                continue
            group = found["group"]
        batch.add(file, parts[0], group, meta={"subfolder": "/".join(parts[1:-1])})


def _read_patient_class_folders(root: Path, batch: _Batch, check: str = "header",
                                extensions: Iterable[str] | None = None) -> None:
    """``root/<patient>/<class>/**/<image>`` (IDC patches): group = patient folder."""
    for file in _image_files(root, batch, check, extensions):
        parts = file.rel.split("/")
        if len(parts) < 3:
            batch.skip(file.path, MISPLACED, "expected root/<patient>/<class>/<image>")
            continue
        batch.add(file, parts[1], parts[0])


def _read_filename_prefix(root: Path, batch: _Batch, check: str = "header", extensions: Iterable[str] | None = None,
                          pattern: str = DEFAULT_PREFIX_PATTERN) -> None:
    """Label and group parsed from the file name (``B_001-0002-1.png``); other named groups -> metadata."""
    name_re = _compile_pattern(pattern, "pattern", ("label", "group"))
    extra = [g for g in name_re.groupindex if g not in ("label", "group")]
    for file in _image_files(root, batch, check, extensions):
        found = name_re.search(file.name)
        if not found:
            batch.skip(file.path, NO_MATCH, f"pattern {name_re.pattern!r}")
            continue
        batch.add(file, found["label"], found["group"], meta={g: found[g] for g in extra})


def _read_metadata_csv(root: Path, batch: _Batch, check: str = "header", extensions: Iterable[str] | None = None,
                       csv: str | Path | None = None, image_dir: str | Path | None = None,
                       id_column: str = "image_id", label_column: str = "dx", group_column: str | None = None,
                       extension: str | None = None, split_column: str | None = None) -> None:
    """A metadata CSV (HAM10000: image_id, dx, lesion_id) plus a folder of images found by id."""
    csv_path = _find_csv(root, csv)
    batch.own_files.add(str(csv_path.resolve()))
    try:
        table = pd.read_csv(csv_path, dtype={id_column: str, label_column: str})
    except Exception as exc:  # noqa: BLE001 - any pandas parse error is reported with the file name
        raise ValueError(f"Cannot read the metadata CSV {csv_path}: {exc}") from None
    columns = list(table.columns)
    for option, column in (("id_column", id_column), ("label_column", label_column),
                           ("group_column", group_column), ("split_column", split_column)):
        if column is not None and column not in columns:
            raise ValueError(f"Invalid value for option `{option}`. Expected a column of {csv_path.name}: "
                             f"{columns}. Received: {column!r}")
    if group_column is None:
        if "lesion_id" in columns:
            group_column = "lesion_id"
        else:
            batch.notes.append(f"{csv_path.name} has no group column (option group_column): "
                               "each image is its own group")
    image_root = (root / image_dir).resolve() if image_dir is not None else root
    if not image_root.is_dir():
        raise ValueError(f"Invalid value for option `image_dir`. Expected a folder under {root}. "
                         f"Received: {str(image_dir)!r} (not found)")
    if extension is not None and not str(extension).startswith("."):
        extension = "." + str(extension)

    by_name: dict[str, _File] = {}
    by_stem: dict[str, list[_File]] = defaultdict(list)
    for file in _image_files(image_root, batch, check, extensions, rel_root=root):
        by_name[file.name.lower()] = file
        by_stem[file.stem.lower()].append(file)

    used: set[str] = set()
    seen_ids: set[str] = set()
    ambiguous = 0
    renamed = {c: (f"csv_{c}" if c in CORE_COLUMNS else c) for c in columns}
    for record in table.to_dict("records"):
        image_id = record[id_column]
        if image_id is None or (isinstance(image_id, float) and np.isnan(image_id)) or not str(image_id).strip():
            batch.skip(csv_path, NO_LABEL, f"a row of {csv_path.name} has an empty {id_column}")
            continue
        image_id = str(image_id).strip()
        if image_id in seen_ids:
            batch.skip(csv_path, DUPLICATE, f"{id_column} {image_id!r} listed twice in {csv_path.name}")
            continue
        seen_ids.add(image_id)
        file = _find_image(image_id, extension, by_name, by_stem)
        if file is None:
            batch.skip(image_root / (image_id + (extension or "")), MISSING_FILE, f"{id_column} {image_id!r}")
            continue
        if len(by_stem.get(os.path.splitext(image_id)[0].lower(), ())) > 1 and extension is None:
            ambiguous += 1
        label = record[label_column]
        if label is None or (isinstance(label, float) and np.isnan(label)) or not str(label).strip():
            batch.skip(file.path, NO_LABEL, f"empty {label_column} for {id_column} {image_id!r}")
            continue
        used.add(file.path)
        group = record[group_column] if group_column else None
        group = None if group is None or (isinstance(group, float) and np.isnan(group)) else str(group)
        split = record[split_column] if split_column else None
        meta = {renamed[c]: v for c, v in record.items()}
        batch.add(file, str(label).strip(), group, split=_normalise_split(split, split_column), meta=meta)
    for files in by_stem.values():
        for file in files:
            if file.path not in used and not batch.is_skipped(file.path):
                batch.skip(file.path, UNLISTED, csv_path.name)
    if ambiguous:
        batch.notes.append(f"{ambiguous} ids match several files with different extensions; the first was used "
                           "(pass option extension to choose)")


def _read_dicom(root: Path, batch: _Batch, labels_csv: str | Path | None = None, label_from: str | None = None,
                key_column: str | None = None, label_column: str = "label",
                dicom_tags: Iterable[str] = ()) -> None:
    """A tree of DICOM files: label from a CSV keyed by a header field or from the top folder; group = PatientID.
    Header fields (DICOM_SUBGROUP_TAGS and the keywords in `dicom_tags`) become snake_case columns."""
    import pydicom  # noqa: PLC0415 - only this layout needs it

    tags = _dicom_tag_columns(dicom_tags)
    named = set(dicom_tags)

    if (labels_csv is None) == (label_from is None):
        raise ValueError("Invalid options for layout 'dicom'. Expected exactly one of `labels_csv` "
                         f"(a CSV mapping PatientID or SeriesInstanceUID to a label) or `label_from='folder'`. "
                         f"Received: labels_csv={labels_csv!r}, label_from={label_from!r}")
    if label_from is not None and label_from != "folder":
        raise ValueError(f"Invalid value for option `label_from`. Expected 'folder'. Received: {label_from!r}")
    mapping: dict[str, str] = {}
    if labels_csv is not None:
        mapping, key_column = _read_label_mapping(root, labels_csv, key_column, label_column)
        csv_path = Path(labels_csv) if Path(labels_csv).is_absolute() else root / labels_csv
        batch.own_files.add(str(csv_path.resolve()))

    no_patient = 0
    for file in _walk_files(root, batch):
        path, rel = file.path, file.rel
        if not _junk_check(file, batch, (*DICOM_EXTENSIONS, "")):
            continue
        with open(path, "rb") as fh:
            head = fh.read(132)
        if file.ext == "" and head[128:132] != b"DICM":
            batch.skip(path, NOT_IMAGE, "no extension and no DICOM 'DICM' marker")
            continue
        try:
            # defer_size: large values (the pixels) are not read, only their presence is recorded
            ds = pydicom.dcmread(path, force=True, defer_size=1024)
        except Exception as exc:  # noqa: BLE001 - any parser failure is a corrupt file, reported
            batch.skip(path, CORRUPT, f"DICOM header cannot be read: {_one_line(exc)}")
            continue
        if not any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
            detail = str(ds.get("Modality", "") or "no Modality")
            batch.skip(path, NO_PIXELS if any(t in ds for t in DICOM_KEYS) else CORRUPT,
                       detail if any(t in ds for t in DICOM_KEYS) else "no DICOM elements found")
            continue
        patient = str(ds.get("PatientID", "") or "").strip()
        meta = {
            "patient_id": patient or None,
            "study_uid": str(ds.get("StudyInstanceUID", "") or "") or None,
            "series_uid": str(ds.get("SeriesInstanceUID", "") or "") or None,
            "modality": str(ds.get("Modality", "") or "") or None,
            "series_description": str(ds.get("SeriesDescription", "") or "") or None,
            "rows": _int_or_none(ds.get("Rows")),
            "columns": _int_or_none(ds.get("Columns")),
            "n_frames": _int_or_none(ds.get("NumberOfFrames", 1)),
        }
        for keyword, column in tags.items():
            value = _dicom_value(ds, keyword)
            # Built-in tags only where a file has them; a tag the user named is always a column.
            if value is not None or (keyword in named and column not in meta):
                meta[column] = value
        if label_from == "folder":
            parts = rel.split("/")
            if len(parts) < 2:
                batch.skip(path, MISPLACED, "file at the top level; expected root/<class>/**/<file>.dcm")
                continue
            label = parts[0]
        else:
            key = str(ds.get(key_column, "") or "").strip()
            if key not in mapping:
                batch.skip(path, NO_LABEL, f"{key_column} {key!r} not in labels_csv")
                continue
            label = mapping[key]
        if not patient:
            no_patient += 1
        batch.add(file, label, patient or None, meta=meta)
    if no_patient:
        batch.notes.append(f"{no_patient} DICOM files have no PatientID: each is its own group")


def _read_npz(root: Path, batch: _Batch) -> None:
    """A MedMNIST archive: ``{train,val,test}_images`` / ``_labels``; the official split is kept."""
    archive = root
    if root.is_dir():
        found = sorted(root.glob("*.npz"))
        if len(found) != 1:
            raise ValueError(f"Invalid value for argument `root`. Expected a .npz file (or a folder with exactly one). "
                             f"Received: {str(root)!r} with {len(found)} .npz files")
        archive = found[0]
    try:
        with zipfile.ZipFile(archive) as zf, np.load(archive, allow_pickle=False) as data:
            keys = set(data.files)
            parts = [(s, f"{s}_images", f"{s}_labels") for s in SPLITS if f"{s}_images" in keys]
            if not parts and "images" in keys:
                parts = [(None, "images", "labels")]
            if not parts:
                raise ValueError(f"Invalid NumPy archive {archive}: expected arrays "
                                 f"{{train,val,test}}_images and _labels. Received keys: {sorted(keys)}")
            for split, image_key, label_key in parts:
                if label_key not in keys:
                    raise ValueError(f"Invalid NumPy archive {archive}: {image_key!r} has no {label_key!r}")
                shape = _npy_shape(zf, image_key)
                labels = np.asarray(data[label_key])
                if labels.ndim == 2 and labels.shape[1] == 1:
                    labels = labels[:, 0]
                if labels.ndim != 1:
                    raise ValueError(f"Invalid NumPy archive {archive}: {label_key!r} has shape {labels.shape}; "
                                     "expected (N,) or (N, 1) class indices (multi-label archives are not supported)")
                if len(shape) not in (3, 4) or shape[0] != len(labels):
                    raise ValueError(f"Invalid NumPy archive {archive}: {image_key!r} has shape {shape} but "
                                     f"{label_key!r} has {len(labels)} labels; expected (N, H, W[, C]) images")
                if not np.issubdtype(labels.dtype, np.integer):
                    raise ValueError(f"Invalid NumPy archive {archive}: {label_key!r} has dtype {labels.dtype}; "
                                     "expected integer class indices")
                for i, label in enumerate(labels.tolist()):
                    sample_id = f"{image_key}[{i}]"
                    batch.add_ref(f"{archive}::{sample_id}", sample_id, int(label), split=split)
    except zipfile.BadZipFile as exc:
        raise ValueError(f"Invalid value for argument `root`. Expected a NumPy .npz archive. "
                         f"Received: {str(archive)!r} ({exc})") from None


# ============================================================================ file walking and checks

def _walk_files(root: Path, batch: _Batch, rel_root: Path | None = None) -> Iterator[_File]:
    """Every file under ``root`` in a stable order (paths relative to ``rel_root``); hidden folders skipped."""
    # plain strings, not pathlib: pathlib's per-file cost dominated ingesting 100k files
    rel_root_str = str(rel_root or batch.root)
    for dirpath, dirnames, filenames in os.walk(root):
        kept = []
        for name in sorted(dirnames):
            if name.startswith(".") or name.lower() in HIDDEN_FOLDERS:
                batch.skip(os.path.join(dirpath, name), HIDDEN, "folder not searched")
            else:
                kept.append(name)
        dirnames[:] = kept
        rel_dir = os.path.relpath(dirpath, rel_root_str).replace(os.sep, "/")
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            if path in batch.own_files:
                continue  # the layout's own CSV is input, not junk
            stem, ext = os.path.splitext(name)
            yield _File(path, prefix + name, name, stem, ext.lower())


def _image_files(root: Path, batch: _Batch, check: str, extensions: Iterable[str] | None,
                 rel_root: Path | None = None) -> Iterator[_File]:
    """Image files under ``root`` that pass the junk and header checks; masks are held back for attaching."""
    exts = _extensions(extensions)
    for file in _walk_files(root, batch, rel_root):
        if not _junk_check(file, batch, exts):
            continue
        found = MASK_NAME.match(file.stem)
        if found:
            batch.masks.append((file.path, found["image"]))
            continue
        problem = _header_problem(file.path, check)
        if problem:
            batch.skip(file.path, *problem)
            continue
        yield file


def _junk_check(file: _File, batch: _Batch, exts: tuple[str, ...]) -> bool:
    """False (and the file reported) for hidden, system, non-image-extension and empty files."""
    path, name = file.path, file.name
    if name.startswith("."):
        batch.skip(path, HIDDEN)
        return False
    if name.lower() in SYSTEM_FILES:
        batch.skip(path, SYSTEM)
        return False
    if file.ext not in exts:
        batch.skip(path, NOT_IMAGE, f"extension {file.ext or '(none)'}")
        return False
    try:
        size = os.stat(path).st_size
    except OSError as exc:
        batch.skip(path, CORRUPT, f"cannot stat: {exc.strerror or exc}")
        return False
    if size == 0:
        batch.skip(path, EMPTY)
        return False
    return True


def _header_problem(path: str, check: str) -> tuple[str, str] | None:
    """(reason, detail) when the file's header says it is not a usable image; None when it looks fine."""
    if check == "none":
        return None
    if check == "magic":
        try:
            with open(path, "rb") as fh:
                head = fh.read(132)
        except OSError as exc:
            return CORRUPT, f"cannot read: {exc.strerror or exc}"
        return None if sniff_format(head, os.path.basename(path)) else (CORRUPT, describe_non_image(head))
    try:
        fmt, width, height = probe_image(path)  # header only: a few hundred bytes per file
        if width * height > DEFAULT_MAX_PIXELS:
            return TOO_LARGE, f"{width}x{height} is above {DEFAULT_MAX_PIXELS // 1_000_000} MP"
        if check == "verify" and fmt != "DICOM":
            with Image.open(path, formats=PIL_FORMATS) as img:
                img.verify()  # reads the whole file and checks chunk CRCs, still without decoding
    except ImageDecodeError as exc:
        return CORRUPT, str(exc)
    except Exception as exc:  # noqa: BLE001 - any Pillow failure means the file is unusable
        return CORRUPT, f"verify failed: {_one_line(exc)}"
    return None


def _extensions(extensions: Iterable[str] | None) -> tuple[str, ...]:
    """Lower-case extensions with a leading dot."""
    if extensions is None:
        return IMAGE_EXTENSIONS
    return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)


# ============================================================================ helpers for the layouts

def _find_csv(root: Path, csv: str | Path | None) -> Path:
    """The metadata CSV: the option, or the only CSV at the top of ``root``."""
    if csv is not None:
        path = Path(csv) if Path(csv).is_absolute() else root / csv
        if not path.is_file():
            raise ValueError(f"Invalid value for option `csv`. Expected a CSV file (absolute or relative to {root}). "
                             f"Received: {str(csv)!r} (not found)")
        return path
    found = sorted(p for p in root.glob("*.csv") if not p.name.startswith("."))
    if len(found) != 1:
        raise ValueError(f"Invalid options for layout 'metadata_csv'. Expected option `csv` or exactly one CSV file "
                         f"at the top of {root}. Received: {len(found)} CSV files {[p.name for p in found]}")
    return found[0]


def _find_image(image_id: str, extension: str | None, by_name: dict[str, _File],
                by_stem: dict[str, list[_File]]) -> _File | None:
    """The image file for a CSV id: exact file name first, then id + extension, then the stem."""
    key = image_id.lower()
    if extension is not None:
        return by_name.get(key if key.endswith(extension.lower()) else key + extension.lower())
    if key in by_name:
        return by_name[key]
    matches = by_stem.get(key) or by_stem.get(os.path.splitext(key)[0])
    return matches[0] if matches else None


def _read_label_mapping(root: Path, labels_csv: str | Path, key_column: str | None,
                        label_column: str) -> tuple[dict[str, str], str]:
    """{header value -> label} from the DICOM layout's labels CSV, and the header field it is keyed by."""
    path = Path(labels_csv) if Path(labels_csv).is_absolute() else root / labels_csv
    if not path.is_file():
        raise ValueError(f"Invalid value for option `labels_csv`. Expected a CSV file (absolute or relative to "
                         f"{root}). Received: {str(labels_csv)!r} (not found)")
    table = pd.read_csv(path, dtype=str)
    if key_column is None:
        key_column = next((c for c in DICOM_KEYS if c in table.columns), None)
        if key_column is None:
            raise ValueError(f"Invalid labels_csv {path.name}: expected a key column named one of {list(DICOM_KEYS)} "
                             f"(or pass option key_column). Received columns: {list(table.columns)}")
    for option, column in (("key_column", key_column), ("label_column", label_column)):
        if column not in table.columns:
            raise ValueError(f"Invalid value for option `{option}`. Expected a column of {path.name}: "
                             f"{list(table.columns)}. Received: {column!r}")
    table = table.dropna(subset=[key_column, label_column])
    mapping = dict(zip(table[key_column].str.strip(), table[label_column].str.strip()))
    return mapping, key_column


def _npy_shape(zf: zipfile.ZipFile, key: str) -> tuple[int, ...]:
    """Shape of one array in an .npz from its header, without decompressing the pixels."""
    with zf.open(f"{key}.npy") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return tuple(int(s) for s in shape)


def _compile_pattern(pattern: str, option: str, required: tuple[str, ...]) -> re.Pattern[str]:
    """A user regex with the named groups it must have, or a clear ValueError."""
    try:
        compiled = re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ValueError(f"Invalid value for option `{option}`. Expected a regular expression. "
                         f"Received: {pattern!r} ({exc})") from None
    missing = [g for g in required if g not in compiled.groupindex]
    if missing:
        raise ValueError(f"Invalid value for option `{option}`. Expected a regular expression with named groups "
                         f"{['(?P<%s>...)' % g for g in required]}. Received: {pattern!r} (missing {missing})")
    return compiled


def _normalise_split(value: Any, column: str | None) -> str | None:
    """'training' / 'Validation' / 'TEST' -> train / val / test; missing stays None."""
    if value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip():
        return None
    key = str(value).strip().lower()
    if key not in SPLIT_ALIASES:
        raise ValueError(f"Invalid value in column `{column}`. Expected one of {sorted(SPLIT_ALIASES)}. "
                         f"Received: {value!r}")
    return SPLIT_ALIASES[key]


def _validate_common_options(options: dict[str, Any]) -> None:
    """Type checks for the options every layout shares."""
    names = options.get("class_names")
    if names is not None and (isinstance(names, str) or not all(isinstance(n, str) for n in names)
                              or len(set(names)) != len(list(names))):
        raise ValueError(f"Invalid value for option `class_names`. Expected a list of distinct strings. "
                         f"Received: {names!r}")
    label_map = options.get("label_map")
    if label_map is not None and not isinstance(label_map, dict):
        raise ValueError(f"Invalid value for option `label_map`. Expected a dict such as "
                         f"{{'B': 'benign', 'M': 'malignant'}}. Received: {label_map!r}")
    check = options.get("check", "header")
    if check not in CHECKS:
        raise ValueError(f"Invalid value for option `check`. Expected one of {list(CHECKS)}. Received: {check!r}")


def _validate_split_args(samples: pd.DataFrame, seed: int, fractions: Any, group_column: str,
                         label_column: str) -> None:
    """Clear errors for split_samples arguments."""
    if not isinstance(samples, pd.DataFrame):
        raise ValueError(f"Invalid value for argument `samples`. Expected a DataFrame. Received: {type(samples).__name__}")
    for column, arg in ((group_column, "group_column"), (label_column, "label_column")):
        if column not in samples.columns:
            raise ValueError(f"Invalid value for argument `{arg}`. Expected a column of the sample table "
                             f"{list(samples.columns)}. Received: {column!r}")
    try:
        values = [float(f) for f in fractions]
    except (TypeError, ValueError):
        values = []
    if len(values) != 3 or any(not np.isfinite(v) or v < 0 for v in values) or abs(sum(values) - 1) > 1e-6 \
            or values[0] <= 0:
        raise ValueError(f"Invalid value for argument `fractions`. Expected three non-negative numbers "
                         f"(train, val, test) summing to 1 with train > 0. Received: {fractions!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"Invalid value for argument `seed`. Expected an int. Received: {seed!r}")


def _group_table(samples: pd.DataFrame, given: pd.Series, group_column: str, label_column: str) -> pd.DataFrame:
    """One row per group: size, majority label (ties -> smallest), and its given split if any."""
    frame = pd.DataFrame({"group": samples[group_column].astype(str).to_numpy(),
                          "label": samples[label_column].to_numpy(), "given": given.to_numpy()})
    counts = frame.groupby(["group", "label"]).size().reset_index(name="n")
    counts = counts.sort_values(["group", "n", "label"], ascending=[True, False, True])
    majority = counts.drop_duplicates("group").set_index("group")["label"]
    table = pd.DataFrame({"size": frame.groupby("group").size(), "label": majority})
    table["given"] = frame.dropna(subset=["given"]).groupby("group")["given"].first()
    table["given"] = table["given"].astype(object).where(table["given"].notna(), None)
    return table.sort_index()


def _assign_groups(groups: pd.DataFrame, rng: np.random.Generator, fractions: np.ndarray) -> dict[str, str]:
    """Greedy stratified group assignment: per label, each group (largest first) goes to the most under-filled split."""
    active = [i for i, f in enumerate(fractions) if f > 0]
    assigned: dict[str, str] = {g: s for g, s in groups["given"].items() if s is not None}
    for label in sorted(groups["label"].unique(), key=str):
        stratum = groups[groups["label"] == label]
        counts = np.zeros(3)
        for group, split in stratum["given"].items():
            if split in SPLITS:
                counts[SPLITS.index(split)] += stratum.at[group, "size"]
        free = stratum[stratum["given"].isna()]
        if free.empty:
            continue
        # shuffle (seeded), then a stable sort by size: big groups placed first balance best
        order = free.iloc[rng.permutation(len(free))]
        order = order.sort_values("size", ascending=False, kind="stable")
        targets = fractions * stratum["size"].sum()
        for group, size in order["size"].items():
            # relative deficit, so that small strata still reach every split (1/1/1 for three groups)
            deficit = [(targets[i] - counts[i]) / targets[i] if i in active else -np.inf for i in range(3)]
            choice = int(np.argmax(deficit))
            assigned[group] = SPLITS[choice]
            counts[choice] += size
    _fill_empty_splits(assigned, groups, [SPLITS[i] for i in active])
    return assigned


def _fill_empty_splits(assigned: dict[str, str], groups: pd.DataFrame, active: list[str]) -> None:
    """With at least one group per active split, move the smallest free group of the fullest split into an empty one."""
    if len(groups) < len(active):
        return
    movable = set(groups.index[groups["given"].isna()])
    for split in active:
        if split in assigned.values():
            continue
        per_split = Counter(assigned.values())
        donors = [s for s in active if per_split[s] > 1]
        candidates = [g for g, s in assigned.items() if g in movable and s in donors]
        if not candidates:
            return
        donor = max(donors, key=lambda s: per_split[s])
        pool = [g for g in candidates if assigned[g] == donor] or candidates
        group = min(pool, key=lambda g: (groups.at[g, "size"], g))
        assigned[group] = split


def _finish(batch: _Batch, layout: str, root: Path, class_names: list[str] | None,
            label_map: dict[Any, str] | None) -> IngestResult:
    """Attach masks, map labels to class indices, validate the class count, build the tables."""
    batch.attach_masks()
    mapping = {str(k): str(v) for k, v in (label_map or {}).items()}
    records = []
    for record in batch.records:
        raw = record["label_name"]
        if layout == "npz":
            records.append(record)
            continue
        name = mapping.get(str(raw), None) if mapping else str(raw)
        if name is None:
            batch.skip(record["path"], UNKNOWN_LABEL, f"label {raw!r} not in label_map {sorted(mapping)}")
            continue
        record["label_name"] = name
        records.append(record)

    if layout == "npz":
        found = sorted({int(r["label_name"]) for r in records})
        names = list(class_names) if class_names is not None else [str(i) for i in range(max(found, default=-1) + 1)]
        if class_names is None:
            batch.notes.append(f"class_names not given: using {names} (for BreastMNIST pass "
                               "class_names=['malignant', 'normal/benign'])")
        if found and found[-1] >= len(names):
            raise ValueError(f"Invalid value for option `class_names`. Expected at least {found[-1] + 1} names "
                             f"for labels {found}. Received: {names!r}")
        for r in records:
            r["label"] = int(r["label_name"])
            r["label_name"] = names[r["label"]]
    else:
        present = sorted({r["label_name"] for r in records}, key=_natural_key)
        names = list(class_names) if class_names is not None else present
        kept = []
        for r in records:
            if r["label_name"] not in names:
                batch.skip(r["path"], UNKNOWN_LABEL, f"label {r['label_name']!r} not in class_names {names}")
                continue
            r["label"] = names.index(r["label_name"])
            kept.append(r)
        records = kept
    empty = [n for n in names if n not in {r["label_name"] for r in records}]
    if empty and records:
        batch.notes.append(f"classes without any sample: {empty}")

    skipped = pd.DataFrame(batch.skipped, columns=["path", "reason", "detail"])
    if not records:
        raise ValueError(f"No images found for layout {layout!r} under {root}. "
                         f"Skipped {len(skipped)} files: {dict(Counter(skipped['reason']))}")
    if len({r["label_name"] for r in records}) < 2:
        raise ValueError(f"Invalid dataset for layout {layout!r} at {root}: expected at least 2 classes, found "
                         f"{len({r['label_name'] for r in records})}: {sorted({r['label_name'] for r in records})}. "
                         f"{_layout_hint(layout)}")
    samples = pd.DataFrame.from_records(records)
    meta_columns = [c for c in samples.columns if c not in CORE_COLUMNS]
    samples = samples[list(CORE_COLUMNS) + meta_columns]
    samples["group"] = samples["group"].where(samples["group"].notna(), samples["sample_id"]).astype(str)
    samples["label"] = samples["label"].astype("int64")
    for column in ("split", "mask_path"):
        samples[column] = samples[column].astype(object).where(samples[column].notna(), None)
    if samples["sample_id"].duplicated().any():  # cannot happen with relative paths; guards future layouts
        dup = samples.loc[samples["sample_id"].duplicated(), "sample_id"].head(3).tolist()
        raise ValueError(f"Duplicate sample ids {dup}")
    return IngestResult(samples=samples.reset_index(drop=True), class_names=names, skipped=skipped,
                        notes=batch.notes, layout=layout, root=str(root))


def _layout_hint(layout: str) -> str:
    """What a layout expects, for the 'fewer than 2 classes' error."""
    return {
        "class_folders": "Expected root/<class>/<image> with one folder per class.",
        "patient_class_folders": "Expected root/<patient>/<class>/<image>.",
        "filename_prefix": "Expected file names like B_001-0002-1.png / M_... (label before the first '_').",
        "metadata_csv": "Check option label_column.",
        "dicom": "Check labels_csv / label_from.",
        "npz": "Check the *_labels arrays.",
    }[layout]


def _natural_key(text: str) -> list[Any]:
    """Sort 'class2' before 'class10'."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text)]


def _example(path: str, detail: str, root: str) -> str:
    """A skipped file shown relative to the dataset root, with its detail."""
    try:
        shown = Path(path).relative_to(root).as_posix()
    except ValueError:
        shown = str(path)
    return f"{shown} ({detail})" if detail else shown


def _file_size(path: str) -> int:
    """File size, or -1 when the file is missing (still a stable fingerprint input)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _dicom_tag_columns(extra: Iterable[str]) -> dict[str, str]:
    """{DICOM keyword: sample-table column} for the built-in subgroup tags and the `dicom_tags` option; both
    laterality keywords fill one `laterality` column. Raises ValueError naming an unknown keyword."""
    from pydicom.datadict import tag_for_keyword  # noqa: PLC0415 - only this layout needs it

    if isinstance(extra, str) or not isinstance(extra, (list, tuple)) or not all(isinstance(k, str) for k in extra):
        raise ValueError("Invalid value for option `dicom_tags`. Expected a list of DICOM keywords, e.g. "
                         f"['InstitutionName', 'MagneticFieldStrength']. Received: {extra!r}")
    unknown = [k for k in extra if tag_for_keyword(k) is None]
    if unknown:
        raise ValueError("Invalid value for option `dicom_tags`. Expected DICOM keywords (as pydicom spells them, "
                         f"e.g. 'InstitutionName'). Received unknown keyword(s): {unknown}")
    out = {}
    for keyword in (*DICOM_SUBGROUP_TAGS, *extra):
        snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", keyword).lower()
        out[keyword] = "laterality" if snake.endswith("laterality") else snake
    return out


def _dicom_age_years(text: str) -> float | None:
    """A DICOM age string ("045Y", "006M", "003W", "010D", or a bare number) in years, or None."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([YMWD]?)\s*", text.upper())
    if m is None:
        return None
    per_year = {"": 1.0, "Y": 1.0, "M": 12.0, "W": 52.1775, "D": 365.25}[m.group(2)]
    return round(float(m.group(1)) / per_year, 3)


def _dicom_value(ds: Any, keyword: str) -> Any:
    """A header value as a table cell: PatientAge in years, numbers as float, several values joined by
    '/', text stripped; None when absent, empty or unreadable."""
    try:
        value = ds.get(keyword)
    except Exception:  # noqa: BLE001 - a malformed value in an untrusted header is a missing value
        return None
    if value is None:
        return None
    if keyword == "PatientAge":
        return _dicom_age_years(str(value))
    if isinstance(value, (bytes, bytearray)):
        return None  # binary (OB/OW) values are not subgroups
    if not isinstance(value, str) and hasattr(value, "__iter__"):
        if any(hasattr(v, "dir") for v in value):
            return None  # a sequence of items (SQ), not a value
        parts = [str(v).strip() for v in value]
        return "/".join(p for p in parts if p) or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    return text or None


def _int_or_none(value: Any) -> int | None:
    """An int from a DICOM value, or None."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _one_line(exc: BaseException) -> str:
    """An exception as one short line."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


# ============================================================================ result types

class _File(NamedTuple):
    """A file met while walking a dataset: absolute path, path relative to the root, name parts."""

    path: str
    rel: str
    name: str
    stem: str
    ext: str  # lower case, with the dot; "" when none


@dataclass
class IngestResult:
    """The sample table of one dataset, its class names, and what was skipped and why."""

    samples: pd.DataFrame
    class_names: list[str]
    skipped: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    layout: str = ""
    root: str = ""

    def report(self) -> str:
        """Same as :func:`skipped_report`."""
        return skipped_report(self)


@dataclass
class _Batch:
    """Mutable collector used while walking a dataset (records, skips, masks, notes)."""

    root: Path
    records: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    masks: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    own_files: set[str] = field(default_factory=set)
    _skipped_paths: set[str] = field(default_factory=set)

    def add(self, file: _File, label: Any, group: str | None, split: str | None = None,
            meta: dict[str, Any] | None = None) -> None:
        """One image sample; its path relative to the root is its id."""
        self.records.append({"sample_id": file.rel, "path": file.path, "label": None,
                             "label_name": str(label), "group": group, "split": split, "mask_path": None,
                             **(meta or {})})

    def add_ref(self, ref: str, sample_id: str, label: int, split: str | None) -> None:
        """One sample inside an archive (``file.npz::key[i]``); it is its own group."""
        self.records.append({"sample_id": sample_id, "path": ref, "label": None, "label_name": str(label),
                             "group": sample_id, "split": split, "mask_path": None})

    def skip(self, path: str | Path, reason: str, detail: str = "") -> None:
        """Report a file that is not a sample."""
        self.skipped.append((str(path), reason, detail))
        self._skipped_paths.add(str(path))

    def is_skipped(self, path: str) -> bool:
        """Whether ``path`` was already reported."""
        return str(path) in self._skipped_paths

    def attach_masks(self) -> None:
        """Give each image its ``<stem>_mask`` file from the same folder; report the masks either way."""
        if not self.masks:
            return
        by_stem = {}
        for record in self.records:
            folder, name = os.path.split(record["path"])
            by_stem[(folder, os.path.splitext(name)[0].lower())] = record
        for mask, image_stem in self.masks:
            record = by_stem.get((os.path.dirname(mask), image_stem.lower()))
            if record is None:
                self.skip(mask, MASK_ORPHAN, f"no image named {image_stem}.* next to it")
                continue
            image_name = os.path.basename(record["path"])
            if record["mask_path"] is None:
                record["mask_path"] = mask
                self.skip(mask, MASK_ATTACHED, f"mask of {image_name}")
            else:
                self.skip(mask, MASK_ATTACHED, f"extra mask of {image_name} (first one kept)")
