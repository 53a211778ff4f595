"""The demo catalogue's three FMA files, written from the parts the sibling modules
make: `write_demo_catalogue` and the `DemoCatalogue` it returns (see the package
docstring for usage)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.synthetic import DEFAULT_ARTISTS, DEFAULT_TRACKS
from training.data.synthetic.features_csv import _write_features
from training.data.synthetic.frames import _feature_blocks
from training.data.synthetic.genres import _genre_table, _track_genres
from training.data.synthetic.layout import _draw_layout
from training.data.synthetic.style import _draw_style
from training.data.synthetic.tracks import _tracks_table


@dataclass(frozen=True)
class DemoCatalogue:
    """What `write_demo_catalogue` wrote."""

    out_dir: Path
    n_tracks: int
    n_artists: int
    n_genres: int


def write_demo_catalogue(
    *,
    out_dir: Path,
    n_tracks: int = DEFAULT_TRACKS,
    n_artists: int = DEFAULT_ARTISTS,
    seed: int = 0,
) -> DemoCatalogue:
    """Write `tracks.csv`, `features.csv` and `genres.csv` in FMA's format into out_dir.

    The same seed gives byte-identical files. n_genres counts the top-level genres that
    have at least one artist (all 16 once n_artists >= 16).
    """
    _check_sizes(n_tracks=n_tracks, n_artists=n_artists)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Independent streams per concern, so that changing how metadata is drawn does not
    # change the features (and the calibration) of the same seed.
    layout_rng, meta_rng, style_rng, frame_rng = np.random.default_rng(seed).spawn(4)
    layout = _draw_layout(n_tracks=n_tracks, n_artists=n_artists, rng=layout_rng)
    genres = _track_genres(layout, rng=meta_rng)
    _genre_table(genres).to_csv(out_dir / "genres.csv", index=False)
    _tracks_table(layout, genres, rng=meta_rng).to_csv(out_dir / "tracks.csv")
    style = _draw_style(layout, rng=style_rng)
    _write_features(out_dir / "features.csv", _feature_blocks(layout, style, rng=frame_rng))
    n_genres = len(np.unique(layout.artist_genre))
    return DemoCatalogue(out_dir=out_dir, n_tracks=n_tracks, n_artists=n_artists, n_genres=n_genres)


def _check_sizes(*, n_tracks: int, n_artists: int) -> None:
    if n_artists < 1:
        raise ValueError(f"n_artists must be at least 1, got {n_artists}")
    if n_tracks < n_artists:
        raise ValueError(
            f"n_tracks ({n_tracks}) must be at least n_artists ({n_artists}): "
            "every artist has at least one track"
        )
