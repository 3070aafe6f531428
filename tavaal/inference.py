"""Batched inference of task learners over dataset indices (no gradients, fixed order)."""

from __future__ import annotations

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
) -> InferenceOutput:
    """Logits, embeddings and (optionally) ranker outputs of `model` in eval mode."""
    model.eval()
    if ranker is not None:
        ranker.eval()
    logits, embeddings, losses = [], [], []
    for chunk in batches(np.asarray(indices, dtype=np.int64), batch_size):
        out = model(load_inputs(x, chunk, info, device))
        logits.append(out.logits.float().cpu())
        embeddings.append(out.embedding.float().cpu())
        if ranker is not None:
            losses.append(ranker(out.features).float().reshape(-1).cpu())
    return InferenceOutput(
        logits=_cat(logits, (0, 0)),
        embedding=_cat(embeddings, (0, 0)),
        predicted_loss=_cat(losses, (0,)) if ranker is not None else None,
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
    model.eval()
    generator = torch.Generator(device=device)
    generator.manual_seed(generator_seed)
    out, logits = [], []
    for chunk in batches(np.asarray(indices, dtype=np.int64), batch_size):
        features, _ = model.forward_features(load_inputs(x, chunk, info, device))
        logits.append(model.classifier(model.embed(features)).float().cpu())
        passes = []
        for _ in range(samples):
            h = features
            for layer in [*model.hidden, model.dropout]:
                h = (
                    _sampled_dropout(h, layer.p, generator)
                    if isinstance(layer, nn.Dropout)
                    else layer(h)
                )
            passes.append(F.softmax(model.classifier(h).float(), dim=1).cpu())
        out.append(torch.stack(passes))
    if not out:
        return MCDropoutOutput(
            np.zeros((samples, 0, info.num_classes), dtype=np.float32),
            np.zeros((0, info.num_classes), dtype=np.float32),
        )
    return MCDropoutOutput(torch.cat(out, dim=1).numpy(), torch.cat(logits).numpy())


def _sampled_dropout(h: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
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


def _cat(parts: list[torch.Tensor], empty_shape: tuple[int, ...]) -> np.ndarray:
    if not parts:
        return np.zeros(empty_shape, dtype=np.float32)
    return torch.cat(parts).numpy()
