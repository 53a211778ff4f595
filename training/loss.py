"""The paper's triplet loss over embeddings and index triples."""

from __future__ import annotations

import torch


def triplet_loss(embeddings: torch.Tensor, triplets: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over triplets of max(0, |a - p|^2 - |a - n|^2 + margin).

    embeddings: (n, dim); triplets: (batch, 3) long indices into embeddings.
    The paper sums over the batch; the mean differs by a constant factor that
    Adam's update ignores, and keeps reported losses comparable across batch sizes.
    """
    a, p, n = (embeddings[triplets[:, i]] for i in range(3))
    positive = (a - p).pow(2).sum(dim=1)
    negative = (a - n).pow(2).sum(dim=1)
    return torch.relu(positive - negative + margin).mean()


def mined_triplet_loss(
    embeddings: torch.Tensor, triplets: torch.Tensor, margin: float
) -> torch.Tensor:
    """The same loss for triplets mined within one batch, via the batch's distance matrix.

    Semi-hard mining yields many times more triplets than rows; looking their
    distances up in one (n, n) matrix costs far less than gathering 3 rows each.
    """
    squared_norms = embeddings.pow(2).sum(dim=1)
    distances = squared_norms[:, None] + squared_norms[None, :] - 2.0 * embeddings @ embeddings.T
    distances = distances.clamp_min(0.0)
    a, p, n = triplets[:, 0], triplets[:, 1], triplets[:, 2]
    return torch.relu(distances[a, p] - distances[a, n] + margin).mean()
