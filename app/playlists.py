"""Playlists from the index: mixes from several songs, paths between two songs, radio.

    >>> recommend(index=index, describe=describe, positives=vectors, negatives=None,
    ...           strategy="average", k=10, where=SongFilter(), rules=Rules(), taken=taken)
    >>> song_path(index=index, describe=describe, start=a, end=b, length=8, ...)
    >>> radio(index=index, describe=describe, seeds=vectors, last=vector, n=10, ...)

Everything here takes arrays, the `SongIndex` and a `describe` callback (song ids ->
`Track`s, from the catalogue) and returns ranked `(song_id, distance)` pairs; the
routes turn those into answers. Similarity, wherever this module needs one, is the
negative L2 distance in the embedding space, so relevance and redundancy in maximal
marginal relevance share one unit.

Candidate pools are bounded: a search asks for `first_pool` songs and grows fourfold
only while too few pass the rules, up to `max_pool`, so a catalogue where few songs
pass the filters costs a few searches, never a hang.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from app.catalogue.recordings import DUPLICATE_DISTANCE, normalised, recording_key
from app.index.protocol import Neighbour, SongFilter, SongIndex
from app.index.scored import ScoredIndex

# Songs a path or radio step asks for first; fourfold more while none of them is allowed.
FIRST_POOL = 32
# Targets whose distances to a scope one matrix product computes: its memory stays
# SCOPE_CHUNK x max_pool float64 (8 MiB), however long the path.
SCOPE_CHUNK = 64


@dataclass(frozen=True)
class Track:
    """What the rules need to know about a song."""

    song_id: int
    artist_id: int
    album: str | None = None  # the album title as stored
    duration: float | None = None  # seconds
    title: str | None = None
    artist_name: str | None = None


@dataclass(frozen=True)
class Rules:
    """What a list may hold beyond the index's filters. None means no limit."""

    max_per_artist: int | None = None
    max_per_album: int | None = None
    min_duration: float | None = None  # seconds; songs of unknown duration fail either bound
    max_duration: float | None = None
    banned_artists: frozenset[int] = frozenset()  # e.g. the seeds' artists
    artist_gap: int = 0  # no artist twice within this many consecutive songs (radio)


@functools.lru_cache(maxsize=65_536)
def title_key(track: Track) -> str | None:
    """Same normalised title and artist name: the same song, whatever its id."""
    return recording_key(title=track.title, artist=track.artist_name)


@functools.lru_cache(maxsize=65_536)
def album_key(track: Track) -> str | None:
    album = normalised(track.album)
    return None if album is None else f"{track.artist_id}\x00{album}"


@dataclass
class Pool:
    """Candidate songs as columns, in ranking order (most relevant first)."""

    ids: np.ndarray  # (n,) int64
    embeddings: np.ndarray  # (n, d) float64
    artists: np.ndarray  # (n,) int64
    albums: np.ndarray  # (n,) object: album key or None
    titles: np.ndarray  # (n,) object: title key or None
    durations: np.ndarray  # (n,) float64, NaN where unknown

    @classmethod
    def of(cls, tracks: list[Track], embeddings: np.ndarray) -> Pool:
        return cls(
            ids=np.asarray([t.song_id for t in tracks], dtype=np.int64),
            embeddings=np.asarray(embeddings, dtype=np.float64).reshape(len(tracks), -1)
            if tracks
            else np.empty((0, 0)),
            artists=np.asarray([t.artist_id for t in tracks], dtype=np.int64),
            albums=np.asarray([album_key(t) for t in tracks], dtype=object),
            titles=np.asarray([title_key(t) for t in tracks], dtype=object),
            durations=np.asarray(
                [np.nan if t.duration is None else t.duration for t in tracks], dtype=np.float64
            ),
        )

    def __len__(self) -> int:
        return len(self.ids)

    @functools.cached_property
    def projected(self) -> np.ndarray:
        return projection(self.embeddings)

    @functools.cached_property
    def squared_norms(self) -> np.ndarray:
        return (self.embeddings * self.embeddings).sum(axis=1)

    def codes(self, column: str) -> np.ndarray:
        """(n,) int64: one number per distinct key of `titles` or `albums` (-1 for None), so
        "same key as this song" is one integer comparison over the pool."""
        known = self.__dict__.setdefault("_codes", {})
        if column not in known:
            numbers: dict = {None: -1}
            keys = getattr(self, column)
            known[column] = np.fromiter(
                (numbers.setdefault(key, len(numbers)) for key in keys), np.int64, len(keys)
            )
        return known[column]

    @functools.cached_property
    def centred(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean row, float32 rows minus it, their float64 squared norms): the inputs of
        `rough_squared_distances` (centred, the vectors are short and float32 is precise)."""
        centre = self.embeddings.mean(axis=0)
        rows = self.embeddings - centre
        return centre, rows.astype(np.float32), (rows * rows).sum(axis=1)

    def take(self, rows: np.ndarray) -> Pool:
        """These rows, in this order."""
        return Pool(
            ids=self.ids[rows],
            embeddings=self.embeddings[rows],
            artists=self.artists[rows],
            albums=self.albums[rows],
            titles=self.titles[rows],
            durations=self.durations[rows],
        )


@dataclass
class Ledger:
    """What a list holds so far, and so which candidates may still join it.

    Songs `taken` before the list starts (seeds, exclusions, the history) are never
    returned, nor is anything that duplicates them; they count towards no cap.
    """

    rules: Rules
    used_ids: set[int] = field(default_factory=set)
    used_titles: set[str] = field(default_factory=set)
    used_embeddings: list[np.ndarray] = field(default_factory=list)
    artist_counts: dict[int, int] = field(default_factory=dict)
    album_counts: dict[str, int] = field(default_factory=dict)
    recent_artists: list[int] = field(default_factory=list)  # oldest first

    def take(self, *, ids=(), titles=(), embeddings=(), artists=()) -> None:
        """Rule out these songs and their duplicates; `artists` played lately count for the gap."""
        self.used_ids.update(int(i) for i in ids)
        self.used_titles.update(t for t in titles if t is not None)
        self.used_embeddings.extend(np.asarray(e, dtype=np.float64) for e in embeddings)
        self.recent_artists.extend(int(a) for a in artists)

    def copy(self) -> Ledger:
        return Ledger(
            rules=self.rules,
            used_ids=set(self.used_ids),
            used_titles=set(self.used_titles),
            used_embeddings=list(self.used_embeddings),
            artist_counts=dict(self.artist_counts),
            album_counts=dict(self.album_counts),
            recent_artists=list(self.recent_artists),
        )

    def allowed(self, pool: Pool, *, gap: bool = True) -> np.ndarray:
        """(n,) bool: which pool songs may join the list now (gap=False: leaving the artist
        gap aside, the one rule whose verdict can turn back to yes)."""
        ok = ~np.isin(pool.ids, np.fromiter(self.used_ids, np.int64, len(self.used_ids)))
        ok &= np.array([t is None or t not in self.used_titles for t in pool.titles], dtype=bool)
        rules = self.rules
        if rules.min_duration is not None:
            ok &= pool.durations >= rules.min_duration  # NaN (unknown) fails
        if rules.max_duration is not None:
            ok &= pool.durations <= rules.max_duration
        blocked = set(rules.banned_artists)
        if rules.max_per_artist is not None:
            blocked |= {a for a, n in self.artist_counts.items() if n >= rules.max_per_artist}
        if gap and rules.artist_gap > 0:
            blocked |= set(self.recent_artists[-rules.artist_gap :])
        if blocked:
            ok &= ~np.isin(pool.artists, np.fromiter(blocked, np.int64, len(blocked)))
        if rules.max_per_album is not None:
            full = {a for a, n in self.album_counts.items() if n >= rules.max_per_album}
            ok &= np.array([a is None or a not in full for a in pool.albums], dtype=bool)
        if self.used_embeddings and len(pool):
            used = np.stack(self.used_embeddings)
            ok &= ~near_any(pool.embeddings, used, DUPLICATE_DISTANCE, a_projected=pool.projected)
        return ok

    def add(self, pool: Pool, row: int) -> np.ndarray:
        """Put pool song `row` on the list; returns (n,) bool: which pool songs it leaves allowed.

        Only what this song changes is checked, so a list of k songs costs k passes
        over the pool, not k passes over everything taken. (Without an artist gap,
        the allowed set only ever shrinks.)
        """
        artist, album, title = int(pool.artists[row]), pool.albums[row], pool.titles[row]
        self.take(
            ids=[pool.ids[row]], titles=[title], embeddings=[pool.embeddings[row]], artists=[artist]
        )
        self.artist_counts[artist] = self.artist_counts.get(artist, 0) + 1
        still = np.ones(len(pool), dtype=bool)
        # near_any for one song: only projections within the radius can be duplicates.
        close = np.flatnonzero(np.abs(pool.projected - pool.projected[row]) <= DUPLICATE_DISTANCE)
        gaps = np.sqrt(((pool.embeddings[close] - pool.embeddings[row]) ** 2).sum(axis=1))
        still[close[gaps <= DUPLICATE_DISTANCE]] = False
        still[row] = False
        if title is not None:
            still &= pool.codes("titles") != pool.codes("titles")[row]
        cap = self.rules.max_per_artist
        if cap is not None and self.artist_counts[artist] >= cap:
            still &= pool.artists != artist
        if album is not None:
            self.album_counts[album] = self.album_counts.get(album, 0) + 1
            cap = self.rules.max_per_album
            if cap is not None and self.album_counts[album] >= cap:
                still &= pool.codes("albums") != pool.codes("albums")[row]
        return still


def min_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a),) L2 distance from each row of a to its nearest row of b, as ||a - b||
    directly (no |a|^2 - 2ab + |b|^2 cancellation near 0), one row of b at a time."""
    nearest = np.full(len(a), np.inf)
    for row in b:
        nearest = np.minimum(nearest, np.sqrt(((a - row) ** 2).sum(axis=1)))
    return nearest


def projection(vectors: np.ndarray) -> np.ndarray:
    """Each row projected onto the unit diagonal (a sum, not a BLAS call: cheap at any size)."""
    return vectors.sum(axis=1) / np.sqrt(max(vectors.shape[1], 1))


def near_any(
    a: np.ndarray, b: np.ndarray, radius: float, *, a_projected: np.ndarray | None = None
) -> np.ndarray:
    """(len(a),) bool: is some row of b within `radius` of this row of a?

    Projections onto one direction never lengthen a distance, so only pairs whose
    projections lie within `radius` need the exact check: with continuous
    embeddings that is a handful, and the cost stays O((|a| + |b|) log |b|).
    """
    if not len(a) or not len(b):
        return np.zeros(len(a), dtype=bool)
    pa = projection(a) if a_projected is None else a_projected
    pb = projection(b)
    order = np.argsort(pb)
    lo = np.searchsorted(pb[order], pa - radius, side="left")
    hi = np.searchsorted(pb[order], pa + radius, side="right")
    out = np.zeros(len(a), dtype=bool)
    for i in np.flatnonzero(hi > lo):
        close = b[order[lo[i] : hi[i]]]
        out[i] = bool((np.sqrt(((close - a[i]) ** 2).sum(axis=1)) <= radius).any())
    return out


def mmr_select(
    *, pool: Pool, relevance: np.ndarray, k: int, lam: float, ledger: Ledger
) -> list[int]:
    """Rows of up to k pool songs by maximal marginal relevance, obeying the ledger.

    Each step takes the argmax over allowed c of lam * relevance(c) - (1 - lam) *
    max over chosen s of sim(c, s), with sim = -L2 distance (0 before anything is
    chosen); lam = 1 is the plain relevance order. Ties go to the earlier row.
    """
    if ledger.rules.artist_gap:
        raise ValueError("mmr_select keeps the allowed set incrementally: no artist gap")
    chosen: list[int] = []
    allowed = ledger.allowed(pool)
    nearest_chosen = np.zeros(len(pool))  # min distance to a chosen song; 0 = nothing chosen
    for _ in range(k):
        if not allowed.any():
            break
        score = lam * relevance - (1 - lam) * -nearest_chosen if lam < 1 else relevance
        row = int(np.argmax(np.where(allowed, score, -np.inf)))
        chosen.append(row)
        allowed &= ledger.add(pool, row)
        if lam < 1:  # the plain order needs no distances between songs
            step = min_distances(pool.embeddings, pool.embeddings[row : row + 1])
            nearest_chosen = step if len(chosen) == 1 else np.minimum(nearest_chosen, step)
    return chosen


Describe = Callable[[list[int]], dict[int, Track]]


class Embeddings:
    """Stored embeddings fetched from the index once each (those not yet known in one call)."""

    def __init__(self, index: SongIndex):
        self._index = index
        self._known: dict[int, np.ndarray] = {}

    def __call__(self, ids: list[int]) -> np.ndarray:
        new = [i for i in dict.fromkeys(ids) if i not in self._known]
        if new:
            fetched = np.asarray(self._index.embeddings_of(np.asarray(new, dtype=np.int64)))
            fetched = fetched.astype(np.float64)
            self._known.update(zip(new, fetched, strict=True))  # rows: views, no copies
            if len(new) == len(ids):  # all new and distinct (a whole scope): in this order
                return fetched
        return np.stack([self._known[i] for i in ids]) if ids else np.empty((0, 0))


def remembered(describe: Describe) -> Describe:
    """`describe` that asks the catalogue about each song once (a path or radio asks often)."""
    known: dict[int, Track | None] = {}

    def describe_once(ids: list[int]) -> dict[int, Track]:
        new = [i for i in dict.fromkeys(ids) if i not in known]
        if new:
            found = describe(new)
            known.update({i: found.get(i) for i in new})
        return {i: t for i in ids if (t := known[i]) is not None}

    return describe_once


def pool_of(ids: list[int], *, describe: Describe, embeddings: Embeddings) -> Pool:
    """The pool of these songs, in this order; songs the catalogue no longer has are dropped."""
    tracks = describe(ids)
    kept = [i for i in ids if i in tracks]
    return Pool.of([tracks[i] for i in kept], embeddings(kept))


def l2_search(
    index: SongIndex, vectors: np.ndarray, *, k: int, where: SongFilter
) -> list[list[Neighbour]]:
    """The k nearest songs to each vector by plain L2 distance, nearest first.

    Paths, radio and `best` are defined by L2 distance, whatever scoring the service
    ranks similar songs by; a `ScoredIndex` is asked for its l2 scoring explicitly.
    """
    queries = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    if isinstance(index, ScoredIndex):
        return index.search(queries, k=k, where=where, scoring="l2")
    return index.search(queries, k=k, where=where)


def whole_scope(
    *, index: SongIndex, describe: Describe, embeddings: Embeddings, where: SongFilter, most: int
) -> Pool | None:
    """Every indexed song that passes `where`, as one pool in id order; None when the index
    holds more than `most` songs (then each step searches the index instead)."""
    n = len(index)
    if n > most:
        return None
    indexed = index.ids()
    if len(indexed) and not where.is_empty():  # the index applies the filter: ask it for all
        probe = index.embeddings_of(indexed[:1])
        indexed = np.asarray([nb.song_id for nb in l2_search(index, probe, k=n, where=where)[0]])
    ids = sorted(int(i) for i in indexed)
    try:
        return pool_of(ids, describe=describe, embeddings=embeddings)
    except KeyError:  # a song left the index since ids() (another request deleted it)
        return pool_of([i for i in ids if i in index], describe=describe, embeddings=embeddings)


def squared_distances(targets: np.ndarray, pool: Pool) -> np.ndarray:
    """(len(targets), len(pool)) squared L2 distances as |t|^2 + |s|^2 - 2 t.s: one BLAS
    product, exact to about 1e-13 of the squared norms (`nearest_row` settles the rest)."""
    t = np.atleast_2d(np.asarray(targets, dtype=np.float64))
    if not len(pool):
        return np.empty((len(t), 0))
    products = t @ pool.embeddings.T
    out = (t * t).sum(axis=1)[:, None] + pool.squared_norms[None, :] - 2.0 * products
    return np.maximum(out, 0.0)


def rough_squared_distances(targets: np.ndarray, pool: Pool) -> tuple[np.ndarray, np.ndarray]:
    """(m, n) squared L2 distances from one float32 product of centred vectors, and (m,)
    a bound on each row's error.

    float32 because BLAS's single-precision product is several times faster than its
    double one (and far less slowed by a busy machine: measured 2 ms against 26 ms for
    3,000 x 518 on 2 shared cores). The bound is the worst case of a float32 dot product
    of length d, (d + 2) u |t| |s| with u = 2^-24 (inputs rounded once, d roundings while
    summing), twice over for the 2 t.s term, plus float64 rounding of the norms.
    """
    if not len(pool):  # nothing passes the filters
        m = len(np.atleast_2d(targets))
        return np.empty((m, 0)), np.zeros(m)
    centre, rows, squares = pool.centred
    t = np.atleast_2d(np.asarray(targets, dtype=np.float64)) - centre
    t_squares = (t * t).sum(axis=1)
    t32 = t.astype(np.float32)
    if len(t) == 1:  # einsum's own loop, not BLAS: threaded BLAS waits for a busy machine's
        # cores on every call (measured 1-2 ms against 1-11 ms for 3,000 x 518)
        products = np.einsum("ij,j->i", rows, t32[0])[None, :].astype(np.float64)
    else:  # rows @ t.T: measured twice as fast as t @ rows.T (64 x 518 by 10,000 x 518)
        products = (rows @ t32.T).T.astype(np.float64)
    out = np.maximum(t_squares[:, None] + squares[None, :] - 2.0 * products, 0.0)
    most = float(squares.max()) if len(squares) else 0.0
    d = pool.embeddings.shape[1]
    bound = 2 * (d + 2) * 2.0**-24 * np.sqrt(t_squares * most) + 1e-12 * (t_squares + most)
    return out, bound


def nearest_row(
    *,
    target: np.ndarray,
    approximate: np.ndarray,
    error: float,
    allowed: np.ndarray,
    pool: Pool,
) -> tuple[int, float] | None:
    """The allowed pool row nearest to target and its distance, or None if none is allowed.

    `approximate` (a row of `rough_squared_distances`, each value within `error` of the
    true one) finds the few songs that may be the nearest; those are measured exactly, as
    sqrt(sum((s - t)^2)), and a tie goes to the lower song id: the answer of a brute-force
    scan, at the cost of one product.
    """
    masked = np.where(allowed, approximate, np.inf)
    if not len(masked) or not np.isfinite(least := masked.min()):
        return None
    close = np.flatnonzero(masked <= least + 2 * error)  # the nearest is one of these
    exact = np.sqrt(((pool.embeddings[close] - target) ** 2).sum(axis=1))
    best = int(np.lexsort((pool.ids[close], exact))[0])
    return int(close[best]), float(exact[best])


@dataclass(frozen=True)
class Ranked:
    """Candidates ranked by relevance (higher first), with the distance an answer reports."""

    ids: list[int]
    relevance: np.ndarray
    distance: np.ndarray
    complete: bool  # every song passing the index filters is among them


def rank_average(index: SongIndex, query: np.ndarray, where: SongFilter, size: int) -> Ranked:
    found = index.search(query[None, :].astype(np.float32), k=size, where=where)[0]
    d = np.asarray([n.distance for n in found], dtype=np.float64)
    return Ranked([n.song_id for n in found], -d, d, complete=len(found) < size)


def best_scores(
    pool: Pool, positives: np.ndarray, negatives: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(score, distance to the nearest positive) of every pool song, score = best positive
    similarity - best negative similarity with similarity = -L2 (`rank_best`'s, exhaustively)."""
    nearest = [np.full(len(pool), np.inf), np.full(len(pool), np.inf)]
    for side, examples in enumerate((positives, negatives)):
        for start in range(0, len(examples), SCOPE_CHUNK):
            block = squared_distances(examples[start : start + SCOPE_CHUNK], pool)
            nearest[side] = np.minimum(nearest[side], np.sqrt(block.min(axis=0, initial=np.inf)))
    score = -nearest[0] + (nearest[1] if len(negatives) else 0.0)
    return score, nearest[0]


def rank_best(
    index: SongIndex,
    positives: np.ndarray,
    negatives: np.ndarray,
    where: SongFilter,
    reach: int,
) -> Ranked:
    """Score = best positive similarity - best negative similarity, similarity = -L2:
    the distance to the nearest negative minus the distance to the nearest positive.

    For catalogues beyond the pool bound (smaller ones are scored exhaustively by
    `best_scores`): each example's `reach` nearest songs are scored (exhaustive when
    `reach` covers every song that passes the filter); a song outside an
    example's reach is given that example's reach as its distance (a lower bound), and
    only songs within some positive's reach are candidates.
    """
    examples = np.concatenate([positives, negatives]).astype(np.float32)
    found = l2_search(index, examples, k=reach, where=where)
    complete = all(len(f) < reach for f in found)
    candidates = sorted({n.song_id for f in found[: len(positives)] for n in f})
    column = {song_id: c for c, song_id in enumerate(candidates)}
    distance = np.empty((len(examples), len(candidates)))
    for e, neighbours in enumerate(found):
        distance[e] = neighbours[-1].distance if neighbours else np.inf
        for n in neighbours:
            if n.song_id in column:
                distance[e, column[n.song_id]] = n.distance
    nearest_positive = distance[: len(positives)].min(axis=0)
    score = -nearest_positive
    if len(negatives):
        score = score + distance[len(positives) :].min(axis=0)
    order = np.argsort(-score, kind="stable")
    ids = [candidates[i] for i in order]
    return Ranked(ids, score[order], nearest_positive[order], complete)


# Candidates for a pool size: (pool, relevance, distance to report, nothing left beyond).
Candidates = Callable[[int], tuple[Pool, np.ndarray, np.ndarray, bool]]


def ranked_candidates(ranked: Callable[[int], Ranked], describe, embeddings) -> Candidates:
    def candidates(size: int) -> tuple[Pool, np.ndarray, np.ndarray, bool]:
        found = ranked(size)
        n = min(len(found.ids), size)
        pool = pool_of(found.ids[:n], describe=describe, embeddings=embeddings)
        row_of = {song_id: i for i, song_id in enumerate(found.ids[:n])}
        rows = [row_of[int(i)] for i in pool.ids]
        exhausted = found.complete and n == len(found.ids)
        return pool, found.relevance[rows], found.distance[rows], exhausted

    return candidates


def recommend(
    *,
    index: SongIndex,
    describe: Describe,
    positives: np.ndarray,
    negatives: np.ndarray,
    strategy: str,
    k: int,
    where: SongFilter,
    taken: Ledger,
    lam: float = 1.0,
    max_pool: int = 16_384,
    scan_most: int | None = None,
) -> list[Neighbour]:
    """Up to k songs like the positives and unlike the negatives ((n, d) embedding arrays).

    `average`: nearest to mean(pos) + (mean(pos) - mean(neg)) (just mean(pos) without
    negatives). `best`: see `best_scores` (every song, when the index holds at most
    max_pool) and `rank_best` (beyond). The candidate pool is the 5k + |taken| most
    relevant songs (room for MMR to choose and for taken songs to drop out), grown
    fourfold while fewer than k pass the rules, up to max_pool. `scan_most` (default
    max_pool): the largest index scanned whole.
    """
    describe = remembered(describe)
    embeddings = Embeddings(index)
    candidates: Candidates
    if strategy == "average":
        query = positives.mean(axis=0)
        if len(negatives):
            query = query + (query - negatives.mean(axis=0))
        candidates = ranked_candidates(
            lambda size: rank_average(index, query, where, size), describe, embeddings
        )
    else:
        most = max_pool if scan_most is None else scan_most
        scope = whole_scope(
            index=index, describe=describe, embeddings=embeddings, where=where, most=most
        )
        if scope is not None:
            score, nearest = best_scores(scope, positives, negatives)
            order = np.argsort(-score, kind="stable")  # ties: the lower id (the scope's order)

            def candidates(size: int) -> tuple[Pool, np.ndarray, np.ndarray, bool]:
                rows = order[:size]
                return scope.take(rows), score[rows], nearest[rows], size >= len(order)

        else:
            # Each example reaches max_pool / (examples) songs: at most max_pool candidates
            # and an (examples x max_pool) distance table, however many examples.
            reach = max(FIRST_POOL, max_pool // (len(positives) + len(negatives)))
            scan = rank_best(index, positives, negatives, where, reach)
            candidates = ranked_candidates(lambda size: scan, describe, embeddings)

    size = min(5 * k + len(taken.used_ids), max_pool)
    while True:
        pool, relevance, distance, exhausted = candidates(size)
        chosen = mmr_select(pool=pool, relevance=relevance, k=k, lam=lam, ledger=taken.copy())
        if len(chosen) >= k or exhausted or size >= max_pool:
            return [Neighbour(int(pool.ids[r]), float(distance[r])) for r in chosen]
        size = min(4 * size, max_pool)


class TooFew(Exception):
    """Fewer songs pass the rules than the list needs; `possible` says how many would."""

    def __init__(self, possible: int, message: str):
        super().__init__(message)
        self.possible = possible


def nearest_allowed(
    *,
    index: SongIndex,
    describe: Describe,
    embeddings: Embeddings,
    target: np.ndarray,
    where: SongFilter,
    ledger: Ledger,
    first_pool: int,
    max_pool: int,
) -> Neighbour | None:
    """The song nearest to target that the ledger allows (added to it), or None if none is:
    one index search per call, for catalogues too large to hold as one scope."""
    size = min(first_pool, max_pool)
    while True:
        found = l2_search(index, target, k=size, where=where)[0]
        pool = pool_of([n.song_id for n in found], describe=describe, embeddings=embeddings)
        allowed = np.flatnonzero(ledger.allowed(pool))
        if len(allowed):
            row = int(allowed[0])  # the pool is in distance order
            ledger.add(pool, row)
            exact = float(np.sqrt(((pool.embeddings[row] - target) ** 2).sum()))
            return Neighbour(int(pool.ids[row]), exact)
        if len(found) < size or size >= max_pool:
            return None
        size = min(4 * size, max_pool)


class Stepper:
    """Picks, one target at a time, the nearest song the ledger allows, and adds it.

    With a scope (every eligible song, at most max_pool), a pick is array work over it:
    the allowed set is kept incrementally (`Ledger.add` says what each pick rules out)
    and distances come from one matrix product per block of targets. Without one (a
    larger catalogue), each pick searches the index (`nearest_allowed`).
    """

    def __init__(self, *, index, describe, embeddings, where, ledger, max_pool, scan_most=None):
        self.index, self.describe, self.embeddings = index, describe, embeddings
        self.where, self.ledger, self.max_pool = where, ledger, max_pool
        most = max_pool if scan_most is None else scan_most
        self.scope = whole_scope(
            index=index, describe=describe, embeddings=embeddings, where=where, most=most
        )
        if self.scope is not None:
            self.allowed = ledger.allowed(self.scope, gap=False)

    def distances(self, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Rough squared distances of these targets to the scope and their error bounds
        (None without a scope)."""
        return None if self.scope is None else rough_squared_distances(targets, self.scope)

    def pick(
        self, target: np.ndarray, approximate: tuple[np.ndarray, float] | None
    ) -> Neighbour | None:
        if self.scope is None:
            return nearest_allowed(
                index=self.index,
                describe=self.describe,
                embeddings=self.embeddings,
                target=target,
                where=self.where,
                ledger=self.ledger,
                first_pool=FIRST_POOL,
                max_pool=self.max_pool,
            )
        scope, allowed, gap = self.scope, self.allowed, self.ledger.rules.artist_gap
        if gap and self.ledger.recent_artists:
            recent = np.asarray(self.ledger.recent_artists[-gap:], dtype=np.int64)
            allowed = allowed & ~np.isin(scope.artists, recent)
        if approximate is None:
            rough, error = rough_squared_distances(target, scope)
            approximate = (rough[0], float(error[0]))
        found = nearest_row(
            target=target,
            approximate=approximate[0],
            error=approximate[1],
            allowed=allowed,
            pool=scope,
        )
        if found is None:
            return None
        row, distance = found
        self.allowed &= self.ledger.add(scope, row)
        return Neighbour(int(scope.ids[row]), distance)


def waypoints(
    start: np.ndarray, end: np.ndarray, length: int, *, variety: float = 0.0, seed: int = 0
) -> np.ndarray:
    """(length - 2, d) evenly spaced points strictly between start and end.

    With variety > 0 each point moves by variety x (one step's length) in a random
    direction, drawn from `seed`: different seeds, different paths; the same, the same.
    """
    t = np.arange(1, length - 1, dtype=np.float64)[:, None] / (length - 1)
    points = start[None, :] + t * (end - start)[None, :]
    if variety > 0 and len(points):
        rng = np.random.default_rng(seed)
        direction = rng.standard_normal(points.shape)
        direction /= np.linalg.norm(direction, axis=1, keepdims=True)
        step = np.linalg.norm(end - start) / (length - 1)
        points = points + variety * step * direction
    return points


def song_path(
    *,
    index: SongIndex,
    describe: Describe,
    start: Track,
    end: Track,
    length: int,
    where: SongFilter,
    rules: Rules,
    variety: float = 0.0,
    seed: int = 0,
    max_pool: int = 16_384,
    scan_most: int | None = None,
) -> list[Neighbour]:
    """`length` songs from start to end, each inner one the nearest unused allowed song
    to its waypoint; distances are each song's step from the one before (0 for start).

    Greedy picking never blocks a later pick (each pick uses one slot of one cap),
    so when a waypoint finds no allowed song the catalogue has no more: `TooFew`.
    """
    describe = remembered(describe)
    embeddings = Embeddings(index)
    ends = pool_of([start.song_id, end.song_id], describe=describe, embeddings=embeddings)
    ledger = Ledger(rules)
    for row in range(2):
        ledger.add(ends, row)
    cap = rules.max_per_artist
    if cap is not None and ledger.artist_counts[start.artist_id] > cap:
        raise TooFew(0, f"both ends are by one artist, beyond max_per_artist={cap}")
    first, last = ends.embeddings[0], ends.embeddings[1]
    stepper = Stepper(
        index=index,
        describe=describe,
        embeddings=embeddings,
        where=where,
        ledger=ledger,
        max_pool=max_pool,
        scan_most=scan_most,
    )
    targets = waypoints(first, last, length, variety=variety, seed=seed)
    chosen = [(start.song_id, first)]
    for block in range(0, len(targets), SCOPE_CHUNK):
        block_targets = targets[block : block + SCOPE_CHUNK]
        approximate = stepper.distances(block_targets)
        for i, target in enumerate(block_targets):
            rough = None if approximate is None else (approximate[0][i], approximate[1][i])
            found = stepper.pick(target, rough)
            if found is None:
                possible = len(chosen) + 1
                raise TooFew(
                    possible,
                    f"only {possible} songs can make this path under its filters and caps "
                    f"(asked for {length})",
                )
            chosen.append((found.song_id, embeddings([found.song_id])[0]))
    chosen.append((end.song_id, last))
    steps = [0.0] + [
        float(np.linalg.norm(b[1] - a[1])) for a, b in zip(chosen, chosen[1:], strict=False)
    ]
    return [Neighbour(song_id, d) for (song_id, _), d in zip(chosen, steps, strict=True)]


def radio(
    *,
    index: SongIndex,
    describe: Describe,
    seeds: np.ndarray,
    last: np.ndarray,
    n: int,
    where: SongFilter,
    ledger: Ledger,
    seed_weight: float,
    max_pool: int = 16_384,
    scan_most: int | None = None,
) -> list[Neighbour]:
    """The next n songs: each the nearest allowed song to
    (1 - seed_weight) x (the last played) + seed_weight x (the seeds' mean),
    then itself the last played. Fewer than n when the catalogue runs out.
    Distances are to that target point.
    """
    describe = remembered(describe)
    embeddings = Embeddings(index)
    stepper = Stepper(
        index=index,
        describe=describe,
        embeddings=embeddings,
        where=where,
        ledger=ledger,
        max_pool=max_pool,
        scan_most=scan_most,
    )
    centre = seeds.mean(axis=0)
    played = np.asarray(last, dtype=np.float64)
    out: list[Neighbour] = []
    for _ in range(n):
        target = (1 - seed_weight) * played + seed_weight * centre
        found = stepper.pick(target, None)  # each target needs the pick before it
        if found is None:
            break
        out.append(found)
        played = embeddings([found.song_id])[0]
    return out


def write_m3u(entries: list[tuple[int, float | None, str, str]], *, base_url: str) -> str:
    """Extended M3U of (song id, seconds or None, artist, title): players fetch each
    song from `<base_url>songs/<id>/audio`."""
    lines = ["#EXTM3U"]
    for song_id, seconds, artist, title in entries:
        length = -1 if seconds is None else round(seconds)  # -1: unknown, per the format
        label = f"{artist} - {title}".replace("\n", " ").replace("\r", " ")
        lines += [f"#EXTINF:{length},{label}", f"{base_url}songs/{song_id}/audio"]
    return "\n".join(lines) + "\n"
