"""Command line: python -m pipeline COMMAND ...

Stages, each usable on its own (`run` chains ingest -> train -> predict):
  ingest    ingest and split a data set; print the split summary (optionally write the sample table)
  train     train (and predict) the backbones of a config that are not complete yet; `run` is the same
  predict   predict with the saved models only, no training: a new evaluation set, or again (e.g. with TTA)
  evaluate  print every model's metrics on each evaluation set, from the aligned view (optional exclusions)
  report    write the meeting report (self-contained HTML, optionally PDF)
Also: demo (build the embedded demo), validate (check artifact folders), audit (duplicates, leakage, quality),
add-model / add-predictions (bring a Keras or ONNX model, or a table of probabilities, trained elsewhere).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the progress bars

DEMO_CONFIGS = ("configs/demo-histology.toml", "configs/demo-lesions.toml")
DEMO_DATA = Path(".cache/demo-data")


def _cmd_ingest(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.experiment import prepare_samples

    cfg = load_config(args.config)
    samples, class_names, info = prepare_samples(cfg)
    print(f"classes: {class_names}; fingerprint {info['fingerprint']}")
    by = ["split", "label_name"] if "label_name" in samples else ["split", "label"]
    table = samples.groupby(by).size().unstack(fill_value=0)
    table["groups"] = samples.groupby("split")["group"].nunique()
    print(table.to_string())
    if args.out:
        samples.to_csv(args.out, index=False)
        print(f"sample table written to {args.out}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_config, with_overrides
    from pipeline.experiment import run_experiment

    cfg = load_config(args.config)
    cfg = with_overrides(
        cfg,
        backbones=args.backbones.split(",") if args.backbones else None,
        epochs=args.epochs,
        weights=args.weights,
        folds=args.folds,
        seeds=[int(x) for x in args.seeds.split(",")] if args.seeds else None,
    )
    if args.output:
        from dataclasses import replace

        cfg = replace(cfg, output=Path(args.output))
    start = time.perf_counter()
    exp_dir = run_experiment(
        cfg,
        force=args.force,
        jobs=args.jobs,
        engine=args.engine,
        address=args.address,
        cpus_per_run=args.cpus_per_run,
    )
    print(f"done in {time.perf_counter() - start:.0f}s: {exp_dir}")
    return _print_summary(exp_dir)


def _excluded(exp_dir: Path, exclude_label_wrong: bool) -> set[str]:
    """Sample ids to leave out of every number: those mentors marked 'label wrong' (when asked)."""
    if not exclude_label_wrong:
        return set()
    from pipeline import notes

    return set(notes.samples_with_tag(exp_dir, notes.LABEL_WRONG))


def _print_summary(exp_dir: Path, eval_sets: list[str] | None = None, exclude: set[str] | None = None) -> int:
    from pipeline import artifacts as art
    from pipeline.comparison import load_aligned, sample_index
    from pipeline.metrics import classification_summary

    exp = art.load_experiment(exp_dir)
    index = sample_index(exp)
    rows = []
    for model in exp.models:
        for es in eval_sets or exp.eval_sets:
            al = load_aligned(exp, [model], es, index=index, exclude=exclude or ())
            if al.n == 0:
                continue
            s = classification_summary(al.y, al.probs[model], pos_index=exp.positive_index, undefined_auc="nan")
            rows.append(
                f"  {model:<16} {es:<12} n={al.n:<5} AUC={s['roc_auc']:.3f}  balanced acc={s['balanced_accuracy']:.3f}"
            )
    print("\n".join(rows))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline.config import load_config
    from pipeline.experiment import run_experiment
    from pipeline.synthetic import make_demo_sources

    start = time.perf_counter()
    sources = make_demo_sources(Path(args.data))
    print(f"demo images ready in {time.perf_counter() - start:.1f}s: {', '.join(map(str, sources.values()))}")
    for path in DEMO_CONFIGS:
        cfg = load_config(path)
        if args.output:
            cfg = replace(cfg, output=Path(args.output))
        run_experiment(cfg, force=args.force, jobs=args.jobs)
        _print_summary(cfg.experiment_dir)
    print(f"demo built in {time.perf_counter() - start:.0f}s")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.artifacts import list_experiments, validate_experiment

    target = Path(args.path)
    dirs = (
        [target]
        if (target / "experiment.json").exists() or not target.is_dir()
        else [target / n for n in list_experiments(target)] or [target]
    )
    worst = 0
    for d in dirs:
        problems = validate_experiment(d)
        errors = [p for p in problems if p.severity == "error"]
        print(f"{d}: {'OK' if not problems else f'{len(errors)} error(s), {len(problems) - len(errors)} warning(s)'}")
        for p in problems:
            print(f"  {p}")
        worst = max(worst, 1 if errors else 0)
    return worst


def _parse_thresholds(items: list[str] | None) -> dict[str, float]:
    """["ResNet50=0.3", ...] -> {"ResNet50": 0.3}; raises ValueError naming the bad item."""
    from pipeline.errors import invalid_argument

    out: dict[str, float] = {}
    for item in items or []:
        name, sep, value = item.rpartition("=")
        try:
            out[name] = float(value)
        except ValueError:
            name = ""
        if not sep or not name:
            raise invalid_argument("--threshold", "MODEL=VALUE (e.g. ResNet50=0.3)", repr(item))
    return out


def _cmd_predict(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from pipeline import artifacts as art
    from pipeline.config import load_config, with_overrides
    from pipeline.experiment import model_is_complete, predict_missing, prepare_samples, write_experiment_base

    cfg = load_config(args.config)
    cfg = with_overrides(cfg, backbones=args.backbones.split(",") if args.backbones else None)
    if args.tta is not None:
        cfg = replace(cfg, predict=replace(cfg.predict, tta=args.tta))
    exp_dir = cfg.experiment_dir
    samples, class_names, info = prepare_samples(cfg)  # picks up evaluation sets added to the config
    write_experiment_base(cfg, samples, class_names, info, print)
    samples = art.read_parquet(exp_dir / art.SAMPLES_FILE)
    if args.engine == "ray":  # Ray Data batch prediction: connect, then check what the workers must see
        from pipeline.engines import ray_train

        ray_train.connect(args.address)
        cfg, exp_dir, samples = ray_train.absolute_paths(cfg, samples)
        ray_train.check_reachable(ray_train.needed_paths(cfg, samples))
    unknown = [es for es in args.again or [] if es not in set(samples["eval_set"].dropna())]
    if unknown:
        from pipeline.errors import invalid_argument

        raise invalid_argument("--again", f"evaluation sets of {cfg.name}", unknown)
    total = 0
    from pipeline.experiment import planned_runs

    for name in [r.model for r in planned_runs(cfg)]:
        if not model_is_complete(exp_dir, name):
            print(f"{name}: not trained yet, skipped (python -m pipeline train --config {args.config})")
            continue
        if args.again:  # forget these evaluation sets' predictions, so they are predicted again
            preds = art.read_predictions(art.load_experiment(exp_dir), name)
            art.write_predictions(
                exp_dir, name, preds[~preds["eval_set"].isin(args.again)].reset_index(drop=True), len(class_names)
            )
        total += predict_missing(cfg, exp_dir, name, samples, print, engine=args.engine)
    print(f"{total} predictions written")
    return _print_summary(exp_dir)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    exp_dir = Path(args.experiment)
    exclude = _excluded(exp_dir, args.exclude_label_wrong)
    if exclude:
        print(f"{len(exclude)} sample(s) marked 'label wrong' left out")
    return _print_summary(exp_dir, [args.eval_set] if args.eval_set else None, exclude)


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline import report

    start = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    exp_dir = Path(args.experiment)
    out_html = Path(args.out) if args.out else None
    out_pdf = None
    if args.pdf:
        report.find_chromium()  # fail before the work when the PDF cannot be printed
        base = out_html or exp_dir / "reports" / f"report-{args.eval_set}-{time.strftime('%Y%m%dT%H%M%S')}.html"
        out_html, out_pdf = base, base.with_suffix(".pdf")
    html_path = report.build_report(
        exp_dir,
        models=models,
        eval_set=args.eval_set,
        thresholds=_parse_thresholds(args.threshold),
        n_boot=args.n_boot,
        out_html=out_html,
        out_pdf=out_pdf,
        seed=args.seed,
        exclude=_excluded(exp_dir, args.exclude_label_wrong),
        subgroup_columns=args.subgroup_column,
    )
    print(f"report written in {time.perf_counter() - start:.1f}s: {html_path}" + (f" and {out_pdf}" if out_pdf else ""))
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    from pipeline.audit import run_cli

    return run_cli(args.experiment, args.config, rerun=args.rerun, examples=args.examples)


def _cmd_add_model(args: argparse.Namespace) -> int:
    from pipeline.importers import add_model

    prep = args.preprocessing
    if prep and ":" in prep:  # "MEAN:STD", each one number or three comma-separated
        mean, std = prep.split(":", 1)
        prep = ([float(v) for v in mean.split(",")], [float(v) for v in std.split(",")])
    cfg = add_model(
        Path(args.experiment),
        name=args.name,
        file=args.file,
        input_size=args.input_size,
        preprocessing=prep,
        channel_order=args.channel_order,
        outputs=args.outputs,
        class_order=args.class_order.split(",") if args.class_order else None,
        replace=args.replace,
    )
    print(
        f"{args.name}: imported {cfg['format']} model ({cfg['outputs']}, input {cfg['input_size']} px, "
        f"preprocessing {cfg['preprocessing']}), {cfg['n_predicted']} predictions"
    )
    return _print_summary(Path(args.experiment))


def _cmd_add_predictions(args: argparse.Namespace) -> int:
    from pipeline.importers import add_predictions

    cfg = add_predictions(
        Path(args.experiment),
        name=args.name,
        file=args.file,
        normalise=args.normalise,
        eval_sets=args.eval_set,
        replace=args.replace,
    )
    for note in cfg["notes"]:
        print(f"note: {note}")
    print(f"{args.name}: imported {cfg['n_predicted']} predictions (predictions only: no live inference)")
    return _print_summary(Path(args.experiment))


def _engine_arguments(p: argparse.ArgumentParser) -> None:
    """--engine and --address (run, train, predict)."""
    p.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this machine (default); ray: each training run a Ray task, prediction with Ray Data "
        "(needs ray[data]; README 'Running on a cluster')",
    )
    p.add_argument(
        "--address",
        help="Ray cluster to use with --engine ray: auto, ray://HOST:10001 or HOST:6379 (default: a local Ray "
        "instance)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="generate the synthetic demo data and build its experiments")
    p.add_argument("--data", default=str(DEMO_DATA), help="where to write the synthetic images")
    p.add_argument("--output", help="artifacts root (default: from the configs, artifacts/)")
    p.add_argument("--force", action="store_true", help="rebuild even when complete")
    p.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="models trained side by side, each in its own process (default: 2 on 2+ cores)",
    )
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("ingest", help="ingest and split a data set; print the split summary")
    p.add_argument("--config", required=True)
    p.add_argument("--out", help="also write the sample table as CSV here")
    p.set_defaults(func=_cmd_ingest)
    for name, help_text in (
        ("run", "ingest -> train -> predict every backbone in the config"),
        ("train", "same as run: train and predict the backbones not yet complete"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--config", required=True)
        p.add_argument("--backbones", help="comma-separated list overriding [train].backbones")
        p.add_argument("--epochs", type=int)
        p.add_argument("--seeds", help="comma-separated seeds overriding [train].seeds (one run per seed)")
        p.add_argument("--folds", type=int, help="grouped stratified k-fold runs (overrides [train].folds)")
        p.add_argument("--weights", help="imagenet | none | path to a weights file")
        p.add_argument("--output", help="artifacts root")
        p.add_argument("--force", action="store_true", help="delete the experiment folder and rebuild")
        p.add_argument(
            "--jobs",
            type=int,
            default=1,
            help="models trained side by side in separate processes (CPU machines, local engine; default 1)",
        )
        _engine_arguments(p)
        p.add_argument(
            "--cpus-per-run",
            type=int,
            default=1,
            help="Ray engine on CPU nodes: CPUs (and TensorFlow threads) each run asks for (default 1)",
        )
        p.set_defaults(func=_cmd_run)
    p = sub.add_parser(
        "predict",
        help="predict with the saved models only (no training): new evaluation sets, "
        "or again with --again (e.g. with --tta)",
    )
    p.add_argument("--config", required=True)
    p.add_argument("--backbones", help="comma-separated list overriding [train].backbones")
    p.add_argument(
        "--again",
        action="append",
        metavar="EVAL_SET",
        help="predict this evaluation set again, replacing its predictions (repeatable)",
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="test-time augmentation on or off (default: the config's [predict].tta)",
    )
    _engine_arguments(p)
    p.set_defaults(func=_cmd_predict)
    p = sub.add_parser("evaluate", help="print every model's metrics per evaluation set (no training, no TF)")
    p.add_argument("experiment", help="experiment folder, e.g. artifacts/demo-histology")
    p.add_argument("--eval-set", help="only this evaluation set")
    p.add_argument(
        "--exclude-label-wrong",
        action="store_true",
        help="leave out the samples mentors marked 'label wrong' (as the dashboard's toggle)",
    )
    p.set_defaults(func=_cmd_evaluate)
    p = sub.add_parser("validate", help="check an experiment folder (or every one under a root)")
    p.add_argument("path")
    p.set_defaults(func=_cmd_validate)
    p = sub.add_parser("report", help="write the meeting report (self-contained HTML, optionally PDF)")
    p.add_argument("experiment", help="experiment folder, e.g. artifacts/demo-histology")
    p.add_argument("--models", help="comma-separated models (default: every finished model)")
    p.add_argument("--eval-set", default="test", help="evaluation set to report on (default: test)")
    p.add_argument(
        "--threshold",
        action="append",
        metavar="MODEL=VALUE",
        help="binary decision threshold of a model (repeatable; default 0.5)",
    )
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (default: 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="HTML path (default: <experiment>/reports/report-<eval set>-<time>.html)")
    p.add_argument("--pdf", action="store_true", help="also print a PDF beside the HTML (headless chromium)")
    p.add_argument(
        "--subgroup-column",
        action="append",
        metavar="COLUMN",
        help="a column of the Subgroups section (repeatable; default: the config's [subgroups] columns)",
    )
    p.add_argument(
        "--exclude-label-wrong",
        action="store_true",
        help="leave out the samples mentors marked 'label wrong' (as the dashboard's toggle)",
    )
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("audit", help="duplicates, cross-split leakage, label conflicts and quality flags")
    p.add_argument("experiment", nargs="?", help="experiment folder (or use --config)")
    p.add_argument("--config", help="audit this config's data and write <experiment>/audit")
    p.add_argument("--rerun", action="store_true", help="audit the experiment's images again")
    p.add_argument("--examples", type=int, default=5, help="examples shown per finding (default 5)")
    p.set_defaults(func=_cmd_audit)
    p = sub.add_parser("add-model", help="import a Keras (.keras/.h5) or ONNX model and predict every evaluation set")
    p.add_argument("experiment", help="experiment folder, e.g. artifacts/demo-histology")
    p.add_argument("--name", required=True, help="model name shown on every page")
    p.add_argument("--file", required=True, help=".keras, .h5, .hdf5 or .onnx file")
    p.add_argument("--input-size", type=int, help="input size in pixels (when the file accepts any size)")
    p.add_argument(
        "--preprocessing",
        help="tf | caffe | torch | unit | none | MEAN:STD on [0,1] pixels "
        "(e.g. 0.5:0.25 or 0.485,0.456,0.406:0.229,0.224,0.225); default unit",
    )
    p.add_argument("--channel-order", choices=("rgb", "bgr"), default="rgb")
    p.add_argument("--class-order", help="comma-separated class names of the model's outputs, in its order")
    p.add_argument("--outputs", choices=("auto", "probabilities", "logits"), default="auto")
    p.add_argument("--replace", action="store_true", help="replace a model of the same name")
    p.set_defaults(func=_cmd_add_model)
    p = sub.add_parser("add-predictions", help="import a CSV/Parquet of probabilities as a predictions-only model")
    p.add_argument("experiment", help="experiment folder, e.g. artifacts/demo-histology")
    p.add_argument("--name", required=True, help="model name shown on every page")
    p.add_argument("--file", required=True, help=".csv or .parquet keyed by sample_id, path or file name")
    p.add_argument("--normalise", action="store_true", help="divide rows that do not sum to 1 by their sum")
    p.add_argument("--eval-set", action="append", help="only this evaluation set is covered (repeatable)")
    p.add_argument("--replace", action="store_true", help="replace a model of the same name")
    p.set_defaults(func=_cmd_add_predictions)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit code."""
    from pipeline.engines import RayNotInstalled, RunsFailed

    args = build_parser().parse_args(argv)
    if getattr(args, "address", None) and args.engine != "ray":
        print("error: --address needs --engine ray", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RayNotInstalled) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RunsFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
