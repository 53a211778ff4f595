"""The triplet loss against values worked by hand and a plain per-triplet loop."""

import pytest
import torch

from training.loss import triplet_loss

# Four points on a plane, so every squared distance is a small whole number.
POINTS = [[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]


def _naive_loss(embeddings: torch.Tensor, triplets: torch.Tensor, margin: float) -> torch.Tensor:
    """One triplet at a time, each distance from its own difference: no shared pairs."""
    losses = []
    for anchor, positive, negative in triplets.tolist():
        to_positive = ((embeddings[anchor] - embeddings[positive]) ** 2).sum()
        to_negative = ((embeddings[anchor] - embeddings[negative]) ** 2).sum()
        losses.append(torch.clamp(to_positive - to_negative + margin, min=0.0))
    return torch.stack(losses).mean()


def test_the_loss_of_a_few_triplets_equals_the_value_worked_by_hand():
    embeddings = torch.tensor(POINTS)
    # |a-p|^2 - |a-n|^2 + 1 per triplet: 1-4+1 -> 0; 4-1+1 = 4; 4-1+1 = 4; 1-9+1 -> 0.
    triplets = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 3, 0], [0, 1, 3]])
    assert triplet_loss(embeddings, triplets, 1.0).item() == pytest.approx(2.0)


def test_a_repeated_triplet_counts_once_per_repetition():
    embeddings = torch.tensor(POINTS)
    # The pair (0, 2) is a positive twice and (0, 1) both a positive and a negative.
    triplets = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 3, 0], [0, 1, 3], [0, 2, 1]])
    assert triplet_loss(embeddings, triplets, 1.0).item() == pytest.approx(12.0 / 5.0)


def test_the_margin_moves_only_the_triplets_it_makes_active():
    embeddings = torch.tensor(POINTS)
    # With margin 4 the first triplet (1 - 4 + 4 = 1) becomes active; the others add 3.
    triplets = torch.tensor([[0, 1, 2], [0, 2, 1]])
    assert triplet_loss(embeddings, triplets, 4.0).item() == pytest.approx((1.0 + 7.0) / 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_loss_and_gradients_equal_a_per_triplet_loop_over_repeated_pairs(seed):
    generator = torch.Generator().manual_seed(seed)
    embeddings = torch.randn(12, 5, generator=generator, dtype=torch.float64)
    # Few distinct triplets drawn many times over: pairs repeat within and across
    # triplets, as in a mined batch; (a, b) and (b, a) both occur.
    distinct = torch.randint(0, 12, (15, 3), generator=generator)
    triplets = distinct[torch.randint(0, 15, (60,), generator=generator)]
    triplets = torch.cat([triplets, triplets[:, [1, 0, 2]]])
    for margin in (0.0, 1.0, 3.0):
        fast = embeddings.clone().requires_grad_(True)
        slow = embeddings.clone().requires_grad_(True)
        expected = _naive_loss(slow, triplets, margin)
        actual = triplet_loss(fast, triplets, margin)
        torch.testing.assert_close(actual, expected)
        actual.backward()
        expected.backward()
        torch.testing.assert_close(fast.grad, slow.grad)
        assert expected.item() > 0  # an inactive batch would make the gradients trivially 0


def test_a_batch_of_inactive_triplets_has_zero_loss_and_zero_gradient():
    embeddings = torch.tensor(POINTS, requires_grad=True)
    loss = triplet_loss(embeddings, torch.tensor([[0, 1, 3]]), 1.0)  # 1 - 9 + 1 < 0
    loss.backward()
    assert loss.item() == 0.0 and (embeddings.grad == 0).all()
