"""`tavaal` command line: discover, prepare, run and inspect stages by hand.

The stage commands call the same functions as the workflow rules and read/write the same
paths (results/{experiment}/{method}/seed{seed}/stage{stage}/...), so a user can rerun one stage
of a workflow run by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tavaal.errors import TavaalError


def stage_path(results_dir: Path, experiment: str, method: str, seed: int, stage: int, name: str):
    return Path(results_dir) / experiment / method / f"seed{seed}" / f"stage{stage}" / name


def _add_stage_args(parser: argparse.ArgumentParser, with_stage: bool) -> None:
    parser.add_argument("--config", required=True, type=Path, help="workflow config (YAML)")
    parser.add_argument("--experiment", required=True, help="experiment name in the config")
    parser.add_argument("--method", required=True, help="query strategy (see `tavaal methods`)")
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

    _add_stage_args(sub.add_parser("init-pool", help="write stage0/labeled.parquet"), False)
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

    inspect = sub.add_parser("inspect", help="summarise a labeled.parquet or scores.parquet")
    inspect.add_argument("file", type=Path)
    inspect.add_argument("--against", type=Path, help="another labeled.parquet to compare with")
    return parser


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


def _experiment(args):
    from tavaal.config import experiment_from_config, load_config

    return experiment_from_config(load_config(args.config), args.experiment)


def _check_method(exp, method: str) -> None:
    from tavaal.errors import ConfigError
    from tavaal.strategies import strategy_class

    strategy_class(method)
    if method not in exp.methods:
        raise ConfigError(f"experiments.{exp.name}.methods: {method!r} is not listed")


def _init_pool(args) -> int:
    from tavaal.stage import run_init_pool

    exp = _experiment(args)
    _check_method(exp, args.method)
    out = stage_path(args.results_dir, exp.name, args.method, args.seed, 0, "labeled.parquet")
    run_init_pool(exp, args.method, args.seed, args.data_dir, out)
    print(out)
    return 0


def _train(args) -> int:
    from tavaal.stage import run_train

    exp = _experiment(args)
    _check_method(exp, args.method)
    path = _stage_files(args.results_dir, exp.name, args.method, args.seed)
    metrics = run_train(
        exp,
        args.method,
        args.seed,
        args.stage,
        path(args.stage, "labeled.parquet"),
        args.data_dir,
        path(args.stage, "model.pt"),
        path(args.stage, "metrics.json"),
        device=args.device,
    )
    print(f"accuracy {metrics['accuracy']:.4f} with {metrics['labels']} labels")
    return 0


def _query(args) -> int:
    from tavaal.stage import run_query
    from tavaal.strategies import strategy_class

    exp = _experiment(args)
    _check_method(exp, args.method)
    path = _stage_files(args.results_dir, exp.name, args.method, args.seed)
    model = path(args.stage, "model.pt") if strategy_class(args.method).uses_task_model else None
    run_query(
        exp,
        args.method,
        args.seed,
        args.stage,
        path(args.stage, "labeled.parquet"),
        model,
        args.data_dir,
        path(args.stage + 1, "labeled.parquet"),
        path(args.stage, "scores.parquet"),
        device=args.device,
    )
    print(path(args.stage + 1, "labeled.parquet"))
    return 0


def _stage_files(results_dir, experiment, method, seed):
    def path(stage: int, name: str) -> Path:
        return stage_path(results_dir, experiment, method, seed, stage, name)

    return path


def _run(args) -> int:
    from tqdm import tqdm

    from tavaal.config import experiment_from_config, load_config
    from tavaal.stage import run_init_pool, run_query, run_train
    from tavaal.strategies import strategy_class

    config = load_config(args.config)
    names = args.experiment or list(config.get("experiments") or {})
    experiments = [experiment_from_config(config, name) for name in names]
    chains = []
    for exp in experiments:
        methods = args.methods or list(exp.methods)
        for method in methods:
            strategy_class(method)
        chains += [(exp, method, seed) for method in methods for seed in args.seeds or exp.seeds]
    # One tick per training stage; log lines are written above the bar.
    progress = tqdm(total=sum(exp.stages for exp, _, _ in chains), unit="stage", file=sys.stderr)
    with progress:
        for exp, method, seed in chains:
            path = _stage_files(args.results_dir, exp.name, method, seed)
            progress.set_description(f"{exp.name}/{method}/seed{seed}")

            def log(line: str, tag=f"{exp.name}/{method}/seed{seed}") -> None:
                progress.write(f"[{tag}] {line}", file=sys.stdout)

            if args.force or not path(0, "labeled.parquet").exists():
                run_init_pool(exp, method, seed, args.data_dir, path(0, "labeled.parquet"), log)
            for stage in range(exp.stages):
                if args.force or not path(stage, "metrics.json").exists():
                    run_train(
                        exp,
                        method,
                        seed,
                        stage,
                        path(stage, "labeled.parquet"),
                        args.data_dir,
                        path(stage, "model.pt"),
                        path(stage, "metrics.json"),
                        device=args.device,
                        log=log,
                    )
                if stage + 1 < exp.stages and (
                    args.force or not path(stage + 1, "labeled.parquet").exists()
                ):
                    uses_model = strategy_class(method).uses_task_model
                    run_query(
                        exp,
                        method,
                        seed,
                        stage,
                        path(stage, "labeled.parquet"),
                        path(stage, "model.pt") if uses_model else None,
                        args.data_dir,
                        path(stage + 1, "labeled.parquet"),
                        path(stage, "scores.parquet"),
                        device=args.device,
                        log=log,
                    )
                progress.update(1)
    return 0


def _inspect(args) -> int:
    import numpy as np

    from tavaal.pool import class_count_entropy, read_labeled, read_scores

    from_scores = False
    try:
        labeled = read_labeled(args.file)
        table, metadata = labeled.table, labeled.metadata
    except TavaalError:
        table, metadata = read_scores(args.file)
        from_scores = True
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
    num_classes = int(labels.max()) + 1 if len(labels) else 0
    histogram = np.bincount(labels, minlength=num_classes)
    print("class histogram: " + ", ".join(f"{c}: {n}" for c, n in enumerate(histogram)))
    print(f"class-count entropy: {class_count_entropy(labels, num_classes):.4f} (natural log)")
    if args.against:
        other = read_labeled(args.against)
        a, b = set(labeled.indices.tolist()), set(other.indices.tolist())
        shared = len(a & b)
        print(
            f"overlap with {args.against}: {shared} shared, {len(a - b)} only here, "
            f"{len(b - a)} only there (Jaccard {shared / max(len(a | b), 1):.3f})"
        )
    return 0


COMMANDS = {
    "methods": _methods,
    "datasets": _datasets,
    "prepare": _prepare,
    "init-pool": _init_pool,
    "train": _train,
    "query": _query,
    "run": _run,
    "inspect": _inspect,
}


if __name__ == "__main__":
    sys.exit(main())
