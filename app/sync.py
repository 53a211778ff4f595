"""Keeping a process's index in step with songs other processes add.

Every uvicorn worker (or replica) on one database indexes what it stores at
once, and a follower thread polls the songs table for ids above the largest one
it has *read from the table*, so a song added through any process is served by
all of them within about one polling interval.

SQLite serialises writers, so song ids become visible in increasing order and a
watermark on the id cannot skip a song. The watermark is the follower's own:
a process's own newer song, indexed at once, must not move it past an older
song another process committed just before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.catalogue import index_songs_after
from app.index import SongIndex

log = logging.getLogger("musicsim.sync")


class CatalogueFollower:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        index: SongIndex,
        embed: Callable[[np.ndarray], np.ndarray],
        *,
        interval_s: float,
        after_id: int,
    ):
        self._watermark = after_id  # the largest song id read from the table so far
        self._sessions = sessions
        self._index = index
        self._embed = embed
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="catalogue-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll_once(self) -> int:
        """Index songs stored since the last poll; returns how many were new."""
        with self._sessions() as session:
            added, self._watermark = index_songs_after(
                session, self._index, self._embed, after_id=self._watermark
            )
        return added

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                added = self.poll_once()
            except SQLAlchemyError as exc:  # a busy or restarting database: try next round
                log.warning("could not read new songs: %s", exc)
                continue
            if added:
                log.info("indexed %d songs added by other processes", added)
