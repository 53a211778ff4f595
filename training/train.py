"""Training the triplet network: the paper's protocol by default, online mining as an option.

>>> run = train_on_catalogue(catalogue, TrainConfig(triplets="genre"))
>>> run.losses[-1], run.split.eval
>>> run = train_on_catalogue(catalogue, TrainConfig(triplets="batch-hard", validation_fraction=0.1))
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from training.data import (
    ArtistSplit,
    ZScore,
    hold_out_validation,
    limit_training_artists,
    split_artists,
)
from training.fma import Catalogue
from training.loss import mined_triplet_loss, triplet_loss
from training.metrics import all_queries, mean_auc
from training.mining import MINER_KINDS, ArtistBatches, mine_triplets
from training.model import Embedder, ModelConfig, TripletMLP, embed
from training.sampling import TRIPLET_KINDS, TripletSampler

if TYPE_CHECKING:
    from training.linear import LinearTrainConfig

TRAINING_KINDS: tuple[str, ...] = TRIPLET_KINDS + MINER_KINDS
LR_SCHEDULES: tuple[str, ...] = ("constant", "cosine")


@dataclass(frozen=True)
class TrainConfig:
    """One training run. Defaults are the paper's setting where it gives one."""

    # "random" or "genre": the paper's fresh triplets; "semihard" or "batch-hard":
    # triplets mined online from P x K batches (not in the paper).
    triplets: str = "random"
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
    # Beyond the paper; every default leaves its protocol unchanged.
    embedding_dim: int | None = None  # output width; None: `width`
    depth: int = 2  # linear layers in the network
    dropout: float = 0.0
    l2_normalize: bool = False  # unit-length embeddings
    weight_decay: float = 0.0  # Adam's L2 penalty
    lr_schedule: str = "constant"  # or "cosine": anneal to 0 over the epochs
    artists_per_batch: int = 32  # P of a mined P x K batch
    tracks_per_artist: int = 4  # K of a mined P x K batch
    # Mined batches per epoch; None: triplets_per_epoch / batch_size, the paper's
    # number of updates per epoch.
    batches_per_epoch: int | None = None
    # Early stopping: this fraction of the training artists is held out as a validation
    # set (never evaluation artists); every `validate_every` epochs its mean AUC is
    # measured, the best model is kept, and training stops after `patience` checks
    # without improvement (0: never stops early).
    validation_fraction: float = 0.0
    validate_every: int = 10
    patience: int = 0
    train_artists: int | None = None  # use only this many training artists (size sweeps)

    def __post_init__(self) -> None:
        positive = ("epochs", "triplets_per_epoch", "batch_size", "width", "validate_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.margin >= 0:
            raise ValueError("lr must be positive and margin non-negative")
        if self.triplets not in TRAINING_KINDS:
            raise ValueError(f"triplet kind must be one of {TRAINING_KINDS}, got {self.triplets!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if self.weight_decay < 0 or self.patience < 0:
            raise ValueError("weight_decay and patience must not be negative")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )
        if self.patience and not self.validation_fraction:
            raise ValueError("early stopping (patience) needs a validation_fraction above 0")
        self.model_config(1)  # checks depth, embedding_dim and dropout

    @property
    def mines_online(self) -> bool:
        return self.triplets in MINER_KINDS

    def model_config(self, n_features: int) -> ModelConfig:
        return ModelConfig(
            n_features=n_features,
            width=self.width,
            embedding_dim=self.embedding_dim,
            depth=self.depth,
            dropout=self.dropout,
            l2_normalize=self.l2_normalize,
        )


@dataclass
class TrainedRun:
    model: Embedder  # a TripletMLP, or a LinearProjection from training/linear.py
    zscore: ZScore
    split: ArtistSplit
    config: TrainConfig | LinearTrainConfig
    losses: list[float] = field(default_factory=list)  # mean triplet loss per epoch
    n_genre_fallbacks: int = 0  # genre triplets that fell back to a random negative
    # (epoch, validation mean AUC) at each check; empty without a validation split.
    validation: list[tuple[int, float]] = field(default_factory=list)
    best_epoch: int | None = None  # the epoch whose weights were kept (early stopping)


EpochCallback = Callable[[int, float], None]


def split_for(artist_ids: np.ndarray, config: TrainConfig | LinearTrainConfig) -> ArtistSplit:
    """The run's artists: the paper's split, then the optional size limit and validation set.

    Takes any config with train_fraction, seed, train_artists and validation_fraction
    (the linear metrics share it), so every method sees the same evaluation artists.
    """
    split = split_artists(artist_ids, train_fraction=config.train_fraction, seed=config.seed)
    if config.train_artists is not None:
        split = limit_training_artists(split, n_artists=config.train_artists, seed=config.seed)
    if config.validation_fraction:
        split = hold_out_validation(split, fraction=config.validation_fraction, seed=config.seed)
    return split


def train_on_catalogue(
    catalogue: Catalogue, config: TrainConfig, *, on_epoch: EpochCallback | None = None
) -> TrainedRun:
    """Split the artists, fit z-score statistics on training tracks, train the network."""
    split = split_for(catalogue.artist_ids, config)
    train = split.train_mask(catalogue.artist_ids)
    zscore = ZScore.fit(catalogue.features[train])
    artists = catalogue.artist_ids[train]
    if config.mines_online:
        sampler: TripletSampler | ArtistBatches = ArtistBatches(
            artists,
            artists_per_batch=config.artists_per_batch,
            tracks_per_artist=config.tracks_per_artist,
        )
    else:
        sampler = TripletSampler(
            artists, genres=catalogue.tracks["genre"].to_numpy()[train], kind=config.triplets
        )
    validation = None
    if len(split.validation):
        held_out = split.validation_mask(catalogue.artist_ids)
        validation = (zscore.apply(catalogue.features[held_out]), catalogue.artist_ids[held_out])
    fit = fit_triplet_model(
        zscore.apply(catalogue.features[train]),
        sampler,
        config,
        artist_ids=artists,
        validation=validation,
        on_epoch=on_epoch,
    )
    return TrainedRun(
        fit.model,
        zscore,
        split,
        config,
        fit.losses,
        getattr(sampler, "n_fallbacks", 0),
        fit.validation,
        fit.best_epoch,
    )


@dataclass
class _Fit:
    model: TripletMLP
    losses: list[float]
    validation: list[tuple[int, float]]
    best_epoch: int | None


def fit_triplet_model(
    x: np.ndarray,
    sampler: TripletSampler | ArtistBatches,
    config: TrainConfig,
    *,
    artist_ids: np.ndarray | None = None,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_epoch: EpochCallback | None = None,
) -> _Fit:
    """Train on (n_tracks, n_features) z-scored inputs.

    artist_ids (n_tracks,) label the rows for online mining; validation is
    (z-scored features, artist ids) of held-out training artists for early stopping.
    """
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = TripletMLP(config.model_config(x.shape[1]))
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = None
    if config.lr_schedule == "cosine":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.epochs)
    inputs = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    labels = None if artist_ids is None else torch.from_numpy(np.asarray(artist_ids, np.int64))
    fit = _Fit(model, [], [], None)
    best_auc, best_state, checks_without_gain = -np.inf, None, 0
    for epoch in range(config.epochs):
        model.train()
        if isinstance(sampler, ArtistBatches):
            loss = _mined_epoch(model, optimiser, inputs, labels, sampler, config, rng)
        else:
            loss = _paper_epoch(model, optimiser, inputs, sampler, config, rng)
        fit.losses.append(loss)
        if schedule is not None:
            schedule.step()
        if on_epoch is not None:
            on_epoch(epoch, loss)
        if validation is None or (epoch + 1) % config.validate_every and epoch + 1 < config.epochs:
            continue
        auc = _validation_auc(model, validation)
        fit.validation.append((epoch + 1, auc))
        if auc > best_auc:
            best_auc, checks_without_gain = auc, 0
            best_state, fit.best_epoch = copy.deepcopy(model.state_dict()), epoch + 1
        else:
            checks_without_gain += 1
            if config.patience and checks_without_gain >= config.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return fit


def _paper_epoch(model, optimiser, inputs, sampler: TripletSampler, config, rng) -> float:
    """The paper's epoch: fresh triplets in mini-batches; mean loss over triplets."""
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
    return total / len(triplets)


def _mined_epoch(model, optimiser, inputs, labels, batches: ArtistBatches, config, rng) -> float:
    """P x K batches, triplets mined from each; mean over batches of the mined triplets' loss."""
    n_batches = config.batches_per_epoch or max(config.triplets_per_epoch // config.batch_size, 1)
    losses = []
    for _ in range(n_batches):
        rows = torch.from_numpy(batches.sample(rng=rng))
        embeddings = model(inputs[rows])
        triplets = mine_triplets(
            embeddings.detach(), labels[rows], kind=config.triplets, margin=config.margin
        )
        if len(triplets) == 0:  # nothing left to learn in this batch
            losses.append(0.0)
            continue
        loss = mined_triplet_loss(embeddings, triplets, config.margin)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def _validation_auc(model: TripletMLP, validation: tuple[np.ndarray, np.ndarray]) -> float:
    features, artist_ids = validation
    return mean_auc(embed(model, features), artist_ids, all_queries(artist_ids)).mean_auc
