"""Exact nearest rows without reading every vector: lower bounds from a few principal axes.

With the rows' mean mu and an orthonormal basis V of their first m principal axes,
each row x has a projection p = (x - mu) V and a residual length r, the length of
what V leaves out of x - mu. For a query q (projection p_q, residual r_q)

    ||x - q||^2 = ||p - p_q||^2 + ||res_x - res_q||^2  >=  ||p - p_q||^2 + (r - r_q)^2,

the squared L2 distance between the short points [p, r] and [p_q, r_q]. Learned
embeddings keep most of their variance in a few axes (47 of 518 held 96.1% of the
demo model's), so the bound is tight and a search reads the short points (m + 1
floats a row, a FAISS flat index) instead of every vector:

1. the `reach` rows of smallest bound (a few hundred); the exact distances of the
   first `pool` of them give tau, an upper bound on the k-th nearest distance;
2. every row whose bound is below tau, plus a margin for float32 rounding: no other
   row can be among the k nearest. When the reach-th bound is below that too, more
   rows may pass, and a range search of the short points finds them all.

The caller ranks those candidates by their exact distances. Where the bounds are
loose (a space without dominant axes), too many rows pass and the caller scans
every row instead (`candidates` answers None).

    >>> bounds = ProjectedBounds(dim=518)
    >>> bounds.fit(sample); bounds.add(vectors)
    >>> rows = bounds.candidates(query, k=10, pool=26, mask=None, most=13_000,
    ...                          exact=lambda rows: squared_distances(rows))
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import faiss
import numpy as np

# Principal axes kept: short points of 48 floats, three 512-bit words. On the demo
# catalogue's model (106,467 songs; bench/bounds.py, BENCHMARKS.md), 47 axes held 96.1%
# of the variance, a query for 10 songs passed 86 rows at the median and 242 at most of
# 200, and took 1.30 ms, against 1.33 with 31 axes and 1.46 with 63 (one run).
BOUND_DIMS = 47
FIT_ROWS = 16_384  # rows sampled to fit the axes: plenty for a 518 x 518 covariance
REACH = 512  # rows fetched by bound at first: enough that a range search is rare
PROJECT_ROWS = 8_192  # rows projected per step (float64 temporaries: 34 MB at 518-d)
# Relative margin on the bound for float32 rounding: the short points' rounding and
# FAISS's float32 distances err by less than 1e-5 x (||x - mu||^2 + ||q - mu||^2)
# (7.2e-7 x at most measured, 20,000 model embeddings x 100 queries); ten times that
# costs a few more candidates, never a missed row.
ROUNDING = 1e-4


class ProjectedBounds:
    """The short points of every row, in row order, searched for exact-search candidates.

    Rows are added in the order the caller numbers them; `fit` must come first. Not
    thread-safe against `add` (the caller's write lock covers it).
    """

    def __init__(self, dim: int, *, dims: int = BOUND_DIMS):
        if not 1 <= dims < dim:
            raise ValueError(f"dims must be in [1, {dim - 1}] for {dim}-d vectors: {dims}")
        self.dim = dim
        self.dims = dims
        self._mean: np.ndarray | None = None
        self._basis: np.ndarray | None = None  # (dim, dims) float64, orthonormal columns
        self._points = faiss.IndexFlatL2(dims + 1)

    @property
    def fitted(self) -> bool:
        return self._basis is not None

    @property
    def ntotal(self) -> int:
        return self._points.ntotal

    def fit(self, sample: np.ndarray) -> None:
        """The mean and principal axes of a sample of rows (at most FIT_ROWS are used).

        The axes only decide how tight the bounds are; any orthonormal basis keeps them
        bounds, so the covariance may be rough (float32) but the basis is float64.
        """
        if len(sample) > FIT_ROWS:
            sample = sample[np.linspace(0, len(sample) - 1, FIT_ROWS).astype(np.int64)]
        sample = np.asarray(sample, dtype=np.float32)
        mean = sample.mean(axis=0, dtype=np.float64)
        centred = sample - mean.astype(np.float32)
        covariance = (centred.T @ centred).astype(np.float64)
        _, axes = np.linalg.eigh(covariance)  # ascending eigenvalues
        self._mean, self._basis = mean, np.ascontiguousarray(axes[:, ::-1][:, : self.dims])

    def add(self, vectors: np.ndarray) -> None:
        for lo in range(0, len(vectors), PROJECT_ROWS):
            points, _ = self._short(vectors[lo : lo + PROJECT_ROWS])
            self._points.add(points)

    def _short(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(short points as float32, ||x - mu||^2 as float64) of some vectors."""
        assert self._mean is not None and self._basis is not None, "fit() first"
        centred = np.asarray(vectors, dtype=np.float64) - self._mean
        projected = centred @ self._basis
        spread = np.einsum("ij,ij->i", centred, centred)
        residual = np.sqrt(np.maximum(spread - np.einsum("ij,ij->i", projected, projected), 0))
        return np.hstack([projected, residual[:, None]]).astype(np.float32), spread

    def candidates(
        self,
        query: np.ndarray,
        *,
        k: int,
        pool: int,
        mask: np.ndarray | None,
        most: int,
        exact: Callable[[np.ndarray], np.ndarray],
    ) -> np.ndarray | None:
        """Rows that hold the query's k nearest allowed rows, or None past `most` of them.

        exact(rows) gives those rows' squared distances to the query in float64.
        """
        point, spread = self._short(query[None])
        params = None
        if mask is not None:
            bits = np.packbits(mask, bitorder="little")  # kept alive through both searches
            params = faiss.SearchParameters(
                sel=faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits))  # size in bytes
            )
        reach = max(REACH, 4 * pool)
        with _one_thread():
            bound, nearest = self._points.search(point, reach, params=params)
        passing = nearest[0] >= 0
        bound, nearest = bound[0][passing], nearest[0][passing]
        if len(nearest) < pool:  # the mask passes fewer rows than the pool: all of them
            return nearest
        tau = float(np.partition(exact(nearest[:pool]), k - 1)[k - 1])
        # A row among the k nearest lies within sqrt(tau) of the query, so its ||x - mu||^2
        # is at most (||q - mu|| + sqrt(tau))^2: the rounding of no other row matters, and
        # one far-off row cannot widen every query's margin.
        query_spread = float(spread[0])
        margin = ROUNDING * ((np.sqrt(query_spread) + np.sqrt(tau)) ** 2 + query_spread)
        # Rows count when their float32 bound is below the radius: round it up, never down.
        radius = np.nextafter(np.float32(tau + margin), np.float32(np.inf))
        if len(nearest) < reach or bound[-1] >= radius:  # every other row's bound is above
            return nearest[bound < radius]
        with _one_thread():
            limits, _, rows = self._points.range_search(point, float(radius), params=params)
        return None if limits[1] > most else rows


@contextmanager
def _one_thread() -> Iterator[None]:
    """FAISS on the calling thread alone for one query's scan of the short points: its
    OpenMP team made that scan three times slower on two cores (0.49 -> 1.5 ms, measured).
    The thread count is the calling thread's own; it is given back after."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)
