"""Training one stage's task learner (and ranker, for the methods that use one).

Both papers re-initialise the task learner at every stage, so each stage trains from scratch on
that stage's labeled set. The training data lives on the device as one tensor; batches are
gathered, augmented (`tavaal.augmentation`: pad-4 random crop or random-resized crop, plus a
horizontal flip; a segmentation image with its mask, `tavaal.segmentation.crop_flip`) and
normalised there, with no DataLoader or per-sample PIL transforms.

What differs between classification and segmentation (model, targets, augmentation, losses,
accuracy, test metrics) is the dataset's `tavaal.tasks.Task`; this loop is the same for both.

What is trained is a *recipe*, not a method: every method declares the recipe its task learner
needs (plain classifier, with a margin-loss or ranking-loss ranker, or an ensemble). Methods of
one recipe train identical models on identical labeled sets, so the workflow trains the shared
stage-0 model once per (experiment, recipe, seed), and differences between methods are paired.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import nn

# The classification augmentation, still imported from here (augment_images, _augment).
from tavaal.augmentation import augment_images as augment_images
from tavaal.config import ExperimentConfig, RankerConfig, settings_hash
from tavaal.data import DatasetInfo, PreparedDataset, to_tensor_batch
from tavaal.data.image_files import ImageFiles
from tavaal.distributed import DataParallel, check_supported
from tavaal.errors import CheckpointError
from tavaal.losses import margin_loss, ranking_loss
from tavaal.models import TaskOutput, build_ranker
from tavaal.models.weights import load_initial_weights
from tavaal.optim import build_optimizer
from tavaal.portable_adam import PortableAdam
from tavaal.seeding import seed_everything, torch_generator
from tavaal.swa import WeightAverage, recompute_batch_norm
from tavaal.tasks import Task, task_of
from tavaal.tasks.classification import augment_raw

CHECKPOINT_FORMAT = 2
_augment = augment_raw


@dataclass(frozen=True)
class TrainingRecipe:
    """How a stage's task learner is trained, whatever method then queries with it."""

    name: str
    # None, "margin" (Learning Loss) or "ranking" (TA-VAAL eq. 1): the ranker trained alongside.
    ranker_loss: Literal["margin", "ranking"] | None = None
    # Train query.ensemble_size independent task learners.
    ensemble: bool = False


PLAIN = TrainingRecipe("plain")
MARGIN_RANKER = TrainingRecipe("margin_ranker", ranker_loss="margin")
RANKING_RANKER = TrainingRecipe("ranking_ranker", ranker_loss="ranking")
ENSEMBLE = TrainingRecipe("ensemble", ensemble=True)
RECIPES = {recipe.name: recipe for recipe in (PLAIN, MARGIN_RANKER, RANKING_RANKER, ENSEMBLE)}


def get_recipe(name: str) -> TrainingRecipe:
    try:
        return RECIPES[name]
    except KeyError:
        raise CheckpointError(
            f"unknown training recipe {name!r}; known: {', '.join(RECIPES)}"
        ) from None


def training_settings(exp: ExperimentConfig, recipe: TrainingRecipe) -> dict:
    """Everything a recipe's trained model depends on besides its labeled set: a training job's
    Snakemake params, hashed into its checkpoint. VAE settings, the budget or the candidate
    subset do not change it, so editing them retrains nothing."""
    settings = {
        "recipe": recipe.name,
        "dataset": exp.dataset,
        "model": exp.model,
        "normalization": exp.normalization,
        "train": exp.train_settings(),
        "inference_batch_size": exp.query.inference_batch_size,
    }
    if recipe.ranker_loss is not None:
        settings["ranker"] = exp.to_dict()["ranker"]
    if recipe.ensemble:
        settings["ensemble_size"] = exp.query.ensemble_size
    return settings


def training_hash(exp: ExperimentConfig, recipe: TrainingRecipe) -> str:
    return settings_hash(training_settings(exp, recipe))


@dataclass
class TrainedModels:
    """The task learner(s) of one stage, ready for inference."""

    models: list[nn.Module]  # classifiers (`TaskModel`) or segmentation networks
    ranker: nn.Module | None = None


def ensemble_members(exp: ExperimentConfig, recipe: TrainingRecipe) -> int:
    return exp.query.ensemble_size if recipe.ensemble else 1


def build_model(exp: ExperimentConfig, info: DatasetInfo) -> nn.Module:
    """The experiment's task learner, untrained: the same for every method (`train.dropout`);
    a classifier (`TaskModel`) or a segmentation network, as the dataset's task says."""
    return task_of(info).build_model(exp, info)


def _batch_order(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator, device=device)
    chunks = list(torch.split(order, batch_size))
    # A batch of one breaks batch norm in training mode; that sample is seen in other epochs.
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks.pop()
    return chunks


def _optimizer(exp: ExperimentConfig, params) -> torch.optim.Optimizer:
    # build_optimizer: the torch optimizer without its torch._dynamo import (tavaal.optim);
    # PortableAdam: torch's Adam with a correctly rounded sqrt, the same bits on any CPU.
    cfg = exp.train
    if cfg.optimizer == "sgd":
        return build_optimizer(
            torch.optim.SGD, params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return build_optimizer(PortableAdam, params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class _Split:
    """Rows of one split (sorted by dataset index) and their targets on the device (the task's
    `train_targets`: class labels, or masks).

    The rows are held on the device as uint8 (`x`), or for a dataset stored as files
    (`tavaal.data.image_files`) left there and decoded batch by batch (`files`, `indices`).
    """

    x: torch.Tensor | None
    y: torch.Tensor
    files: ImageFiles | None = None
    indices: np.ndarray | None = None  # dataset index of each row, with `files`

    @classmethod
    def load(cls, dataset: PreparedDataset, indices, labels, device) -> _Split:
        indices = np.asarray(indices, dtype=np.int64)
        order = np.argsort(indices, kind="stable")
        labels = np.asarray(labels)[order]
        y = task_of(dataset.info).train_targets(dataset, indices[order], labels).to(device)
        if isinstance(dataset.x_train, ImageFiles):
            return cls(None, y, files=dataset.x_train, indices=indices[order])
        x = torch.from_numpy(np.asarray(dataset.x_train[indices[order]])).to(device)
        return cls(x, y)

    def batches(self, positions: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """The uint8 rows at each tensor of row `positions`, on the device of the labels."""
        if self.files is None:
            yield from (self.x[p] for p in positions)
            return
        wanted = (self.indices[p.cpu().numpy()] for p in positions)
        for rows in self.files.prefetch(wanted):
            yield torch.from_numpy(rows).to(self.y.device)


def train_task_learner(
    exp: ExperimentConfig,
    recipe: TrainingRecipe,
    dataset: PreparedDataset,
    indices: np.ndarray,
    labels: np.ndarray,
    seed: int,
    stage: int,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    resume_path: Path | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    parallel: DataParallel | None = None,
) -> tuple[dict, dict] | None:
    """Train the stage's task learner(s) from scratch; return (checkpoint dict, metrics dict).

    `labels`: what the labeled set's index file records for `indices` (class labels; for
    segmentation the masks are read from the dataset, `tavaal.tasks.segmentation`).

    With `resume_path` and `exp.train.checkpoint_every > 0`, a resumable state is saved there
    every that many epochs, and training continues from it when the file already exists.
    `validation` = (indices, labels) of the held-out split: the weights with the best accuracy
    on it are kept (`train.validation_size`, `train.validate_every`).

    `parallel`: this process's place among a job's data-parallel processes (`train.processes`,
    `tavaal.distributed`), which train together on shares of every batch; rank 0 alone writes
    the resume state, evaluates and returns; the other ranks return None.
    """
    info = dataset.info
    task = task_of(info)
    if parallel is not None:
        check_supported(parallel.size, f"experiments.{exp.name}", task.name)
    device = resolve_device(device) if parallel is None else parallel.device
    members = ensemble_members(exp, recipe)
    fingerprint = training_hash(exp, recipe)
    train_split = _Split.load(dataset, indices, labels, device)
    val_split = _Split.load(dataset, *validation, device) if validation is not None else None

    resume = _load_resume(resume_path, fingerprint, log) if resume_path else None
    finished: list[dict] = resume["finished"] if resume else []
    started = time.perf_counter()
    seen = 0
    for member in range(len(finished), members):
        run = _MemberRun(
            exp=exp,
            recipe=recipe,
            info=info,
            train=train_split,
            validation=val_split,
            seed=seed,
            stage=stage,
            member=member,
            device=device,
            log=log,
            resume_path=resume_path,
            finished=finished,
            fingerprint=fingerprint,
            parallel=parallel,
        )
        state, member_seen = _train_member(
            run, resume if resume and resume["member"] == member else None
        )
        finished.append(state)
        seen += member_seen
    train_seconds = time.perf_counter() - started
    if parallel is not None and not parallel.writes:
        return None

    trained = _instantiate(exp, info, finished, device)
    metrics = task.evaluate(trained.models, dataset, device, exp.query.inference_batch_size)
    metrics.update(
        labels=int(len(indices)),
        train_seconds=round(train_seconds, 3),
        epochs=exp.train.epochs,
        iterations=exp.train.iterations,
        images_per_second=round(seen / train_seconds, 1) if train_seconds > 0 else 0.0,
    )
    if val_split is not None:
        metrics["validation_accuracy"] = [state["validation_accuracy"] for state in finished]
        metrics["selected_step"] = [state["selected_step"] for state in finished]
    primary = metrics[task.primary_metric]
    measured = (
        f"{task.metric_label} {primary:.4f}, test loss {metrics['test_loss']:.4f}"
        if primary is not None
        else "no test split"
    )
    log(f"stage {stage}: {len(indices)} labels, {measured}, {train_seconds:.1f}s")
    return _checkpoint(exp, recipe, info, fingerprint, finished), metrics


def _checkpoint(exp, recipe, info: DatasetInfo, fingerprint: str, finished: list[dict]) -> dict:
    """The stage's model.pt: the standard checkpoint dict, with every member's weights."""
    return {
        "format": CHECKPOINT_FORMAT,
        "recipe": recipe.name,
        "experiment": exp.name,
        "settings_hash": fingerprint,
        "model_name": exp.model,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "dropout": exp.train.dropout,
        "model": finished[0]["model"],
        # Further members of an ensemble; empty for every other recipe.
        "ensemble_members": [state["model"] for state in finished[1:]],
        "ranker": finished[0]["ranker"],
        "optimizer": finished[0]["optimizer"],
        "scheduler": finished[0]["scheduler"],
        "epoch": finished[0]["epoch"],
        "iteration": finished[0]["iteration"],
        "rng_state": torch.get_rng_state(),
    }


@dataclass
class _MemberRun:
    """What one ensemble member's (or the single model's) training needs."""

    exp: ExperimentConfig
    recipe: TrainingRecipe
    info: DatasetInfo
    train: _Split
    validation: _Split | None
    seed: int
    stage: int
    member: int
    device: torch.device
    log: Callable[[str], None]
    resume_path: Path | None
    finished: list[dict]
    fingerprint: str
    parallel: DataParallel | None = None


def _train_member(run: _MemberRun, resume: dict | None) -> tuple[dict, int]:
    """Train one model; return its final state (best on validation, if any) and images seen.

    Epoch mode: `train.epochs` passes, the scheduler stepped per epoch. Iteration mode
    (`train.iterations` > 0): that many optimizer steps over as many passes as they need, the
    scheduler stepped per step (VAAL's official code). Either way a pass draws a fresh seeded
    permutation, so a pass is the unit of resumption and of `ranker.detach_epoch`.
    """
    member = _Member.build(run)
    if resume is not None:
        member.restore(resume)
    seen = 0
    while not member.finished():
        started = time.perf_counter()
        totals = member.train_epoch()
        seen += totals.count
        member.log_epoch(totals, time.perf_counter() - started)
        cfg = run.exp.train
        if (
            run.resume_path is not None
            and (run.parallel is None or run.parallel.writes)
            and cfg.checkpoint_every > 0
            and member.epoch % cfg.checkpoint_every == 0
            and not member.finished()
        ):
            _save_resume(run.resume_path, member.resume_state())
    return member.final_state(), seen


@dataclass
class _EpochTotals:
    """One pass's summed loss, correct predictions, what those count, and samples, over all
    ranks."""

    loss: torch.Tensor
    correct: torch.Tensor
    scored: torch.Tensor  # what `correct` counts: samples, or pixels
    count: int


@dataclass
class _Member:
    """One model's training: its modules, optimizer, scheduler, shuffling generator, the best
    weights on validation and where it stands (epoch, optimizer step)."""

    run: _MemberRun
    model: nn.Module
    ranker: nn.Module | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    shuffle: torch.Generator
    best: _BestWeights
    # SWA (`train.swa_start`): running means of the model's and the ranker's weights.
    averages: list[WeightAverage] | None = None
    epoch: int = 0
    step: int = 0

    @classmethod
    def build(cls, run: _MemberRun) -> _Member:
        """The member's modules, seeded from (seed, stage, member) in a fixed order."""
        exp, cfg, info, device = run.exp, run.exp.train, run.info, run.device
        role = f"train/member{run.member}"
        seed_everything(run.seed, run.stage, role + "/init")
        model = build_model(exp, info)
        if cfg.init_weights:
            # After the model's own initialisation, so the random draws that follow are the
            # same with and without given weights; what the file lacks keeps that initialisation.
            loaded = load_initial_weights(model, exp.model, cfg.init_weights)
            kept = f"; kept their initialisation: {', '.join(loaded.kept_initialisation)}"
            run.log(
                f"member {run.member}: initial weights from {cfg.init_weights} ({loaded.layout} "
                f"layout){kept if loaded.kept_initialisation else ''}"
            )
        model = model.to(device)
        if run.parallel is not None:
            run.parallel.globalise(model)
        ranker = None
        if run.recipe.ranker_loss is not None:
            ranker = build_ranker(model, info.input_shape, hidden=exp.ranker.hidden).to(device)
            if run.parallel is not None:
                run.parallel.globalise(ranker)
        params = list(model.parameters()) + (list(ranker.parameters()) if ranker else [])
        optimizer = _optimizer(exp, params)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(
            optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma
        )
        shuffle = torch_generator(run.seed, run.stage, role + "/shuffle", device)
        # One running mean per averaged module, in `_averaged`'s order.
        modules = 1 + (ranker is not None)
        averages = [WeightAverage() for _ in range(modules)] if cfg.swa_start else None
        return cls(run, model, ranker, optimizer, scheduler, shuffle, _BestWeights(), averages)

    def _averaged(self) -> list[nn.Module]:
        return [self.model] + ([self.ranker] if self.ranker is not None else [])

    def restore(self, resume: dict) -> None:
        self.model.load_state_dict(resume["model"])
        if self.ranker is not None:
            self.ranker.load_state_dict(resume["ranker"])
        self.optimizer.load_state_dict(resume["optimizer"])
        self.scheduler.load_state_dict(resume["scheduler"])
        self.shuffle.set_state(resume["shuffle_state"])
        torch.set_rng_state(resume["rng_state"])
        self.epoch, self.step = resume["epoch"], resume["iteration"]
        self.best = _BestWeights.from_state(resume["best"])
        if self.averages is not None:
            self.averages = [WeightAverage.from_state(state) for state in resume["swa"]]
        self.run.log(f"member {self.run.member}: resumed after epoch {self.epoch}")

    def finished(self) -> bool:
        cfg = self.run.exp.train
        if cfg.iterations > 0:
            return self.step >= cfg.iterations
        return self.epoch >= cfg.epochs

    def validate(self) -> None:
        run = self.run
        if run.validation is not None:
            task = task_of(run.info)
            accuracy = _accuracy(self.model, run.validation, run.info, task, parallel=run.parallel)
            self.best.offer(accuracy, self.step, self.model, self.ranker)

    def train_epoch(self) -> _EpochTotals:
        """One pass over the labeled set (or up to `train.iterations` steps)."""
        run, exp = self.run, self.run.exp
        cfg, info, device, parallel = exp.train, run.info, run.device, run.parallel
        task = task_of(info)
        by_iterations = cfg.iterations > 0
        augment = (cfg.augment or cfg.randaugment_ops > 0) and info.kind == "image"
        self.epoch += 1
        averaging = self.averages is not None and self.epoch > cfg.swa_start
        if averaging:
            # SWA's constant learning rate, whatever the schedule would give.
            for group in self.optimizer.param_groups:
                group["lr"] = cfg.swa_lr
        self.model.train()
        if self.ranker is not None:
            self.ranker.train()
        # Accumulated on the device: a per-batch .item() would stall a GPU every step.
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        scored = torch.zeros((), device=device)
        count = 0
        y_all = run.train.y
        order = _batch_order(len(y_all), cfg.batch_size, self.shuffle, device)
        # Data-parallel: every rank draws the same global batches and reads its share of each.
        rows = order if parallel is None else [parallel.shard(b) for b in order]
        for batch_index, own, raw in zip(order, rows, run.train.batches(rows), strict=True):
            share = None
            if parallel is not None:
                share = parallel.begin_batch(batch_index)
            targets = y_all[own]
            if augment:
                inputs, targets = task.augment(raw, targets, self.shuffle, cfg, info, share)
            else:
                inputs = to_tensor_batch(raw, info)
            # Learning Loss / TA-VAAL: after detach_epoch the ranker keeps learning but its
            # gradient stops reaching the backbone (TA-VAAL supp. §7.2, official code).
            detach = self.epoch > exp.ranker.detach_epoch
            loss, out = train_step(
                self.model,
                self.ranker,
                self.optimizer,
                inputs,
                targets,
                task,
                run.recipe,
                exp.ranker,
                detach,
                parallel=parallel,
            )
            # A rank's loss is its rows' share of the global batch's mean (`train_step`).
            total_loss += loss.detach() * len(batch_index)
            right, total = task.correct(out.logits.detach(), targets)
            correct += right
            scored += total
            count += len(targets)
            self.step += 1
            if by_iterations:
                self.scheduler.step()
                if self.step % cfg.validate_every == 0 or self.step == cfg.iterations:
                    self.validate()
                if self.step == cfg.iterations:
                    break
        if not by_iterations:
            self.scheduler.step()
            if self.epoch % cfg.validate_every == 0 or self.epoch == cfg.epochs:
                self.validate()
        if averaging:
            for average, module in zip(self.averages, self._averaged(), strict=True):
                average.update(module)
        if parallel is not None:
            totals = torch.stack(
                [total_loss, correct, scored, torch.tensor(float(count), device=device)]
            )
            total_loss, correct, scored, counted = parallel.sum_(totals)
            count = int(counted.item())
        return _EpochTotals(total_loss, correct, scored, count)

    def log_epoch(self, totals: _EpochTotals, seconds: float) -> None:
        run, cfg = self.run, self.run.exp.train
        samples_seen = max(totals.count, 1)
        progress = (
            f"step {self.step}/{cfg.iterations}"
            if cfg.iterations > 0
            else f"{self.epoch}/{cfg.epochs}"
        )
        run.log(
            f"member {run.member} epoch {progress}:"
            f" loss {totals.loss.item() / samples_seen:.4f}"
            f" train acc {totals.correct.item() / max(totals.scored.item(), 1):.4f}"
            f" {totals.count / seconds if seconds > 0 else 0:.0f} img/s"
            + (
                f" best validation acc {self.best.accuracy:.4f}"
                if run.validation is not None
                else ""
            )
        )

    def resume_state(self) -> dict:
        run = self.run
        return {
            "format": CHECKPOINT_FORMAT,
            "settings_hash": run.fingerprint,
            "member": run.member,
            "finished": run.finished,
            "model": self.model.state_dict(),
            "ranker": self.ranker.state_dict() if self.ranker else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "shuffle_state": self.shuffle.get_state(),
            "rng_state": torch.get_rng_state(),
            "epoch": self.epoch,
            "iteration": self.step,
            "best": self.best.state(),
            "swa": [a.state() for a in self.averages] if self.averages is not None else None,
        }

    def final_state(self) -> dict:
        """The weights to keep (the best on validation, if any) and the training's state."""
        run, best = self.run, self.best
        if run.validation is not None:
            run.log(
                f"member {run.member}: keeping the weights of step {best.step} "
                f"(validation accuracy {best.accuracy:.4f})"
            )
            self.model.load_state_dict(best.model)
            if self.ranker is not None:
                self.ranker.load_state_dict(best.ranker)
        if self.averages is not None:
            self._keep_average()
        return {
            "model": self.model.state_dict(),
            "ranker": self.ranker.state_dict() if self.ranker else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.step,
            "validation_accuracy": best.accuracy if run.validation is not None else None,
            "selected_step": best.step if run.validation is not None else None,
        }

    def _keep_average(self) -> None:
        """SWA's result: the averaged weights, their batch-norm statistics recomputed over the
        labeled set as stored (no augmentation), in index order, `batch_size` at a time."""
        run, cfg = self.run, self.run.exp.train
        for average, module in zip(self.averages, self._averaged(), strict=True):
            average.copy_to(module)
        positions = list(torch.arange(len(run.train.y), device=run.device).split(cfg.batch_size))
        if run.parallel is not None:
            positions = [run.parallel.shard(rows) for rows in positions]
        inputs = (to_tensor_batch(raw, run.info) for raw in run.train.batches(positions))
        recompute_batch_norm(self.model, inputs, self.model)
        run.log(
            f"member {run.member}: keeping the average of the weights after epochs "
            f"{cfg.swa_start + 1}-{self.epoch} (SWA, {self.averages[0].count} epochs), "
            f"batch-norm statistics recomputed on {len(run.train.y)} labeled samples"
        )


def train_step(
    model: nn.Module,
    ranker: nn.Module | None,
    optimizer: torch.optim.Optimizer,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    task: Task,
    recipe: TrainingRecipe,
    ranker_config: RankerConfig,
    detach_taps: bool,
    parallel: DataParallel | None = None,
) -> tuple[torch.Tensor, TaskOutput]:
    """One optimizer step of the task learner (and the ranker, if any) on one batch; returns
    (loss, model output). The ranker's loss (`recipe.ranker_loss`) is added with weight
    `ranker_config.weight` (TA-VAAL eq. 2); `detach_taps` stops its gradient at the taps.

    `parallel`: the batch is this rank's share of a global batch; its loss is its rows' summed
    loss over the global batch size, the ranker's loss is the global batch's (from every
    rank's predicted and true losses, gathered), and the gradients are summed over the ranks
    before the step, which then equals one process's step on the global batch. The loss
    returned counts the ranker's loss once over the ranks (for the log's sums)."""
    out = model(inputs)
    per_sample = task.per_sample_loss(out.logits, targets)
    if parallel is None:
        loss = task.batch_loss(out.logits, targets, per_sample)
    else:
        loss = per_sample.sum() / parallel.share[1]
    shown = loss
    batch = len(targets) if parallel is None else parallel.share[1]
    if ranker is not None and batch >= 2:
        taps = [tap.detach() for tap in out.features] if detach_taps else out.features
        predicted = ranker(taps).reshape(-1)
        true_loss = per_sample
        if parallel is not None:
            predicted = parallel.gather_rows(predicted)
            true_loss = parallel.gather_rows(per_sample.detach())
        if recipe.ranker_loss == "margin":
            aux = margin_loss(predicted, true_loss, margin=ranker_config.margin)
        else:
            aux = ranking_loss(predicted, true_loss)
        loss = loss + ranker_config.weight * aux  # TA-VAAL eq. 2
        shown = loss if parallel is None else shown + ranker_config.weight * aux / parallel.size
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if parallel is not None:
        parallel.sum_gradients([p for group in optimizer.param_groups for p in group["params"]])
    optimizer.step()
    return shown, out


class _BestWeights:
    """The weights with the highest validation accuracy so far (the earliest of equals)."""

    def __init__(self) -> None:
        self.accuracy = -1.0
        self.step = 0
        self.model: dict | None = None
        self.ranker: dict | None = None

    def offer(self, accuracy: float, step: int, model: nn.Module, ranker: nn.Module | None):
        if accuracy > self.accuracy:
            self.accuracy, self.step = accuracy, step
            self.model = _copy_state(model)
            self.ranker = _copy_state(ranker) if ranker is not None else None

    def state(self) -> dict:
        return {
            "accuracy": self.accuracy,
            "step": self.step,
            "model": self.model,
            "ranker": self.ranker,
        }

    @classmethod
    def from_state(cls, state: dict) -> _BestWeights:
        best = cls()
        best.accuracy, best.step = float(state["accuracy"]), int(state["step"])
        best.model, best.ranker = state["model"], state["ranker"]
        return best


def _copy_state(module: nn.Module) -> dict:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


@torch.no_grad()
def _accuracy(
    model: nn.Module,
    split: _Split,
    info: DatasetInfo,
    task: Task,
    batch_size: int = 512,
    parallel: DataParallel | None = None,
) -> float:
    """Accuracy (segmentation: pixel accuracy) on a split held on the device; the model
    returns to training mode afterwards (VAAL's official code leaves it in eval mode after its
    first validation). Data-parallel: each rank scores every size-th batch, counts summed."""
    model.eval()
    correct = scored = 0
    positions = list(torch.arange(len(split.y), device=split.y.device).split(batch_size))
    if parallel is not None:
        positions = positions[parallel.rank :: parallel.size]
    for rows, position in zip(split.batches(positions), positions, strict=True):
        logits = model(to_tensor_batch(rows, info)).logits
        right, total = task.correct(logits, split.y[position])
        correct += int(right)
        scored += int(total)
    model.train()
    if parallel is not None:
        counts = parallel.sum_(
            torch.tensor([correct, scored], dtype=torch.float64, device=parallel.device)
        )
        correct, scored = int(counts[0]), int(counts[1])
    return correct / max(scored, 1)


def _save_resume(path: Path, state: dict) -> None:
    from tavaal.atomic import atomic_write

    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def _load_resume(path: Path, fingerprint: str, log: Callable[[str], None]) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file from a killed job: start over, loudly
        raise CheckpointError(f"{path}: resume file is unreadable ({exc}); delete it") from None
    if state.get("format") != CHECKPOINT_FORMAT or state.get("settings_hash") != fingerprint:
        # Left by a killed job whose settings (or tavaal's format) have since changed: never mix
        # it in, start over (as the VAE/D resume does), so a rerun needs no manual cleanup.
        log(f"{path}: resume file was written with other settings; ignoring it, starting over")
        # missing_ok: another data-parallel rank may have removed it first.
        path.unlink(missing_ok=True)
        return None
    return state


def _instantiate(exp, info: DatasetInfo, states: list[dict], device) -> TrainedModels:
    models = []
    for state in states:
        model = build_model(exp, info).to(device)
        model.load_state_dict(state["model"])
        model.eval()
        models.append(model)
    ranker = None
    if states[0]["ranker"] is not None:
        ranker = build_ranker(models[0], info.input_shape, hidden=exp.ranker.hidden).to(device)
        ranker.load_state_dict(states[0]["ranker"])
        ranker.eval()
    return TrainedModels(models=models, ranker=ranker)


def load_task_models(
    path: Path, exp: ExperimentConfig, recipe: TrainingRecipe, info: DatasetInfo, device="cpu"
) -> TrainedModels:
    """Rebuild a stage's trained task learner(s) from its checkpoint (no code is unpickled)."""
    path = Path(path)
    device = resolve_device(device)
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a tavaal checkpoint of format {CHECKPOINT_FORMAT} (written by another "
            "tavaal version? rerun its training)"
        )
    expected = training_hash(exp, recipe)
    if checkpoint.get("settings_hash") != expected:
        raise CheckpointError(
            f"{path}: written for recipe {checkpoint.get('recipe')!r} with settings "
            f"{checkpoint.get('settings_hash')}, expected {recipe.name!r} with {expected}"
        )
    states = [{"model": checkpoint["model"], "ranker": checkpoint["ranker"]}]
    states += [{"model": state, "ranker": None} for state in checkpoint["ensemble_members"]]
    return _instantiate(exp, info, states, device)


def evaluate(trained: TrainedModels, dataset: PreparedDataset, device, batch_size: int) -> dict:
    """Test-split metrics of the stage's predictor, as the dataset's task measures them
    (classification: accuracy, per-class accuracy, loss; segmentation: mIoU and more)."""
    return task_of(dataset.info).evaluate(trained.models, dataset, device, batch_size)
