"""Genres of tracks and genres.csv."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.data.fma import TOP_GENRES
from training.data.synthetic.layout import _Layout

# Genres: FMA's 16 top-level genres (training.fma.TOP_GENRES); their genre_top track
# counts set how many artists each genre gets.
# A few sub-genres per top-level genre (FMA names), numbered from an id range that no
# top-level genre uses.
SUB_GENRES: dict[str, tuple[str, ...]] = {
    "Blues": ("Delta Blues", "Electric Blues"),
    "Classical": ("Chamber Music", "Choral Music", "Composed Music", "Opera"),
    "Country": ("Bluegrass", "Rockabilly", "Americana"),
    "Easy Listening": ("Lounge", "Easy Listening: Vocal"),
    "Electronic": ("Ambient Electronic", "Techno", "House", "IDM", "Glitch", "Downtempo"),
    "Experimental": ("Noise", "Avant-Garde", "Sound Collage", "Drone", "Field Recordings"),
    "Folk": ("Free-Folk", "British Folk", "Psych-Folk", "Singer-Songwriter"),
    "Hip-Hop": ("Alternative Hip-Hop", "Rap", "Hip-Hop Beats", "Abstract Hip-Hop"),
    "Instrumental": ("Soundtrack", "Ambient", "New Age"),
    "International": ("Latin America", "African", "Brazilian", "Indian"),
    "Jazz": ("Free-Jazz", "Jazz: Vocal", "Jazz: Out"),
    "Old-Time / Historic": ("Pre-War", "Big Band/Swing"),
    "Pop": ("Experimental Pop", "Synth Pop", "Power-Pop"),
    "Rock": ("Indie-Rock", "Punk", "Post-Rock", "Lo-Fi", "Garage", "Psych-Rock", "Metal"),
    "Soul-RnB": ("Funk", "Disco", "Gospel"),
    "Spoken": ("Poetry", "Talk Radio", "Comedy"),
}
_FIRST_SUB_GENRE_ID = 1300
# Tracks whose genres span two top-level genres have no genre_top, as in FMA.
_MIXED_GENRE_SHARE = 0.2


@dataclass(frozen=True)
class _TrackGenres:
    genres: list[list[int]]  # per track, FMA's `genres`
    genres_all: list[list[int]]  # per track, with the parents added
    genre_top: np.ndarray  # per track, index into TOP_GENRES, or -1 when mixed
    sub_ids: dict[str, list[int]]  # sub-genre ids per top-level title


def _sub_genre_ids() -> dict[str, list[int]]:
    ids, next_id = {}, _FIRST_SUB_GENRE_ID
    for _, title, _ in TOP_GENRES:
        ids[title] = list(range(next_id, next_id + len(SUB_GENRES[title])))
        next_id += len(SUB_GENRES[title])
    return ids


def _track_genres(layout: _Layout, *, rng: np.random.Generator) -> _TrackGenres:
    """FMA-style genre lists: an artist's own genre or sub-genre, sometimes a second genre.

    A track whose genres fall under two top-level genres has no genre_top in FMA; about a
    fifth of the tracks are like that, but still list their genres.
    """
    sub_ids = _sub_genre_ids()
    top_ids = [gid for gid, _, _ in TOP_GENRES]
    main = layout.artist_genre[layout.track_artist]
    mixed = rng.random(len(main)) < _MIXED_GENRE_SHARE
    other = _foreign_genres(main, rng=rng)
    # A track names a sub-genre of its own genre 3 times in 4 (else the genre itself), and
    # of a second genre 1 time in 2.
    use_sub = rng.random((len(main), 2)) < (0.75, 0.5)
    which = rng.random((len(main), 2))
    genres, genres_all = [], []
    for g, mix, o, sub, w in zip(main, mixed, other, use_sub, which, strict=True):
        own = [_pick_genre(g, sub[0], w[0], sub_ids)]
        foreign = [_pick_genre(o, sub[1], w[1], sub_ids)] if mix else []
        listed = sorted(set(own + foreign))
        parents = [top_ids[g]] + ([top_ids[o]] if mix else [])
        genres.append(listed)
        genres_all.append(sorted(set(listed + parents)))
    genre_top = np.where(mixed, -1, main)
    return _TrackGenres(genres=genres, genres_all=genres_all, genre_top=genre_top, sub_ids=sub_ids)


def _pick_genre(top: int, use_sub: bool, which: float, sub_ids: dict[str, list[int]]) -> int:
    """The id of top-level genre `top`, or of its sub-genre at fraction `which` of the list."""
    gid, title, _ = TOP_GENRES[top]
    return sub_ids[title][int(which * len(sub_ids[title]))] if use_sub else gid


def _foreign_genres(main: np.ndarray, *, rng: np.random.Generator) -> np.ndarray:
    """A second top-level genre per track, by FMA's genre sizes, never the track's own."""
    weights = np.array([count for _, _, count in TOP_GENRES], dtype=np.float64)
    other = rng.choice(len(weights), len(main), p=weights / weights.sum())
    clash = other == main
    while clash.any():  # redraw the few that hit their own genre
        other[clash] = rng.choice(len(weights), int(clash.sum()), p=weights / weights.sum())
        clash = other == main
    return other


def _genre_table(genres: _TrackGenres) -> pd.DataFrame:
    """genres.csv: genre_id, #tracks (tracks listing it in genres_all), parent, title, top_level."""
    rows = []
    for gid, title, _ in TOP_GENRES:
        rows.append((gid, 0, title, gid))
        rows += [
            (sid, gid, name, gid)
            for sid, name in zip(genres.sub_ids[title], SUB_GENRES[title], strict=True)
        ]
    table = pd.DataFrame(rows, columns=["genre_id", "parent", "title", "top_level"])
    counts = pd.Series([g for row in genres.genres_all for g in row]).value_counts()
    table.insert(
        1, "#tracks", counts.reindex(table["genre_id"]).fillna(0).astype(np.int64).to_numpy()
    )
    return table.sort_values("genre_id", kind="stable").reset_index(drop=True)
