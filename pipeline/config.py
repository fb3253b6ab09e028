"""Experiment config (TOML) -> frozen dataclasses. No side effects; every error names the key.

Relative paths in a config are resolved against the current working directory (run the CLI from the
repository root, as the README shows).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from pipeline.backbones import get_backbone

LAYOUTS = ("class_folders", "patient_class_folders", "filename_prefix", "metadata_csv", "dicom", "npz")
AUGMENTATIONS = ("flip", "vflip", "rotate", "zoom", "translate", "contrast", "brightness")


@dataclass(frozen=True)
class DatasetConfig:
    """Where the images are and how to read labels and groups from them."""

    layout: str
    root: Path
    options: dict[str, Any] = field(default_factory=dict)
    positive_class: str | None = None
    image_size: int = 64
    crop: str = "none"  # "none" or "ultrasound" (auto-crop to the scan region at ingest)


@dataclass(frozen=True)
class EvalSetConfig:
    """An extra evaluation set (e.g. uncropped test images), ingested like the main data set."""

    name: str
    layout: str
    root: Path
    options: dict[str, Any] = field(default_factory=dict)
    crop: str = "none"


@dataclass(frozen=True)
class SplitConfig:
    """Grouped, stratified train/val/test split."""

    seed: int = 42
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class TrainConfig:
    """Which backbones to train and how."""

    backbones: tuple[str, ...] = ("SmallCNN", "MobileNetV2")
    weights: str = "none"
    epochs: int = 10
    budget_minutes: float | None = None  # minutes of training per backbone (and run), on top of `epochs`
    budget_clock: str = "wall"  # what the minutes count: "wall" time, or "cpu" (the run's process CPU time)
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: str = "adamw"  # "adamw" or "adam"
    weight_decay: float = 1e-4  # AdamW's decoupled decay on kernels
    schedule: str = "cosine"  # "cosine", "step" (x0.1 at 50% and 75%) or "constant"
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.0
    ema_epochs: float = 0.0  # moving average of the weights over about this many epochs, judged and kept (0: off)
    clip_norm: float | None = 1.0  # global gradient-norm clipping (None, `false` in TOML: off)
    zero_head: bool = True  # zero-initialised classifier layer: training starts at the uniform prediction
    select_on: str = "auc"  # checkpoint selection: "auc", "loss" (class-weighted) or "loss_unweighted"
    min_epochs: int | None = None  # None: 60% of `epochs`, at least 3 (train.auto_min_epochs)
    patience: int | None = None  # None: a quarter of `epochs`, at least 3 (train.auto_patience)
    precise_bn: bool = True
    deterministic: bool = False
    mixed_precision: str = "auto"  # "auto" (on when a GPU is found), "on", "off"
    xla: bool = False
    input_policy: str = "fair"  # "fair": small images lifted so every backbone's last map is 2x2; "native"
    fine_tune_epochs: int = 0
    fine_tune_learning_rate: float = 1e-5
    fine_tune_fraction: float = 0.3
    augment: tuple[str, ...] = ("flip",)  # measured: heavier default augmentation underfit (bench/RESULTS.md)
    class_weights: str = "balanced"  # "balanced" or "none"
    seed: int = 42
    seeds: tuple[int, ...] = ()  # repeated runs: one per seed (empty: just `seed`)
    folds: int = 1  # grouped, stratified k-fold over train+val when >= 2 (test and extra sets stay held out)
    repeat: tuple[str, ...] | None = None  # backbones given every seed and fold (None: all; others: first run)
    max_train_samples: int | None = None

    @property
    def run_seeds(self) -> tuple[int, ...]:
        """The seeds every backbone is trained with."""
        return tuple(self.seeds) or (self.seed,)


@dataclass(frozen=True)
class PredictConfig:
    """Batch prediction settings."""

    batch_size: int = 64
    # "auto": the flips the model was trained with (pipeline.predict.resolve_tta); true = hflip; false; or modes
    tta: bool | str | tuple[str, ...] = "auto"


@dataclass(frozen=True)
class AuditConfig:
    """Data audit at ingest (pipeline/audit.py): duplicates, leakage, label conflicts, quality flags."""

    enabled: bool = True
    threshold: float = 0.95  # Pearson r of 16x16 gray thumbnails (bench/RESULTS.md, "Data audit")
    hash_size: int = 8  # perceptual-hash side: hash_size**2 bits, cut into 16-bit bands
    thumb_size: int = 16
    drop_quality: tuple[str, ...] = ()  # quality flags whose images are left out (none by default)


def _parse_audit(raw: dict[str, Any]) -> AuditConfig:
    """The [audit] section; every value checked here so that ingest cannot fail on it later."""
    au = _section(raw, "audit", AuditConfig, "")
    if not isinstance(au.get("enabled", True), bool):
        raise _bad("audit.enabled", "true or false", au["enabled"])
    t = au.get("threshold", 0.95)
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 1:
        raise _bad("audit.threshold", "a number in (0, 1]", t)
    if au.get("hash_size", 8) not in (4, 8, 12, 16):
        raise _bad("audit.hash_size", "4, 8, 12 or 16", au["hash_size"])
    ts = au.get("thumb_size", 16)
    if isinstance(ts, bool) or not isinstance(ts, int) or not 4 <= ts <= 64:
        raise _bad("audit.thumb_size", "an integer in [4, 64]", ts)
    flags = ("dark", "light", "blurry", "low_information", "odd_aspect_ratio", "odd_size", "mixed_colour")
    drop = au.get("drop_quality", [])
    if not isinstance(drop, list) or any(f not in flags for f in drop):
        raise _bad("audit.drop_quality", f"a list of names among {list(flags)}", drop)
    au["drop_quality"] = tuple(drop)
    if "threshold" in au:
        au["threshold"] = float(au["threshold"])
    return AuditConfig(**au)


@dataclass(frozen=True)
class SubgroupsConfig:
    """[subgroups]: which columns split the evaluation (pipeline/subgroups.py, the Subgroups page)."""

    columns: tuple[str, ...] = ()  # offered first (any metadata column, DICOM field, regex group, "eval_set")
    bins: dict[str, tuple[float, ...]] = field(default_factory=dict)  # numeric column -> increasing edges
    quantiles: int = 4  # numeric columns without bins: this many equal-count bins
    regex: str | None = None  # named groups from file names, e.g. "-(?P<magnification>40|100|200|400)-"
    regex_source: str = "sample_id"  # the sample-table column the regex searches ("sample_id" or "path")
    min_size: int = 30  # subgroups with fewer samples show "too few"


def parse_subgroups(raw: dict[str, Any]) -> SubgroupsConfig:
    """The [subgroups] section of a config (or the same keys stored in experiment.json), every value checked."""
    import re  # noqa: PLC0415 - only this section needs it

    sg = _section(raw, "subgroups", SubgroupsConfig, "")
    cols = sg.get("columns", [])
    if not isinstance(cols, (list, tuple)) or any(not isinstance(c, str) or not c for c in cols):
        raise _bad("subgroups.columns", "a list of column names", cols)
    sg["columns"] = tuple(cols)
    bins = sg.get("bins", {})
    if not isinstance(bins, dict):
        raise _bad("subgroups.bins", "a table {column = [edges...]}", bins)
    parsed: dict[str, tuple[float, ...]] = {}
    for col, edges in bins.items():
        ok = (
            isinstance(edges, (list, tuple))
            and len(edges) >= 2
            and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
        )
        if not ok or any(b <= a for a, b in zip(edges[:-1], edges[1:])):
            raise _bad(f"subgroups.bins.{col}", "at least two increasing numbers", edges)
        parsed[str(col)] = tuple(float(e) for e in edges)
    sg["bins"] = parsed
    q = sg.get("quantiles", 4)
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= 20:
        raise _bad("subgroups.quantiles", "an integer in [1, 20]", q)
    rx = sg.get("regex")
    if rx is not None:
        try:
            compiled = re.compile(rx)
        except (re.error, TypeError):
            raise _bad("subgroups.regex", "a valid regular expression", rx) from None
        if not compiled.groupindex:
            raise _bad("subgroups.regex", "a regular expression with named groups (?P<name>...)", rx)
    if sg.get("regex_source", "sample_id") not in ("sample_id", "path"):
        raise _bad("subgroups.regex_source", "'sample_id' or 'path'", sg["regex_source"])
    m = sg.get("min_size", 30)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise _bad("subgroups.min_size", "a positive integer", m)
    return SubgroupsConfig(**sg)


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment: data set, extra evaluation sets, split, training and prediction."""

    name: str
    dataset: DatasetConfig
    output: Path = Path("artifacts")
    eval_sets: tuple[EvalSetConfig, ...] = ()
    split: SplitConfig = SplitConfig()
    train: TrainConfig = TrainConfig()
    predict: PredictConfig = PredictConfig()
    audit: AuditConfig = AuditConfig()
    subgroups: SubgroupsConfig = SubgroupsConfig()

    @property
    def experiment_dir(self) -> Path:
        """Output folder of this experiment."""
        return self.output / self.name


def _bad(key: str, expected: str, received: Any) -> ValueError:
    return ValueError(f"Invalid value for `{key}`. Expected {expected}. Received: {received!r}")


def _section(raw: dict[str, Any], key: str, cls: type, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise _bad(f"{where}{key}", "a table", value)
    allowed = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _bad(f"{where}{key}", f"keys among {sorted(allowed)}", unknown)
    return dict(value)


def _check_layout(value: Any, key: str) -> str:
    if value not in LAYOUTS:
        raise _bad(key, f"one of {list(LAYOUTS)}", value)
    return str(value)


_TRAIN_CHOICES = {
    "optimizer": ("adamw", "adam"),
    "schedule": ("cosine", "step", "constant"),
    "select_on": ("auc", "loss", "loss_unweighted"),
    "mixed_precision": ("auto", "on", "off"),
    "input_policy": ("fair", "native"),
    "budget_clock": ("wall", "cpu"),
}


def _check_train(tr: dict[str, Any]) -> None:
    """Validate the training protocol keys of a [train] table (in place: numbers made float)."""
    for key in ("epochs", "batch_size", "patience", "min_epochs"):
        if key in tr and (isinstance(tr[key], bool) or not isinstance(tr[key], int) or tr[key] < 1):
            raise _bad(f"train.{key}", "a positive integer", tr[key])
    if tr.get("clip_norm") is False:  # TOML has no None: `clip_norm = false` switches clipping off
        tr["clip_norm"] = None
    for key, (low, high) in {
        "learning_rate": (0.0, 10.0),
        "weight_decay": (0.0, 1.0),
        "warmup_epochs": (0.0, 1e6),
        "label_smoothing": (0.0, 0.5),
        "ema_epochs": (0.0, 1e6),
        "budget_minutes": (0.0, 1e6),
        "clip_norm": (0.0, 1e6),
    }.items():
        if key in tr and tr[key] is not None:
            v = tr[key]
            if (
                isinstance(v, bool)
                or not isinstance(v, (int, float))
                or not low <= v <= high
                or (key in ("learning_rate", "budget_minutes", "clip_norm") and v == 0)
            ):
                raise _bad(
                    f"train.{key}",
                    f"a number in {'(' if key in ('learning_rate', 'budget_minutes', 'clip_norm') else '['}"
                    f"{low}, {high}]",
                    v,
                )
            tr[key] = float(v)
    for key, choices in _TRAIN_CHOICES.items():
        if key in tr and tr[key] not in choices:
            raise _bad(f"train.{key}", f"one of {list(choices)}", tr[key])
    if "seeds" in tr:
        seeds = tr["seeds"]
        if (
            not isinstance(seeds, list)
            or not seeds
            or any(isinstance(x, bool) or not isinstance(x, int) for x in seeds)
            or len(set(seeds)) != len(seeds)
        ):
            raise _bad("train.seeds", "a non-empty list of distinct integers", seeds)
        tr["seeds"] = tuple(seeds)
    if "repeat" in tr:
        if not isinstance(tr["repeat"], list):
            raise _bad("train.repeat", "a list of backbone names", tr["repeat"])
        tr["repeat"] = tuple(get_backbone(b).name for b in tr["repeat"])
    if "folds" in tr and (
        isinstance(tr["folds"], bool) or not isinstance(tr["folds"], int) or not 1 <= tr["folds"] <= 20
    ):
        raise _bad("train.folds", "an integer in [1, 20] (1: no cross-validation)", tr["folds"])
    for key in ("precise_bn", "deterministic", "xla", "zero_head"):
        if key in tr and not isinstance(tr[key], bool):
            raise _bad(f"train.{key}", "true or false", tr[key])


def _check_tta(value: Any) -> bool | str | tuple[str, ...]:
    """[predict] tta: true, false, "auto", or a list of view names."""
    from pipeline.predict import TTA_MODES

    if isinstance(value, bool):
        return value
    if value == "auto":
        return "auto"
    if isinstance(value, list) and all(v in TTA_MODES for v in value):
        return tuple(value)
    raise _bad("predict.tta", f'true, false, "auto" or a list of names among {list(TTA_MODES)}', value)


def parse_config(raw: dict[str, Any]) -> ExperimentConfig:
    """Build and validate an ExperimentConfig from a parsed TOML document."""
    if "experiment" not in raw or "name" not in raw.get("experiment", {}):
        raise _bad("experiment.name", "a name for the experiment folder", raw.get("experiment", {}).get("name"))
    exp = raw["experiment"]
    name = str(exp["name"])
    if not name or "/" in name or name.startswith("."):
        raise _bad("experiment.name", "a plain folder name", name)
    ds = _section(raw, "dataset", DatasetConfig, "")
    if "root" not in ds or "layout" not in ds:
        raise _bad("dataset", "both `layout` and `root`", sorted(ds))
    ds["layout"] = _check_layout(ds["layout"], "dataset.layout")
    ds["root"] = Path(ds["root"]).expanduser()
    if ds.get("crop", "none") not in ("none", "ultrasound"):
        raise _bad("dataset.crop", "'none' or 'ultrasound'", ds["crop"])
    size = ds.get("image_size", 64)
    if not isinstance(size, int) or not 16 <= size <= 1024:
        raise _bad("dataset.image_size", "an integer in [16, 1024]", size)
    dataset = DatasetConfig(**ds)

    evals = []
    for i, ev in enumerate(raw.get("eval_sets", [])):
        key = f"eval_sets[{i}]"
        if not isinstance(ev, dict) or not {"name", "layout", "root"} <= set(ev):
            raise _bad(key, "a table with name, layout and root", ev)
        if ev["name"] == "test":
            raise _bad(f"{key}.name", "a name other than 'test' (the test split's own name)", ev["name"])
        evals.append(
            EvalSetConfig(
                name=str(ev["name"]),
                layout=_check_layout(ev["layout"], f"{key}.layout"),
                root=Path(ev["root"]).expanduser(),
                options=dict(ev.get("options", {})),
                crop=ev.get("crop", "none"),
            )
        )

    sp = _section(raw, "split", SplitConfig, "")
    if "fractions" in sp:
        fr = tuple(float(x) for x in sp["fractions"])
        if len(fr) != 3 or any(x < 0 for x in fr) or abs(sum(fr) - 1) > 1e-6:
            raise _bad("split.fractions", "three non-negative numbers summing to 1", sp["fractions"])
        sp["fractions"] = fr
    tr = _section(raw, "train", TrainConfig, "")
    if "backbones" in tr:
        if not isinstance(tr["backbones"], list) or not tr["backbones"]:
            raise _bad("train.backbones", "a non-empty list of backbone names", tr["backbones"])
        tr["backbones"] = tuple(get_backbone(b).name for b in tr["backbones"])
    if "augment" in tr:
        bad = [a for a in tr["augment"] if a not in AUGMENTATIONS]
        if bad:
            raise _bad("train.augment", f"names among {list(AUGMENTATIONS)}", bad)
        tr["augment"] = tuple(tr["augment"])
    _check_train(tr)
    if tr.get("class_weights", "balanced") not in ("balanced", "none"):
        raise _bad("train.class_weights", "'balanced' or 'none'", tr["class_weights"])
    pr = _section(raw, "predict", PredictConfig, "")
    if "tta" in pr:
        pr["tta"] = _check_tta(pr["tta"])
    return ExperimentConfig(
        name=name,
        dataset=dataset,
        output=Path(exp.get("output", "artifacts")),
        eval_sets=tuple(evals),
        split=SplitConfig(**sp),
        train=TrainConfig(**tr),
        predict=PredictConfig(**pr),
        audit=_parse_audit(raw),
        subgroups=parse_subgroups(raw),
    )


def load_config(path: Path | str) -> ExperimentConfig:
    """Read a TOML experiment config file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"Invalid value for argument `config`. Expected an existing TOML file. Received: {str(path)!r}"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(raw)


def with_overrides(cfg: ExperimentConfig, **train_overrides: Any) -> ExperimentConfig:
    """Copy of `cfg` with some [train] values replaced (None values are ignored)."""
    changes = {k: v for k, v in train_overrides.items() if v is not None}
    if "backbones" in changes:
        changes["backbones"] = tuple(get_backbone(b).name for b in changes["backbones"])
    if "seeds" in changes:
        changes["seeds"] = tuple(int(s) for s in changes["seeds"])
    return replace(cfg, train=replace(cfg.train, **changes))
