"""`tavaal` command line: discover, prepare, run and inspect stages by hand.

The stage commands call the same functions as the workflow rules and read/write the same
paths (`tavaal.layout`: results/{experiment}/{method}/seed{seed}/stage{stage}/..., stage 0 shared
under results/{experiment}/stage0/seed{seed}/), so a user can rerun one stage of a workflow run
by hand.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from tavaal.errors import TavaalError


def _add_stage_args(parser: argparse.ArgumentParser, with_stage: bool) -> None:
    parser.add_argument("--config", required=True, type=Path, help="workflow config (YAML)")
    parser.add_argument("--experiment", required=True, help="experiment name in the config")
    if with_stage:
        parser.add_argument(
            "--method",
            required=True,
            help="query strategy (see `tavaal methods`); at stage 0 it names the shared model of "
            "its training recipe",
        )
    parser.add_argument("--seed", required=True, type=int)
    if with_stage:
        parser.add_argument("--stage", required=True, type=int)
    _add_dirs(parser)


def _add_dirs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results-dir", type=Path, default=Path("results"))
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tavaal", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("methods", help="list registered query strategies, one per line")
    sub.add_parser("datasets", help="list registered datasets, one per line")
    schema = sub.add_parser(
        "schema",
        help="print the workflow's config schema, generated from tavaal/config.py "
        "(tavaal.config_schema)",
    )
    schema.add_argument(
        "--write",
        action="store_true",
        help="write it to schemas/config.schema.yaml instead (run in the repository root)",
    )
    _add_data_commands(sub)
    _add_stage_commands(sub)
    _add_practitioner_commands(sub)
    _add_report_commands(sub)
    return parser


def _add_data_commands(sub) -> None:
    prepare = sub.add_parser("prepare", help="prepare a dataset into its canonical on-disk form")
    prepare.add_argument("dataset")
    prepare.add_argument("--data-dir", type=Path, default=Path("data"))
    origin = prepare.add_mutually_exclusive_group()
    origin.add_argument("--download", action="store_true", help="allow torchvision downloads")
    origin.add_argument(
        "--source",
        type=Path,
        metavar="DIR",
        help="read the raw files from DIR, which already holds them (checked, read in place)",
    )


def _add_stage_commands(sub) -> None:
    """The stage-by-stage commands and `run`, which runs whole experiments without Snakemake."""
    _add_stage_args(
        sub.add_parser("init-pool", help="write the initial pool, stage0/seedS/labeled.parquet"),
        False,
    )
    _add_stage_args(sub.add_parser("train", help="train one stage: model.pt, metrics.json"), True)
    _add_stage_args(
        sub.add_parser("query", help="query one stage: next labeled.parquet, scores.parquet"), True
    )

    run = sub.add_parser("run", help="run whole experiments sequentially (no Snakemake)")
    run.add_argument("--config", required=True, type=Path)
    run.add_argument("--experiment", action="append", help="default: every experiment")
    run.add_argument("--methods", nargs="+", help="default: the experiment's methods")
    run.add_argument("--seeds", nargs="+", type=int, help="default: the experiment's seeds")
    run.add_argument("--force", action="store_true", help="recompute existing outputs")
    _add_dirs(run)


def _add_practitioner_commands(sub) -> None:
    label = sub.add_parser(
        "label",
        help="label a practitioner-mode batch on a local web page (writes its labels file)",
    )
    label.add_argument(
        "request", type=Path, help="label_request.json, its folder, or its to_label.csv"
    )
    label.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (default 8765)")
    label.add_argument(
        "--no-browser", action="store_true", help="only print the URL; do not open a browser"
    )

    toy = sub.add_parser(
        "toy-folder",
        help="write a folder of generated shape images with their true labels, to try the "
        'human oracle (docs/labeling.md, "Label your own images")',
    )
    toy.add_argument("folder", type=Path, help="where to write images/, truth.csv, test_labels.csv")
    toy.add_argument("--pool-per-class", type=int, default=40, help="pool images per class")
    toy.add_argument("--test-per-class", type=int, default=20, help="test images per class")
    toy.add_argument("--seed", type=int, default=0, help="the same seed writes the same files")
    toy.add_argument(
        "--class-folders",
        action="store_true",
        help="write a labeled tree of ImageNet's shape instead (train/<class>/*.JPEG, "
        "val/<class>/*.JPEG, 240-330 px), for image_folders with layout: class_folders",
    )


def _add_report_commands(sub) -> None:
    estimate = sub.add_parser(
        "estimate", help="device hours of the experiments of config files (tavaal.resources)"
    )
    estimate.add_argument(
        "configs", nargs="+", type=Path, help="config files, merged in order as --configfile"
    )
    estimate.add_argument(
        "--device", default="auto", help="cpu, or a GPU (auto, cuda): what throughput to assume"
    )

    inspect = sub.add_parser("inspect", help="summarise a labeled.parquet or scores.parquet")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--against", type=Path, help="another labeled.parquet to compare with")

    readme = sub.add_parser(
        "readme-update",
        help="replace a generated results section of the README or a docs page (between its "
        "results markers) with a file "
        "that `snakemake readme_results` wrote",
    )
    readme.add_argument("readme", type=Path, help="e.g. docs/results/default.md")
    readme.add_argument("section", type=Path, help="e.g. results/readme_results.md")
    readme.add_argument(
        "--name",
        default="default",
        help="which section: the NAME of its <!-- results:NAME:begin/end --> markers",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args) or 0
    except TavaalError as exc:
        print(f"tavaal: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tavaal methods | head -1`
        sys.stderr.close()
        return 0


def _methods(args) -> int:
    from tavaal.strategies import list_strategies

    print("\n".join(list_strategies()))
    return 0


def _datasets(args) -> int:
    from tavaal.data import list_datasets

    print("\n".join(list_datasets()))
    return 0


def _schema(args) -> int:
    from tavaal.atomic import atomic_write
    from tavaal.config_schema import SCHEMA_FILE, schema_text
    from tavaal.errors import ConfigError

    text = schema_text()
    if not args.write:
        print(text, end="")
        return 0
    if not SCHEMA_FILE.parent.is_dir():
        raise ConfigError(f"no {SCHEMA_FILE.parent}/ here: run it in the repository root")
    with atomic_write(SCHEMA_FILE) as tmp:
        tmp.write_text(text)
    print(SCHEMA_FILE)
    return 0


def _prepare(args) -> int:
    from tavaal.data import list_raw_sources, load_dataset, raw_source
    from tavaal.errors import DatasetError

    raw_sources = {}
    if args.source is not None:
        source = raw_source(args.dataset)
        if source is None:
            raise DatasetError(
                f"dataset {args.dataset!r} is not read from raw files; --source applies to "
                f"{', '.join(list_raw_sources())} and the datasets derived from them"
            )
        raw_sources[source] = args.source
    dataset = load_dataset(
        args.dataset, args.data_dir, download=args.download, raw_sources=raw_sources
    )
    info = dataset.info
    print(
        f"{info.name}: {info.n_train} train / {info.n_test} test, {info.num_classes} classes, "
        f"input {tuple(info.input_shape)} -> {args.data_dir / info.name}"
    )
    return 0


def _with_image_folders(config: dict) -> dict:
    """Declare the config's image_folders (practitioners' datasets) before its experiments are
    checked or estimated."""
    from tavaal.data import declare_image_folders

    declare_image_folders(config.get("image_folders"))
    return config


def _experiment(args):
    from tavaal.config import experiment_from_config, load_config
    from tavaal.validation import check_experiment

    exp = experiment_from_config(_with_image_folders(load_config(args.config)), args.experiment)
    check_experiment(exp, data_dir=args.data_dir)
    return exp


def _check_method(exp, method: str) -> None:
    from tavaal.errors import ConfigError

    if method not in exp.methods:
        raise ConfigError(f"experiments.{exp.name}.methods: {method!r} is not listed")


def _init_pool(args) -> int:
    from tavaal.layout import run_file
    from tavaal.stage import run_init_pool

    exp = _experiment(args)
    out = run_file(args.results_dir, exp.name, exp.methods[0], args.seed, 0, "labeled.parquet")
    run_init_pool(exp, args.seed, args.data_dir, out)
    print(out)
    return 0


def _train(args) -> int:
    exp = _experiment(args)
    _check_method(exp, args.method)
    metrics = _train_stage(exp, args.method, args.seed, args.stage, args)
    print(f"accuracy {metrics['accuracy']:.4f} with {metrics['labels']} labels")
    return 0


def _train_stage(exp, method: str, seed: int, stage: int, args, log=print) -> dict:
    """Train `method`'s model of `stage` (at stage 0: its recipe's shared model)."""
    from tavaal.layout import run_file
    from tavaal.stage import run_train
    from tavaal.strategies import strategy_class

    def path(name: str) -> Path:
        return run_file(args.results_dir, exp.name, method, seed, stage, name)

    return run_train(
        exp,
        strategy_class(method).recipe,
        seed,
        stage,
        path("labeled.parquet"),
        args.data_dir,
        path("model.pt"),
        path("metrics.json"),
        method=None if stage == 0 else method,
        device=args.device,
        log=log,
    )


def _query(args) -> int:
    exp = _experiment(args)
    _check_method(exp, args.method)
    print(_query_stage(exp, args.method, args.seed, args.stage, args))
    return 0


def _query_stage(exp, method: str, seed: int, stage: int, args, log=print) -> Path:
    """Run `method`'s query of `stage`; return the next stage's labeled file."""
    from tavaal.layout import run_file
    from tavaal.stage import run_query
    from tavaal.strategies import strategy_class

    def path(stage: int, name: str) -> Path:
        return run_file(args.results_dir, exp.name, method, seed, stage, name)

    run_query(
        exp,
        method,
        seed,
        stage,
        path(stage, "labeled.parquet"),
        path(stage, "model.pt") if strategy_class(method).uses_task_model else None,
        args.data_dir,
        path(stage + 1, "labeled.parquet"),
        path(stage, "scores.parquet"),
        device=args.device,
        log=log,
    )
    return path(stage + 1, "labeled.parquet")


def _run(args) -> int:
    from tqdm import tqdm

    from tavaal.config import experiment_from_config, load_config
    from tavaal.errors import ConfigError
    from tavaal.layout import run_file
    from tavaal.stage import run_init_pool
    from tavaal.validation import check_experiment

    config = _with_image_folders(load_config(args.config))
    names = args.experiment or list(config.get("experiments") or {})
    experiments = [experiment_from_config(config, name) for name in names]
    chains = []
    for exp in experiments:
        check_experiment(exp, data_dir=args.data_dir)
        if exp.oracle.human:
            raise ConfigError(
                f"experiments.{exp.name}.oracle.kind: a person labels this experiment through "
                "the workflow (snakemake stops at each request); `tavaal run` has nobody to ask"
            )
        methods = args.methods or list(exp.methods)
        for method in methods:
            _check_method(exp, method)
        chains += [(exp, method, seed) for method in methods for seed in args.seeds or exp.seeds]
    # One tick per training stage; log lines are written above the bar.
    progress = tqdm(total=sum(exp.stages for exp, _, _ in chains), unit="stage", file=sys.stderr)
    # Stage 0 is shared (tavaal.layout): the first chain of an (experiment, seed) or of a recipe
    # makes it, the others find it done.
    done: set[Path] = set()

    def needed(path: Path) -> bool:
        return path not in done and (args.force or not path.exists())

    with progress:
        for exp, method, seed in chains:
            path = functools.partial(run_file, args.results_dir, exp.name, method, seed)
            progress.set_description(f"{exp.name}/{method}/seed{seed}")

            def log(line: str, tag=f"{exp.name}/{method}/seed{seed}") -> None:
                progress.write(f"[{tag}] {line}", file=sys.stdout)

            if needed(path(0, "labeled.parquet")):
                run_init_pool(exp, seed, args.data_dir, path(0, "labeled.parquet"), log)
            done.add(path(0, "labeled.parquet"))
            for stage in range(exp.stages):
                if needed(path(stage, "metrics.json")):
                    _train_stage(exp, method, seed, stage, args, log)
                done.add(path(stage, "metrics.json"))
                if stage + 1 < exp.stages and needed(path(stage + 1, "labeled.parquet")):
                    _query_stage(exp, method, seed, stage, args, log)
                progress.update(1)
    return 0


def _estimate(args) -> int:
    from tavaal.config import experiment_from_config, merge_configs, selected_experiments
    from tavaal.resources import (
        SHOWN_PROCESSES,
        device_kind,
        experiment_estimate,
        longest_training_text,
    )

    config = _with_image_folders(merge_configs(*args.configs))
    unit = "GPU" if device_kind(args.device) == "gpu" else "CPU-core"
    # The wall clock of the longest training job with train.processes = 1, 4, 8 ("-": a
    # recipe of the experiment trains on one process only); a scaling model, not a measurement.
    counts = "/".join(map(str, SHOWN_PROCESSES))
    devices = "GPUs" if unit == "GPU" else "processes"
    print(
        f"experiment  jobs  {unit} hours  longest chain (h)  "
        f"longest training job (h) on {counts} {devices}"
    )
    total = 0.0
    for name in selected_experiments(config):
        exp = experiment_from_config(config, name)
        estimate = experiment_estimate(exp, args.device)
        total += estimate.hours
        print(
            f"{name}  {estimate.jobs}  {estimate.hours:.1f}  "
            f"{estimate.longest_chain_hours:.1f}  {longest_training_text(exp, device=args.device)}"
        )
    print(f"total  {total:.1f} {unit} hours")
    return 0


def _inspect(args) -> int:
    import numpy as np
    import pyarrow.parquet as pq

    from tavaal.errors import IndexFileError
    from tavaal.pool import class_count_entropy, read_labeled, read_scores
    from tavaal.tasks.segmentation import LABELED_PIXELS

    try:
        columns = pq.read_schema(args.file).names
    except FileNotFoundError:
        raise IndexFileError(f"{args.file}: index file not found") from None
    except Exception as exc:
        raise IndexFileError(f"{args.file}: not a readable parquet file ({exc})") from None
    # A labeled file is recognised by its columns, so its own validation errors are shown
    # rather than masked by a second attempt to read it as a scores file.
    from_scores = "stage_added" not in columns
    if from_scores and not {"index", "score", "chosen"} <= set(columns):
        raise IndexFileError(
            f"{args.file}: not an index file (its columns: {', '.join(columns) or 'none'}); "
            "`tavaal inspect` reads a stage's labeled.parquet (columns index, label, "
            "stage_added, score) or scores.parquet (columns index, score, chosen, ...)"
        )
    if from_scores:
        table, metadata = read_scores(args.file)
    else:
        labeled = read_labeled(args.file)
        table, metadata = labeled.table, labeled.metadata
    print(f"file: {args.file}")
    for key in sorted(metadata):
        print(f"  {key}: {metadata[key]}")
    print(f"rows: {len(table)}")
    if from_scores:
        chosen = table[table["chosen"]]
        print(f"chosen: {len(chosen)}")
        print(table.describe().T.to_string())
        return 0
    counts = table.groupby("stage_added").size()
    print("samples per stage_added: " + ", ".join(f"{k}: {v}" for k, v in counts.items()))
    labels = table["label"].to_numpy()
    if metadata.get("label") == LABELED_PIXELS:
        # A segmentation index file: each image's count of labeled pixels, not a class.
        if len(labels):
            print(
                f"labeled pixels per image: {labels.min()} to {labels.max()}, "
                f"median {int(np.median(labels))}, {labels.sum()} in all"
            )
        _print_overlap(labeled, args.against)
        return 0
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    histogram = np.bincount(labels, minlength=num_classes)
    print("class histogram: " + ", ".join(f"{c}: {n}" for c, n in enumerate(histogram)))
    print(f"class-count entropy: {class_count_entropy(labels, num_classes):.4f} (natural log)")
    _print_overlap(labeled, args.against)
    return 0


def _print_overlap(labeled, against: str | None) -> None:
    """How the labeled set shares samples with the index file `against`, if one is given."""
    from tavaal.pool import read_labeled

    if not against:
        return
    other = read_labeled(against)
    a, b = set(labeled.indices.tolist()), set(other.indices.tolist())
    shared = len(a & b)
    print(
        f"overlap with {against}: {shared} shared, {len(a - b)} only here, "
        f"{len(b - a)} only there (Jaccard {shared / max(len(a | b), 1):.3f})"
    )


def _label(args) -> int:
    from tavaal.labeling.page import serve_labeling

    serve_labeling(args.request, port=args.port, open_browser=not args.no_browser)
    return 0


def _toy_folder(args) -> int:
    from tavaal.data.toy_folder import TOY_CLASSES, write_class_folder_tree, write_toy_folder

    if args.class_folders:
        tree = write_class_folder_tree(
            args.folder, args.pool_per_class, args.test_per_class, args.seed
        )
        print(
            f"{tree}: train/ and val/ with {args.pool_per_class} and {args.test_per_class} "
            f"JPEGs per class of {', '.join(TOY_CLASSES)}"
        )
        return 0
    folder = write_toy_folder(args.folder, args.pool_per_class, args.test_per_class, args.seed)
    pool = args.pool_per_class * len(TOY_CLASSES)
    test = args.test_per_class * len(TOY_CLASSES)
    print(f"{folder.images}: {pool + test} images of {', '.join(TOY_CLASSES)}")
    print(f"{folder.truth}: the true labels of the {pool} pool images")
    print(f"{folder.test_labels}: the labels of the {test} test images")
    return 0


def _readme_update(args) -> int:
    from tavaal.report.readme import update_readme

    update_readme(args.readme, args.section, args.name)
    print(f"{args.readme}: results section {args.name!r} replaced by {args.section}")
    return 0


COMMANDS = {
    "methods": _methods,
    "datasets": _datasets,
    "schema": _schema,
    "prepare": _prepare,
    "init-pool": _init_pool,
    "train": _train,
    "query": _query,
    "run": _run,
    "inspect": _inspect,
    "estimate": _estimate,
    "label": _label,
    "toy-folder": _toy_folder,
    "readme-update": _readme_update,
}


if __name__ == "__main__":
    sys.exit(main())
