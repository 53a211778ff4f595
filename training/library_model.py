"""A model for a music library of any size: what `musicsim library` serves.

>>> choice = make_library_model(features=x, artist_ids=a, labelled=l, out_dir=Path("models/mine"))
>>> choice["method"], choice["reason"]

With too few artists that have two or more songs to learn from, the bundle is the
z-score statistics of the library itself with the identity projection (songs
compared by z-scored L2, nothing learned), fitted on all its songs. With enough,
`choose_library_model` runs `musicsim train --method auto`'s selection
(training/selection.py) over the library's named artists and refits the winner.
Either way the manifest's "selection" records what was chosen and why (with every
candidate's validation figures when selection ran).

The budget, so that a real library costs seconds to minutes, not hours: the linear
candidates only (z-score, LDA, NCA on at most NCA_MAX_TRACKS tracks), each under
every scoring; no network candidates (minutes each at FMA size: `musicsim train
--method auto` offers them). Selection reads at most SELECTION_SONGS songs (whole
artists, drawn at random from the training artists of the refit's split, so that it
never reads an artist the saved model is evaluated on), since scoring the validation
artists compares all their songs pairwise; the refit reads the whole library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Artists with two or more songs needed before a learned metric is tried: below
# this, an artist split leaves a handful of classes to learn from and evaluate on.
MIN_LEARNING_ARTISTS = 10
LIBRARY_CANDIDATES = ("zscore", "lda", "nca")
NCA_MAX_TRACKS = 2000  # NCA's cost grows with the square of its tracks
SELECTION_SONGS = 6000  # songs selection may read, at most (whole artists)
LIBRARY_MAKER = "musicsim library"  # recorded in the manifest: the command may remake it


def make_library_model(
    *,
    features: np.ndarray,
    artist_ids: np.ndarray,
    labelled: np.ndarray,
    out_dir: Path,
    data_fingerprint: str = "",
    name: str | None = None,
) -> dict[str, Any]:
    """Fit and save the library's bundle at out_dir; returns the selection record.

    features (n, 518); artist_ids (n,); labelled (n,) bool, False for songs whose
    artist nobody named (they never count as a class). Raises ValueError for fewer
    than two songs.
    """
    from training.artefacts import save_bundle

    if len(features) < 2:
        raise ValueError(f"a model needs at least two songs, the library has {len(features)}")
    ids, counts = np.unique(artist_ids[labelled], return_counts=True)
    n_learnable = int((counts >= 2).sum())
    if n_learnable < MIN_LEARNING_ARTISTS:
        run = zscore_run(features)
        scoring = None
        selection: dict[str, Any] = {
            "method": "zscore",
            "reason": (
                f"{n_learnable} artist(s) with two or more songs; a learned metric needs at "
                f"least {MIN_LEARNING_ARTISTS}: the library's own z-score statistics, "
                f"identity projection, fitted on all {len(features)} songs"
            ),
        }
    else:
        run, selection, scoring = choose_library_model(
            features=features,
            artist_ids=np.where(labelled, artist_ids, -1 - np.arange(len(features))),
        )
    selection |= {
        "made_by": LIBRARY_MAKER,
        "songs": int(len(features)),
        "artists_with_two_or_more_songs": n_learnable,
    }
    save_bundle(
        run,
        out_dir=out_dir,
        data_fingerprint=data_fingerprint,
        name=name,
        scoring=scoring,
        selection=selection,
    )
    return selection


def zscore_run(features: np.ndarray):
    """The identity projection over the z-score of all these songs."""
    import torch

    from training.config import LinearTrainConfig
    from training.data.split import ArtistSplit, ZScore
    from training.model import LinearConfig, LinearProjection
    from training.runs import TrainedRun

    zscore = ZScore.fit(features)
    n = features.shape[1]
    model = LinearProjection(LinearConfig(n_features=n, embedding_dim=n))
    with torch.no_grad():
        model.projection.weight.copy_(torch.eye(n))
    model.eval()
    none = np.empty(0, dtype=np.int64)
    split = ArtistSplit(train=none, eval=none)
    return TrainedRun(model, zscore, split, LinearTrainConfig(method="zscore"))


def choose_library_model(
    *, features: np.ndarray, artist_ids: np.ndarray, seed: int = 0, most: int = SELECTION_SONGS
):
    """Selection on validation artists, then the winner refitted: (run, record, scoring).

    artist_ids: (n,); songs whose artist nobody named carry an id of their own, so
    the artist split drops them (an artist needs two songs to be a class). most: the
    songs selection may read (a library larger than this selects on a subset).
    """
    import pandas as pd

    from training.data.fma import Catalogue
    from training.data.split import split_artists
    from training.selection import (
        AutoConfig,
        chosen_scoring,
        refit,
        select_candidates,
        training_catalogue,
    )

    tracks = pd.DataFrame({"artist_id": artist_ids}, index=np.arange(1, len(artist_ids) + 1))
    catalogue = Catalogue(features, tracks, pd.DataFrame(), 0, 0, "")
    config = AutoConfig(seed=seed, candidates=LIBRARY_CANDIDATES, nca_max_tracks=NCA_MAX_TRACKS)
    subset = catalogue
    if len(catalogue.features) > most:
        # The subset's own split differs from the refit's over the whole library: drawn
        # from anywhere, selection would read artists the saved model is evaluated on.
        split = split_artists(catalogue.artist_ids, train_fraction=config.train_fraction, seed=seed)
        known = training_catalogue(catalogue, artists=split.train)
        subset = selection_subset(known, most=most, seed=seed)
    selection = select_candidates(subset, config)
    run = refit(catalogue, selection)
    best = selection.best
    record = {
        "method": best.name,
        "scoring": best.scoring,
        "reason": (
            f"enough artists with two or more songs (at least {MIN_LEARNING_ARTISTS}): "
            f"{best.name} with {best.scoring} had the highest validation mean AUC "
            f"({best.mean_auc:.4f}) of {len(selection.candidates)} candidates "
            f"(musicsim train --method auto's selection), refitted on the training artists"
        ),
        "selection_songs": int(len(subset.features)),
        "auto": selection.as_dict(),
    }
    return run, record, chosen_scoring(selection)


def selection_subset(catalogue, *, most: int, seed: int):
    """The catalogue cut to random whole artists holding at most `most` songs (all of it
    when it is no larger)."""
    from training.selection import training_catalogue

    if len(catalogue.features) <= most:
        return catalogue
    artists, counts = np.unique(catalogue.artist_ids, return_counts=True)
    order = np.random.default_rng([seed, 2]).permutation(len(artists))
    kept = order[np.cumsum(counts[order]) <= most]
    return training_catalogue(catalogue, artists=artists[kept])
