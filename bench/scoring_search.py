"""Cost of the scorings in the service's search: radii build, p50 latency and throughput.

Measures `ScoredIndex` over a flat FAISS index (what every request of
/songs/{id}/similar and POST /songs/similar runs below HTTP and the database):
one query at a time, k = 10, the default pool (100 candidates) re-ranked with
exact float64 distances, for each scoring. Clustered random vectors stand in for
embeddings (the cost does not depend on what they are).

    PYTHONPATH=. .venv/bin/python bench/scoring_search.py --songs 20000 --dim 518 --queries 300
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from app.catalogue.rows import SongRows
from app.index.faiss_index import FaissSongIndex
from app.index.protocol import SongFilter
from app.index.scored import ScoredIndex
from training.evaluation.scoring import SCORINGS, Scoring


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--songs", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=518)
    parser.add_argument("--queries", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, args.dim)) * 2
    vectors = (
        centres[rng.integers(0, 200, args.songs)] + rng.normal(size=(args.songs, args.dim))
    ).astype(np.float32)
    rows = SongRows.from_columns(
        np.arange(args.songs),
        rng.integers(0, args.songs // 8, args.songs),
        rng.choice(["Rock", "Jazz", "Folk"], args.songs).tolist(),
        rng.uniform(-60, 60, args.songs),
        rng.uniform(-180, 180, args.songs),
    )
    inner = FaissSongIndex.from_embeddings(rows, vectors)
    started = time.perf_counter()
    index = ScoredIndex.build(inner, scoring=Scoring(), eager=True)
    build = time.perf_counter() - started
    print(f"{args.songs} songs x {args.dim}: neighbourhoods built in {build:.1f} s")
    queries = vectors[rng.choice(args.songs, args.queries, replace=False)]
    print("| search | scoring | p50 ms | p95 ms | queries/s (1 thread) |")
    print("|---|---|---|---|---|")
    inner_times = timed(lambda q: inner.search(q, k=10), queries)
    print(row("FAISS flat alone (its own exact ranking of k + 10)", "-", inner_times))
    for where_name, where in (("unfiltered", None), ("genre=Jazz", SongFilter(genre="Jazz"))):
        for name in SCORINGS:
            times = timed(
                lambda q, w=where, s=name: index.search(q, k=10, where=w, scoring=s), queries
            )
            print(row(f"re-ranked pool, {where_name}", name, times))


def timed(search, queries: np.ndarray) -> np.ndarray:
    search(queries[0])  # warm-up
    times = []
    for q in queries:
        started = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - started)
    return np.array(times)


def row(label: str, scoring: str, times: np.ndarray) -> str:
    p50, p95 = np.percentile(times, 50) * 1e3, np.percentile(times, 95) * 1e3
    return f"| {label} | {scoring} | {p50:.2f} | {p95:.2f} | {len(times) / times.sum():.0f} |"


if __name__ == "__main__":
    main()
