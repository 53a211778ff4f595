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
