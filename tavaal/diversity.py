"""Selections on distances in an embedding: the diversity and coverage baselines.

`k_center_greedy` is the greedy 2-approximation of the k-center problem used by Core-Set
(Sener & Savarese 2018, Alg. 1), written so that its memory stays O(N * chunk) rather than O(N^2).
`kmeans_pp_seeding` is BADGE's selection (Ash et al. 2020) on gradient embeddings it never forms.
`typiclust_select` (Hacohen et al. 2022) and `probcover_select` (Yehuda et al. 2022) select on an
embedding, their distances computed in row blocks of bounded size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tavaal.uncertainty import softmax


def min_sq_distances(
    points: torch.Tensor, centers: torch.Tensor, chunk_size: int = 1024
) -> torch.Tensor:
    """Squared Euclidean distance from each point to its nearest centre, +inf when there is none.

    Centres are processed `chunk_size` at a time, so at most (N, chunk_size) distances exist at
    once. Uses ``|a|^2 + |b|^2 - 2 a.b`` (one matrix product per chunk), clamped at zero.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    best = torch.full((points.shape[0],), float("inf"), dtype=points.dtype, device=points.device)
    points_sq = points.pow(2).sum(dim=1)
    for start in range(0, centers.shape[0], chunk_size):
        chunk = centers[start : start + chunk_size]
        best = torch.minimum(best, _sq_distances(points, points_sq, chunk).min(dim=1).values)
    return best


def _sq_distances(
    points: torch.Tensor, points_sq: torch.Tensor, centers: torch.Tensor
) -> torch.Tensor:
    centers_sq = centers.pow(2).sum(dim=1)
    # (|a|^2 + |b|^2) - 2 a.b, the same operations in the same order as the one-line expression,
    # with two (N, C) blocks alive at most instead of four.
    product = (points @ centers.T).mul_(2.0)
    dist = points_sq[:, None] + centers_sq[None, :]
    del centers_sq
    return dist.sub_(product).clamp_min_(0.0)


@dataclass
class KCenterResult:
    order: np.ndarray  # (budget,) int64 positions into `points`, in pick order
    initial_distance: np.ndarray  # (N,) distance to the nearest given centre; inf if none
    final_distance: np.ndarray  # (N,) distance to the nearest of centres + picks (0 for picks)


def k_center_greedy(
    points: torch.Tensor, centers: torch.Tensor, budget: int, chunk_size: int = 1024
) -> KCenterResult:
    """Greedily pick `budget` rows of `points`, each the farthest from all centres so far.

    `centers` are the already labeled points (Core-Set Alg. 1 starts from s^0 = the labeled set).
    Each step adds one point, so only that point's distances to `points` are computed: O(N) per
    step, O(N * (|centers| + budget)) in total, memory O(N * chunk_size).

    Ties go to the smallest position (torch.argmax returns the first maximum). With no centres,
    the first pick is the point farthest from the mean of `points` (ties: smallest position), a
    deterministic stand-in for the random first centre of the usual k-center greedy.
    """
    n = points.shape[0]
    if not 0 <= budget <= n:
        raise ValueError(f"budget {budget} must be between 0 and the {n} points")
    if centers.shape[0] and centers.shape[1:] != points.shape[1:]:
        raise ValueError(f"centres of shape {tuple(centers.shape)} vs points {tuple(points.shape)}")
    min_sq = min_sq_distances(points, centers, chunk_size)
    initial = min_sq.clone()
    points_sq = points.pow(2).sum(dim=1)
    # Picked points get -1 so they are never picked again, even when exact duplicates leave every
    # remaining distance at 0 (min_sq itself is still tracked through `final`).
    available = min_sq.clone()
    order = []
    for step in range(budget):
        if step == 0 and centers.shape[0] == 0:
            # (x - mean)^2 directly (no |a|^2 + |b|^2 - 2ab rounding); the mean itself is
            # rounded, so points equally far from it can differ in the last bits: values within
            # 1e-12 of the maximum (relative) count as ties and go to the smallest position.
            to_mean = (points - points.mean(dim=0)).pow(2).sum(dim=1)
            top = to_mean.max()
            pick = int(torch.nonzero(to_mean >= top - 1e-12 * top.abs())[0, 0])
        else:
            pick = int(torch.argmax(available))
        order.append(pick)
        new = _sq_distances(points, points_sq, points[pick : pick + 1])[:, 0]
        min_sq = torch.minimum(min_sq, new)
        min_sq[pick] = 0.0
        available = torch.minimum(available, new)
        available[pick] = -1.0
    return KCenterResult(
        order=np.asarray(order, dtype=np.int64),
        # numpy's sqrt is correctly rounded on every CPU (torch's CPU sqrt is not: its last bit
        # depends on the CPU's vendor; tavaal.portable_adam).
        initial_distance=np.sqrt(initial.double().cpu().numpy()),
        final_distance=np.sqrt(min_sq.double().cpu().numpy()),
    )


def gradient_embedding_residual(logits: np.ndarray) -> np.ndarray:
    """(N, K) float64 ``softmax(logits) - onehot(argmax)``: with the penultimate features h,
    BADGE's gradient embedding (Ash et al. 2020, §3) is ``residual ⊗ h``, the gradient of the
    cross-entropy at the predicted label ŷ w.r.t. the last linear layer's weight (K, D). Ties
    of the top logit go to the smallest class (argmax)."""
    probs = softmax(logits)
    predicted = probs.argmax(axis=-1)
    probs[np.arange(len(probs)), predicted] -= 1.0
    return probs


@dataclass
class KMeansPPResult:
    order: np.ndarray  # (budget,) int64 positions, in pick order
    gradient_norm: np.ndarray  # (N,) float64 |g| = |residual| |h|
    final_distance: np.ndarray  # (N,) float64 distance to the nearest pick (0 for picks)


def kmeans_pp_seeding(
    residual: torch.Tensor,
    features: torch.Tensor,
    budget: int,
    rng: np.random.Generator,
    chunk_size: int = 4096,
) -> KMeansPPResult:
    """k-means++ seeding (Arthur & Vassilvitskii 2007) of the gradient embeddings
    g = residual ⊗ features, as BADGE selects (Ash et al. 2020, Alg. 1).

    The first pick is the point of largest |g| (ties: smallest position), as Ash et al.'s code
    does; each further pick is drawn with probability proportional to its squared distance to
    the nearest pick so far (D² sampling), one ``rng.random()`` per pick. When every point left
    coincides with a pick (all D² are 0), the pick is uniform over those left.

    The (N, K·D) embeddings are never formed: with r = residual and h = features,
    ``|g_a - g_b|^2 = |r_a|^2 |h_a|^2 + |r_b|^2 |h_b|^2 - 2 (r_a·r_b)(h_a·h_b)``, computed in
    float64 `chunk_size` rows of `features` at a time, so memory is the inputs, O(N) vectors
    and one (chunk_size, D) float64 block (all N rows converted once when they fit in one).
    """
    n = residual.shape[0]
    if not 0 <= budget <= n:
        raise ValueError(f"budget {budget} must be between 0 and the {n} points")
    if features.shape[0] != n:
        raise ValueError(f"{n} residual rows but {features.shape[0]} feature rows")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    residual = residual.to(torch.float64)
    device = residual.device
    if n <= chunk_size:
        # One block: converted once, not once per pick.
        features = features.to(torch.float64)
    feature_sq = torch.empty(n, dtype=torch.float64, device=device)
    for start in range(0, n, chunk_size):
        feature_sq[start : start + chunk_size] = (
            features[start : start + chunk_size].to(torch.float64).pow(2).sum(dim=1)
        )
    sq_norm = residual.pow(2).sum(dim=1) * feature_sq
    min_sq = torch.full((n,), float("inf"), dtype=torch.float64, device=device)
    picked = torch.zeros(n, dtype=torch.bool, device=device)
    order: list[int] = []
    for step in range(budget):
        if step == 0:
            pick = int(torch.argmax(sq_norm))
        else:
            pick = _d2_sample(min_sq, picked, rng)
        order.append(pick)
        picked[pick] = True
        centre = features[pick].to(torch.float64)
        feature_dot = torch.empty(n, dtype=torch.float64, device=device)
        for start in range(0, n, chunk_size):
            block = features[start : start + chunk_size].to(torch.float64)
            feature_dot[start : start + chunk_size] = block @ centre
        sq = sq_norm + sq_norm[pick] - 2.0 * (residual @ residual[pick]) * feature_dot
        min_sq = torch.minimum(min_sq, sq.clamp_min_(0.0))
        # A pick's distance to itself is 0, whatever the rounding of the formula says.
        min_sq[pick] = 0.0
    # numpy's square root, not torch's: torch's float64 sqrt rounds differently on CPUs of one
    # kernel level (measured under qemu's Haswell), numpy's is the correctly rounded one.
    return KMeansPPResult(
        order=np.asarray(order, dtype=np.int64),
        gradient_norm=np.sqrt(sq_norm.cpu().numpy()),
        final_distance=np.sqrt(min_sq.cpu().numpy()),
    )


def _d2_sample(min_sq: torch.Tensor, picked: torch.Tensor, rng: np.random.Generator) -> int:
    """A position drawn with probability min_sq / sum(min_sq) (picks have min_sq 0)."""
    weights = torch.where(picked, torch.zeros_like(min_sq), min_sq)
    cumulative = torch.cumsum(weights, dim=0)
    total = float(cumulative[-1])
    if not total > 0.0:
        left = torch.nonzero(~picked).flatten().cpu().numpy()
        return int(left[rng.integers(len(left))])
    # The first position whose cumulative weight exceeds u: never a zero-weight one.
    u = torch.tensor([rng.random() * total], dtype=torch.float64, device=min_sq.device)
    pick = int(torch.searchsorted(cumulative, u, right=True))
    if pick >= len(weights):
        # u rounded up to the total: the last position with weight.
        pick = int(torch.nonzero(weights > 0).flatten()[-1])
    return pick


def typicality(features: np.ndarray, neighbours: int, block_bytes: int = 64 * 2**20) -> np.ndarray:
    """(N,) ``1 / (mean Euclidean distance to the `neighbours` nearest other points + 1e-5)``
    (TypiClust, Hacohen et al. 2022, eq. 1; the 1e-5, which keeps duplicates finite, is their
    code's). With ``neighbours == 0`` (a cluster of one point) every point scores 1.

    Distances are computed in float64 for a block of rows at a time (at most `block_bytes`
    of them), so memory stays O(N * block) rather than O(N^2)."""
    points = np.asarray(features, dtype=np.float64)
    n = len(points)
    if not 0 <= neighbours < max(n, 1):
        raise ValueError(f"neighbours {neighbours} must be between 0 and {n - 1}")
    if neighbours == 0:
        return np.ones(n, dtype=np.float64)
    squares = (points**2).sum(axis=1)
    rows = max(1, block_bytes // (8 * n))
    mean = np.empty(n, dtype=np.float64)
    for start in range(0, n, rows):
        block = points[start : start + rows]
        sq = squares[start : start + rows, None] + squares[None, :] - 2.0 * (block @ points.T)
        distance = np.sqrt(np.maximum(sq, 0.0))
        # A point is not its own neighbour.
        distance[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.partition(distance, neighbours - 1, axis=1)[:, :neighbours]
        mean[start : start + rows] = nearest.mean(axis=1)
    return 1.0 / (mean + 1e-5)


# TypiClust's constants (Hacohen et al. 2022, §3 and their code): typicality over the 20
# nearest neighbours; clusters of at most 5 points are outliers, not chosen while larger ones
# have points left; at most 500 clusters; full k-means up to 50 clusters, mini-batch above.
TYPICLUST_NEIGHBOURS = 20
TYPICLUST_MIN_CLUSTER_SIZE = 5
TYPICLUST_MAX_CLUSTERS = 500
TYPICLUST_FULL_KMEANS_CLUSTERS = 50


@dataclass
class TypiClustResult:
    order: np.ndarray  # (budget,) int64 positions into the candidates, in pick order
    cluster: np.ndarray  # (N,) int64 k-means cluster of each candidate
    typicality: np.ndarray  # (N,) float64 within its cluster's candidates, before any pick
    clusters: int  # how many clusters k-means made


def typiclust_select(
    labeled: np.ndarray, candidates: np.ndarray, budget: int, random_state: int
) -> TypiClustResult:
    """TypiClust (Hacohen et al. 2022, Alg. 1) on embeddings: k-means of labeled ∪ candidates
    into min(|L| + budget, 500) clusters; clusters are visited by fewest labeled points, then
    largest size (then cluster number), skipping those of <= 5 points; from each the candidate
    of highest `typicality` among the cluster's candidates not yet picked (neighbours
    min(20, m // 2) for m of them) is picked, round after round until `budget` are picked.
    Only when no cluster above 5 points has candidates left do the small ones give theirs, in
    the same order (the authors' code stops there). Ties go to the smallest position."""
    labeled = np.asarray(labeled, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.float64)
    n = len(candidates)
    if not 0 <= budget <= n:
        raise ValueError(f"budget {budget} must be between 0 and the {n} candidates")
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return TypiClustResult(empty, empty, np.zeros(0, dtype=np.float64), 0)
    points = np.concatenate([labeled, candidates]) if len(labeled) else candidates
    clusters = max(1, min(len(labeled) + budget, TYPICLUST_MAX_CLUSTERS, len(points)))
    assignment = kmeans_labels(points, clusters, random_state)
    labeled_cluster, cluster = assignment[: len(labeled)], assignment[len(labeled) :]
    size = np.bincount(assignment, minlength=clusters)
    labeled_count = np.bincount(labeled_cluster, minlength=clusters)
    visit = np.lexsort((np.arange(clusters), -size, labeled_count))
    rounds = [
        visit[size[visit] > TYPICLUST_MIN_CLUSTER_SIZE],
        visit[size[visit] <= TYPICLUST_MIN_CLUSTER_SIZE],
    ]
    initial = np.zeros(n, dtype=np.float64)
    for c in np.unique(cluster):
        members = np.flatnonzero(cluster == c)
        initial[members] = typicality(candidates[members], _neighbours(len(members)))
    left = np.ones(n, dtype=bool)
    order: list[int] = []
    for group in rounds:
        while len(order) < budget:
            open_clusters = [c for c in group if left[cluster == c].any()]
            if not open_clusters:
                break
            for c in open_clusters:
                if len(order) == budget:
                    break
                members = np.flatnonzero((cluster == c) & left)
                values = typicality(candidates[members], _neighbours(len(members)))
                pick = int(members[np.argmax(values)])
                order.append(pick)
                left[pick] = False
    return TypiClustResult(
        order=np.asarray(order, dtype=np.int64),
        cluster=cluster.astype(np.int64),
        typicality=initial,
        clusters=clusters,
    )


def _neighbours(members: int) -> int:
    # Hacohen et al.'s code: half the cluster when it has fewer than 40 points.
    return min(TYPICLUST_NEIGHBOURS, members // 2)


def kmeans_labels(points: np.ndarray, clusters: int, random_state: int) -> np.ndarray:
    """(N,) int64 k-means cluster of each point, as TypiClust's code clusters: full k-means up
    to 50 clusters, mini-batch above."""
    # Imported here, as scipy is in `entropy`: training jobs load this module too.
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if clusters <= TYPICLUST_FULL_KMEANS_CLUSTERS:
        model = KMeans(n_clusters=clusters, n_init=10, random_state=random_state)
    else:
        # One initialisation (today's scikit-learn default; theirs made 3): about 3x faster
        # at 500 clusters, the k-means++ seeding of each being most of the cost.
        model = MiniBatchKMeans(
            n_clusters=clusters, batch_size=5000, n_init=1, random_state=random_state
        )
    return model.fit_predict(points).astype(np.int64)


# ProbCover's purity threshold α (Yehuda et al. 2022, §4.2): the largest ball radius δ at which
# at least this share of the balls hold points of one k-means cluster only.
PROBCOVER_PURITY = 0.95


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) float64 Euclidean distances, |a|^2 + |b|^2 - 2ab clamped at zero."""
    sq = (a**2).sum(axis=1)[:, None] + (b**2).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(sq, 0.0))


def _row_blocks(rows: int, columns: int, block_bytes: int):
    step = max(1, block_bytes // (8 * max(columns, 1)))
    for start in range(0, rows, step):
        yield start, min(start + step, rows)


def purity_radius(
    points: np.ndarray,
    cluster: np.ndarray,
    purity: float = PROBCOVER_PURITY,
    block_bytes: int = 64 * 2**20,
) -> tuple[float, float]:
    """(δ, purity at δ): the largest radius at which at least `purity` of the open balls
    B(x, δ) = {y : |x - y| < δ} around the points hold points of x's `cluster` only (ProbCover,
    Yehuda et al. 2022, §4.2). A ball is impure exactly when δ exceeds the distance d(x) from x
    to the nearest point of another cluster, so δ is the order statistic of d at position
    n - ceil(purity * n) (no grid search). With a single cluster δ is 0 (no ball to trust)."""
    points = np.asarray(points, dtype=np.float64)
    cluster = np.asarray(cluster)
    n = len(points)
    to_other = np.full(n, np.inf)
    for lo, hi in _row_blocks(n, n, block_bytes):
        distance = _distances(points[lo:hi], points)
        distance[cluster[lo:hi, None] == cluster[None, :]] = np.inf
        to_other[lo:hi] = distance.min(axis=1)
    if n == 0 or not np.isfinite(to_other).any():
        return 0.0, 1.0
    allowed_impure = n - int(np.ceil(purity * n))
    delta = float(np.sort(to_other)[allowed_impure])
    return delta, float((to_other >= delta).mean())


@dataclass
class ProbCoverResult:
    order: np.ndarray  # (budget,) int64 positions into the candidates, in pick order
    initial_gain: np.ndarray  # (N,) points each candidate's ball would newly cover, before
    final_gain: np.ndarray  # (N,) the same after the picks
    covered_before: float  # share of labeled ∪ candidates covered by the labeled balls
    covered_after: float  # ... by the labeled and picked balls


def probcover_select(
    labeled: np.ndarray,
    candidates: np.ndarray,
    budget: int,
    delta: float,
    rng: np.random.Generator,
    block_bytes: int = 64 * 2**20,
) -> ProbCoverResult:
    """ProbCover's greedy max coverage (Yehuda et al. 2022, Alg. 1) on labeled ∪ candidates:
    the labeled points' open δ-balls are covered first; each step picks the candidate whose ball
    holds the most uncovered points (ties: smallest position) and covers them. Once every point
    is covered, the rest are drawn uniformly from `rng`, as the authors' code does.

    The δ-ball graph is never stored: gains are counted from distance blocks of at most
    `block_bytes` and lowered by the points each pick newly covers, O((L + N) * N) distances
    in all."""
    labeled = np.asarray(labeled, dtype=np.float64)
    candidates = np.asarray(candidates, dtype=np.float64)
    n = len(candidates)
    if not 0 <= budget <= n:
        raise ValueError(f"budget {budget} must be between 0 and the {n} candidates")
    points = np.concatenate([labeled, candidates]) if len(labeled) else candidates
    total = len(points)
    covered = np.zeros(total, dtype=bool)
    for lo, hi in _row_blocks(len(labeled), total, block_bytes):
        covered |= (_distances(labeled[lo:hi], points) < delta).any(axis=0)
    covered_before = float(covered.mean()) if total else 1.0
    gain = _gains(candidates, points[~covered], delta, block_bytes)
    initial = gain.copy()
    picked = np.zeros(n, dtype=bool)
    order: list[int] = []
    for _ in range(budget):
        open_gain = np.where(picked, -1, gain)
        if open_gain.max() > 0:
            pick = int(np.argmax(open_gain))
        else:
            pick = int(rng.choice(np.flatnonzero(~picked)))
        order.append(pick)
        picked[pick] = True
        new = ~covered & (_distances(candidates[pick : pick + 1], points)[0] < delta)
        if new.any():
            covered |= new
            gain -= _gains(candidates, points[new], delta, block_bytes)
    return ProbCoverResult(
        order=np.asarray(order, dtype=np.int64),
        initial_gain=initial.astype(np.float64),
        final_gain=gain.astype(np.float64),
        covered_before=covered_before,
        covered_after=float(covered.mean()) if total else 1.0,
    )


def _gains(sources: np.ndarray, targets: np.ndarray, delta: float, block_bytes: int):
    """(len(sources),) int64: how many `targets` lie in each source's open δ-ball."""
    counts = np.zeros(len(sources), dtype=np.int64)
    if not len(targets):
        return counts
    for lo, hi in _row_blocks(len(sources), len(targets), block_bytes):
        counts[lo:hi] = (_distances(sources[lo:hi], targets) < delta).sum(axis=1)
    return counts
