"""Search that re-ranks a pool of L2 candidates by exact distances and a scoring.

Any backend (`SongIndex`) finds candidates by approximate or float32 L2; this
wrapper fetches `Scoring.pool_for(k)` of them (for l2, k plus a margin; just k from
FAISS's backend, which fetches its own margin and ranks it exactly), takes
their distances as sqrt(sum((a - b)^2)) in float64 of the stored vectors (so a song
is at distance exactly 0 from its own vector, and near-duplicates keep their order:
FAISS's backend answers with these already, others' are recomputed), scores them
with the scoring asked for (training.evaluation.scoring, the definitions evaluation
uses) and keeps the k best. The filters are the backend's, applied
while fetching the pool, so k songs come back whenever k pass.

Per song it keeps a row of neighbourhood statistics, computed from the index
itself: the radius (mean exact distance to its k nearest other songs), the
distance to the k-th of them, and the mean and deviation of its distances to a
fixed random sample of the catalogue (mutual proximity). When the service's
scoring is not l2 they are computed at build, before the service answers. An l2
service computes them in a background thread (`start_neighbourhoods`: at start-up,
or at the first search that asks for another scoring), never inside a request:
until the table is complete, a search with another scoring raises
`NeighbourhoodsNotReady` (a 503 with Retry-After), so no request waits for a pass
over the catalogue. Either way `on_computed` is handed the table (the cache
persists it with the embeddings). The build holds the write lock one chunk
(BUILD_BATCH songs) at a time, so adds and removals wait at most one chunk; after
the last chunk it redoes the rows of songs added meanwhile and of the songs whose
k nearest the adds and removals changed (`_affected_by`, as for later changes;
tests/app/index/test_scored.py compares the result with a full recomputation).
Once the table is complete, `_leaving` and `_entered` keep
them current when songs are added or removed: a new song gets its own row, and
every song whose k nearest it enters (or leaves) is recomputed, found among the
changed song's pool of nearest songs. Tolerance: a song that is not among a new
(or removed) song's `pool` nearest keeps its radius; tests/app/index/test_scored.py
measures that radii after adds and removals equal a full recomputation.

Each result carries a `similarity` in [0, 1]: the share of random catalogue song
pairs (drawn at build) whose score under the same scoring is worse than the
result's. It is monotone in the score, scale-free, and means the same for every
scoring: 0.99 is "closer than 99% of random pairs".

    >>> index = ScoredIndex.build(inner, scoring=Scoring("local-scaling"))
    >>> index.search(vector, k=10, scoring=Scoring("mutual-proximity"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

import numpy as np

from app.catalogue.rows import SongRows
from app.index.protocol import Neighbour, SongFilter, SongIndex
from training.evaluation.scoring import (
    Neighbourhoods,
    Scoring,
    exact_distances,
    gaussians,
    pair_scores,
    sample_rows,
    scores,
)

PAIRS = 10_000  # random catalogue pairs whose scores define `similarity`
NONE = np.empty(0, dtype=np.int64)  # no song ids (never written to)
# Reads of a search's candidates retried after a concurrent removal (each retry means
# another song was removed meanwhile; a handful is already far beyond what happens).
MAX_REREAD_ATTEMPTS = 8
BUILD_BATCH = 512  # songs per hold of the write lock: the most an add or removal waits for
# Retry-After of a search that needs the table: before the first chunk ends the pace is
# unknown; later, the time left at the pace so far, bounded so clients come back to look.
DEFAULT_RETRY_S = 5
MAX_RETRY_S = 60
# Columns of the per-song table (float64): what scorings and radius upkeep need.
RADIUS, KTH, MEAN, SD = range(4)
COLUMNS = 4
# Called with the songs (table row order) and their rows once the table is computed.
TableSink = Callable[[np.ndarray, np.ndarray], None]
log = logging.getLogger("musicsim.index")


@dataclasses.dataclass(frozen=True)
class NeighbourhoodProgress:
    """Where the per-song table stands (what /health and the 503s report).

    state: "ready" (complete and kept current), "building" (done of total songs
    computed), "failed" (the last build raised `error`; a search with another
    scoring starts it again) or "not-started".
    """

    state: Literal["ready", "building", "failed", "not-started"]
    done: int
    total: int
    error: str | None = None


class NeighbourhoodsNotReady(Exception):
    """A search asked for a scoring whose per-song table is not complete yet."""

    def __init__(self, scoring: str, progress: NeighbourhoodProgress, retry_after_s: int):
        self.scoring = scoring
        self.progress = progress
        self.retry_after_s = retry_after_s
        failed = ""
        if progress.error is not None:
            failed = f"the last computation failed ({progress.error}); started again, "
        super().__init__(
            f"{scoring} needs every song's neighbourhood: {failed}{progress.done:,} of "
            f"{progress.total:,} computed; retry after {retry_after_s} s"
        )


class _Stopped(Exception):
    """The index was closed while its neighbourhoods were being computed."""


@dataclasses.dataclass
class _ChangesDuringBuild:
    """Songs added or removed while the table is built (removed ones with their vectors,
    read before they leave the backend): their rows and the radii they move are redone."""

    added: set[int] = dataclasses.field(default_factory=set)
    removed_ids: list[np.ndarray] = dataclasses.field(default_factory=list)
    removed_vectors: list[np.ndarray] = dataclasses.field(default_factory=list)


class ScoredIndex:
    """A `SongIndex` whose searches re-rank a pool of L2 candidates; thread-safe as its backend."""

    # Its answers' distances are float64 L2 of the stored vectors, with no cancellation
    # (search_distinct screens copies by them).
    exact_distances = True

    def __init__(
        self,
        inner: SongIndex,
        *,
        scoring: Scoring,
        ids: np.ndarray,
        table: np.ndarray | None = None,
        seed: int = 0,
        on_computed: TableSink | None = None,
    ):
        """table: the songs' neighbourhoods (rows in `ids` order), or None to compute them
        (`ensure_neighbourhoods`, `start_neighbourhoods`). on_computed(ids, table) is
        called once they are, with the songs in table row order (the cache persists it)."""
        self._inner = inner
        # FAISS's answers carry exact_distances already; Milvus's are float32 L2, read again.
        self._backend_exact = getattr(inner, "exact_distances", False) is True
        self.scoring = scoring
        self._seed = seed
        self._pos = {int(song_id): row for row, song_id in enumerate(ids)}
        self._ready = table is not None
        self._table = np.zeros((len(ids), COLUMNS)) if table is None else np.array(table, float)
        self._sample_ids = np.empty(0, dtype=np.int64)
        self._sample = np.empty((0, 0))
        if self._ready:
            self._draw_sample()
        self._write = threading.Lock()
        # Adds and removals waiting for _write: the build lets them go before its next
        # chunk (a Lock is not fair: its releasing thread would usually take it again).
        self._turn = threading.Condition()
        self._writers_waiting = 0
        self._pairs = self._draw_pairs(np.asarray(ids, dtype=np.int64), seed)
        self._pair_scores: dict[str, np.ndarray] = {}
        self._on_computed = on_computed
        # The build: one at a time (_computing), in the caller's thread or _thread.
        self._computing = threading.Lock()
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._changes: _ChangesDuringBuild | None = None  # not None while a build runs
        self._done, self._total, self._started_at = 0, len(ids), 0.0
        self._failure: str | None = None

    @classmethod
    def build(
        cls,
        inner: SongIndex,
        *,
        scoring: Scoring,
        saved: np.ndarray | None = None,
        seed: int = 0,
        eager: bool | None = None,
        on_computed: TableSink | None = None,
    ) -> ScoredIndex:
        """Neighbourhoods of every indexed song (or `saved` ones computed for these songs).

        eager: compute them now; by default only when `scoring` needs them (not l2).
        Otherwise `start_neighbourhoods` computes them in the background: an l2 service
        starts without a pass over the whole index (slow over Milvus).
        """
        ids = inner.ids()
        usable = saved is not None and saved.shape == (len(ids), COLUMNS)
        index = cls(
            inner,
            scoring=scoring,
            ids=ids,
            table=saved if usable else None,
            seed=seed,
            on_computed=on_computed,
        )
        if eager if eager is not None else scoring.name != "l2":
            index.ensure_neighbourhoods()
        return index

    @property
    def has_neighbourhoods(self) -> bool:
        """Whether the per-song table is computed (and kept current from then on)."""
        return self._ready

    def ensure_neighbourhoods(self) -> None:
        """Compute every indexed song's neighbourhood row in this thread, unless done
        already (a background build under way is waited for, and redone if it failed)."""
        if self._ready:
            return
        with self._computing:
            if not self._ready:
                self._compute_neighbourhoods()

    def start_neighbourhoods(self, *, after_chunk: Callable[[int], None] | None = None) -> None:
        """Compute the neighbourhoods in a background thread, unless done or under way.

        after_chunk(songs done) runs in that thread after each chunk, outside the write
        lock: where adds and removals may land (tests pause the build there).
        """
        with self._starting:
            if self._ready or (self._thread is not None and self._thread.is_alive()):
                return
            self._done, self._total = 0, len(self._pos)
            self._started_at = time.monotonic()
            self._thread = threading.Thread(
                target=self._compute_in_background,
                args=(after_chunk,),
                name="neighbourhoods",
                daemon=True,
            )
            self._thread.start()

    def wait_for_neighbourhoods(self, timeout_s: float | None = None) -> bool:
        """Wait for a background build to end (at most timeout_s); whether the table is ready."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        return self._ready

    def neighbourhood_progress(self) -> NeighbourhoodProgress:
        if self._ready:
            return NeighbourhoodProgress("ready", len(self._pos), len(self._pos))
        if self._thread is not None and self._thread.is_alive():
            return NeighbourhoodProgress("building", self._done, self._total, self._failure)
        if self._failure is not None:
            return NeighbourhoodProgress("failed", self._done, self._total, self._failure)
        return NeighbourhoodProgress("not-started", 0, len(self._pos))

    def _retry_after_s(self) -> int:
        """Seconds until the build is likely done, at the pace it has kept so far."""
        if self._done == 0:
            return DEFAULT_RETRY_S
        elapsed = time.monotonic() - self._started_at
        left = elapsed * (self._total - self._done) / self._done
        return int(min(max(math.ceil(left), 1), MAX_RETRY_S))

    def _compute_in_background(self, after_chunk: Callable[[int], None] | None) -> None:
        try:
            with self._computing:
                if not self._ready:
                    self._compute_neighbourhoods(after_chunk)
        except _Stopped:
            return
        except Exception as exc:  # reported by /health and the 503s; a later search restarts it
            log.exception("computing the scorings' neighbourhoods failed")
            self._failure = f"{type(exc).__name__}: {exc}"

    def _compute_neighbourhoods(self, after_chunk: Callable[[int], None] | None = None) -> None:
        """Every song's row, holding the write lock one chunk at a time: adds and removals
        wait at most one chunk, and what they change meanwhile is redone after the last."""
        with self._write:
            ids = np.fromiter(self._pos, dtype=np.int64, count=len(self._pos))
            self._draw_sample()
            changes = self._changes = _ChangesDuringBuild()
            self._done, self._total = 0, len(ids)
        started = time.monotonic()
        try:
            for start in range(0, len(ids), BUILD_BATCH):
                if self._stop.is_set():
                    raise _Stopped
                with self._turn:
                    self._turn.wait_for(lambda: self._writers_waiting == 0)
                with self._write:
                    self._fill_rows(ids[start : start + BUILD_BATCH])  # skips songs removed
                    self._done = min(start + BUILD_BATCH, len(ids))
                if after_chunk is not None:
                    after_chunk(self._done)
            with self._write:
                self._redo_changes(changes)
                self._pair_scores.clear()
                self._ready, self._changes, self._failure = True, None, None
                ordered, table = self._table_in_row_order()
        finally:
            self._changes = None  # failed or stopped: the next build starts afresh
        log.info(
            "computed the neighbourhoods of %d songs in %.1f s", len(ordered),
            time.monotonic() - started,
        )  # fmt: skip
        if self._on_computed is not None:
            try:
                self._on_computed(ordered, table)
            except Exception:  # persisting is an optimisation: the table serves regardless
                log.exception("the computed neighbourhoods could not be handed on")

    def _redo_changes(self, changes: _ChangesDuringBuild) -> None:
        """Rows of songs added during the build, and of songs whose k nearest the adds
        and removals changed (their rows may predate the change)."""
        added = np.array(sorted(i for i in changes.added if i in self._pos), dtype=np.int64)
        redo = [added]
        if len(added):
            redo.append(self._affected_by(self._inner.embeddings_of(added), added, added=True))
        if changes.removed_ids:
            removed = np.concatenate(changes.removed_ids)
            vectors = np.concatenate(changes.removed_vectors)
            redo.append(self._affected_by(vectors, removed, added=False))
        self._recompute(np.unique(np.concatenate(redo)))

    def _table_in_row_order(self) -> tuple[np.ndarray, np.ndarray]:
        """The indexed songs in table row order and a copy of their rows."""
        ids = np.array(sorted(self._pos, key=self._pos.__getitem__), dtype=np.int64)
        return ids, self._table[[self._pos[int(i)] for i in ids]].copy()

    def _draw_sample(self) -> None:
        """The mutual-proximity sample: fixed songs of the catalogue as it is now."""
        ids = np.fromiter(self._pos, dtype=np.int64, count=len(self._pos))
        self._sample_ids = ids[sample_rows(len(ids), scoring=self.scoring, seed=self._seed)]
        self._sample = self._inner.embeddings_of(self._sample_ids).astype(np.float64)

    @property
    def table(self) -> np.ndarray:
        """The per-song statistics in build order (what the cache persists), computed if need be."""
        self.ensure_neighbourhoods()
        return self._table

    # --- the SongIndex protocol, delegated -------------------------------------------

    @property
    def backend(self) -> SongIndex:
        return self._inner

    @property
    def faiss_index(self):
        """The FAISS backend's index (what the cache persists); AttributeError on Milvus."""
        return self._inner.faiss_index

    @property
    def kind(self) -> str:
        return self._inner.kind

    def __len__(self) -> int:
        return len(self._inner)

    def __contains__(self, song_id: int) -> bool:
        return song_id in self._inner

    def ids(self) -> np.ndarray:
        return self._inner.ids()

    def missing(self, song_ids: np.ndarray) -> np.ndarray:
        return self._inner.missing(song_ids)

    def embedding_of(self, song_id: int) -> np.ndarray:
        return self._inner.embedding_of(song_id)

    def embeddings_of(self, song_ids: np.ndarray) -> np.ndarray:
        return self._inner.embeddings_of(song_ids)

    def close(self) -> None:
        self._stop.set()  # a background build stops after its chunk
        if self._thread is not None:
            self._thread.join()
        self._inner.close()

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The write lock for an add or removal, taken ahead of the build's next chunk."""
        with self._turn:
            self._writers_waiting += 1
        try:
            self._write.acquire()
        finally:
            with self._turn:
                self._writers_waiting -= 1
                self._turn.notify_all()
        try:
            yield
        finally:
            self._write.release()

    def add(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Index new songs, then refresh the radii they change."""
        with self._writing():
            new = np.array([int(i) not in self._pos for i in rows.ids], dtype=bool)
            new_ids = np.asarray(rows.ids, dtype=np.int64)[new]
            # Placeholder rows first: a search may see a new song as soon as the backend has it.
            self._extend(new_ids, np.zeros((len(new_ids), COLUMNS)))
            added = self._inner.add(rows, embeddings)
            self._entered(new_ids, np.asarray(embeddings, dtype=np.float32)[new])
            return added

    def remove(self, song_ids: np.ndarray) -> int:
        """Remove songs from the backend (its `remove`), then refresh the radii they held."""
        with self._writing():
            present = np.array([i for i in map(int, song_ids) if i in self._pos], dtype=np.int64)
            affected = self._leaving(present)
            removed = self._inner.remove(song_ids)
            for song_id in present:
                self._pos.pop(int(song_id), None)
            self._recompute(np.setdiff1d(affected, present))
            return removed

    def replace(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Swap songs' entries in the backend in one step (its `replace`), then refresh
        the radii their old and new places move. A replaced song keeps its table row
        (its old radius) until the refresh."""
        with self._writing():
            ids = np.asarray(rows.ids, dtype=np.int64)
            known = np.array([int(i) in self._pos for i in ids], dtype=bool)
            affected = self._leaving(ids[known])
            self._extend(ids[~known], np.zeros((int((~known).sum()), COLUMNS)))
            replaced = self._inner.replace(rows, embeddings)
            self._entered(ids, np.asarray(embeddings, dtype=np.float32), also=affected)
            return replaced

    def _leaving(self, present: np.ndarray) -> np.ndarray:
        """Before indexed songs leave their place: the songs whose radius they hold (to
        recompute after), or, during a build, a note for its end. Under the write lock."""
        if len(present) and self._changes is not None:
            self._changes.removed_ids.append(present)
            self._changes.removed_vectors.append(self._inner.embeddings_of(present))
        elif len(present) and self._ready:
            return self._affected_by(self._inner.embeddings_of(present), present, added=False)
        return NONE

    def _entered(self, ids: np.ndarray, vectors: np.ndarray, *, also: np.ndarray = NONE) -> None:
        """After songs take their (new) place: recompute their rows, those of the songs
        whose k nearest they enter, and `also`; during a build, a note for its end.
        Under the write lock."""
        if self._changes is not None:  # the build redoes them at its end
            self._changes.added.update(map(int, ids))
        elif len(ids) and self._ready:
            entering = self._affected_by(vectors, ids, added=True)
            self._recompute(np.union1d(ids, np.union1d(entering, also)))

    # --- search ------------------------------------------------------------------------

    def search(
        self,
        vectors: np.ndarray,
        *,
        k: int,
        where: SongFilter | None = None,
        exclude_song: int | None = None,
        scoring: Scoring | str | None = None,
    ) -> list[list[Neighbour]]:
        """The k best-scored songs for each query vector, among its pool of L2 candidates."""
        scoring = self.resolve(scoring)
        if scoring.name != "l2" and not self._ready:
            self.start_neighbourhoods()  # never computed here: a request's time is bounded
            raise NeighbourhoodsNotReady(
                scoring.name, self.neighbourhood_progress(), self._retry_after_s()
            )
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        # An exact backend's k nearest are already the exact l2 ranking: no margin to fetch.
        pool = k if scoring.name == "l2" and self._backend_exact else scoring.pool_for(k)
        found = self._inner.search(queries, k=pool, where=where, exclude_song=exclude_song)
        from_pool = (where is None or where.is_empty()) and exclude_song is None
        query_stats = self._query_stats(queries, exclude_song, scoring, from_pool=from_pool)
        return [
            self._rerank(queries[q], candidates, k, scoring, query_stats, q)
            for q, candidates in enumerate(found)
        ]

    def resolve(self, scoring: Scoring | str | None) -> Scoring:
        """A scoring by name takes this index's k, pool and sample (its radii are for that k)."""
        if scoring is None:
            return self.scoring
        name = scoring if isinstance(scoring, str) else scoring.name
        return dataclasses.replace(self.scoring, name=name)

    def _rerank(
        self,
        query: np.ndarray,
        candidates: list[Neighbour],
        k: int,
        scoring: Scoring,
        query_stats: Neighbourhoods | None,
        q: int,
    ) -> list[Neighbour]:
        ids, distances, songs = self._candidate_rows(query, candidates, stats=scoring.name != "l2")
        if len(ids) == 0:
            return []
        mine = None if query_stats is None else query_stats.take(np.array([q]))
        if mine is not None and np.isnan(mine.radius[0]):
            nearest = np.sort(distances[0])[: self.scoring.k]
            mine = Neighbourhoods(np.array([nearest.mean()]), mine.mean, mine.sd)
        score = scores(distances, scoring=scoring, queries=mine, songs=songs)[0]
        best = np.lexsort((ids, distances[0], score))[:k]  # ties: nearer, then lower id
        similarity = self._similarity(score[best], scoring)
        return [
            Neighbour(int(ids[j]), float(distances[0, j]), float(s))
            for j, s in zip(best, similarity, strict=True)
        ]

    def _candidate_rows(
        self, query: np.ndarray, candidates: list[Neighbour], *, stats: bool
    ) -> tuple[np.ndarray, np.ndarray, Neighbourhoods | None]:
        """The candidates still indexed, their exact distances to the query ((1, n)) and
        neighbourhood rows. A song removed by another thread between the filter and the
        reads (the follower, a DELETE) raises KeyError there: filter again, so the search
        never fails for it."""
        for _ in range(MAX_REREAD_ATTEMPTS - 1):
            try:
                return self._read_candidates(query, candidates, stats=stats)
            except KeyError:
                continue
        return self._read_candidates(query, candidates, stats=stats)

    def _read_candidates(
        self, query: np.ndarray, candidates: list[Neighbour], *, stats: bool
    ) -> tuple[np.ndarray, np.ndarray, Neighbourhoods | None]:
        """stats: also the candidates' neighbourhood rows (l2 reads none). A backend whose
        distances are `exact_distances` already (FAISS's) is not read again."""
        kept = [c for c in candidates if c.song_id in self._pos]
        ids = np.array([c.song_id for c in kept], dtype=np.int64)
        if self._backend_exact:
            distances = np.array([[c.distance for c in kept]], dtype=np.float64)
        else:
            distances = exact_distances(query[None, :], self._inner.embeddings_of(ids))
        return ids, distances, self._stats_of(ids) if stats else None

    def _query_stats(
        self, queries: np.ndarray, exclude_song: int | None, scoring: Scoring, *, from_pool: bool
    ) -> Neighbourhoods | None:
        if scoring.name == "l2":
            return None
        if exclude_song is not None and exclude_song in self._pos and len(queries) == 1:
            return self._stats_of(np.array([exclude_song]))  # a stored song: its own row
        # A cold-start query: its radius from its own nearest catalogue songs. An
        # unfiltered pool holds them already (nearest first); a filtered one may not.
        rows = self._neighbourhood_rows(
            queries, own_ids=None, radii=not (from_pool or scoring.name == "mutual-proximity")
        )
        if from_pool and scoring.name == "local-scaling":
            rows[:, RADIUS] = np.nan  # filled by _rerank from the pool's exact distances
        return Neighbourhoods(rows[:, RADIUS], rows[:, MEAN], rows[:, SD])

    def _stats_of(self, ids: np.ndarray) -> Neighbourhoods:
        rows = self._table[[self._pos[int(i)] for i in ids]]
        return Neighbourhoods(rows[:, RADIUS], rows[:, MEAN], rows[:, SD])

    # --- similarity ----------------------------------------------------------------

    def _draw_pairs(self, ids: np.ndarray, seed: int) -> np.ndarray:
        if len(ids) < 2:
            return np.empty((0, 2), dtype=np.int64)
        rng = np.random.default_rng(seed + 1)
        first = rng.integers(0, len(ids), size=PAIRS)
        second = (first + rng.integers(1, len(ids), size=PAIRS)) % len(ids)  # never the same
        return np.stack([ids[first], ids[second]], axis=1)

    def similarity_of(self, distances: np.ndarray) -> np.ndarray:
        """`similarity` of plain L2 distances (what playlists report): the l2 scoring's."""
        return self._similarity(np.asarray(distances, dtype=np.float64), Scoring())

    def _similarity(self, values: np.ndarray, scoring: Scoring) -> np.ndarray:
        sorted_scores = self._pair_scores.get(scoring.name)
        if sorted_scores is None:
            sorted_scores = self._pair_scores[scoring.name] = self._score_pairs(scoring)
        if len(sorted_scores) == 0:
            return np.ones(len(values))
        worse = len(sorted_scores) - np.searchsorted(sorted_scores, values, side="right")
        return worse / len(sorted_scores)

    def _score_pairs(self, scoring: Scoring) -> np.ndarray:
        pairs = self._pairs[np.isin(self._pairs, list(self._pos)).all(axis=1)]
        if len(pairs) == 0:
            return np.empty(0)
        a = self._inner.embeddings_of(pairs[:, 0]).astype(np.float64)
        b = self._inner.embeddings_of(pairs[:, 1]).astype(np.float64)
        d = np.sqrt(((a - b) ** 2).sum(axis=1))
        first, second = self._stats_of(pairs[:, 0]), self._stats_of(pairs[:, 1])
        return np.sort(pair_scores(d, scoring=scoring, first=first, second=second))

    # --- neighbourhoods and their upkeep ---------------------------------------------

    def _neighbourhood_rows(
        self, vectors: np.ndarray, *, own_ids: np.ndarray | None, radii: bool = True
    ) -> np.ndarray:
        """(n, 4) radius, k-th distance, mean and sd for these vectors, from the index.

        own_ids: the songs these vectors are (left out of their own neighbours and
        sample), or None for cold-start queries that are not in the catalogue.
        radii: False skips the neighbour search (radius and k-th left at 0).
        """
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        out = np.zeros((len(vectors), COLUMNS))
        k = self.scoring.k
        n_search = (k + 1 if own_ids is not None else k) if radii else 0
        found = self._inner.search(vectors, k=n_search) if n_search else [[]] * len(vectors)
        for row, neighbours in enumerate(found):
            ids = [n.song_id for n in neighbours]
            if own_ids is not None:
                own = int(own_ids[row])
                ids = [i for i in ids if i != own][:k]
            if not ids:
                continue
            near = self._inner.embeddings_of(np.asarray(ids, dtype=np.int64))
            d = np.sort(exact_distances(vectors[row : row + 1], near)[0])
            out[row, RADIUS], out[row, KTH] = d.mean(), d[-1]
        if len(self._sample):
            to_sample = distances_blockwise(vectors, self._sample)
            is_own = None
            if own_ids is not None:
                is_own = np.asarray(own_ids)[:, None] == self._sample_ids[None, :]
            out[:, MEAN], out[:, SD] = gaussians(to_sample, own=is_own)
        return out

    def _extend(self, ids: np.ndarray, rows: np.ndarray) -> None:
        start = len(self._table)
        self._table = np.concatenate([self._table, rows])
        self._pos.update((int(i), start + n) for n, i in enumerate(ids))

    def _affected_by(self, vectors: np.ndarray, changed: np.ndarray, *, added: bool) -> np.ndarray:
        """Songs among the changed songs' pool whose k nearest the changed songs enter or leave."""
        found = self._inner.search(vectors, k=self.scoring.pool)
        affected: set[int] = set()
        changed_set = {int(i) for i in changed}
        for row, neighbours in enumerate(found):
            ids = np.array([n.song_id for n in neighbours if n.song_id not in changed_set])
            if len(ids) == 0:
                continue
            d = exact_distances(vectors[row : row + 1], self._inner.embeddings_of(ids))[0]
            kth = self._table[[self._pos[int(i)] for i in ids], KTH]
            # Entering: strictly nearer than the k-th. Leaving: it was one of the k.
            moved = d < kth if added else d <= kth
            affected.update(int(i) for i in ids[moved])
        return np.array(sorted(affected), dtype=np.int64)

    def _recompute(self, song_ids: np.ndarray) -> None:
        if self._fill_rows(song_ids):
            self._pair_scores.clear()  # radii moved: pair scores are recomputed on next use

    def _fill_rows(self, song_ids: np.ndarray) -> int:
        """Compute the rows of those songs still indexed; how many there were."""
        song_ids = np.asarray([i for i in song_ids if int(i) in self._pos], dtype=np.int64)
        if len(song_ids):
            rows = self._neighbourhood_rows(self._inner.embeddings_of(song_ids), own_ids=song_ids)
            self._table[[self._pos[int(i)] for i in song_ids]] = rows
        return len(song_ids)


def distances_blockwise(queries: np.ndarray, songs: np.ndarray) -> np.ndarray:
    """L2 distances in float64 via |q|^2 + |s|^2 - 2 q.s, a block of queries at a time.

    For the sample's Gaussians only, where float64 cancellation (~1e-12) is far
    below what a mean and a deviation resolve; rankings use exact_distances.
    """
    songs = np.asarray(songs, dtype=np.float64)
    norms = (songs * songs).sum(1)
    out = np.empty((len(queries), len(songs)))
    for start in range(0, len(queries), 1024):
        q = np.asarray(queries[start : start + 1024], dtype=np.float64)
        sq = (q * q).sum(1)[:, None] + norms[None, :] - 2.0 * (q @ songs.T)
        out[start : start + len(q)] = np.sqrt(np.maximum(sq, 0.0))
    return out
