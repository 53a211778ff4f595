"""The FAISS index of song embeddings, with the song attributes its filters need.

The wrapper owns the row <-> song-id mapping, trims FAISS's -1 padding, and
applies filters (other artists only, genre, near a place) as a selector inside
the search, so a filtered query still returns k songs whenever k songs match.

    >>> index = FaissSongIndex(dim=518)
    >>> index.add(SongRows(ids, artist_ids, genres, latitudes, longitudes), embeddings)
    >>> index.search(vectors, k=10, where=SongFilter(genre="Rock"))
    >>> index.remove(np.array([song_id]))   # deleted songs are never returned again

Removal marks rows dead, for every kind alike, and every search passes FAISS a
selector that skips dead rows: HNSW cannot delete from its graph, and FAISS's
`remove_ids` on flat or IVF kinds renumbers rows, which the row <-> id mapping
and the persisted vectors rely on. Dead rows keep their memory until the next
start-up, which rebuilds from the database (the catalogue version, part of the
persisted cache's key, changes with every deletion). An update is a removal and
an add under the same id.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import faiss
import numpy as np

from app.catalogue.rows import SongRows
from app.index.bounds import BOUND_DIMS
from app.index.coalesce import Coalescer
from app.index.exact import ExactScan, FileRows, VectorStore
from app.index.kinds import (
    IndexSpec,
    add_vectors,
    build_faiss_index,
    candidates_for,
    effective_kind,
    kind_of,
    prepare,
    search_parameters,
)
from app.index.protocol import Neighbour, SongFilter, haversine_km
from training.evaluation.scoring import exact_distances, l2_margin


class ReadWriteLock:
    """Many readers at once, or one writer; a waiting writer holds off new readers."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and self._readers == 0)
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


def _neighbours(
    ids: np.ndarray, rows: np.ndarray, distances: np.ndarray, k: int, dropped: int
) -> list[Neighbour]:
    """One query's first k found rows as Neighbours, converted as arrays, not row by row:
    -1 pads when fewer than k songs pass; `dropped` is the excluded song's row."""
    found = (rows >= 0) & (rows != dropped)
    song_ids = ids[rows[found][:k]].tolist()
    return [Neighbour(i, d) for i, d in zip(song_ids, distances[found][:k].tolist(), strict=True)]


def _scan_depth(k: int) -> int:
    """Rows an exact scan returns for k answers: its float32 ranking can swap near-ties
    across the k-th place, so it offers a margin, ranked again exactly (`_ranked_exactly`)."""
    return k + l2_margin(k)


def _widened(rows: np.ndarray, width: int) -> np.ndarray:
    """rows padded with -1 columns to at least `width`."""
    if rows.shape[1] >= width:
        return rows
    return np.pad(rows, ((0, 0), (0, width - rows.shape[1])), constant_values=-1)


def search_alone_on_this_thread() -> None:
    """FAISS work started from the calling thread runs on that thread alone.

    For the event loop, where the approximate kinds answer single queries: one query
    gains nothing from FAISS's OpenMP team, and the team's barrier then waits for a
    core that other requests (or torch's own team) hold. With the team, POST
    /songs/similar (an embedding, then a search) ran at less than half its speed on two
    cores (BENCHMARKS.md, "Serving speed"). OpenMP's thread count is per thread: index
    builds and the background neighbourhood build, on other threads, keep every core.
    """
    faiss.omp_set_num_threads(1)


class FaissSongIndex:
    """L2 search over song embeddings, exact (`flat`) or approximate; thread-safe.

    Searches share a read lock; adds take the write lock, because FAISS may
    reallocate its storage while adding and a search must never overlap that.
    With an approximate kind, a filter that passes few songs (`exact_below`) is
    searched exactly over those songs, and a query that the approximate search
    answers with fewer than k songs while k pass is answered exactly too: filters
    never cost results.

    The exact searches (the `flat` kind, and those fallbacks) are `ExactScan`s over
    the stored vectors, not a FAISS flat index: one BLAS pass instead of FAISS's
    single-threaded scan of a lone query, and no second copy of the vectors. With
    `spec.coalesce_wait_ms` > 0, concurrent single flat queries run as one batch.
    """

    # Its answers' distances are `exact_distances` of the stored vectors (ScoredIndex and
    # search_distinct rely on it), whatever the kind found its candidates with.
    exact_distances = True

    def __init__(self, dim: int, spec: IndexSpec | None = None, *, exact_chunk: int | None = None):
        self.dim = dim
        self.spec = spec or IndexSpec()
        self._exact_chunk = exact_chunk
        self._faiss: faiss.Index | None = None
        self._vectors = VectorStore(np.empty((0, dim), np.float32))
        self._rows = SongRows.empty()
        self._row_of: dict[int, int] = {}
        self._dead = np.zeros(0, dtype=bool)  # rows of removed songs
        self._lock = ReadWriteLock()
        self._use(None, self._vectors)
        self._coalescer: Coalescer | None = None
        if self.spec.coalesce_wait_ms > 0:
            self._coalescer = Coalescer(self._run_batch, wait_s=self.spec.coalesce_wait_ms / 1000)

    def _use(self, faiss_index: faiss.Index | None, vectors: VectorStore) -> None:
        """Search `vectors` through faiss_index, or built for the spec (None for flat)."""
        n = len(vectors)
        if faiss_index is None and effective_kind(self.spec, n) != "flat":
            faiss_index = build_faiss_index(self.spec, FileRows(vectors))
        self._faiss = faiss_index
        self._unfiltered_params: dict[int, faiss.SearchParameters | None] = {}
        self._vectors = vectors
        # Only the flat kind scans a smaller copy; the others' exact fallbacks are rare.
        store = self.spec.store if self._faiss is None else "float32"
        self._exact = ExactScan(
            vectors,
            store=store,
            refine=self.spec.store_refine,
            chunk=self._exact_chunk,
            bound_dims=BOUND_DIMS if self._faiss is None else None,
        )
        if self._faiss is not None and kind_of(self._faiss) == "ivfpq":
            # IVF-PQ keeps codes, not vectors: the rows it re-ranks are read from the file,
            # so that the mapping's pages (2 GB at a million songs, made resident by
            # random reads) stay out of this process. HNSW and IVF hold their own float32
            # copy in memory anyway, and read rows through the mapping, faster.
            vectors.read_through_file = True

    @classmethod
    def from_embeddings(
        cls,
        rows: SongRows,
        embeddings: np.ndarray,
        spec: IndexSpec | None = None,
        *,
        faiss_index: faiss.Index | None = None,
        exact_chunk: int | None = None,
    ) -> FaissSongIndex:
        """An index over a whole catalogue at once, so that IVF kinds train on all of it.

        `embeddings` may be memory-mapped; `faiss_index` is a persisted index built
        from exactly these embeddings (see `app.index.cache`).
        """
        if embeddings.shape[0] != len(rows) or len(np.unique(rows.ids)) != len(rows):
            raise ValueError("need one embedding per row and unique song ids")
        index = cls(embeddings.shape[1], spec, exact_chunk=exact_chunk)
        index._use(faiss_index, VectorStore(embeddings))
        index._rows = rows
        index._row_of = {int(song_id): row for row, song_id in enumerate(rows.ids)}
        index._dead = np.zeros(len(rows), dtype=bool)
        return index

    @property
    def kind(self) -> str:
        """The kind actually built (an IVF kind falls back when there was too little data)."""
        return "flat" if self._faiss is None else kind_of(self._faiss)

    @property
    def faiss_index(self) -> faiss.Index | None:
        """The approximate index (what the cache persists); None for flat, which has none."""
        return self._faiss

    @property
    def exact_scan(self) -> ExactScan:
        return self._exact

    @property
    def coalescer(self) -> Coalescer | None:
        return self._coalescer

    def close(self) -> None:
        """Nothing to release: the index lives in this process."""

    def __len__(self) -> int:
        return len(self._row_of)

    def __contains__(self, song_id: int) -> bool:
        return song_id in self._row_of

    def add(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Append songs not yet indexed (ids already present are skipped); returns how many.

        Skipping makes adding idempotent: the request that stored a song and the
        follower that tails the database may both offer it.
        """
        vectors = self._checked(rows, embeddings)
        with self._lock.writing():
            return self._append(rows, vectors)

    def remove(self, song_ids: np.ndarray) -> int:
        """Stop returning these songs (absent ids are ignored); returns how many were indexed."""
        with self._lock.writing():
            return self._drop(song_ids)

    def replace(self, rows: SongRows, embeddings: np.ndarray) -> int:
        """Swap these songs' entries for new ones (or add them) under one write lock: a
        search finds each song as it was or as it is, never neither. Returns how many
        were indexed before."""
        vectors = self._checked(rows, embeddings)
        with self._lock.writing():
            replaced = self._drop(rows.ids)
            self._append(rows, vectors)
            return replaced

    def _checked(self, rows: SongRows, embeddings: np.ndarray) -> np.ndarray:
        vectors = np.ascontiguousarray(embeddings, dtype=np.float32)
        if vectors.shape != (len(rows), self.dim):
            raise ValueError(f"expected ({len(rows)}, {self.dim}) embeddings, got {vectors.shape}")
        if len(np.unique(rows.ids)) != len(rows):
            raise ValueError("song ids repeat within one add")
        return vectors

    def _append(self, rows: SongRows, vectors: np.ndarray) -> int:
        """Append the songs not indexed yet; under the write lock."""
        new = np.array([int(i) not in self._row_of for i in rows.ids], dtype=bool)
        if not new.any():
            return 0
        fresh = SongRows(*(column[new] for column in rows.columns()))
        start = len(self._rows)
        if self._faiss is not None:
            add_vectors(self._faiss, vectors[new])
        self._vectors.append(vectors[new])
        self._exact.appended()
        self._rows = self._rows.extend(fresh)
        self._dead = np.concatenate([self._dead, np.zeros(len(fresh), dtype=bool)])
        self._row_of.update((int(i), start + n) for n, i in enumerate(fresh.ids))
        return int(new.sum())

    def _drop(self, song_ids: np.ndarray) -> int:
        """Mark these songs' rows dead; under the write lock."""
        rows = [self._row_of.pop(int(i)) for i in song_ids if int(i) in self._row_of]
        self._dead[rows] = True
        return len(rows)

    def ids(self) -> np.ndarray:
        """A copy of the indexed song ids, in index order."""
        with self._lock.reading():
            return self._rows.ids[~self._dead]

    def missing(self, song_ids: np.ndarray) -> np.ndarray:
        """Those of song_ids that are not indexed, in their order."""
        ids = np.asarray(song_ids, dtype=np.int64)
        with self._lock.reading():
            return ids[[int(i) not in self._row_of for i in ids]]

    def embedding_of(self, song_id: int) -> np.ndarray:
        with self._lock.reading():
            return self._vectors.take(np.array([self._row_of[song_id]]))[0]

    def embeddings_of(self, song_ids: np.ndarray) -> np.ndarray:
        """(len(song_ids), dim) stored float32 embeddings; KeyError for one not indexed."""
        with self._lock.reading():
            rows = np.array([self._row_of[int(i)] for i in song_ids], dtype=np.int64)
            return self._vectors.take(rows)

    def search(
        self,
        vectors: np.ndarray,
        *,
        k: int,
        where: SongFilter | None = None,
        exclude_song: int | None = None,
    ) -> list[list[Neighbour]]:
        """The k nearest songs to each query vector (nearest first) that pass the filter."""
        queries = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        where = where or SongFilter()
        with self._lock.reading():
            dropped = self._row_dropped_after(where, exclude_song)
            if dropped >= 0:  # one more, then drop it: cheaper than a mask of every row
                allowed, wanted = None, k + 1
            else:
                allowed, wanted = self._allowed_rows(where, exclude_song), k
            if self._coalescer is not None and self._faiss is None and len(queries) == 1:
                candidates = self._search_lone(self._coalescer, queries[0], wanted, allowed)
            else:
                candidates = self._search_rows(queries, wanted, allowed)
            distances, rows = self._ranked_exactly(queries, candidates, wanted)
            ids = self._rows.ids
        return [
            _neighbours(ids, found, exact, k, dropped)
            for found, exact in zip(rows, distances, strict=True)
        ]

    def _row_dropped_after(self, where: SongFilter, exclude_song: int | None) -> int:
        """The excluded song's row when it is the only filter (no dead rows either), else -1."""
        if exclude_song is None or not where.is_empty() or len(self._row_of) < len(self._rows):
            return -1
        return self._row_of.get(exclude_song, -1)

    def _search_rows(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """Each query's candidate rows for its k nearest allowed rows, -1 padded: an exact
        scan's nearest (`_scan_depth`), or at least k from the approximate index."""
        n_allowed = len(self._row_of) if allowed is None else int(allowed.sum())
        if self._faiss is None or (allowed is not None and n_allowed <= self.spec.exact_below):
            return self._search_exactly(queries, k, allowed)
        rows = self._search_faiss(queries, k, allowed)
        short = (rows >= 0).sum(axis=1) < min(k, n_allowed)
        if short.any():  # the approximate search missed songs that pass: answer exactly
            exact = self._search_exactly(queries[short], k, allowed)
            rows = _widened(rows, exact.shape[1])
            rows[short] = _widened(exact, rows.shape[1])
        return rows

    def _search_faiss(self, queries: np.ndarray, k: int, allowed: np.ndarray | None) -> np.ndarray:
        """The approximate index's candidate rows: k, or more where `candidates_for` asks
        for extra to be re-ranked exactly (IVF-PQ, a graph over principal components)."""
        assert self._faiss is not None  # only the approximate kinds search FAISS
        selector, bits = None, None
        if allowed is not None:
            bits = np.packbits(allowed, bitorder="little")  # kept alive through the search
            selector = faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))
        n_candidates = candidates_for(self._faiss, k, self.spec)
        if selector is None:  # FAISS only reads them: one object per k serves every search
            params = self._unfiltered_params.get(n_candidates)
            if params is None:
                params = search_parameters(self.spec, self._faiss, n_candidates, None)
                self._unfiltered_params[n_candidates] = params
        else:
            params = search_parameters(self.spec, self._faiss, n_candidates, selector)
        _, rows = self._faiss.search(prepare(self._faiss, queries), n_candidates, params=params)
        del bits
        return rows

    def _ranked_exactly(
        self, queries: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows): each query's k nearest candidate rows by `exact_distances`
        (float64, no cancellation: what the scorings rank by, so a song's own vector is at
        exactly 0 and `ScoredIndex` need not read the vectors again), nearest first,
        inf / -1 padded. The scans' distances are |a|^2 + |b|^2 - 2ab in float32."""
        distances = np.full((len(queries), k), np.inf)
        rows = np.full((len(queries), k), -1, dtype=np.int64)
        for q, found in enumerate(candidates):
            found = found[found >= 0]
            exact = exact_distances(queries[q : q + 1], self._vectors.take(found))[0]
            best = np.argsort(exact, kind="stable")[:k]
            distances[q, : len(best)], rows[q, : len(best)] = exact[best], found[best]
        return distances, rows

    def _search_exactly(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> np.ndarray:
        """Rows of the nearest allowed rows (all when None) by a scan, enough of them
        (`_scan_depth`) for the exact k nearest among them, -1 padded."""
        depth = _scan_depth(k)
        return self._exact.search(queries, k=depth, allowed=[allowed] * len(queries))[1]

    def _search_lone(
        self, coalescer: Coalescer, query: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> np.ndarray:
        """A lone flat query's candidate rows: by its lower bounds, which read a few hundred
        rows, else by a scan of every row shared with the queries that arrive meanwhile."""
        depth = _scan_depth(k)
        found = self._exact.search_bounded(query, k=depth, allowed=allowed)
        if found is not None:
            return found[1]
        return coalescer.submit((query, depth, allowed))

    def _run_batch(
        self, items: Sequence[tuple[np.ndarray, int, np.ndarray | None]]
    ) -> list[np.ndarray]:
        """Coalesced single queries as one exact scan; each answer's rows cut to its own k.

        Every caller holds the read lock while its batch runs, so no add overlaps it.
        """
        k = max(item[1] for item in items)
        queries = np.stack([item[0] for item in items])
        allowed = [item[2] for item in items]
        _, rows = self._exact.search(queries, k=k, allowed=allowed, bounds=False)
        return [rows[q : q + 1, :kq] for q, (_, kq, _) in enumerate(items)]

    def _allowed_rows(self, where: SongFilter, exclude_song: int | None) -> np.ndarray | None:
        """Boolean mask of rows that may be returned, or None when all may."""
        any_dead = len(self._row_of) < len(self._rows)
        if where.is_empty() and exclude_song is None and not any_dead:
            return None
        rows = self._rows
        mask = ~self._dead
        if exclude_song is not None and exclude_song in self._row_of:
            mask[self._row_of[exclude_song]] = False
        if where.exclude_artist is not None:
            mask &= rows.artist_ids != where.exclude_artist
        if where.genre is not None:
            mask &= rows.genres == where.genre
        if where.near is not None:
            near = where.near
            km = haversine_km(near.latitude, near.longitude, rows.latitudes, rows.longitudes)
            mask &= np.nan_to_num(km, nan=np.inf) <= near.radius_km
        return mask
