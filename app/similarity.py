"""What the routes share beyond one handler: storing a song and indexing it in one step.

>>> song_id = add_and_index(session, index, bundle.embed, NewSong(...))
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sqlalchemy.orm import Session

from app.catalogue import CatalogueError
from app.catalogue.rows import SongRows
from app.catalogue.writes import NewSong, add_song
from app.index.protocol import SongIndex

log = logging.getLogger("musicsim.catalogue")


def add_and_index(
    session: Session, index: SongIndex, embed: Callable[[np.ndarray], np.ndarray], new: NewSong
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
    index.add(rows, embedding)
    log.info("stored and indexed cold-start song %d", song.id, extra={"song_id": song.id})
    return song.id
