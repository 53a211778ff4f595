"""What the routes share beyond one handler: storing a song and indexing it in one step.

>>> song_id = add_and_index(session, index, bundle.embed, NewSong(...), cards=cards)
>>> delete_and_unindex(session, index, [song_id], cards=cards)
>>> update_and_reindex(session, index, bundle.embed, song_id, {"title": "..."}, cards=cards)

`cards` (app/cards.py: what answers show of each song, in memory) is refreshed
after the commit, so this process answers with the change at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sqlalchemy.orm import Session

from app.cards import SongCards
from app.catalogue import CatalogueError
from app.catalogue.reads import read_index_rows
from app.catalogue.rows import SongRows
from app.catalogue.writes import NewSong, add_song, delete_songs, update_song
from app.index.protocol import SongIndex
from app.orm import Song

log = logging.getLogger("musicsim.catalogue")


def add_and_index(
    session: Session,
    index: SongIndex,
    embed: Callable[[np.ndarray], np.ndarray],
    new: NewSong,
    *,
    cards: SongCards | None = None,
) -> int:
    """Commit a new song, then add it to the live index; returns its id.

    The commit comes first: a song is acknowledged only once it is durable, and a
    crash between the two steps is repaired by the next start-up's rebuild.
    """
    embedding = embed(new.features[None, :])
    if not np.isfinite(embedding).all():  # e.g. features so large that z-scoring overflows
        raise CatalogueError("these features cannot be embedded: their embedding is not finite")
    song = add_song(session, new)
    artist = song.artist
    rows = SongRows.from_columns(
        [song.id], [artist.id], [new.genre], [artist.latitude], [artist.longitude]
    )
    if cards is not None:  # before the index: a song found is a song with a card
        cards.refresh(session, [song.id])
    index.add(rows, embedding)
    log.info("stored and indexed cold-start song %d", song.id, extra={"song_id": song.id})
    return song.id


def delete_and_unindex(
    session: Session, index: SongIndex, song_ids: list[int], *, cards: SongCards | None = None
) -> list[int]:
    """Delete songs, then drop them from the live index; returns the ids that existed.

    The commit comes first: were the process to die between the steps, the next
    start-up rebuilds the index without them (the catalogue version changed).
    """
    deleted = delete_songs(session, song_ids)
    index.remove(np.asarray(deleted, dtype=np.int64))
    if cards is not None:
        cards.refresh(session, deleted)
    if deleted:
        log.info("deleted %d songs", len(deleted), extra={"song_ids": deleted})
    return deleted


def update_and_reindex(
    session: Session,
    index: SongIndex,
    embed: Callable[[np.ndarray], np.ndarray],
    song_id: int,
    changes: dict,
    *,
    cards: SongCards | None = None,
) -> Song | None:
    """Change a song's fields, then re-index it when its vector or filter attributes
    changed (genre); None when the song does not exist."""
    embedding = None
    if changes.get("features") is not None:
        embedding = embed(np.asarray(changes["features"], dtype=np.float32)[None, :])
        if not np.isfinite(embedding).all():
            raise CatalogueError("these features cannot be embedded: their embedding is not finite")
    song = update_song(session, song_id, changes)
    if song is not None and cards is not None:
        cards.refresh(session, [song_id])
    if song is None or (embedding is None and "genre" not in changes):
        return song
    if embedding is None and song_id not in index:
        return song  # not indexed yet: the follower indexes it as it now is
    if embedding is None:
        embedding = index.embedding_of(song_id)[None, :]
    rows, _ = read_index_rows(session, ids=np.array([song_id]))
    index.remove(np.array([song_id]))
    index.add(rows, embedding)
    return song
