"""The flat kind's lower bounds on a catalogue's embeddings: how tight, how fast.

    .venv/bin/python bench/bounds.py --embeddings data/serving-bench/index-cache/*/embeddings.npy
    .venv/bin/python bench/bounds.py --embeddings E.npy --axes 15,31,47,63 --no-write

The embeddings: a persisted cache entry's `embeddings.npy` (memory-mapped, as the
server maps it; `bench/serving.py` leaves one for FMA's size in data/serving-bench).
Queries are `--queries` stored songs, each song itself excluded as the service
excludes it, k = `--k`. For each number of principal axes in `--axes`:

- the share of the embeddings' variance those axes hold;
- the rows whose bound falls below the k-th nearest distance (the rows a query must
  read, before the rounding margin): median, 90th percentile and most over the queries;
- the p50 of `ExactScan.search_bounded`, one query at a time, in this process, and
  whether every answer equals the scan's.

Beside them, `ExactScan` scanning every row (bounds off) and numpy BLAS brute force
(norms - 2 X q, argpartition). Methods take turns query by query, so that the
machine's noise falls on all of them alike. FAISS runs on this thread alone, as in
the service's searches.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import faiss
import numpy as np
from benchmarks_doc import write_section
from perf import _header

from app.index.bounds import ProjectedBounds
from app.index.exact import EXTRA_CANDIDATES, ExactScan, VectorStore

SECTION = "## Flat search: lower bounds from principal axes"


def main() -> None:
    args = _arguments()
    faiss.omp_set_num_threads(1)
    vectors = np.load(args.embeddings, mmap_mode="r")
    axes = [int(a) for a in args.axes.split(",")]
    rng = np.random.default_rng(args.seed)
    picks = np.sort(rng.choice(len(vectors), size=args.queries, replace=False))
    store = VectorStore(vectors)
    scan = ExactScan(store)
    bounded = {m: ExactScan(store, bound_dims=m) for m in axes}
    variance = _variance_shares(store, axes)
    everything = store.read(0, len(store))  # one read, shared by every number of axes
    nearest, _ = faiss.knn(everything[picks], everything, args.k + 1)  # itself first, at 0
    passing = {m: _passing(everything, picks, nearest[:, args.k], m) for m in axes}
    timings, same = _timings(store, scan, bounded, picks, args.k)
    section = _section(vectors, args, variance, passing, timings, same, bounded)
    print(section)
    if args.write:
        write_section(SECTION, section)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--axes", default="31,47,63")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-write", dest="write", action="store_false")
    return parser.parse_args()


def _variance_shares(store: VectorStore, axes: list[int]) -> dict[int, float]:
    """Share of the variance on the first m principal axes, from an even sample of rows."""
    rows = np.unique(np.linspace(0, len(store) - 1, 20_000).astype(np.int64))
    sample = store.take(rows, from_file=True).astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(np.cov(sample, rowvar=False))[::-1]
    total = eigenvalues.sum()
    return {m: float(eigenvalues[:m].sum() / total) for m in axes}


def _passing(everything: np.ndarray, picks: np.ndarray, kth: np.ndarray, axes: int) -> list[int]:
    """Per query, the rows (the query's own excluded) whose bound is below its k-th
    nearest distance `kth`: what any search by these bounds must read."""
    bounds = ProjectedBounds(everything.shape[1], dims=axes)
    bounds.fit(everything)
    bounds.add(everything)
    counts = []
    for row, distance in zip(picks, kth, strict=True):
        point, _ = bounds._short(everything[row][None])
        _, _, found = bounds._points.range_search(point, float(distance))
        counts.append(int((found != row).sum()))
    return counts


def _timings(store, scan, bounded, picks, k):
    """p50 ms per method, queries taken in turns; and whether the bounded answers equal
    the scan's (rows, in order)."""
    vectors = np.asarray(store.base)
    norms = np.einsum("ij,ij->i", vectors, vectors)
    seconds: dict[str, list[float]] = {"scan": [], "blas": [], **{m: [] for m in bounded}}
    same = dict.fromkeys(bounded, True)
    depth = k + 1  # the song itself is found first and dropped, as the service does
    for row in picks:
        query = np.asarray(vectors[row])
        started = time.perf_counter()
        _, expected = scan.search(query[None], k=depth, allowed=[None], bounds=False)
        seconds["scan"].append(time.perf_counter() - started)
        started = time.perf_counter()
        scores = norms - 2 * (vectors @ query)
        np.argpartition(scores, depth + EXTRA_CANDIDATES)[: depth + EXTRA_CANDIDATES]
        seconds["blas"].append(time.perf_counter() - started)
        for m, bounded_scan in bounded.items():
            started = time.perf_counter()
            found = bounded_scan.search_bounded(query, k=depth, allowed=None)
            seconds[m].append(time.perf_counter() - started)
            same[m] &= found is not None and found[1][0].tolist() == expected[0].tolist()
    return {name: float(np.median(s) * 1000) for name, s in seconds.items()}, same


def _section(vectors, args, variance, passing, timings, same, bounded) -> str:
    lines = [
        SECTION,
        "",
        _header(),
        "",
        "| search | axes | variance held | rows passing: median / p90 / most | p50 ms | "
        "answers equal the scan's |",
        "|---|---|---|---|---|---|",
        f"| ExactScan, every row | - | | {len(vectors):,} | {timings['scan']:.2f} | |",
        f"| numpy BLAS brute force | - | | {len(vectors):,} | {timings['blas']:.2f} | |",
    ]
    for m in bounded:
        counts = np.asarray(passing[m])
        rows = f"{np.median(counts):.0f} / {np.quantile(counts, 0.9):.0f} / {counts.max()}"
        tight = "yes" if bounded[m].bounded else "no (dropped at start-up)"
        lines.append(
            f"| ExactScan, lower bounds ({tight}) | {m} | {variance[m]:.1%} | {rows} | "
            f"{timings[m]:.2f} | {'yes' if same[m] else 'NO'} |"
        )
    lines += [
        "",
        f"{len(vectors):,} embeddings of {vectors.shape[1]} dimensions from `{args.embeddings}`; "
        f"{args.queries} stored songs as queries (each itself excluded), k={args.k}, one "
        "query at a time, methods in turns; FAISS on one thread. Rows passing: those whose "
        "bound is below the k-th nearest distance (a search reads them, and a few more "
        "for the rounding margin and the first fetch). The machine is shared with other "
        "agents' jobs: compare the rows of one run.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
