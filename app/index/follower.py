"""Keeping a process's index in step with songs other processes add or delete.

Every uvicorn worker or replica on one database (SQLite file or PostgreSQL) indexes
what it stores at once, and a follower thread polls the songs table every
`sync_interval_seconds` for songs its index lacks (`index_missing_songs`).
A poll compares the table with the index as sets, not against an id watermark:
on PostgreSQL a transaction takes its song id from a sequence before it commits,
so a song with a smaller id can become visible after one with a larger id, and a
watermark would skip it for good.

The bound: a song committed at time t is counted by the first poll that starts
after t and indexed by that poll, so every process serves it by
t + sync_interval_seconds + the time of two polls (the one running at t and the
one that indexes it).

Deletions: a poll first reads the catalogue version (migration 0002's token, which
every insert, delete or feature update changes); when it differs from the last
poll's, the indexed ids are compared with the stored ones and songs no longer
stored are removed from the index, within the same bound. The indexed ids are
read before the stored ones: a song indexed by then was committed by then, so
only a deletion can make it absent. When a deletion and an addition land in one
poll's window, the addition may wait for the next poll (one more interval).

Changes in place (PATCH, a re-import with other values): every such change moves
the song's revision (migration 0005). A poll reads the count and sum of the
revisions of changed songs (an index-only read); when they or the catalogue version
moved since the last poll, it reads the (id, revision) pairs of changed songs,
re-reads the songs whose revision it has not seen, re-embeds their stored
features and replaces their index entries (vector and filter attributes), within
the same bound. Without a deletion, revisions only grow, so any change raises the
sum; a deletion changes the catalogue version. The revisions are read before the
rows, so a row read is at least as new as the revision recorded for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.catalogue.reads import catalogue_version, read_index_rows, read_song_ids
from app.catalogue.rows import SongRows
from app.index.protocol import SongIndex
from app.orm import Song

log = logging.getLogger("musicsim.sync")
# A poll counts songs per block of this many consecutive ids, and reads the ids of a
# block only when its count differs from the index's.
ID_BLOCK = 4096
# Ids per look-up of songs not indexed yet: below SQLite's bound-parameter limit.
LOOKUP_CHUNK = 2000


class SkipCount:
    """Songs left out of the index because their embedding is not finite (thread-safe).

    Such a song stays stored and is tried again at each poll (its features may be
    corrected), so it counts once per attempt. /metrics reports the total.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int) -> None:
        with self._lock:
            self.total += n


NON_FINITE_SKIPPED = SkipCount()


class CatalogueFollower:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        index: SongIndex,
        embed: Callable[[np.ndarray], np.ndarray],
        *,
        interval_s: float,
        on_change: Callable[[Session, Iterable[int], Iterable[int]], None] | None = None,
    ):
        """on_change(session, indexed_ids, revised_ids): after a poll that found the
        catalogue changed, the ids now indexed and the songs re-read because another
        process changed them in place (app.cards.SongCards.sync keeps the answers' cards
        in step)."""
        self._on_change = on_change
        self._sessions = sessions
        self._index = index
        self._embed = embed
        self._interval_s = interval_s
        self._version: str | None = None  # the catalogue version of the last full poll
        self._revisions = RevisionsSeen()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="catalogue-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll_once(self) -> int:
        """Drop deleted songs and index stored songs the index lacks; returns how many
        were new."""
        with self._sessions() as session:
            version = catalogue_version(session)  # first: a later change makes it differ
            removed = 0
            if version != self._version:
                removed = remove_deleted_songs(session, self._index)
                if removed:
                    log.info("removed %d songs deleted by other processes", removed)
            added = index_missing_songs(session, self._index, self._embed)
            revised = refresh_revised_songs(
                session, self._index, self._embed, seen=self._revisions, version=version
            )
            if len(revised):
                log.info("re-read %d songs changed by other processes", len(revised))
            # A shared index (Milvus) may hold songs others added: told whenever the
            # catalogue changed, not only when this poll changed the index; a PATCH
            # elsewhere moves no catalogue version, only the songs' revisions.
            if self._on_change is not None and (version != self._version or added or len(revised)):
                self._on_change(session, self._index.ids(), revised)
            self._version = version
            return added

    def note_revision(self, song_id: int, revision: int) -> None:
        """This process re-indexed the song as it is at this revision (its own PATCH of
        new features): the next poll need not re-embed it and replace its entry again.
        Only then: a PATCH of other fields keeps the vector this index holds, which
        another process's earlier change of the features may have made stale."""
        self._revisions.revisions[int(song_id)] = int(revision)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                added = self.poll_once()
            except SQLAlchemyError as exc:  # a busy or restarting database: try next round
                log.warning("could not read new songs: %s", exc)
                continue
            if added:
                log.info("indexed %d songs added by other processes", added)


def remove_deleted_songs(session: Session, index: SongIndex) -> int:
    """Remove from the index the songs the database no longer holds; returns how many."""
    indexed = index.ids()  # before the stored ids: see the module's docstring
    gone = np.setdiff1d(indexed, read_song_ids(session))
    return index.remove(gone) if len(gone) else 0


def index_missing_songs(
    session: Session,
    index: SongIndex,
    embed: Callable[[np.ndarray], np.ndarray],
    *,
    id_block: int = ID_BLOCK,
    lookup_chunk: int = LOOKUP_CHUNK,
) -> int:
    """Index every stored song the index lacks, whatever order their ids committed in.

    Returns how many were added. The index holds only committed songs, and deleted
    ones are removed first (`remove_deleted_songs`), so the songs indexed before the
    table is read are all among those it holds: where the counts agree, nothing is
    missing (a deletion racing the read is caught by the next poll). The whole table's
    count settles most polls; otherwise counts per block of ids find the blocks
    whose ids are read and compared with the index. An id watermark instead could
    skip a song whose transaction took its id early and committed late, which
    PostgreSQL's sequences allow.
    """
    indexed = index.ids()
    if session.scalar(select(func.count()).select_from(Song)) == len(indexed):
        return 0
    block = Song.id // id_block
    stored_per_block = session.execute(select(block, func.count()).group_by(block)).all()
    indexed_blocks, indexed_counts = np.unique(indexed // id_block, return_counts=True)
    indexed_per_block = dict(zip(indexed_blocks.tolist(), indexed_counts.tolist(), strict=True))
    added = 0
    for b, count in stored_per_block:
        if count == indexed_per_block.get(int(b), 0):
            continue
        low, high = int(b) * id_block, (int(b) + 1) * id_block
        stored = session.scalars(select(Song.id).where(Song.id >= low, Song.id < high)).all()
        missing = index.missing(np.asarray(stored, dtype=np.int64))
        for start in range(0, len(missing), lookup_chunk):
            rows, features = read_index_rows(session, ids=missing[start : start + lookup_chunk])
            if len(rows):
                added += _add_finite(index, rows, embed(features))
    return added


def _add_finite(index: SongIndex, rows: SongRows, embeddings: np.ndarray) -> int:
    """Index the songs whose embedding is finite; skip the others with a warning.

    A NaN row would poison every search it is a candidate of (and the neighbourhood
    radii); features stored by another process or version can embed to one.
    """
    finite = np.isfinite(embeddings).all(axis=1)
    if not finite.all():
        skipped = rows.ids[~finite]
        NON_FINITE_SKIPPED.add(len(skipped))
        log.warning(
            "not indexing %d song(s) whose embedding is not finite: %s",
            len(skipped),
            skipped[:20].tolist(),
            extra={"song_ids": skipped[:100].tolist()},
        )
        rows = SongRows(*(column[finite] for column in rows.columns()))
        embeddings = embeddings[finite]
    return index.add(rows, embeddings) if len(rows) else 0


@dataclass
class RevisionsSeen:
    """What a follower knows of changed songs: their revisions as last re-read."""

    revisions: dict[int, int] = field(default_factory=dict)  # song id -> revision
    summary: tuple | None = None  # (catalogue version, count, sum) at the last full read


def refresh_revised_songs(
    session: Session,
    index: SongIndex,
    embed: Callable[[np.ndarray], np.ndarray],
    *,
    seen: RevisionsSeen,
    version: str,
    lookup_chunk: int = LOOKUP_CHUNK,
) -> np.ndarray:
    """Re-index the songs changed in place since `seen` (see the module's docstring);
    returns the ids re-read. Songs not indexed yet are left to
    `index_missing_songs`, which reads them as they are now."""
    revised = Song.revision > 0
    count, total = session.execute(
        select(func.count(), func.coalesce(func.sum(Song.revision), 0)).where(revised)
    ).one()
    summary = (version, int(count), int(total))
    if summary == seen.summary:
        return np.empty(0, dtype=np.int64)
    stored = {i: r for i, r in session.execute(select(Song.id, Song.revision).where(revised))}
    seen.revisions = {i: r for i, r in seen.revisions.items() if i in stored}
    changed = np.asarray(
        [i for i, r in stored.items() if seen.revisions.get(i) != r], dtype=np.int64
    )
    changed = changed[[int(i) in index for i in changed]] if len(changed) else changed
    reread: list[np.ndarray] = []
    for start in range(0, len(changed), lookup_chunk):
        rows, features = read_index_rows(session, ids=changed[start : start + lookup_chunk])
        embeddings = embed(features)
        # A PATCH refuses features whose embedding is not finite; SQL by hand may not:
        # such a song keeps its old entry rather than poison the index.
        usable = np.isfinite(embeddings).all(axis=1)
        if not usable.all():
            NON_FINITE_SKIPPED.add(int((~usable).sum()))
            log.warning("songs %s have features that cannot be embedded", rows.ids[~usable])
        index.replace(SongRows(*(c[usable] for c in rows.columns())), embeddings[usable])
        reread.append(rows.ids)
        seen.revisions.update((int(i), stored[int(i)]) for i in rows.ids)
    seen.summary = summary
    return np.concatenate(reread) if reread else np.empty(0, dtype=np.int64)
