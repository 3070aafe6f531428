"""Checks of an experiment against what is registered: datasets, task models, methods, and what
a method needs from the experiment. `tavaal.config` checks values alone; these checks need the
registries, which sit above it, so they live here (the workflow and the CLI call them before any
job runs)."""

from __future__ import annotations

from pathlib import Path

from tavaal.config import ExperimentConfig
from tavaal.data import (
    has_class_groups,
    image_folder_of,
    known_input_shape,
    known_split_sizes,
    known_task,
    list_datasets,
    open_prepared,
)
from tavaal.data.embeddings import read_embedding_file
from tavaal.distributed import check_supported
from tavaal.errors import ConfigError
from tavaal.strategies import list_strategies, strategy_class
from tavaal.tasks import TASKS, Task, get_task


def check_experiment(
    exp: ExperimentConfig, where: str | None = None, data_dir: str | Path | None = None
) -> None:
    """One ConfigError naming the key when the experiment asks for something unknown, something
    its methods cannot work with, or more samples than its dataset's train split holds (from
    the registry, else from the prepared dataset under `data_dir` when there is one)."""
    where = where or f"experiments.{exp.name}"
    _check_choice(f"{where}.dataset", "dataset", exp.dataset, list_datasets())
    task = get_task(known_task(exp.dataset))
    _check_model(exp, where, task)
    task.check_experiment(exp, where)
    for method in exp.methods:
        _check_choice(f"{where}.methods", "method", method, list_strategies())
        if task.name not in strategy_class(method).tasks:
            raise ConfigError(
                f"{where}.methods: {method!r} selects on "
                f"{' and '.join(strategy_class(method).tasks)} datasets only; {exp.dataset} is "
                f"a {task.name} dataset"
            )
    _check_model_builds(exp, where, task)
    sampling_dropout = [m for m in exp.methods if strategy_class(m).needs_dropout]
    if sampling_dropout and exp.train.dropout == 0:
        raise ConfigError(
            f"{where}.train.dropout: {', '.join(sampling_dropout)} sample the task learner's "
            "dropout (MC dropout) and need train.dropout > 0; it applies to every method alike"
        )
    check_supported(exp.train.processes, where, task.name)
    _check_oracle_kind(exp, where)
    oracle = exp.oracle
    if oracle.noise and oracle.confusion == "dataset" and not has_class_groups(exp.dataset):
        raise ConfigError(
            f"{where}.oracle.confusion: {exp.dataset} defines no class groups (CIFAR-100's "
            "super-classes do); set confusion: groups with oracle.groups, or confusion: any"
        )
    shape = known_input_shape(exp.dataset)
    if exp.train.randaugment_ops and shape is not None and len(shape) != 3:
        raise ConfigError(
            f"{where}.train.randaugment_ops: RandAugment transforms images; {exp.dataset} "
            f"holds vectors of shape {shape} (set it to 0)"
        )
    if exp.normalization == "half" and shape is not None and len(shape) != 3:
        raise ConfigError(
            f"{where}.normalization: 'half' scales images to [-1, 1]; {exp.dataset} holds "
            f"vectors of shape {shape}"
        )
    n_train = _train_split_size(exp.dataset, data_dir)
    if n_train is not None:
        _check_pool(exp, where, n_train)
    embedded = [m for m in exp.methods if strategy_class(m).reads_embedding]
    if embedded and exp.embedding.source == "file":
        read_embedding_file(exp.embedding.path, n_train, f"{where}.embedding.path")
    if exp.train.init_weights:
        _check_init_weights(exp, where, data_dir)


def _check_model(exp: ExperimentConfig, where: str, task: Task) -> None:
    """The model must be one of the dataset's task: a classifier cannot segment, nor a
    segmentation network classify."""
    known = task.model_names()
    if exp.model in known:
        return
    for other in TASKS.values():
        if exp.model in other.model_names():
            raise ConfigError(
                f"{where}.model: {exp.model} is a {other.name} model and {exp.dataset} a "
                f"{task.name} dataset; its models: {', '.join(known)}"
            )
    _check_choice(f"{where}.model", "task model", exp.model, known)


def _check_model_builds(exp: ExperimentConfig, where: str, task: Task) -> None:
    """Build the classifier, and the ranker its methods train beside it, for the dataset's input
    shape on the meta device (no memory, no weights): a model that cannot take the dataset's
    samples fails here, not in the first training job after the pool jobs ran."""
    shape = known_input_shape(exp.dataset)
    if task.name != "classification" or shape is None:
        return
    import torch

    from tavaal.models import build_ranker, build_task_model

    ranked = [m for m in exp.methods if strategy_class(m).recipe.ranker_loss is not None]
    part = f"{exp.model} cannot serve {exp.dataset}, whose samples have shape {tuple(shape)}"
    with torch.device("meta"):
        try:
            model = build_task_model(exp.model, shape, num_classes=2, dropout=exp.train.dropout)
        except ConfigError as exc:
            raise ConfigError(f"{where}.model: {part}: {exc}") from None
        if not ranked:
            return
        try:
            build_ranker(model, shape, hidden=exp.ranker.hidden)
        except ConfigError as exc:
            raise ConfigError(
                f"{where}.model: {part} with the ranker that {', '.join(ranked)} train beside "
                f"it: {exc}"
            ) from None


def _check_oracle_kind(exp: ExperimentConfig, where: str) -> None:
    """A person labels a practitioner's image folder; a simulated oracle needs known labels."""
    folder = image_folder_of(exp.dataset)
    if exp.oracle.human:
        if folder is None:
            raise ConfigError(
                f"{where}.oracle.kind: the human oracle labels the images of an image_folders "
                f"dataset; {exp.dataset} is a built-in dataset"
            )
        labels = exp.oracle.initial_labels
        if labels and not Path(labels).is_file():
            raise ConfigError(f"{where}.oracle.initial_labels: {labels} does not exist")
    elif folder is not None and not folder.pool_labels_known:
        raise ConfigError(
            f"{where}.oracle.kind: the pool labels of image_folders.{exp.dataset} are unknown, so "
            f"only a person can answer: set oracle.kind: human (or give image_folders."
            f"{exp.dataset}.labels for a simulated trial)"
        )


def _check_init_weights(exp: ExperimentConfig, where: str, data_dir: str | Path | None) -> None:
    """`train.init_weights` loads and fits the model: every key and shape, the classifier's
    number of classes too once the dataset is prepared. Without a registered or prepared input
    shape (an image folder not yet read) only that it is a state dict; the training job checks
    the rest."""
    from tavaal.models.weights import check_initial_weights, read_state_dict

    path = exp.train.init_weights
    shape = known_input_shape(exp.dataset)
    num_classes = None
    if data_dir is not None and (Path(data_dir) / exp.dataset).is_dir():
        info = open_prepared(exp.dataset, data_dir).info
        shape, num_classes = info.input_shape, info.num_classes
    try:
        if shape is None:
            read_state_dict(path)
        else:
            check_initial_weights(exp.model, shape, path, num_classes)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None


def _train_split_size(dataset: str, data_dir: str | Path | None) -> int | None:
    sizes = known_split_sizes(dataset)
    if sizes is not None:
        return sizes[0]
    if data_dir is not None and (Path(data_dir) / dataset).is_dir():
        return open_prepared(dataset, data_dir).info.n_train
    return None


def _check_pool(exp: ExperimentConfig, where: str, n_train: int) -> None:
    """Every query must find `budget` unlabeled samples: known before any job runs."""
    held_out = exp.train.validation_size
    needed = held_out + exp.initial_size + (exp.stages - 1) * exp.budget
    if needed > n_train:
        parts = f"initial_size {exp.initial_size} + (stages {exp.stages} - 1) x budget {exp.budget}"
        if held_out:
            parts = f"train.validation_size {held_out} + {parts}"
        raise ConfigError(
            f"{where}: {parts} = {needed} samples, but {exp.dataset}'s train split has "
            f"{n_train}; lower stages or budget"
        )


def _check_choice(where: str, what: str, value: str, known: list[str]) -> None:
    if value not in known:
        raise ConfigError(f"{where}: unknown {what} {value!r}; known: {', '.join(known)}")
