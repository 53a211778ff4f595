"""The triplet loss over embeddings and index triples: one definition for every sampler."""

from __future__ import annotations

import torch


def triplet_loss(embeddings: torch.Tensor, triplets: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over triplets of max(0, |a - p|^2 - |a - n|^2 + margin).

    embeddings: (n, dim); triplets: (t, 3) long indices (anchor, positive, negative)
    into embeddings. The paper sums over the batch; the mean differs by a constant
    factor that Adam's update ignores, and keeps reported losses comparable across
    batch sizes. Each distinct (anchor, other) pair's distance is computed once from
    its difference vector: mined batches repeat pairs many times over, and the
    difference (unlike |a|^2 + |b|^2 - 2ab) loses no precision to cancellation.
    """
    n, t = len(embeddings), len(triplets)
    pairs = torch.cat([triplets[:, [0, 1]], triplets[:, [0, 2]]])
    keys, inverse = torch.unique(pairs[:, 0] * n + pairs[:, 1], return_inverse=True)
    squared = (embeddings[keys // n] - embeddings[keys % n]).pow(2).sum(dim=1)[inverse]
    return torch.relu(squared[:t] - squared[t:] + margin).mean()
