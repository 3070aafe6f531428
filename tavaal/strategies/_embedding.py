"""What the embedding-based methods (`Strategy.reads_embedding`: typiclust, probcover) select
on, by `embedding.source`: the task learner's penultimate features, the latent means of a plain
VAE trained inside the query (unsupervised, VAAL §5.1's VAE without D, as `vae_wasserstein`
trains it), or a user's file (e.g. features of a pretrained network)."""

from __future__ import annotations

import numpy as np

from tavaal.data.embeddings import read_embedding_file
from tavaal.errors import IndexFileError
from tavaal.strategies._adversarial import vae_mean_codes
from tavaal.strategies._common import infer, require_models
from tavaal.strategies.base import QueryContext


def embedding_rows(ctx: QueryContext, indices: np.ndarray) -> np.ndarray:
    """(len(indices), E) float64 rows of `embedding.source` for dataset `indices`."""
    settings = ctx.experiment.embedding
    indices = np.asarray(indices, dtype=np.int64)
    if settings.source == "file":
        rows = read_embedding_file(settings.path, ctx.dataset.info.n_train, "embedding.path")
        # Sorted reads of the memory map, then the caller's order.
        order = np.argsort(indices, kind="stable")
        out = np.empty((len(indices), rows.shape[1]), dtype=np.float64)
        out[order] = rows[indices[order]]
        return out
    if settings.source == "vae":
        return _vae_rows(ctx, indices)
    return infer(ctx, require_models(ctx).models[0], indices).embedding


def query_embedding(ctx: QueryContext) -> np.ndarray:
    """`embedding_rows` of the labeled rows, then of the candidates, in the context's orders:
    what TypiClust and ProbCover cluster. The VAE's codes come in these orders already."""
    if ctx.experiment.embedding.source == "vae":
        labeled_mu, candidate_mu = vae_mean_codes(ctx)
        return np.concatenate([labeled_mu, candidate_mu]).astype(np.float64)
    indices = np.concatenate([np.asarray(ctx.labeled), np.asarray(ctx.candidates)])
    return embedding_rows(ctx, indices.astype(np.int64))


def _vae_rows(ctx: QueryContext, indices: np.ndarray) -> np.ndarray:
    """The VAE's latent means of `indices`, which must be labeled or candidates of the query."""
    known = np.concatenate([np.asarray(ctx.labeled), np.asarray(ctx.candidates)]).astype(np.int64)
    labeled_mu, candidate_mu = vae_mean_codes(ctx)
    codes = np.concatenate([labeled_mu, candidate_mu]).astype(np.float64)
    order = np.argsort(known, kind="stable")
    at = np.searchsorted(known[order], indices)
    at = np.minimum(at, len(known) - 1)
    found = known[order][at] == indices
    if not found.all():
        missing = int(indices[~found][0])
        raise IndexFileError(
            f"index {missing} is neither labeled nor a candidate: the query's VAE has no code "
            "for it"
        )
    return codes[order][at]
