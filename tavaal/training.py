"""Training one stage's task learner (and ranker, for the methods that use one).

Both papers re-initialise the task learner at every stage, so each stage trains from scratch on
that stage's labeled set. The training data lives on the device as one tensor; batches are
gathered, augmented (pad-4 random crop + horizontal flip) and normalised there, with no
DataLoader or per-sample PIL transforms.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tavaal.config import ExperimentConfig
from tavaal.data import DatasetInfo, PreparedDataset, to_tensor_batch
from tavaal.errors import CheckpointError
from tavaal.inference import forward_pool
from tavaal.losses import margin_loss, ranking_loss
from tavaal.models import TaskModel, build_ranker, build_task_model
from tavaal.seeding import seed_everything, torch_generator
from tavaal.strategies import strategy_class

CHECKPOINT_FORMAT = 1


@dataclass
class TrainedModels:
    """The task learner(s) of one stage, ready for inference."""

    models: list[TaskModel]
    ranker: nn.Module | None = None


def task_dropout(exp: ExperimentConfig, method: str) -> float:
    return exp.query.mc_dropout if strategy_class(method).mc_dropout else 0.0


def ensemble_members(exp: ExperimentConfig, method: str) -> int:
    return exp.query.ensemble_size if strategy_class(method).ensemble else 1


def augment_images(
    batch: torch.Tensor, generator: torch.Generator, padding: int = 4, hflip: bool = True
) -> torch.Tensor:
    """Random crop of the zero-padded image and horizontal flip of a uint8 (N, H, W, C) batch.

    Runs on the batch's device. Zero padding happens on raw pixels, as in the papers' pipelines
    (TA-VAAL §4.2: 32×32 crops of 36×36 zero-padded images).
    """
    n, h, w, _ = batch.shape
    padded = F.pad(batch, (0, 0, padding, padding, padding, padding))
    device = batch.device
    draws = torch.randint(0, 2 * padding + 1, (2, n), generator=generator, device=device)
    flips = torch.rand(n, generator=generator, device=device) < 0.5
    if not hflip:
        flips = torch.zeros_like(flips)
    rows = draws[0][:, None] + torch.arange(h, device=device)[None, :]
    cols = draws[1][:, None] + torch.arange(w, device=device)[None, :]
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    sample = torch.arange(n, device=device)[:, None, None]
    return padded[sample, rows[:, :, None], cols[:, None, :]]


def _batch_order(n: int, batch_size: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    order = torch.randperm(n, generator=generator, device=device)
    chunks = list(torch.split(order, batch_size))
    # A batch of one breaks batch norm in training mode; that sample is seen in other epochs.
    if len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks.pop()
    return chunks


def _optimizer(exp: ExperimentConfig, params) -> torch.optim.Optimizer:
    cfg = exp.train
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def train_task_learner(
    exp: ExperimentConfig,
    method: str,
    dataset: PreparedDataset,
    indices: np.ndarray,
    labels: np.ndarray,
    seed: int,
    stage: int,
    device: str | torch.device = "cpu",
    log: Callable[[str], None] = print,
    resume_path: Path | None = None,
) -> tuple[dict, dict]:
    """Train the stage's task learner(s) from scratch; return (checkpoint dict, metrics dict).

    With `resume_path` and `exp.train.checkpoint_every > 0`, a resumable state is saved there
    every that many epochs, and training continues from it when the file already exists.
    """
    device = _resolve_device(device)
    info = dataset.info
    strategy = strategy_class(method)
    members = ensemble_members(exp, method)
    settings_hash = exp.settings_hash(method)
    x_all = torch.from_numpy(np.asarray(dataset.x_train[np.sort(indices)])).to(device)
    order = np.argsort(indices, kind="stable")
    # Rows of x_all follow sorted indices; labels must follow the same order.
    y_all = torch.from_numpy(np.asarray(labels, dtype=np.int64)[order]).to(device)

    resume = _load_resume(resume_path, settings_hash, log) if resume_path else None
    finished: list[dict] = resume["finished"] if resume else []
    started = time.perf_counter()
    seen = 0
    for member in range(len(finished), members):
        state, member_seen = _train_member(
            exp,
            method,
            strategy.ranker_loss,
            info,
            x_all,
            y_all,
            seed,
            stage,
            member,
            device,
            log,
            resume if resume and resume["member"] == member else None,
            resume_path,
            finished,
            settings_hash,
        )
        finished.append(state)
        seen += member_seen
    train_seconds = time.perf_counter() - started

    trained = _instantiate(exp, method, info, finished, device)
    metrics = evaluate(trained, dataset, device, exp.query.inference_batch_size)
    metrics.update(
        labels=int(len(indices)),
        train_seconds=round(train_seconds, 3),
        epochs=exp.train.epochs,
        images_per_second=round(seen / train_seconds, 1) if train_seconds > 0 else 0.0,
    )
    log(
        f"stage {stage}: {len(indices)} labels, test accuracy {metrics['accuracy']:.4f}, "
        f"test loss {metrics['test_loss']:.4f}, {train_seconds:.1f}s"
    )
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "method": method,
        "experiment": exp.name,
        "settings_hash": settings_hash,
        "model_name": exp.model,
        "input_shape": list(info.input_shape),
        "num_classes": info.num_classes,
        "dropout": task_dropout(exp, method),
        "model": finished[0]["model"],
        # Further members of an ensemble (ensemble_varr); empty for every other method.
        "ensemble_members": [state["model"] for state in finished[1:]],
        "ranker": finished[0]["ranker"],
        "optimizer": finished[0]["optimizer"],
        "scheduler": finished[0]["scheduler"],
        "epoch": exp.train.epochs,
        "rng_state": torch.get_rng_state(),
    }
    return checkpoint, metrics


def _train_member(
    exp,
    method,
    ranker_loss_name,
    info: DatasetInfo,
    x_all,
    y_all,
    seed,
    stage,
    member,
    device,
    log,
    resume,
    resume_path,
    finished,
    settings_hash,
):
    cfg = exp.train
    role = f"train/member{member}"
    seed_everything(seed, stage, role + "/init")
    model = build_task_model(
        exp.model, info.input_shape, info.num_classes, dropout=task_dropout(exp, method)
    ).to(device)
    ranker = None
    if ranker_loss_name is not None:
        ranker = build_ranker(model, info.input_shape, hidden=exp.ranker.hidden).to(device)
    params = list(model.parameters()) + (list(ranker.parameters()) if ranker else [])
    optimizer = _optimizer(exp, params)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.milestones), gamma=cfg.gamma
    )
    shuffle = torch_generator(seed, stage, role + "/shuffle", device)
    augment = cfg.augment and info.kind == "image"
    start_epoch = 1
    if resume is not None:
        model.load_state_dict(resume["model"])
        if ranker is not None:
            ranker.load_state_dict(resume["ranker"])
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        shuffle.set_state(resume["shuffle_state"])
        torch.set_rng_state(resume["rng_state"])
        start_epoch = resume["epoch"] + 1
        log(f"member {member}: resumed after epoch {resume['epoch']}")

    n = len(y_all)
    seen = 0
    for epoch in range(start_epoch, cfg.epochs + 1):
        model.train()
        if ranker is not None:
            ranker.train()
        epoch_start = time.perf_counter()
        # Accumulated on the device: a per-batch .item() would stall a GPU every step.
        total_loss = torch.zeros((), device=device)
        correct = torch.zeros((), device=device)
        count = 0
        for batch_index in _batch_order(n, cfg.batch_size, shuffle, device):
            raw = x_all[batch_index]
            if augment:
                raw = augment_images(raw, shuffle, cfg.crop_padding, cfg.hflip)
            inputs = to_tensor_batch(raw, info)
            targets = y_all[batch_index]
            out = model(inputs)
            per_sample = F.cross_entropy(out.logits, targets, reduction="none")
            loss = per_sample.mean()
            if ranker is not None and len(targets) >= 2:
                # Learning Loss / TA-VAAL Alg. 1: after detach_epoch the ranker keeps learning
                # but its gradient stops reaching the backbone.
                taps = out.features
                if epoch > exp.ranker.detach_epoch:
                    taps = [tap.detach() for tap in taps]
                predicted = ranker(taps).reshape(-1)
                if ranker_loss_name == "margin":
                    aux = margin_loss(predicted, per_sample, margin=exp.ranker.margin)
                else:
                    aux = ranking_loss(predicted, per_sample)
                loss = loss + exp.ranker.weight * aux  # TA-VAAL eq. 2
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(targets)
            correct += (out.logits.detach().argmax(1) == targets).sum()
            count += len(targets)
        scheduler.step()
        seen += count
        seconds = time.perf_counter() - epoch_start
        samples_seen = max(count, 1)
        log(
            f"member {member} epoch {epoch}/{cfg.epochs}:"
            f" loss {total_loss.item() / samples_seen:.4f}"
            f" train acc {correct.item() / samples_seen:.4f}"
            f" {count / seconds if seconds > 0 else 0:.0f} img/s"
        )
        if (
            resume_path is not None
            and cfg.checkpoint_every > 0
            and epoch % cfg.checkpoint_every == 0
            and epoch < cfg.epochs
        ):
            _save_resume(
                resume_path,
                {
                    "format": CHECKPOINT_FORMAT,
                    "settings_hash": settings_hash,
                    "member": member,
                    "finished": finished,
                    "model": model.state_dict(),
                    "ranker": ranker.state_dict() if ranker else None,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "shuffle_state": shuffle.get_state(),
                    "rng_state": torch.get_rng_state(),
                    "epoch": epoch,
                },
            )
    state = {
        "model": model.state_dict(),
        "ranker": ranker.state_dict() if ranker else None,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
    }
    return state, seen


def _save_resume(path: Path, state: dict) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def _load_resume(path: Path, settings_hash: str, log: Callable[[str], None]) -> dict | None:
    path = Path(path)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file from a killed job: start over, loudly
        raise CheckpointError(f"{path}: resume file is unreadable ({exc}); delete it") from None
    if state.get("settings_hash") != settings_hash:
        # Left by a killed job whose settings have since changed: never mix it in, start over
        # (as the VAE/D resume does), so a rerun with new settings needs no manual cleanup.
        log(f"{path}: resume file was written with other settings; ignoring it, starting over")
        path.unlink()
        return None
    return state


def _instantiate(exp, method, info: DatasetInfo, states: list[dict], device) -> TrainedModels:
    models = []
    for state in states:
        model = build_task_model(
            exp.model, info.input_shape, info.num_classes, dropout=task_dropout(exp, method)
        ).to(device)
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
    path: Path, exp: ExperimentConfig, method: str, info: DatasetInfo, device="cpu"
) -> TrainedModels:
    """Rebuild a stage's trained task learner(s) from its checkpoint (no code is unpickled)."""
    path = Path(path)
    device = _resolve_device(device)
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not a tavaal checkpoint (format {CHECKPOINT_FORMAT})")
    expected = exp.settings_hash(method)
    if checkpoint.get("settings_hash") != expected:
        raise CheckpointError(
            f"{path}: written for method {checkpoint.get('method')!r} with settings "
            f"{checkpoint.get('settings_hash')}, expected {method!r} with {expected}"
        )
    states = [{"model": checkpoint["model"], "ranker": checkpoint["ranker"]}]
    states += [{"model": state, "ranker": None} for state in checkpoint["ensemble_members"]]
    return _instantiate(exp, method, info, states, device)


@torch.no_grad()
def evaluate(trained: TrainedModels, dataset: PreparedDataset, device, batch_size: int) -> dict:
    """Test-split accuracy, per-class accuracy and loss of the first model (and the ensemble)."""
    info = dataset.info
    test_indices = np.arange(len(dataset.y_test), dtype=np.int64)
    labels = torch.from_numpy(np.array(dataset.y_test, dtype=np.int64))
    outputs = [
        forward_pool(model, dataset.x_test, test_indices, info, device, batch_size)
        for model in trained.models
    ]
    logits = torch.from_numpy(outputs[0].logits)
    predictions = logits.argmax(1)
    metrics = {
        "accuracy": float((predictions == labels).float().mean()),
        "per_class_accuracy": _per_class_accuracy(predictions, labels, info.num_classes),
        "test_loss": float(F.cross_entropy(logits, labels)),
    }
    if len(outputs) > 1:
        mean_probs = torch.stack([F.softmax(torch.from_numpy(o.logits), 1) for o in outputs])
        ensemble_pred = mean_probs.mean(0).argmax(1)
        metrics["ensemble_accuracy"] = float((ensemble_pred == labels).float().mean())
    return metrics


def _per_class_accuracy(predictions, labels, num_classes: int) -> list[float | None]:
    result: list[float | None] = []
    for cls in range(num_classes):
        mask = labels == cls
        total = int(mask.sum())
        result.append(float((predictions[mask] == cls).float().mean()) if total else None)
    return [None if v is None or math.isnan(v) else round(v, 6) for v in result]
