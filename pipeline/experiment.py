"""Orchestration: ingest -> split -> write the sample table -> train and predict each backbone -> artifacts.

Each step is a small named function usable on its own; `run_experiment` chains them. A model is
complete only once its config.json is written (last, atomically), so an interrupted run resumes by
redoing only the unfinished models.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
import types
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from pipeline import artifacts as art
from pipeline.audit import IngestAudit
from pipeline.config import EvalSetConfig, ExperimentConfig
from pipeline.datasets import check_no_leakage, dataset_fingerprint, ingest, skipped_report, split_samples
from pipeline.engines import RunFailure
from pipeline.predict import resolve_tta
from pipeline.runs import FOLD_COLUMN, OOF_EVAL_SET, RunSpec, assign_folds, fold_masks, run_id, run_plan

Log = Callable[[str], None]


def _ingest_options(layout: str, options: dict[str, Any]) -> dict[str, Any]:
    return dict(options)


def prepare_samples(cfg: ExperimentConfig, log: Log = print) -> tuple[pd.DataFrame, list[str], dict[str, Any]]:
    """Ingest the data set and extra eval sets into one sample table with grouped, stratified splits."""
    ds = cfg.dataset
    result = ingest(ds.layout, ds.root, **_ingest_options(ds.layout, ds.options))
    log(skipped_report(result))
    class_names = list(result.class_names)
    audit = IngestAudit.from_config(cfg, log) if cfg.audit.enabled else None
    main = audit.start(result.samples) if audit else result.samples
    samples = split_samples(
        main, seed=cfg.split.seed, fractions=cfg.split.fractions, duplicates=audit.pairs if audit else None
    )
    check_no_leakage(samples)
    policy = samples.attrs.get("split_policy", "grouped-stratified")
    if cfg.train.folds > 1:
        from pipeline.audit import split_groups

        pairs = audit.pairs if audit is not None else None
        fold_group = split_groups(samples, pairs, "group") if pairs is not None and len(pairs) else samples["group"]
        samples[FOLD_COLUMN] = assign_folds(
            samples.assign(_fold_group=fold_group.to_numpy()),
            cfg.train.folds,
            seed=cfg.split.seed,
            group_column="_fold_group",
        ).to_numpy()
    samples["eval_set"] = samples["split"].where(samples["split"].isin(["val", "test"]), None)
    frames = [samples]
    eval_reports = {}
    for ev in cfg.eval_sets:
        extra, report = _prepare_eval_set(ev, class_names)
        frames.append(extra)
        eval_reports[ev.name] = report
        log(f"eval set {ev.name!r}: {report}")
    table = pd.concat(frames, ignore_index=True)
    if table["sample_id"].duplicated().any():
        raise ValueError("sample ids collide between the data set and an eval set; rename the eval set")
    table["label"] = table["label"].astype(np.int64)
    if FOLD_COLUMN in table.columns:
        table[FOLD_COLUMN] = table[FOLD_COLUMN].fillna(-1).astype(np.int64)
    info = {
        "layout": ds.layout,
        "root": str(ds.root),
        "fingerprint": dataset_fingerprint(samples),
        "eval_fingerprint": dataset_fingerprint(table),
        "n_samples": int(len(table)),
        "skipped_count": int(len(result.skipped)),
        "skipped_report": skipped_report(result),
        "notes": list(result.notes),
        "eval_set_reports": eval_reports,
        "split_policy": policy,
    }
    if audit:
        info["audit"] = audit.finish(table, cfg.experiment_dir)
    return table, class_names, info


def _prepare_eval_set(ev: EvalSetConfig, class_names: list[str]) -> tuple[pd.DataFrame, str]:
    result = ingest(ev.layout, ev.root, **ev.options)
    unknown = sorted(set(result.class_names) - set(class_names))
    if unknown:
        raise ValueError(
            f"Invalid value for eval set {ev.name!r}. Expected classes among {class_names}. Received classes {unknown}"
        )
    df = result.samples.copy()
    df["label"] = df["label_name"].map({c: i for i, c in enumerate(class_names)}).astype(np.int64)
    df["sample_id"] = ev.name + "/" + df["sample_id"].astype(str)
    df["group"] = ev.name + "/" + df["group"].astype(str)
    df["split"] = "eval"
    df["eval_set"] = ev.name
    return df, skipped_report(result)


def make_thumbnails(samples: pd.DataFrame, max_side: int = 128) -> pd.DataFrame:
    """PNG thumbnails (and masks) of every evaluated sample, so galleries work without the raw data."""
    from pipeline.preprocess import ImageDecodeError, load_image, thumbnail_png

    rows = []
    for sid, path, mask in zip(
        samples["sample_id"], samples["path"], samples["mask_path"] if "mask_path" in samples else [None] * len(samples)
    ):
        try:
            png = thumbnail_png(load_image(path).rgb, max_side)
        except (ImageDecodeError, OSError):
            png = None
        mask_png = None
        if isinstance(mask, str) and mask:
            try:
                mask_png = thumbnail_png(load_image(mask).rgb, max_side)
            except (ImageDecodeError, OSError):
                mask_png = None
        rows.append((sid, png, mask_png))
    return pd.DataFrame(rows, columns=["sample_id", "png", "mask_png"])


def write_experiment_base(
    cfg: ExperimentConfig, samples: pd.DataFrame, class_names: list[str], info: dict[str, Any], log: Log = print
) -> Path:
    """Write experiment.json, samples.parquet and thumbnails.parquet (reusing them when unchanged)."""
    exp_dir = cfg.experiment_dir
    exp_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(exp_dir)
    meta_path = exp_dir / art.EXPERIMENT_FILE
    if meta_path.exists():
        try:
            old = art.read_meta(exp_dir)
            same = (
                old.get("dataset", {}).get("fingerprint") == info["fingerprint"]
                and old.get("split", {}).get("seed") == cfg.split.seed
                and old.get("class_names") == class_names
                and old.get("split", {}).get("folds", 1) == cfg.train.folds
            )
            same_evals = same and old.get("dataset", {}).get("eval_fingerprint") == info["eval_fingerprint"]
        except art.ArtifactError:
            same = same_evals = False
        if same_evals and (exp_dir / art.SAMPLES_FILE).exists() and (exp_dir / art.THUMBNAILS_FILE).exists():
            log(f"{exp_dir}: data set unchanged, keeping its sample table")
            return exp_dir
        if same:
            log(f"{exp_dir}: evaluation sets changed; trained models are kept and predict the new sets")
        if not same and list((exp_dir / art.MODELS_DIR).glob("*/config.json")):
            raise ValueError(
                f"{exp_dir} holds models trained on a different data set or split; "
                "rerun with --force to rebuild it, or choose another experiment name"
            )
    positive = cfg.dataset.positive_class
    if positive is None and len(class_names) == 2:
        positive = class_names[1]
    art.write_samples(exp_dir, samples)
    evaluated = samples[samples["eval_set"].notna()]
    log(f"thumbnails for {len(evaluated)} evaluated samples")
    art.write_thumbnails(exp_dir, make_thumbnails(evaluated))
    counts = samples.groupby(["split", "label"]).size().unstack(fill_value=0)
    art.write_experiment_meta(
        exp_dir,
        {
            "name": cfg.name,
            "task": "binary" if len(class_names) == 2 else "multiclass",
            "class_names": class_names,
            "positive_class": positive if len(class_names) == 2 else None,
            "image_size": cfg.dataset.image_size,
            "dataset": info,
            "split": {
                "seed": cfg.split.seed,
                "policy": info["split_policy"],
                "fractions": list(cfg.split.fractions),
                "folds": cfg.train.folds,
                "counts": {
                    str(s): {class_names[int(k)]: int(v) for k, v in row.items()} for s, row in counts.iterrows()
                },
                "groups": {str(s): int(n) for s, n in samples.groupby("split")["group"].nunique().items()},
            },
            "eval_sets": [e for e in pd.unique(samples["eval_set"].dropna())],
            "config": _config_dict(cfg),
        },
    )
    return exp_dir


def _config_dict(cfg: ExperimentConfig) -> dict[str, Any]:
    def clean(obj: Any) -> Any:
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [clean(v) for v in obj]
        return str(obj) if isinstance(obj, Path) else obj

    out: dict[str, Any] = clean(asdict(cfg))
    return out


def model_is_complete(exp_dir: Path, name: str) -> bool:
    """True when the model's config.json says complete and its predictions file exists."""
    mdir = art.model_dir(exp_dir, name)
    try:
        return (
            art.read_model_config(exp_dir, name).get("status") == "complete" and (mdir / art.PREDICTIONS_FILE).exists()
        )
    except art.ArtifactError:
        return False


def remove_stale_temp_files(folder: Path) -> list[str]:
    """Delete the temporary files (``.<name>.*.tmp*``) that a killed earlier run left in `folder`.

    Atomic writes never expose them under a final name, but each SIGKILL mid-save would otherwise leave
    one behind for good (a model-sized .keras for a model save). Call only where this run is the writer.
    """
    removed = []
    for stale in folder.glob(".*.tmp*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)
            removed.append(stale.name)
    return removed


def save_model_atomic(model: Any, path: Path) -> None:
    """Save a Keras model to `path` via a temporary .keras file and a rename."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def planned_runs(cfg: ExperimentConfig) -> list[RunSpec]:
    """Every run the config asks for: each backbone x seed (x fold)."""
    return run_plan(cfg.train.backbones, cfg.train.run_seeds, cfg.train.folds, repeat=cfg.train.repeat)


def run_backbone(
    cfg: ExperimentConfig,
    exp_dir: Path,
    spec: RunSpec | str,
    samples: pd.DataFrame,
    images: np.ndarray,
    ok: np.ndarray,
    n_classes: int,
    log: Log = print,
) -> dict[str, Any]:
    """Train one run of a backbone, predict every evaluated sample, write its artifacts (config.json last).

    A k-fold run also predicts its held-out fold, written with eval_set `oof`; its `val` rows are left out
    (the official val split is part of its training pool).
    """
    from pipeline.train import train_backbone

    if isinstance(spec, str):
        spec = RunSpec(spec, cfg.train.seed, None, run_id(cfg.train.seed, None), spec)
    name = spec.model
    mdir = art.model_dir(exp_dir, name)
    (mdir / art.MODEL_CONFIG_FILE).unlink(missing_ok=True)  # mark incomplete while we work
    mdir.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(mdir)
    labels = samples["label"].to_numpy()
    tr, va = fold_masks(samples, spec)
    tr, va = tr & ok, va & ok
    if cfg.train.max_train_samples and tr.sum() > cfg.train.max_train_samples:
        keep = np.flatnonzero(tr)[: cfg.train.max_train_samples]
        tr = np.zeros_like(tr)
        tr[keep] = True
    train_cfg = replace(cfg.train, seed=spec.seed)
    result = train_backbone(
        spec.backbone,
        (images[tr], labels[tr]),
        (images[va], labels[va]),
        n_classes,
        cfg.dataset.image_size,
        train_cfg,
        verbose=0,
    )
    evaluated = evaluated_samples(samples, spec.fold)
    crops = evaluated["eval_set"].map(lambda es: _crop_for(cfg, es)).to_numpy()
    tta = resolve_tta(cfg.predict.tta, cfg.train.augment)
    pred = _predict_by_crop(result.model, evaluated["path"].to_numpy(), crops, cfg, tta)
    if not pred.ok.all():
        log(f"{name}: {int((~pred.ok).sum())} evaluated images could not be decoded and have no prediction")
    keep = pred.ok
    preds = pd.DataFrame(pred.probs[keep].astype(np.float64), columns=art.prob_columns(n_classes))
    preds.insert(0, "eval_set", evaluated.loc[keep, "eval_set"].to_numpy())
    preds.insert(0, "sample_id", evaluated.loc[keep, "sample_id"].to_numpy())
    preds["run_id"] = spec.run_id
    model_path = mdir / art.MODEL_FILE
    save_model_atomic(result.model, model_path)
    art.atomic_write_csv(mdir / art.HISTORY_FILE, result.history)
    art.write_predictions(exp_dir, name, preds, n_classes)
    info = {
        **result.info,
        "model_bytes": model_path.stat().st_size,
        "infer_ms_per_image": round(1000 * pred.seconds / max(len(evaluated), 1), 3),
        "predict_images_per_s": round(pred.images_per_s, 2),
        "tta": list(tta),  # the views actually averaged
        "n_predicted": int(keep.sum()),
        "crop": cfg.dataset.crop,
        "run_id": spec.run_id,
        "fold": spec.fold,
        "folds": cfg.train.folds if spec.fold is not None else None,
    }
    art.write_model_config(exp_dir, name, info)
    return info


def _crop_for(cfg: ExperimentConfig, eval_set: str) -> str:
    """The crop mode of an evaluation set: its own for extra sets, the data set's for val/test."""
    for ev in cfg.eval_sets:
        if ev.name == eval_set:
            return ev.crop
    return cfg.dataset.crop


def _predict_by_crop(
    model: Any, paths: np.ndarray, crops: np.ndarray, cfg: ExperimentConfig, tta: Sequence[str] = ()
) -> Any:
    """Predict in one pass per crop mode (eval sets can differ: cropped vs uncropped ultrasound)."""
    from pipeline.predict import PredictResult, predict_paths

    probs = np.full((len(paths), int(model.output_shape[-1])), np.nan, np.float32)
    ok = np.zeros(len(paths), bool)
    seconds = 0.0
    for mode in pd.unique(crops):
        idx = np.flatnonzero(crops == mode)
        part = predict_paths(model, paths[idx].tolist(), cfg.predict.batch_size, tta, crop=str(mode))
        probs[idx], ok[idx] = part.probs, part.ok
        seconds += part.seconds
    return PredictResult(probs, ok, seconds)


def evaluated_samples(samples: pd.DataFrame, fold: int | None = None) -> pd.DataFrame:
    """The rows a run predicts: every evaluated sample; for a k-fold run, its held-out fold as `oof` instead
    of the official val split (which is part of its training pool)."""
    evaluated = samples[samples["eval_set"].notna()].reset_index(drop=True)
    if fold is None:
        return evaluated
    held = samples[samples[FOLD_COLUMN].to_numpy() == fold].assign(eval_set=OOF_EVAL_SET)
    return pd.concat([evaluated[evaluated["eval_set"] != "val"], held], ignore_index=True)


def predict_missing(
    cfg: ExperimentConfig, exp_dir: Path, name: str, samples: pd.DataFrame, log: Log = print, *, engine: str = "local"
) -> int:
    """Predict evaluated samples a complete model has no prediction for (e.g. a new eval set); returns how many.

    `engine="ray"` predicts them with Ray Data on the connected cluster (pipeline.engines.ray_predict).
    """
    mdir = art.model_dir(exp_dir, name)
    run = art.read_model_config(exp_dir, name)
    fold = run.get("fold") if isinstance(run.get("fold"), int) else None
    evaluated = evaluated_samples(samples, fold)
    old = art.read_parquet(mdir / art.PREDICTIONS_FILE)
    missing = evaluated[~art.id_mask(evaluated["sample_id"], old["sample_id"])].reset_index(drop=True)
    if missing.empty:
        return 0
    crops = missing["eval_set"].map(lambda es: _crop_for(cfg, es)).to_numpy()
    tta = resolve_tta(cfg.predict.tta, run.get("augment"))  # "auto": the flips this model was trained with
    if engine == "ray":
        from pipeline.engines.ray_predict import predict_files_ray

        pred = predict_files_ray(
            mdir / art.MODEL_FILE,
            missing["path"].tolist(),
            crops.tolist(),
            batch_size=cfg.predict.batch_size,
            tta=tta,
        )
    else:
        import keras

        from pipeline.backbones import preprocess_layer_class

        preprocess_layer_class()  # registers the custom layer before loading
        model = keras.saving.load_model(mdir / art.MODEL_FILE, safe_mode=True)
        pred = _predict_by_crop(model, missing["path"].to_numpy(), crops, cfg, tta)
    n_classes = int(pred.probs.shape[1])
    new = pd.DataFrame(pred.probs[pred.ok].astype(np.float64), columns=art.prob_columns(n_classes))
    new.insert(0, "eval_set", missing.loc[pred.ok, "eval_set"].to_numpy())
    new.insert(0, "sample_id", missing.loc[pred.ok, "sample_id"].to_numpy())
    if "run_id" in old.columns:
        new["run_id"] = run.get("run_id")
    keep_old = old[art.id_mask(old["sample_id"], evaluated["sample_id"])]
    art.write_predictions(exp_dir, name, pd.concat([keep_old, new], ignore_index=True), n_classes)
    log(f"{name}: predicted {len(new)} new evaluated samples ({', '.join(sorted(set(new['eval_set'])))})")
    return len(new)


def run_experiment(
    cfg: ExperimentConfig,
    force: bool = False,
    log: Log = print,
    progress: bool = True,
    jobs: int = 1,
    *,
    engine: str = "local",
    address: str | None = None,
    cpus_per_run: int = 1,
) -> Path:
    """Ingest, split, and train + predict every configured run not already complete.

    `engine="local"` trains here (`jobs` runs side by side); `engine="ray"` makes each run a Ray task on the
    cluster at `address` (None: a local Ray instance; see pipeline.engines.ray_train). Either way a failed run
    is logged by name while the others go on, and `RunsFailed` lists the failures at the end.
    """
    from tqdm.auto import tqdm

    from pipeline.engines import RunsFailed, check_engine, import_ray
    from pipeline.tfdata import decode_all

    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"Invalid value for argument `jobs`. Expected an integer >= 1. Received: {jobs!r}")
    if check_engine(engine) == "ray":
        import_ray()  # before any work: says how to install Ray when it is missing
    exp_dir = cfg.experiment_dir
    if force and exp_dir.exists():
        shutil.rmtree(exp_dir)
    samples, class_names, info = prepare_samples(cfg, log)
    log(
        f"{cfg.name}: {len(samples)} samples, classes {class_names}; split "
        + ", ".join(f"{k}={v}" for k, v in samples["split"].value_counts().items())
    )
    write_experiment_base(cfg, samples, class_names, info, log)
    samples = art.read_parquet(exp_dir / art.SAMPLES_FILE)  # the table on disk is the truth on resume
    runs = planned_runs(cfg)
    todo = [r for r in runs if not model_is_complete(exp_dir, r.model)]
    done = [r.model for r in runs if r not in todo]
    if done:
        log(f"already complete, not retrained: {', '.join(done)}")
    for name in done:
        predict_missing(cfg, exp_dir, name, samples, log)
    if not todo:
        update_label_issues(exp_dir, log)
        return exp_dir
    # Only train/val images are held in memory; evaluated images stream from disk at prediction time.
    if cfg.train.folds > 1 and FOLD_COLUMN not in samples.columns:
        raise ValueError(
            f"{exp_dir / art.SAMPLES_FILE} has no `{FOLD_COLUMN}` column but `train.folds` is "
            f"{cfg.train.folds}; rerun with --force to rebuild the sample table with folds"
        )
    if engine == "ray":  # connect and check what the workers must see before the (long) decode
        from pipeline.engines import ray_train

        ray_train.connect(address, log)
        cfg, exp_dir, samples = ray_train.absolute_paths(cfg, samples)
        ray_train.check_reachable(ray_train.needed_paths(cfg, samples), log=log)
    t0 = time.perf_counter()
    fit_rows = np.flatnonzero(samples["split"].isin(["train", "val"]).to_numpy())
    size = cfg.dataset.image_size
    images = np.zeros((len(samples), size, size, 3), np.uint8)
    ok = np.zeros(len(samples), bool)
    images[fit_rows], ok[fit_rows] = decode_all(samples["path"].iloc[fit_rows].tolist(), size, crop=cfg.dataset.crop)
    log(
        f"decoded {len(fit_rows)} train/val images in {time.perf_counter() - t0:.1f}s "
        f"({int(len(fit_rows) - ok[fit_rows].sum())} failed)"
    )
    jobs = max(1, min(int(jobs), len(todo)))
    bar = tqdm(total=len(todo), desc=f"{cfg.name}", unit="model", disable=not progress)
    failures: list[RunFailure]
    if engine == "ray":
        failures = ray_train.run_on_ray(
            cfg, exp_dir, todo, samples, images, ok, len(class_names), cpus_per_run=cpus_per_run, bar=bar, log=log
        )
    elif jobs == 1:
        failures = []
        for spec in todo:
            bar.set_postfix_str(spec.model)
            try:
                info = run_backbone(cfg, exp_dir, spec, samples, images, ok, len(class_names), log)
            except Exception as exc:  # noqa: BLE001 - reported by run name; the other runs go on
                failures.append(report_failure(log, spec.model, exc))
            else:
                _log_model(log, spec.model, info)
            bar.update(1)
    else:
        failures = _run_parallel(cfg, exp_dir, todo, samples, images, ok, len(class_names), jobs, bar, log)
    bar.close()
    if failures:  # label issues need every fold's out-of-fold predictions: ranked on the rerun that completes
        raise RunsFailed(failures, len(todo))
    update_label_issues(exp_dir, log)
    return exp_dir


def report_failure(log: Log, model: str, error: BaseException | str) -> RunFailure:
    """Log that run `model` failed with `error` and return it as a RunFailure (the other runs go on)."""
    failure = RunFailure(model, error if isinstance(error, str) else f"{type(error).__name__}: {error}")
    log(f"training {model} failed: {failure.error}")
    return failure


def update_label_issues(exp_dir: Path, log: Log = print) -> Path | None:
    """With k-fold runs, rank suspected label errors from the out-of-fold predictions (label_issues.parquet)."""
    from pipeline.label_issues import find_label_issues, out_of_fold, write_label_issues

    exp = art.load_experiment(exp_dir)
    if FOLD_COLUMN not in exp.samples.columns:
        return None
    try:
        queue = find_label_issues(out_of_fold(exp), class_names=exp.class_names)
    except ValueError as exc:
        log(f"label issues not ranked: {exc}")
        return None
    from pipeline.label_issues import precision_recall
    from pipeline.synthetic import read_label_noise

    flips = read_label_noise(Path(str(exp.meta.get("dataset", {}).get("root", ""))))
    extra = ""
    if flips:  # the demo knows its injected label flips: score the queue against them
        queue["injected_flip"] = queue["sample_id"].isin(flips)
        precision, recall = precision_recall(
            queue.loc[queue["is_issue"], "sample_id"], queue.loc[queue["injected_flip"], "sample_id"]
        )
        extra = (
            f"; against the {int(queue['injected_flip'].sum())} injected flips: precision {precision:.2f}, "
            f"recall {recall:.2f}"
        )
    write_label_issues(exp_dir, queue)
    log(
        f"label issues: {int(queue['is_issue'].sum())} of {len(queue)} training-pool samples suspected "
        f"(cleanlab on out-of-fold predictions){extra}"
    )
    return exp_dir


def _log_model(log: Log, name: str, info: dict[str, Any]) -> None:
    log(
        f"{name}: {info['epochs_run']} epochs in {info['train_seconds']:.0f}s "
        f"(best epoch {info.get('best_epoch', '?')}, stopped: {info.get('stop_reason', '?')}), "
        f"{info['params'] / 1e6:.2f}M params, {info['infer_ms_per_image']:.2f} ms/image"
    )


# Rough CPU cost of one training epoch relative to SmallCNN at small inputs (measured on the demo build);
# only the order matters: the longest jobs start first so parallel workers finish close together.
def schedule_order(names: list[str]) -> list[str]:
    """Backbones ordered longest-first (unknown ones count as expensive) for parallel training."""
    from pipeline.backbones import BACKBONES

    return sorted(names, key=lambda n: -(BACKBONES[n].relative_cost if n in BACKBONES else 30))


def schedule_runs(todo: list[RunSpec]) -> list[RunSpec]:
    """Runs in the order they are submitted: longest backbone first, a backbone's runs together, plan order."""
    order = schedule_order(list(dict.fromkeys(r.backbone for r in todo)))
    return [r for b in order for r in todo if r.backbone == b]


def _worker_init(threads: int) -> None:
    """Worker initializer: quiet TensorFlow and give it `threads` CPU threads before it starts.

    A reused worker (a Ray worker's second run) already started TensorFlow: its thread counts stay.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    with contextlib.suppress(RuntimeError):
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


def _run_backbone_job(
    cfg: ExperimentConfig,
    exp_dir: Path,
    name: RunSpec,
    samples: pd.DataFrame,
    images_file: str,
    ok: np.ndarray,
    n_classes: int,
) -> dict[str, Any]:
    """One worker's job: train and predict `name` reading the decoded images memory-mapped."""
    images = np.load(images_file, mmap_mode="r", allow_pickle=False)
    return run_backbone(cfg, exp_dir, name, samples, images, ok, n_classes, log=print)


@contextlib.contextmanager
def _main_hidden_from_workers() -> Iterator[None]:
    """Keep spawned workers from re-running the parent's ``__main__`` script while they start.

    `spawn` re-executes the main module in each child when it was run from a file path. Under pytest after
    Streamlit's AppTest, or in a notebook, that "script" is the dashboard app or a cell, which must not
    run in a worker (seen: workers died running dashboard/app.py). The jobs need nothing from it.
    """
    main = sys.modules.get("__main__")
    if main is None or getattr(main, "__spec__", None) is not None:  # `python -m ...`: imported by name, safe
        yield
        return
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _run_parallel(
    cfg: ExperimentConfig,
    exp_dir: Path,
    todo: list[RunSpec],
    samples: pd.DataFrame,
    images: np.ndarray,
    ok: np.ndarray,
    n_classes: int,
    jobs: int,
    bar: Any,
    log: Log,
) -> list[RunFailure]:
    """Train `todo` in `jobs` spawned processes, each TensorFlow limited to its share of the CPU cores.

    Small models on a CPU leave cores idle (TensorFlow's per-op overhead is single-threaded), so two
    models side by side nearly halve the wall time on 2 cores. Each model writes only its own folder.
    Returns the runs that failed (logged by name as they fail; the other runs go on).
    """
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, (os.cpu_count() or 1) // jobs)
    images_file = exp_dir / f".decoded.{os.getpid()}.tmp.npy"
    np.save(images_file, images)
    try:
        with ProcessPoolExecutor(
            jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(threads,)
        ) as pool:
            with _main_hidden_from_workers():  # the workers start on submit
                futures = {
                    pool.submit(
                        _run_backbone_job, cfg, exp_dir, spec, samples, str(images_file), ok, n_classes
                    ): spec.model
                    for spec in schedule_runs(todo)
                }
            failures = []
            for fut in as_completed(futures):
                name = futures[fut]
                exc = fut.exception()
                if exc is not None:  # a dead worker breaks the pool: the runs it takes along are reported too
                    failures.append(report_failure(log, name, exc))
                else:
                    _log_model(log, name, fut.result())
                bar.set_postfix_str(name)
                bar.update(1)
    finally:
        images_file.unlink(missing_ok=True)
    return failures
