"""One rule for "the same recording", shared by imports, the library, playlists and answers.

    >>> normalised("  Héllo,  WORLD! ")                       # 'hello world'
    >>> recording_key(title="Intro", artist="The Band")        # 'intro\\x00the band'
    >>> rows = first_distinct(keys=keys, vectors=embeddings, k=10)

Two songs are copies of one recording when they have the same normalised title and
artist name (a re-import, the same track on two albums), or when their vectors lie
within DUPLICATE_DISTANCE of each other (the same file under another name, a
duplicate upload). Either is enough: a copy that was retagged keeps its vector,
and a re-encoding keeps its tags.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Sequence

import numpy as np

# Two songs closer than this (L2) are the same recording: float32 rounding of one
# vector stays far below it, two different recordings far above it.
DUPLICATE_DISTANCE = 1e-4
_NOT_A_WORD = re.compile(r"[\W_]+")
_ACCENTS = re.compile("[\u0300-\u036f]+")


@functools.lru_cache(maxsize=65_536)  # a path or radio normalises the same titles often
def normalised(text: str | None) -> str | None:
    """Case, accents, punctuation and spacing folded away: "Héllo,  World!" -> "hello world".

    Letters of every script are kept ("東京" stays "東京"); None when nothing is left.
    """
    if text is None:
        return None
    # Accents are the marks of U+0300-U+036F; other scripts' marks (kana's voicing
    # marks, Indic vowel signs) change the letter, so they stay, recomposed.
    bare = _ACCENTS.sub("", unicodedata.normalize("NFKD", text))
    folded = unicodedata.normalize("NFC", bare).casefold()
    return " ".join(_NOT_A_WORD.sub(" ", folded).split()) or None


def recording_key(*, title: str | None, artist: str | None) -> str | None:
    """The normalised title and artist name; None when either is unknown (no match by name)."""
    t, a = normalised(title), normalised(artist)
    return None if t is None or a is None else f"{t}\x00{a}"


def first_distinct(
    *,
    keys: Sequence[str | None],
    vectors: np.ndarray | Callable[[np.ndarray], np.ndarray],
    k: int,
    taken_keys: Sequence[str | None] = (),
    taken_vectors: np.ndarray | None = None,
    distances: Sequence[float] | np.ndarray | None = None,
    taken_distances: Sequence[float] | np.ndarray | None = None,
) -> list[int]:
    """Rows of the first k candidates (in their order) that copy no earlier kept one, nor
    anything taken (e.g. the query song).

    keys: (n,) recording keys; vectors: (n, d) the candidates' vectors, or a function of
    candidate rows returning theirs. distances (optional): each candidate's L2 distance
    to one point, the query, and taken_distances the taken songs'; then only the
    candidates `distance_suspects` names have their vectors read and compared.
    """
    n = len(keys)
    suspects = np.arange(n) if distances is None else distance_suspects(distances, taken_distances)
    read = vectors if callable(vectors) else np.asarray(vectors).__getitem__
    copies: dict[int, set[int]] = {}
    if len(suspects):
        x = np.asarray(read(suspects), dtype=np.float64).reshape(len(suspects), -1)
        taken = np.empty((0, x.shape[1])) if taken_vectors is None else taken_vectors
        taken = np.asarray(taken, dtype=np.float64).reshape(-1, x.shape[1])
        # Rows of the comparison (suspects, then the taken songs) -> candidate rows (the
        # taken songs after all n candidates).
        rows_of = np.concatenate([suspects, n + np.arange(len(taken))])
        for a, close in _close_pairs(x, np.concatenate([x, taken])).items():
            copies[int(suspects[a])] = {int(rows_of[b]) for b in close}
    n_taken = 0 if taken_vectors is None else len(np.atleast_2d(taken_vectors))
    blocked = set(range(n, n + n_taken))  # the taken songs, then each kept row
    used_keys = {key for key in taken_keys if key is not None}
    rows: list[int] = []
    for row, key in enumerate(keys):
        if len(rows) == k:
            break
        if key is not None and key in used_keys:
            continue
        if row in copies and not copies[row].isdisjoint(blocked):
            continue
        rows.append(row)
        blocked.add(row)
        if key is not None:
            used_keys.add(key)
    return rows


def distance_suspects(
    distances: Sequence[float] | np.ndarray, taken_distances: Sequence[float] | np.ndarray | None
) -> np.ndarray:
    """Candidate rows that may copy another candidate or a taken song, judged from their
    distances to one point: two songs within DUPLICATE_DISTANCE of each other lie within
    it of that point's distance too (triangle inequality), so any other pair is not a copy.

    The margin also covers distances computed in float32 (about 1e-7 of their size).
    Plain Python: a search's twenty-odd candidates took 13 us through a dozen numpy
    calls and take 5 us this way.
    """
    mine = list(map(float, distances))
    every = mine + ([] if taken_distances is None else list(map(float, taken_distances)))
    if len(every) < 2:
        return np.empty(0, dtype=np.int64)
    order = sorted(range(len(every)), key=every.__getitem__)
    margin = DUPLICATE_DISTANCE + 1e-6 * max(map(abs, every))
    marked = [False] * len(every)
    # Sorted neighbours: a near pair's chain is near.
    for a, b in zip(order[:-1], order[1:], strict=True):
        if every[b] - every[a] <= margin:
            marked[a] = marked[b] = True
    return np.array([row for row in range(len(mine)) if marked[row]], dtype=np.int64)


def _close_pairs(x: np.ndarray, others: np.ndarray) -> dict[int, set[int]]:
    """Row of x -> rows of `others` within DUPLICATE_DISTANCE of it (itself excluded).

    All pairs are screened at once through the Gram matrix, whose float64 error
    (about d x 1e-16 of the squared norms) the screen's margin covers a thousandfold;
    the few pairs it passes are measured as ||a - b|| directly, with no cancellation.
    """
    sq_x, sq_o = (x * x).sum(axis=1), (others * others).sum(axis=1)
    sums = sq_x[:, None] + sq_o[None, :]
    squared = sums - 2.0 * (x @ others.T)
    screen = squared <= DUPLICATE_DISTANCE**2 + 1e-10 * sums
    close: dict[int, set[int]] = {}
    for a, b in zip(*np.nonzero(screen), strict=True):
        if a != b and np.sqrt(((x[a] - others[b]) ** 2).sum()) <= DUPLICATE_DISTANCE:
            close.setdefault(int(a), set()).add(int(b))
    return close


def duplicate_pairs(
    *, ids: np.ndarray, keys: Sequence[str | None], vectors: np.ndarray
) -> list[tuple[int, int]]:
    """Every pair (a, b), a < b, of song ids that are copies of one recording.

    Vectors are compared only where their projections on the diagonal lie within
    DUPLICATE_DISTANCE (a projection never lengthens a distance), so a library of any
    size costs a sort, not all pairs.
    """
    pairs: set[tuple[int, int]] = set()
    by_key: dict[str, list[int]] = {}
    for row, key in enumerate(keys):
        if key is not None:
            by_key.setdefault(key, []).append(row)
    for rows in by_key.values():
        pairs.update(_ordered(ids[a], ids[b]) for n, a in enumerate(rows) for b in rows[n + 1 :])
    x = np.asarray(vectors, dtype=np.float64)
    if len(x) > 1:
        projected = x.sum(axis=1) / np.sqrt(x.shape[1])
        order = np.argsort(projected, kind="stable")
        ends = np.searchsorted(projected[order], projected[order] + DUPLICATE_DISTANCE, "right")
        for n, end in enumerate(ends):
            a = order[n]
            for b in order[n + 1 : end]:
                if np.sqrt(((x[a] - x[b]) ** 2).sum()) <= DUPLICATE_DISTANCE:
                    pairs.add(_ordered(ids[a], ids[b]))
    return sorted(pairs)


def _ordered(a, b) -> tuple[int, int]:
    return (int(a), int(b)) if a < b else (int(b), int(a))
