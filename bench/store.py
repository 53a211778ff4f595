"""The flat kind's stores (float32, float16, sq8) at a million songs: memory, latency, recall.

    .venv/bin/python bench/store.py --model data/serving-bench/model \
        --catalogue data/serving-bench/serving.db            # writes BENCHMARKS.md

The vectors: the learned embeddings of the catalogue's songs (`--model` over the
database's features), and, to reach `--songs`, copies of them with Gaussian jitter
of `--jitter` times each dimension's spread (a catalogue ten times FMA's is out of
reach of `musicsim demo-data` in minutes). They are saved as one float32 .npy,
memory-mapped as the persisted cache is. Each store is measured in a fresh
process that builds `FaissSongIndex.from_embeddings` over the mapped file and
answers `--queries` single queries (stored songs, the song itself excluded,
k=10); recall@10 is against exact float64 search, and also on the learned
embeddings alone (the catalogue's songs, no copies). Memory is that process's
peak resident set (VmHWM, which counts the mapped file's pages it touched) and
its RssAnon / RssFile at the end: the index's process, not a whole server.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from benchmarks_doc import write_section
from perf import _header
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Flat stores at a million songs: memory, latency, recall"
STORES = ("float32", "float16", "sq8")
K = 10


def main() -> None:
    args = _arguments()
    if args.child:
        _child(args)
        return
    learned = _learned(args.model, args.catalogue)
    vectors = _scaled(learned, songs=args.songs, jitter=args.jitter)
    path = args.work / "vectors.npy"
    np.save(path, vectors)
    picks = np.random.default_rng(2).choice(len(vectors), size=args.queries, replace=False)
    truth = _exact(vectors, picks)
    picks_learned = np.random.default_rng(3).choice(len(learned), args.queries, replace=False)
    truth_learned = _exact(learned, picks_learned)
    np.save(args.work / "learned.npy", learned)
    del vectors
    rows = []
    for store in STORES:
        for name, file, chosen, expected in (
            ("scaled", path, picks, truth),
            ("learned", args.work / "learned.npy", picks_learned, truth_learned),
        ):
            np.save(args.work / "picks.npy", chosen)
            out = subprocess.run(
                [sys.executable, __file__, "--child", "--store", store, "--vectors", str(file),
                 "--work", str(args.work), "--refine", str(args.refine)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            found = json.loads(out.splitlines()[-1])
            recall = np.mean(
                [len(set(f) & set(t)) / K for f, t in zip(found["ids"], expected, strict=True)]
            )
            rows.append((store, name, found, float(recall)))
            print(store, name, {k: v for k, v in found.items() if k != "ids"}, recall, flush=True)
    body = _report(rows, songs=args.songs, learned=len(learned), args=args)
    print(body)
    if args.write:
        write_section(SECTION, "\n".join([SECTION, "", _header(), "", body, ""]))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path)
    parser.add_argument("--catalogue", type=Path, help="SQLite database of the songs")
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "store-bench")
    parser.add_argument("--songs", type=int, default=1_000_000)
    parser.add_argument("--jitter", type=float, default=0.05)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--refine", type=int, default=4, help="MUSICSIM_INDEX_STORE_REFINE")
    parser.add_argument("--no-write", dest="write", action="store_false")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    return args


def _learned(model: Path, database: Path) -> np.ndarray:
    from app.catalogue.reads import read_index_rows
    from app.db import open_database
    from training.artefacts import load_bundle

    engine = open_database(f"sqlite:///{database}")
    with Session(engine) as session:
        _, features = read_index_rows(session)
    engine.dispose()
    return np.ascontiguousarray(load_bundle(model).embed(features), dtype=np.float32)


def _scaled(learned: np.ndarray, *, songs: int, jitter: float) -> np.ndarray:
    rng = np.random.default_rng(1)
    spread = learned.std(axis=0) * jitter
    out = np.empty((songs, learned.shape[1]), dtype=np.float32)
    out[: len(learned)] = learned[:songs]
    for start in range(len(learned), songs, len(learned)):
        n = min(len(learned), songs - start)
        out[start : start + n] = learned[:n] + rng.normal(size=(n, learned.shape[1])) * spread
    return out


def _exact(vectors: np.ndarray, picks: np.ndarray) -> list[list[int]]:
    """Row numbers of each pick's k nearest other rows, in float64, a block at a time."""
    best_d = np.full((len(picks), K + 1), np.inf)
    best_r = np.zeros((len(picks), K + 1), dtype=np.int64)
    queries = vectors[picks].astype(np.float64)
    for start in range(0, len(vectors), 50_000):
        block = vectors[start : start + 50_000].astype(np.float64)
        # float64 throughout: the cancellation error (~1e-12) is far below any gap here
        d = (queries**2).sum(1)[:, None] + (block**2).sum(1)[None, :] - 2 * queries @ block.T
        merged_d = np.concatenate([best_d, d], axis=1)
        merged_r = np.concatenate([best_r, np.arange(start, start + len(block))[None, :]
                                   .repeat(len(picks), 0)], axis=1)  # fmt: skip
        order = np.argsort(merged_d, axis=1, kind="stable")[:, : K + 1]
        best_d = np.take_along_axis(merged_d, order, 1)
        best_r = np.take_along_axis(merged_r, order, 1)
    return [[int(r) for r in row if r != p][:K] for row, p in zip(best_r, picks, strict=True)]


def _child(args: argparse.Namespace) -> None:
    """In a fresh process: build over the mapped file, answer the picks, report memory."""
    from app.catalogue.rows import SongRows
    from app.index.faiss_index import FaissSongIndex
    from app.index.kinds import IndexSpec

    vectors = np.load(args.vectors, mmap_mode="r")
    picks = np.load(args.work / "picks.npy")
    n = len(vectors)
    rows = SongRows.from_columns(
        np.arange(n), np.zeros(n), [None] * n, np.full(n, np.nan), np.full(n, np.nan)
    )
    started = time.perf_counter()
    spec = IndexSpec(store=args.store, store_refine=args.refine, coalesce_wait_ms=0)
    index = FaissSongIndex.from_embeddings(rows, vectors, spec)
    built = time.perf_counter() - started
    found, seconds = [], []
    for row in picks:
        query = np.asarray(vectors[row])
        started = time.perf_counter()
        answer = index.search(query, k=K, exclude_song=int(row))[0]
        seconds.append(time.perf_counter() - started)
        found.append([a.song_id for a in answer])
    status = _status()
    print(json.dumps({
        "build_s": built, "p50_ms": float(np.median(seconds) * 1000),
        "hwm_mib": status["VmHWM"] / 1024, "anon_mib": status["RssAnon"] / 1024,
        "file_mib": status["RssFile"] / 1024, "scanned_mib": index.exact_scan.scanned_bytes / 2**20,
        "ids": found,
    }))  # fmt: skip


def _status() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if value.strip().endswith("kB"):
            out[key] = int(value.split()[0])
    return out


def _report(rows, *, songs: int, learned: int, args) -> str:
    lines = [
        "| store | vectors | scanned MiB | build s | p50 ms | recall@10 | peak RSS MiB | "
        "RssAnon / RssFile MiB at end |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for store, name, found, recall in rows:
        what = (
            f"{songs:,} (learned + jittered copies)" if name == "scaled" else f"{learned:,} learned"
        )
        lines.append(
            f"| {store} | {what} | {found['scanned_mib']:,.0f} | {found['build_s']:.1f} | "
            f"{found['p50_ms']:.1f} | {recall:.3f} | {found['hwm_mib']:,.0f} | "
            f"{found['anon_mib']:,.0f} / {found['file_mib']:,.0f} |"
        )
    lines += [
        "",
        f"{args.queries} single queries per cell (stored songs, the song excluded, k={K}), "
        f"refine={args.refine} (float16/sq8 re-rank refine x k candidates with the float32 "
        f"vectors); jitter {args.jitter} x each dimension's spread. Recall@10 against exact "
        "float64 search over the same vectors. Memory: the index's own process (Python, "
        "numpy, FAISS, the mapped file's touched pages), not a whole server (which adds "
        "torch, the song attributes and the scoring tables). The machine is shared with "
        "other agents' jobs: latencies are this run's.",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
