"""Training the triplet network by the paper's protocol.

>>> run = train_on_catalogue(catalogue, TrainConfig(triplets="genre"))
>>> run.losses[-1], run.split.eval
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from training.data import ArtistSplit, ZScore, split_artists
from training.fma import Catalogue
from training.loss import triplet_loss
from training.model import ModelConfig, TripletMLP
from training.sampling import TripletKind, TripletSampler


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the paper's setting where it gives one."""

    triplets: TripletKind = "random"  # "random" or "genre" negatives
    epochs: int = 200  # paper: 200 epochs
    triplets_per_epoch: int = 512  # paper: 512 fresh triplets per epoch
    # Not in the paper. Keras' defaults (which the paper's code most likely used):
    # mini-batches of 32 and Adam with learning rate 1e-3.
    batch_size: int = 32
    lr: float = 1e-3
    margin: float = 1.0  # paper: alpha = 1
    width: int = 518  # paper: both layers 518 wide
    train_fraction: float = 0.7  # paper: 70% of artists train, 30% evaluate
    seed: int = 0  # seeds the split, the sampler and the weights

    def __post_init__(self) -> None:
        positive = ("epochs", "triplets_per_epoch", "batch_size", "width")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.margin >= 0:
            raise ValueError("lr must be positive and margin non-negative")


@dataclass
class TrainedRun:
    model: TripletMLP
    zscore: ZScore
    split: ArtistSplit
    config: TrainConfig
    losses: list[float] = field(default_factory=list)  # mean triplet loss per epoch
    n_genre_fallbacks: int = 0  # genre triplets that fell back to a random negative


EpochCallback = Callable[[int, float], None]


def train_on_catalogue(
    catalogue: Catalogue, config: TrainConfig, *, on_epoch: EpochCallback | None = None
) -> TrainedRun:
    """Split the artists, fit z-score statistics on training tracks, train the network."""
    split = split_artists(
        catalogue.artist_ids, train_fraction=config.train_fraction, seed=config.seed
    )
    train = split.train_mask(catalogue.artist_ids)
    zscore = ZScore.fit(catalogue.features[train])
    sampler = TripletSampler(
        catalogue.artist_ids[train],
        genres=catalogue.tracks["genre"].to_numpy()[train],
        kind=config.triplets,
    )
    model, losses = fit_triplet_model(
        zscore.apply(catalogue.features[train]), sampler, config, on_epoch=on_epoch
    )
    return TrainedRun(model, zscore, split, config, losses, sampler.n_fallbacks)


def fit_triplet_model(
    x: np.ndarray,
    sampler: TripletSampler,
    config: TrainConfig,
    *,
    on_epoch: EpochCallback | None = None,
) -> tuple[TripletMLP, list[float]]:
    """Train on (n_tracks, n_features) z-scored inputs; returns the model and epoch losses."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = TripletMLP(ModelConfig(n_features=x.shape[1], width=config.width))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    losses: list[float] = []
    model.train()
    for epoch in range(config.epochs):
        triplets = torch.from_numpy(sampler.sample(config.triplets_per_epoch, rng=rng))
        total = 0.0
        for batch in triplets.split(config.batch_size):
            # Embed the batch's 3*b rows once; local triplets index into them.
            embeddings = model(inputs[batch.reshape(-1)])
            local = torch.arange(3 * len(batch)).reshape(-1, 3)
            loss = triplet_loss(embeddings, local, config.margin)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        losses.append(total / len(triplets))
        if on_epoch is not None:
            on_epoch(epoch, losses[-1])
    model.eval()
    return model, losses
