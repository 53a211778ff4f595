"""Online triplet mining: P artists x K tracks per batch, triplets chosen from the batch.

Beyond the paper's fresh random (or genre) triplets: the batch is embedded
once and the triplets that still teach something are mined from it.

- "semihard" (FaceNet): every (a, p, n) with d(a, p) < d(a, n) <= d(a, p) + margin;
- "batch-hard" (Hermans et al.): per anchor, its farthest positive and nearest negative.

Distances are squared L2, as in the paper's loss, so a mined triplet is one the
loss in `training/loss.py` would score. The miners are pytorch-metric-learning's.

    >>> batches = ArtistBatches(artist_ids, artists_per_batch=32, tracks_per_artist=4)
    >>> rows = batches.sample(rng=np.random.default_rng(0))        # (<= P*K,) track indices
    >>> triplets = mine_triplets(embeddings, labels, kind="batch-hard", margin=1.0)  # (m, 3)
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from training.config import MINER_KINDS
from training.extras import require

MinerKind = Literal["semihard", "batch-hard"]


class ArtistBatches:
    """Batches of P random artists (with two or more tracks) and up to K tracks of each.

    Drawn with an explicit generator, unlike pytorch-metric-learning's
    MPerClassSampler (which uses numpy's global state), so a seed fixes a run.
    """

    def __init__(self, artist_ids: np.ndarray, *, artists_per_batch: int, tracks_per_artist: int):
        if artists_per_batch < 2 or tracks_per_artist < 2:
            raise ValueError("a P x K batch needs P >= 2 artists and K >= 2 tracks per artist")
        artist_ids = np.asarray(artist_ids)
        order = np.argsort(artist_ids, kind="stable")
        _, starts, counts = np.unique(artist_ids[order], return_index=True, return_counts=True)
        self.members = [order[s : s + c] for s, c in zip(starts, counts, strict=True) if c >= 2]
        if len(self.members) < 2:
            raise ValueError("online mining needs at least two artists with two tracks each")
        self.artists_per_batch = min(artists_per_batch, len(self.members))
        self.tracks_per_artist = tracks_per_artist

    def sample(self, *, rng: np.random.Generator) -> np.ndarray:
        """(n,) int64 track indices, artist by artist; n <= P * K."""
        chosen = rng.choice(len(self.members), size=self.artists_per_batch, replace=False)
        parts = []
        for artist in chosen:
            tracks = self.members[artist]
            parts.append(
                rng.choice(tracks, size=min(self.tracks_per_artist, len(tracks)), replace=False)
            )
        return np.concatenate(parts).astype(np.int64)


def mine_triplets(
    embeddings: torch.Tensor, labels: torch.Tensor, *, kind: MinerKind, margin: float
) -> torch.Tensor:
    """(m, 3) long (anchor, positive, negative) rows into `embeddings`.

    embeddings: (n, dim); labels: (n,) artist of each row. m may be 0.
    """
    if kind not in MINER_KINDS:
        raise ValueError(f"miner must be one of {MINER_KINDS}, got {kind!r}")
    pml = require("pytorch_metric_learning.miners", extra="train")
    distances = require("pytorch_metric_learning.distances", extra="train")
    # The paper's loss compares squared L2 distances; pytorch-metric-learning's default
    # distance would L2-normalise the embeddings and take plain L2.
    squared_l2 = distances.LpDistance(normalize_embeddings=False, p=2, power=2)
    if kind == "semihard":
        miner = pml.TripletMarginMiner(
            margin=margin, type_of_triplets="semihard", distance=squared_l2
        )
    else:
        miner = pml.BatchHardMiner(distance=squared_l2)
    with torch.no_grad():
        anchors, positives, negatives = miner(embeddings, labels)
    return torch.stack([anchors, positives, negatives], dim=1).long()
