"""Hidden style: what makes tracks of one artist sound alike."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.fma import TOP_GENRES
from training.data.synthetic.layout import _Layout

_STYLE_DIM = 16  # dimensions of the genre/artist/track latent
_N_DESCRIPTORS = 32  # musical descriptors the latent drives (brightness, timbre, key...)
_GENRE_SPREAD = 1.0  # genre centres around the origin
_ARTIST_SPREAD = 0.8  # artists around their genre's centre
_TRACK_SPREAD = 0.85  # tracks around their artist
# An artist's "sound" (recording chain, instrumentation: how bright, how full) changes less
# from track to track than the style does; it drives the spectral shape features.
_SOUND_DIM = 2
_SOUND_TRACK_SPREAD = 0.3
_DESCRIPTOR_GAIN = 1.2  # how far into tanh's saturation the descriptors reach
# Per-track recording nuisances, independent of the artist, each N(0, 1).
_NUISANCES = ("gain", "lofi", "noise", "dynamics")
# The mapping from latent to sound is the same "physics" for every catalogue.
_PHYSICS_SEED = 20_170_101


@dataclass(frozen=True)
class _Style:
    descriptors: np.ndarray  # (n_tracks, _N_DESCRIPTORS) in [-1, 1]
    sound: np.ndarray  # (n_tracks, _SOUND_DIM)
    nuisance: np.ndarray  # (n_tracks, len(_NUISANCES))

    def rows(self, rows: slice) -> _Style:
        return _Style(self.descriptors[rows], self.sound[rows], self.nuisance[rows])


def _draw_style(layout: _Layout, *, rng: np.random.Generator) -> _Style:
    # What a genre sounds like, and how descriptors follow from style, belong to the world
    # rather than to one catalogue: every seed shares them.
    physics = np.random.default_rng(_PHYSICS_SEED)
    genre_style = physics.normal(0, _GENRE_SPREAD, (len(TOP_GENRES), _STYLE_DIM))
    genre_sound = physics.normal(0, _GENRE_SPREAD, (len(TOP_GENRES), _SOUND_DIM))
    mix = physics.normal(0, _DESCRIPTOR_GAIN / np.sqrt(_STYLE_DIM), (_STYLE_DIM, _N_DESCRIPTORS))
    bias = physics.normal(0, 0.5, _N_DESCRIPTORS)
    track = _nested_latent(layout, genre_style, _TRACK_SPREAD, rng=rng)
    return _Style(
        descriptors=np.tanh(track @ mix + bias),
        sound=_nested_latent(layout, genre_sound, _SOUND_TRACK_SPREAD, rng=rng),
        nuisance=rng.standard_normal((len(layout.track_ids), len(_NUISANCES))),
    )


def _nested_latent(
    layout: _Layout, genre: np.ndarray, track_spread: float, *, rng: np.random.Generator
) -> np.ndarray:
    """Track latents near their artist's, artists' near their genre's: (n_tracks, dim)."""
    dim = genre.shape[1]
    artist = genre[layout.artist_genre] + rng.normal(
        0, _ARTIST_SPREAD, (len(layout.artist_ids), dim)
    )
    return artist[layout.track_artist] + rng.normal(0, track_spread, (len(layout.track_ids), dim))
