"""Keeping a process's index in step with songs other processes add.

Every uvicorn worker or replica on one database (SQLite file or PostgreSQL) indexes
what it stores at once, and a follower thread polls the songs table every
`sync_interval_seconds` for songs its index lacks (app.catalogue.index_missing_songs).
A poll compares the table with the index as sets, not against an id watermark:
on PostgreSQL a transaction takes its song id from a sequence before it commits,
so a song with a smaller id can become visible after one with a larger id, and a
watermark would skip it for good.

The bound: a song committed at time t is counted by the first poll that starts
after t and indexed by that poll, so every process serves it by
t + sync_interval_seconds + the time of two polls (the one running at t and the
one that indexes it).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import numpy as np
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.catalogue import index_missing_songs
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
    ):
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
        """Index stored songs the index lacks; returns how many were new."""
        with self._sessions() as session:
            return index_missing_songs(session, self._index, self._embed)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                added = self.poll_once()
            except SQLAlchemyError as exc:  # a busy or restarting database: try next round
                log.warning("could not read new songs: %s", exc)
                continue
            if added:
                log.info("indexed %d songs added by other processes", added)
