"""Ranker losses against hand-computed values (TA-VAAL eq. 1; Learning Loss margin loss)."""

import math

import pytest
import torch

from tavaal.losses import margin_loss, pair_indices, ranking_loss


def softplus(x: float) -> float:
    """-log(sigmoid(-x)) = log(1 + e^x)."""
    return math.log1p(math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


# Shared example, B = 4 -> pairs (0, 3) and (1, 2).
PRED = [2.0, 0.5, -1.0, 1.0]
TARGET = [3.0, 1.0, 2.0, 0.0]
# Pair (0, 3): d = 2.0 - 1.0 = 1.0, l_0 = 3 > l_3 = 0 -> I = 1.
# Pair (1, 2): d = 0.5 - (-1.0) = 1.5, l_1 = 1 < l_2 = 2 -> I = 0.


def test_pair_indices_even_and_odd():
    i, j = pair_indices(6)
    assert i.tolist() == [0, 1, 2]
    assert j.tolist() == [5, 4, 3]
    i, j = pair_indices(5)
    assert i.tolist() == [0, 1]
    assert j.tolist() == [4, 3]  # the middle sample 2 is left out
    i, j = pair_indices(2)
    assert (i.tolist(), j.tolist()) == ([0], [1])


@pytest.mark.parametrize("batch", [0, 1])
def test_pair_indices_rejects_tiny_batches(batch):
    with pytest.raises(ValueError, match="at least 2"):
        pair_indices(batch)


def test_ranking_loss_hand_computed():
    # I = 1: -log s(1.0) = log(1 + e^-1); I = 0: -log(1 - s(1.5)) = log(1 + e^1.5).
    expected = (softplus(-1.0) + softplus(1.5)) / 2  # (2/B) * sum over B/2 = 2 pairs
    assert expected == pytest.approx(1.0073375, abs=1e-6)
    loss = ranking_loss(torch.tensor(PRED), torch.tensor(TARGET))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_ranking_loss_ties_count_as_not_greater():
    # l_0 == l_1: I = 0, d = 0.7 - 0.2 = 0.5 -> -log(1 - s(0.5)) = log(1 + e^0.5).
    loss = ranking_loss(torch.tensor([0.7, 0.2]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx(softplus(0.5), rel=1e-6)


def test_ranking_loss_is_stable_for_large_differences():
    # d = 200 with I = 0: -log(1 - s(200)) = 200 + log(1 + e^-200) ~ 200, not inf.
    loss = ranking_loss(torch.tensor([100.0, -100.0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(200.0, rel=1e-6)
    loss = ranking_loss(torch.tensor([100.0, -100.0]), torch.tensor([1.0, 0.0]))
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_ranking_loss_gradient():
    pred = torch.tensor(PRED, requires_grad=True)
    target = torch.tensor(TARGET, requires_grad=True)
    ranking_loss(pred, target).backward()
    # dL/dd = (s(d) - I) / n_pairs; d_k enters with +1 for l̂_i and -1 for l̂_j.
    g03 = (sigmoid(1.0) - 1.0) / 2
    g12 = (sigmoid(1.5) - 0.0) / 2
    assert pred.grad.tolist() == pytest.approx([g03, g12, -g12, -g03], rel=1e-5)
    assert target.grad is None  # the target is detached


def test_margin_loss_hand_computed():
    # Pair (0, 3): sign +1, max(0, -(1.0) + 1) = 0. Pair (1, 2): sign -1, max(0, 1.5 + 1) = 2.5.
    loss = margin_loss(torch.tensor(PRED), torch.tensor(TARGET))
    assert loss.item() == pytest.approx((0.0 + 2.5) / 2)
    # margin 0.5: max(0, -1.0 + 0.5) = 0 and max(0, 1.5 + 0.5) = 2.0.
    loss = margin_loss(torch.tensor(PRED), torch.tensor(TARGET), margin=0.5)
    assert loss.item() == pytest.approx((0.0 + 2.0) / 2)
    # Partly inside the margin: d = 0.3 with sign +1 -> 1 - 0.3 = 0.7.
    loss = margin_loss(torch.tensor([0.3, 0.0]), torch.tensor([2.0, 1.0]))
    assert loss.item() == pytest.approx(0.7)
    # Tie: sign -1 -> max(0, 0.3 + 1) = 1.3.
    loss = margin_loss(torch.tensor([0.3, 0.0]), torch.tensor([1.0, 1.0]))
    assert loss.item() == pytest.approx(1.3)


def test_margin_loss_gradient():
    pred = torch.tensor(PRED, requires_grad=True)
    target = torch.tensor(TARGET, requires_grad=True)
    margin_loss(pred, target).backward()
    # Pair (0, 3) is outside the margin (no gradient); pair (1, 2): d/dd of (1.5 + 1) / 2 = 1/2.
    assert pred.grad.tolist() == pytest.approx([0.0, 0.5, -0.5, 0.0])
    assert target.grad is None


@pytest.mark.parametrize("loss_fn", [ranking_loss, margin_loss])
def test_odd_batch_leaves_middle_out(loss_fn):
    pred = torch.tensor([2.0, 0.5, 9.0, -1.0, 1.0])
    target = torch.tensor([3.0, 1.0, -5.0, 2.0, 0.0])
    # Pairs (0, 4) and (1, 3) are the pairs of the B = 4 example; sample 2 plays no part.
    odd = loss_fn(pred, target)
    assert odd.item() == pytest.approx(loss_fn(torch.tensor(PRED), torch.tensor(TARGET)).item())
    pred[2], target[2] = -7.0, 100.0
    assert loss_fn(pred, target).item() == pytest.approx(odd.item())


@pytest.mark.parametrize("loss_fn", [ranking_loss, margin_loss])
def test_column_predictions_accepted(loss_fn):
    flat = loss_fn(torch.tensor(PRED), torch.tensor(TARGET))
    column = loss_fn(torch.tensor(PRED).unsqueeze(1), torch.tensor(TARGET))
    assert column.item() == pytest.approx(flat.item())


@pytest.mark.parametrize("loss_fn", [ranking_loss, margin_loss])
def test_errors(loss_fn):
    with pytest.raises(ValueError, match="at least 2"):
        loss_fn(torch.tensor([1.0]), torch.tensor([0.0]))
    with pytest.raises(ValueError, match="one value per sample"):
        loss_fn(torch.tensor([1.0, 2.0]), torch.tensor([0.0, 1.0, 2.0]))
