"""Batched inference of task learners over dataset indices (no gradients, fixed order)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tavaal.data import DatasetInfo, to_tensor_batch


@dataclass
class InferenceOutput:
    logits: np.ndarray  # (N, K) float32
    embedding: np.ndarray  # (N, E) float32
    predicted_loss: np.ndarray | None  # (N,) float32 when a ranker is given


def batches(indices: np.ndarray, batch_size: int):
    for start in range(0, len(indices), batch_size):
        yield indices[start : start + batch_size]


def load_inputs(x: np.ndarray, indices: np.ndarray, info: DatasetInfo, device) -> torch.Tensor:
    """Gather rows of a (memory-mapped) array and normalise them on the device."""
    # Sorted gathers read a memory map sequentially; restore the caller's order afterwards.
    order = np.argsort(indices, kind="stable")
    rows = np.asarray(x[indices[order]])
    batch = torch.from_numpy(rows).to(device)
    inverse = torch.from_numpy(np.argsort(order, kind="stable")).to(device)
    return to_tensor_batch(batch, info)[inverse]


@torch.no_grad()
def forward_pool(
    model,
    x: np.ndarray,
    indices: np.ndarray,
    info: DatasetInfo,
    device,
    batch_size: int = 512,
    ranker=None,
    keep_logits: bool = True,
) -> InferenceOutput:
    """Logits, embeddings and (optionally) ranker outputs of `model` in eval mode.

    Each batch is copied straight into preallocated (N, K) and (N, E) float32 arrays, so the
    outputs exist once (no list of batches next to their concatenation). Without `keep_logits`
    the logits are not kept (an empty (0, 0) array): a segmentation model's (N, K, H, W) logits
    of a pool would not fit in memory.
    """
    model.eval()
    if ranker is not None:
        ranker.eval()
    indices = np.asarray(indices, dtype=np.int64)
    logits = embeddings = losses = None
    for start, chunk in numbered_batches(indices, batch_size):
        out = model(load_inputs(x, chunk, info, device))
        stop = start + len(chunk)
        if keep_logits:
            logits = _fill(logits, len(indices), start, stop, out.logits)
        embeddings = _fill(embeddings, len(indices), start, stop, out.embedding)
        if ranker is not None:
            losses = _fill(losses, len(indices), start, stop, ranker(out.features).reshape(-1))
    return InferenceOutput(
        logits=logits if logits is not None else np.zeros((0, 0), dtype=np.float32),
        embedding=embeddings if embeddings is not None else np.zeros((0, 0), dtype=np.float32),
        predicted_loss=(losses if losses is not None else np.zeros(0, dtype=np.float32))
        if ranker is not None
        else None,
    )


@torch.no_grad()
def logit_batches(
    models,
    x: np.ndarray,
    indices: np.ndarray,
    info: DatasetInfo,
    device,
    batch_size,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
):
    """Per inference batch, in order: ``(start, stop, [logits of each model])``, each (b, K)
    float32 in eval mode, the same values `forward_pool` gives for those rows (same batches).

    The inputs of a batch are loaded once for all models; nothing of earlier batches is kept.
    `transform` maps each model's logits on the device before they are copied to the CPU (a
    segmentation task pools its per-pixel logits there, `Task.score_logits`).
    """
    for model in models:
        model.eval()
    transform = transform or (lambda logits: logits)
    for start, chunk in numbered_batches(np.asarray(indices, dtype=np.int64), batch_size):
        inputs = load_inputs(x, chunk, info, device)
        yield (
            start,
            start + len(chunk),
            [transform(model(inputs).logits).float().cpu().numpy() for model in models],
        )


@dataclass
class MCDropoutOutput:
    probabilities: np.ndarray  # (T, N, K) float32: softmax of each stochastic pass
    logits: np.ndarray  # (N, K) float32: the deterministic (eval-mode) pass


@torch.no_grad()
def mc_dropout_probabilities(
    model,
    x: np.ndarray,
    indices: np.ndarray,
    info: DatasetInfo,
    device,
    samples: int,
    generator_seed: int,
    batch_size: int = 512,
) -> MCDropoutOutput:
    """Softmax outputs of `samples` stochastic passes, shape (T, N, K), and the logits of the
    deterministic pass.

    A task learner's dropout lives only in its head (`TaskModel`), so the body runs once per
    batch (in eval mode: batch norm keeps its running statistics) and only the head is sampled T
    times, each dropout layer with its own mask. The masks come from a seeded generator on the
    device, so the result is reproducible on CPU.
    """
    probabilities = logits = None
    n = len(indices)
    batches_ = mc_dropout_batches(
        model, x, indices, info, device, samples, generator_seed, batch_size
    )
    for start, stop, passes, batch_logits in batches_:
        if probabilities is None:
            probabilities = np.empty((samples, n, passes.shape[2]), dtype=np.float32)
            logits = np.empty((n, batch_logits.shape[1]), dtype=np.float32)
        probabilities[:, start:stop] = passes
        logits[start:stop] = batch_logits
    if probabilities is None:
        return MCDropoutOutput(
            np.zeros((samples, 0, info.num_classes), dtype=np.float32),
            np.zeros((0, info.num_classes), dtype=np.float32),
        )
    return MCDropoutOutput(probabilities, logits)


@torch.no_grad()
def mc_dropout_batches(
    model,
    x: np.ndarray,
    indices: np.ndarray,
    info: DatasetInfo,
    device,
    samples: int,
    generator_seed: int,
    batch_size: int = 512,
):
    """`mc_dropout_probabilities` one inference batch at a time: yields ``(start, stop,
    probabilities (T, b, K) float32, logits (b, K) float32)`` per batch, in order.

    The generator draws the masks batch by batch, pass by pass, layer by layer, exactly as the
    whole-pool function does (which is built on this), so the values are the same; only one
    batch's passes exist at a time.
    """
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(generator_seed)
    for start, chunk in numbered_batches(np.asarray(indices, dtype=np.int64), batch_size):
        features, _ = model.forward_features(load_inputs(x, chunk, info, device))
        logits = model.classifier(model.embed(features)).float().cpu()
        passes = []
        for _ in range(samples):
            h = features
            for layer in [*model.hidden, model.dropout]:
                h = (
                    sampled_dropout(h, layer.p, generator)
                    if isinstance(layer, nn.Dropout)
                    else layer(h)
                )
            passes.append(F.softmax(model.classifier(h).float(), dim=1).cpu())
        yield start, start + len(chunk), torch.stack(passes).numpy(), logits.numpy()


def sampled_dropout(h: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Inverted dropout of `h` with a mask drawn from `generator` (the MC-dropout passes)."""
    if p == 0:
        return h
    keep = torch.rand(h.shape, generator=generator, device=h.device) >= p
    return h * keep / (1.0 - p)


def per_sample_loss(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Cross-entropy of each sample: the 'true loss' the simulated oracle can compute."""
    if len(labels) == 0:
        return np.zeros(0, dtype=np.float32)
    loss = F.cross_entropy(
        torch.from_numpy(np.asarray(logits, dtype=np.float32)),
        torch.from_numpy(np.asarray(labels, dtype=np.int64)),
        reduction="none",
    )
    return loss.numpy()


def numbered_batches(indices: np.ndarray, batch_size: int):
    """``(start, indices[start : start + batch_size])`` for each inference batch, in order."""
    for start in range(0, len(indices), batch_size):
        yield start, indices[start : start + batch_size]


def _fill(out: np.ndarray | None, n: int, start: int, stop: int, batch: torch.Tensor) -> np.ndarray:
    """Copy one batch's float32 rows into `out`, allocated (n, ...) at the first batch."""
    values = batch.float().cpu().numpy()
    if out is None:
        out = np.empty((n, *values.shape[1:]), dtype=np.float32)
    out[start:stop] = values
    return out
