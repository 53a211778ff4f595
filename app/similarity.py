"""What the routes share beyond one handler: storing a song and indexing it in one step,
and searching so that no answer holds two copies of one recording.

>>> song_id = add_and_index(session, index, bundle.embed, NewSong(...), cards=cards)
>>> found = search_distinct(index, vectors, keys_of=cards.recording_keys, k=10)
>>> delete_and_unindex(session, index, [song_id], cards=cards)
>>> update_and_reindex(session, index, bundle.embed, song_id, {"title": "..."}, cards=cards)

`cards` (app/cards.py: what answers show of each song, in memory) is refreshed
after the commit, so this process answers with the change at once.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import numpy as np
from sqlalchemy.orm import Session

from app.cards import SongCards
from app.catalogue import CatalogueError
from app.catalogue.reads import read_index_rows
from app.catalogue.recordings import first_distinct
from app.catalogue.rows import SongRows
from app.catalogue.writes import NewSong, add_song, delete_songs, update_song
from app.config import MILVUS_MAX_NEIGHBOURS
from app.index.protocol import Neighbour, SongFilter, SongIndex
from app.orm import Song

log = logging.getLogger("musicsim.catalogue")
# Song ids -> their recording keys (app.catalogue.recordings); unknown ids are absent.
KeysOf = Callable[[list[int]], Mapping[int, str | None]]


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
    index.replace(rows, embedding)  # one step: a search meanwhile still finds the song
    return song


# Candidates asked for beyond k (at least), so that dropping copies of one recording
# still leaves k; where too few remain, the pool grows fourfold, up to MAX_ROUNDS times.
EXTRA_CANDIDATES = 8
MAX_ROUNDS = 3
MAX_POOL = MILVUS_MAX_NEIGHBOURS  # the largest pool every backend answers


def search_distinct(
    index,
    vectors: np.ndarray,
    *,
    keys_of: KeysOf,
    k: int,
    where: SongFilter | None = None,
    exclude_song: int | None = None,
    scoring=None,
) -> list[list[Neighbour]]:
    """The k best songs for each query vector (as `index.search`), no two of them copies of
    one recording (app.catalogue.recordings), nor copies of the stored song `exclude_song`.

    k results come back whenever the index holds k distinct recordings that pass the
    filter: a query short of k after dropping copies searches again with a larger pool.
    keys_of(ids) gives songs' recording keys: `SongCards.recording_keys` (in memory) or
    `read_recording_keys` bound to a session.
    """
    queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    taken_keys: list[str | None] = []
    taken_vectors = None
    if exclude_song is not None:
        taken_keys = [keys_of([exclude_song]).get(exclude_song)]
        taken_vectors = index.embeddings_of(np.array([exclude_song], dtype=np.int64))
    results: list[list[Neighbour] | None] = [None] * len(queries)
    pending = np.arange(len(queries))
    size = k + max(EXTRA_CANDIDATES, k // 4)
    # No len(index): over Milvus it is a count(*) query. A pool larger than the index is
    # answered with every song that passes, fewer than asked: that is exhaustion.
    for round_ in range(MAX_ROUNDS + 1):
        size = max(min(size, MAX_POOL), k)
        found = index.search(
            queries[pending], k=size, where=where, exclude_song=exclude_song, scoring=scoring
        )
        kept_lists = _distinct(
            keys_of, index, queries[pending], found, k, taken_keys, taken_vectors
        )
        short = []
        for q, candidates, kept in zip(pending, found, kept_lists, strict=True):
            results[q] = kept
            exhausted = len(candidates) < size or size >= MAX_POOL
            if len(kept) < k and not exhausted:
                short.append(q)
        if not short or round_ == MAX_ROUNDS:
            break
        pending, size = np.asarray(short), size * 4
    return [r or [] for r in results]


def _distinct(
    keys_of: KeysOf, index, queries, found, k, taken_keys, taken_vectors
) -> list[list[Neighbour]]:
    """Each query's candidates cut to the first k distinct recordings: one read of the
    candidates' titles for all queries; vectors only of the candidates whose distances to
    the query leave a copy possible (`first_distinct`'s screen; usually none)."""
    found = [[n for n in candidates if n.song_id in index] for candidates in found]  # deleted?
    song_ids = [np.array([n.song_id for n in c], dtype=np.int64) for c in found]
    if not sum(len(s) for s in song_ids):
        return [[] for _ in found]
    # One query (the usual request) needs no de-duplication of its ids across queries.
    wanted = song_ids[0] if len(song_ids) == 1 else np.unique(np.concatenate(song_ids))
    keys = keys_of(wanted.tolist())
    screened = getattr(index, "exact_distances", False)  # float32 distances: compare all
    taken_distances = None
    if screened and taken_vectors is not None:  # the query song's: 0 for its stored vector
        taken_distances = np.linalg.norm(queries[:, None, :] - taken_vectors, axis=2)

    def reader(ids: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        return lambda rows: index.embeddings_of(ids[rows])

    kept = []
    for q, (candidates, ids) in enumerate(zip(found, song_ids, strict=True)):
        chosen = first_distinct(
            keys=[keys.get(int(i)) for i in ids],
            vectors=reader(ids),
            k=k,
            taken_keys=taken_keys,
            taken_vectors=taken_vectors,
            distances=[n.distance for n in candidates] if screened else None,
            taken_distances=None if taken_distances is None else taken_distances[q],
        )
        kept.append([candidates[c] for c in chosen])
    return kept
