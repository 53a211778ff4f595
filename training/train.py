"""Training the triplet network: the paper's protocol by default, online mining as an option.

>>> run = train_on_catalogue(catalogue, TrainConfig(triplets="genre"))
>>> run.losses[-1], run.split.eval
>>> run = train_on_catalogue(catalogue, TrainConfig(triplets="batch-hard", validation_fraction=0.1))
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from training.config import TrainConfig
from training.data.fma import Catalogue
from training.data.split import ZScore
from training.evaluation.metrics import all_queries, mean_auc
from training.loss import triplet_loss
from training.mining import ArtistBatches, mine_triplets
from training.model import TripletMLP, embed
from training.runs import EpochCallback, TrainedRun, split_for
from training.sampling import TripletSampler


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
            artists,
            genres=catalogue.tracks["genre"].to_numpy()[train],
            kind=config.triplets,  # type: ignore[arg-type]  # checked by TrainConfig
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
        loss = triplet_loss(embeddings, triplets, config.margin)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def _validation_auc(model: TripletMLP, validation: tuple[np.ndarray, np.ndarray]) -> float:
    features, artist_ids = validation
    return mean_auc(embed(model, features), artist_ids, all_queries(artist_ids)).mean_auc
