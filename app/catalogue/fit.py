"""Does a model fit the catalogue it is asked to serve? Its z-score statistics say.

>>> check_bundle_fits(session, bundle, max_std=10.0)     # BundleMisfit names the columns

A bundle standardises each feature by the mean and std of the songs it was
trained on. When the catalogue's mean of a feature sits many of those stds away
(a model trained on the synthetic demo serving features extracted from real
audio: its rmse columns sit 15-42 std away), distances are dominated by those
columns and the answers mean little. The service then refuses to start, naming
the columns, unless told to serve anyway (MUSICSIM_SERVE_MISFIT_MODEL=true or
`musicsim serve --force`).
"""

from __future__ import annotations

import numpy as np
from sqlalchemy.orm import Session

from app.catalogue.reads import read_features_of, read_song_ids
from training.data.features import FEATURE_COLUMNS

# Songs read to estimate the catalogue's means: plenty for a mean, bounded at any size.
SAMPLE_SONGS = 20_000
DEFAULT_MAX_STD = 10.0  # a column's catalogue mean this many training stds away is off
_NAMED = 8  # columns named in the message


class BundleMisfit(ValueError):
    """The model's feature statistics do not fit the catalogue; the message names columns."""


def misfit_columns(
    *, mean: np.ndarray, std: np.ndarray, features: np.ndarray, max_std: float
) -> list[tuple[str, float]]:
    """(column name, |catalogue mean - model mean| / model std) beyond max_std, worst first."""
    offsets = np.abs(features.astype(np.float64).mean(axis=0) - mean) / std
    off = np.flatnonzero(offsets > max_std)
    off = off[np.argsort(-offsets[off], kind="stable")]
    return [("/".join(FEATURE_COLUMNS[i]), float(offsets[i])) for i in off]


def check_bundle_fits(
    session: Session, bundle, *, max_std: float = DEFAULT_MAX_STD, seed: int = 0
) -> None:
    """Raise BundleMisfit when the catalogue's feature means sit far from the bundle's."""
    ids = read_song_ids(session)
    if len(ids) == 0:
        return
    if len(ids) > SAMPLE_SONGS:
        ids = np.sort(np.random.default_rng(seed).choice(ids, SAMPLE_SONGS, replace=False))
    off = misfit_columns(
        mean=bundle.zscore.mean,
        std=bundle.zscore.std,
        features=read_features_of(session, ids),
        max_std=max_std,
    )
    if off:
        named = ", ".join(f"{name} ({offset:.0f} std)" for name, offset in off[:_NAMED])
        more = f" and {len(off) - _NAMED} more" if len(off) > _NAMED else ""
        raise BundleMisfit(
            f"the model {bundle.name!r} does not fit this catalogue: {len(off)} feature "
            f"column(s) have catalogue means more than {max_std:g} training std away from the "
            f"model's: {named}{more}. Make a model for it (musicsim library PATH, or musicsim "
            f"train), or serve anyway with --force (MUSICSIM_SERVE_MISFIT_MODEL=true)"
        )
