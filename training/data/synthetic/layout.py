"""Layout: artists, their genres, albums and tracks, and the ids that name them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data.fma import TOP_GENRES

# Catalogue shape, after FMA: 8,429 of its 16,341 artists have two or more tracks.
_SINGLE_TRACK_SHARE = 1 - 8_429 / 16_341
# Tail index of the extra tracks of multi-track artists: a few artists get hundreds.
_TRACKS_TAIL_INDEX = 2.5


@dataclass(frozen=True)
class _Layout:
    artist_ids: np.ndarray  # (n_artists,) increasing
    artist_genre: np.ndarray  # (n_artists,) index into TOP_GENRES
    album_ids: np.ndarray  # (n_albums,) increasing
    album_artist: np.ndarray  # (n_albums,) index into artists
    track_ids: np.ndarray  # (n_tracks,) increasing: rows are written in this order
    track_album: np.ndarray  # (n_tracks,) index into albums
    track_number: np.ndarray  # (n_tracks,) position on its album, from 1

    @property
    def track_artist(self) -> np.ndarray:
        return self.album_artist[self.track_album]


def _draw_layout(*, n_tracks: int, n_artists: int, rng: np.random.Generator) -> _Layout:
    genre_sizes = _artists_per_genre(n_artists)
    # Artist ids are handed out in sign-up order, which has nothing to do with genre.
    artist_genre = rng.permutation(np.repeat(np.arange(len(TOP_GENRES)), genre_sizes))
    tracks = _tracks_per_artist(n_tracks=n_tracks, n_artists=n_artists, rng=rng)
    album_artist, album_sizes = _albums(tracks, rng=rng)
    # FMA numbers albums and tracks by upload time: albums arrive in random order and an
    # album's tracks get consecutive ids.
    order = rng.permutation(len(album_artist))
    album_artist, album_sizes = album_artist[order], album_sizes[order]
    track_album = np.repeat(np.arange(len(album_artist)), album_sizes)
    starts = np.cumsum(album_sizes) - album_sizes
    return _Layout(
        artist_ids=_sparse_ids(n_artists, first=1, rng=rng),
        artist_genre=artist_genre,
        album_ids=_sparse_ids(len(album_artist), first=1, rng=rng),
        album_artist=album_artist,
        track_ids=_sparse_ids(n_tracks, first=2, rng=rng),
        track_album=track_album,
        track_number=np.arange(n_tracks) - starts[track_album] + 1,
    )


def _artists_per_genre(n_artists: int) -> np.ndarray:
    """Artists per top-level genre, proportional to FMA's genre_top track counts.

    Every genre gets one artist first when there are enough artists, so that even Easy
    Listening (24 of FMA's 49,598 genre_top tracks) exists.
    """
    weights = np.array([count for _, _, count in TOP_GENRES], dtype=np.float64)
    floor = np.ones(len(weights), dtype=np.int64) if n_artists >= len(weights) else 0
    return floor + _largest_remainder(weights, n_artists - int(np.sum(floor)))


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    """Integers proportional to weights that sum exactly to total (Hamilton's method)."""
    quota = weights / weights.sum() * total
    counts = np.floor(quota).astype(np.int64)
    short = total - int(counts.sum())
    counts[np.argsort(-(quota - counts), kind="stable")[:short]] += 1
    return counts


def _tracks_per_artist(*, n_tracks: int, n_artists: int, rng: np.random.Generator) -> np.ndarray:
    """Heavy-tailed tracks per artist: about half single-track, a few with hundreds."""
    counts = np.ones(n_artists, dtype=np.int64)
    n_multi = min(round(n_artists * (1 - _SINGLE_TRACK_SHARE)), n_tracks - n_artists)
    multi = rng.permutation(n_artists)[:n_multi]
    counts[multi] += 1
    spare = n_tracks - n_artists - n_multi
    if spare > 0:
        # Lomax weights give most multi-track artists a handful and a few very many.
        weights = rng.pareto(_TRACKS_TAIL_INDEX, n_multi) + 1e-3
        counts[multi] += rng.multinomial(spare, weights / weights.sum())
    return counts


def _albums(tracks: np.ndarray, *, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Split each artist's tracks into albums of a dozen or so: (album_artist, album_sizes)."""
    n_albums = 1 + rng.binomial(tracks - 1, 0.1)
    album_artist = np.repeat(np.arange(len(tracks)), n_albums)
    # Near-equal album sizes within an artist, larger ones first.
    rank = np.arange(len(album_artist)) - np.repeat(np.cumsum(n_albums) - n_albums, n_albums)
    base = tracks[album_artist] // n_albums[album_artist]
    extra = rank < (tracks % n_albums)[album_artist]
    return album_artist, base + extra


def _sparse_ids(n: int, *, first: int, rng: np.random.Generator) -> np.ndarray:
    """n increasing ids with occasional gaps, as FMA's deleted entries leave them."""
    gaps = 1 + rng.geometric(0.6, n) * (rng.random(n) < 0.3)
    gaps[0] = 0
    return first + np.cumsum(gaps)
