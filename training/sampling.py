"""Triplet samplers: index triples (anchor, positive, negative) into a track array.

Anchor and positive are two distinct tracks of one artist; the negative is a
track of another artist. "random" draws the negative from any other artist;
"genre" from another artist whose track shares the anchor track's top-level
genre. When that is impossible (the anchor has no genre, or its genre has no
other artist) the genre sampler falls back to a random negative and counts it.

    >>> sampler = TripletSampler(artist_ids, genres=genres, kind="genre")
    >>> triplets = sampler.sample(512, rng=np.random.default_rng(0))  # (512, 3) int64
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from training.config import TRIPLET_KINDS

TripletKind = Literal["random", "genre"]
# Rejection rounds before the remaining genre negatives fall back to random ones.
_MAX_ROUNDS = 64


class _Groups:
    """Tracks grouped by a label: members of group g are order[start[g]:start[g]+count[g]]."""

    def __init__(self, labels: np.ndarray):
        self.order = np.argsort(labels, kind="stable")
        self.keys, self.start, self.count = np.unique(
            labels[self.order], return_index=True, return_counts=True
        )
        self.group_of = np.empty(len(labels), dtype=np.int64)
        self.group_of[self.order] = np.repeat(np.arange(len(self.keys)), self.count)
        self.rank_in_group = np.empty(len(labels), dtype=np.int64)
        self.rank_in_group[self.order] = np.arange(len(labels)) - np.repeat(self.start, self.count)

    def draw(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniformly drawn member of each given group."""
        offsets = (rng.random(len(groups)) * self.count[groups]).astype(np.int64)
        return self.order[self.start[groups] + offsets]


class TripletSampler:
    """Samples triplets over tracks labelled by artist (and genre, for "genre")."""

    def __init__(
        self,
        artist_ids: np.ndarray,
        *,
        genres: np.ndarray | None = None,
        kind: TripletKind = "random",
    ):
        if kind not in TRIPLET_KINDS:
            raise ValueError(f"triplet kind must be one of {TRIPLET_KINDS}, got {kind!r}")
        if kind == "genre" and genres is None:
            raise ValueError("genre triplets need each track's genre")
        self.kind = kind
        self.artist_ids = np.asarray(artist_ids)
        self.artists = _Groups(self.artist_ids)
        self.anchors = np.flatnonzero(self.artists.count[self.artists.group_of] >= 2)
        if len(self.anchors) == 0:
            raise ValueError("no artist has two tracks: no anchor/positive pair exists")
        if len(self.artists.keys) < 2:
            raise ValueError("triplets need at least two artists")
        self.n_fallbacks = 0
        if kind == "genre":
            self._init_genres(np.asarray(genres, dtype=object))

    def _init_genres(self, genres: np.ndarray) -> None:
        labels = np.array(["" if g is None or g != g else str(g) for g in genres], dtype=object)
        self.has_genre = labels != ""
        self.genre_groups = _Groups(labels.astype(str))
        # A genre can supply negatives only if more than one artist has tracks in it.
        artists_per_genre = np.array(
            [
                len(np.unique(self.artist_ids[self.genre_groups.order[s : s + c]]))
                for s, c in zip(self.genre_groups.start, self.genre_groups.count, strict=True)
            ]
        )
        self.genre_usable = self.has_genre & (artists_per_genre[self.genre_groups.group_of] >= 2)

    def sample(self, n: int, *, rng: np.random.Generator) -> np.ndarray:
        """(n, 3) int64 array of (anchor, positive, negative) track indices."""
        anchors = self.anchors[rng.integers(0, len(self.anchors), size=n)]
        positives = self._positives(anchors, rng)
        if self.kind == "genre":
            negatives = self._genre_negatives(anchors, rng)
        else:
            negatives = self._random_negatives(anchors, rng)
        return np.stack([anchors, positives, negatives], axis=1)

    def _positives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Draw among the artist's other tracks: an offset in [0, count-1) that skips
        # the anchor's own rank.
        groups = self.artists.group_of[anchors]
        offsets = (rng.random(len(anchors)) * (self.artists.count[groups] - 1)).astype(np.int64)
        offsets += offsets >= self.artists.rank_in_group[anchors]
        return self.artists.order[self.artists.start[groups] + offsets]

    def _random_negatives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        negatives = rng.integers(0, len(self.artist_ids), size=len(anchors))
        clash = self.artist_ids[negatives] == self.artist_ids[anchors]
        while clash.any():
            negatives[clash] = rng.integers(0, len(self.artist_ids), size=int(clash.sum()))
            clash = self.artist_ids[negatives] == self.artist_ids[anchors]
        return negatives

    def _genre_negatives(self, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        negatives = self._random_negatives(anchors, rng)
        todo = np.flatnonzero(self.genre_usable[anchors])
        self.n_fallbacks += len(anchors) - len(todo)
        for _ in range(_MAX_ROUNDS):
            if len(todo) == 0:
                break
            groups = self.genre_groups.group_of[anchors[todo]]
            drawn = self.genre_groups.draw(groups, rng)
            ok = self.artist_ids[drawn] != self.artist_ids[anchors[todo]]
            negatives[todo[ok]] = drawn[ok]
            todo = todo[~ok]
        # Genres dominated by one artist can defeat rejection; those keep a random negative.
        self.n_fallbacks += len(todo)
        return negatives
