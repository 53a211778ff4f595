"""One million songs served by one process: time, memory, recall; writes BENCHMARKS.md.

    .venv/bin/python bench/scale.py --model data/load-bench/paper-model
    .venv/bin/python bench/scale.py --model M --reuse        # keep catalogue and database
    .venv/bin/python bench/scale.py --model M --reuse --kind flat --store sq8

Steps: a synthetic catalogue of `--tracks` songs (`musicsim demo-data`, kept with
`--reuse`), `musicsim import` into a new SQLite file (its peak RSS is measured),
then `musicsim serve` with `MUSICSIM_INDEX_KIND=--kind` (and, for the exact flat
kind, `MUSICSIM_INDEX_STORE=--store`) twice: cold (embeds every song in chunks,
trains and fills the index, persists both) and warm (memory-maps the persisted
embeddings, loads the index). For the warm server: latency of
`GET /songs/{id}/similar?k=10` for random songs, one client, and recall@10 of those
answers against an exact search over the persisted embeddings; the whole server's
peak resident memory (VmHWM) after the queries, and its resident heap and mapped
files apart. The model only sets the cost of embedding; any trained bundle will do."""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import faiss
import httpx
import numpy as np
from benchmarks_doc import write_section
from load import _proc_status_kib, _song_ids
from perf import Server, _env, _header, _musicsim, _percentiles

from app.index.exact import STORES
from app.index.kinds import INDEX_KINDS

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Scale: one million songs"
N_QUERIES = 200
RSS_FIELDS = ("VmRSS", "RssAnon", "RssFile")  # resident: all, the heap's, mapped files'
EXACT_CHUNK = 100_000


def main() -> None:
    args = _arguments()
    work, data = args.work, args.work / "catalogue"
    timings: dict[str, float] = {}
    if not (args.reuse and (data / "features.csv").exists()):
        shutil.rmtree(data, ignore_errors=True)
        timings["demo-data"] = _musicsim(
            "demo-data", "--out", data, "--tracks", args.tracks, "--artists", args.artists,
            "--seed", 7,
        )  # fmt: skip
    database, cache = work / "scale.db", work / "index-cache"
    # No neighbourhood build: at a million songs it is a search per song, hours on an
    # approximate kind; these cells serve l2 (MUSICSIM_SCORING_WARMUP=false).
    env = _env(database, args.model.resolve(), cache, index_kind=args.kind,
               index_store=args.store, scoring_warmup="false")  # fmt: skip
    if not (args.reuse and database.exists()):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        timings["import"] = _musicsim("import", "--data", data, env=env)
    import_peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    shutil.rmtree(cache, ignore_errors=True)
    with Server(work, env) as cold:
        timings["serve, cold (embed, train, fill, persist)"] = cold.startup_s
        cold_peak = _proc_status_kib(cold.process.pid, "VmHWM")
    with Server(work, env) as warm:
        timings["serve, warm (persisted)"] = warm.startup_s
        ids = _song_ids(database)
        picks = np.random.default_rng(0).choice(len(ids), size=N_QUERIES, replace=False)
        answers, seconds = _ask(warm.url, ids[picks])
        warm_rss = {f: _proc_status_kib(warm.process.pid, f) for f in RSS_FIELDS}
        warm_peak = _proc_status_kib(warm.process.pid, "VmHWM")
        songs = warm.health["songs_indexed"]
    truth = _exact_answers(cache, ids, picks)
    text = _report(args, songs, timings, seconds, _recall(answers, truth),
                   cold_peak, warm_peak, warm_rss, import_peak_mib)  # fmt: skip
    print(text)
    if args.write:
        write_section(SECTION, text)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "scale")
    parser.add_argument("--model", type=Path, required=True, help="bundle to serve")
    parser.add_argument("--tracks", type=int, default=1_000_000)
    parser.add_argument("--artists", type=int, default=153_300)  # FMA's 6.5 tracks per artist
    parser.add_argument("--kind", default="ivfpq", choices=INDEX_KINDS)
    parser.add_argument("--store", default="float32", choices=STORES, help="flat kind only")
    parser.add_argument("--reuse", action="store_true", help="keep catalogue and database")
    parser.add_argument("--no-write", dest="write", action="store_false")
    args = parser.parse_args()
    args.work = args.work.resolve()  # servers run with the work folder as cwd
    args.work.mkdir(parents=True, exist_ok=True)
    return args


def _ask(url: str, song_ids: np.ndarray) -> tuple[dict[int, list[int]], list[float]]:
    answers, seconds = {}, []
    with httpx.Client(base_url=url, timeout=60) as http:
        for song_id in song_ids:
            started = time.perf_counter()
            response = http.get(f"/songs/{int(song_id)}/similar", params={"k": 10})
            seconds.append(time.perf_counter() - started)
            response.raise_for_status()
            answers[int(song_id)] = [r["id"] for r in response.json()["results"]]
    return answers, seconds


def _exact_answers(cache: Path, ids: np.ndarray, picks: np.ndarray) -> dict[int, list[int]]:
    """Brute force over the persisted embeddings (the entry the warm server used)."""
    (entry,) = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    embeddings = np.load(entry / "embeddings.npy", mmap_mode="r")
    queries = np.ascontiguousarray(embeddings[np.sort(picks)])
    best_d = np.full((len(picks), 11), np.inf, dtype=np.float32)
    best_r = np.full((len(picks), 11), -1, dtype=np.int64)
    for start in range(0, len(ids), EXACT_CHUNK):
        chunk = np.ascontiguousarray(embeddings[start : start + EXACT_CHUNK])
        d, r = faiss.knn(queries, chunk, 11)
        all_d = np.concatenate([best_d, d], axis=1)
        all_r = np.concatenate([best_r, r + start], axis=1)
        keep = np.argsort(all_d, axis=1, kind="stable")[:, :11]
        best_d = np.take_along_axis(all_d, keep, axis=1)
        best_r = np.take_along_axis(all_r, keep, axis=1)
    truth = {}
    for q, row in zip(np.sort(picks), best_r, strict=True):
        song = int(ids[q])
        truth[song] = [int(ids[r]) for r in row if int(ids[r]) != song][:10]
    return truth


def _recall(answers: dict[int, list[int]], truth: dict[int, list[int]]) -> float:
    hits = sum(len(set(answers[s]) & set(truth[s])) for s in truth)
    return hits / sum(len(t) for t in truth.values())


def _report(args, songs, timings, seconds, recall, cold_peak, warm_peak, warm_rss, import_mib):
    p50, p99 = _percentiles(seconds)
    steps = "\n".join(f"| {name} | {s:,.0f} s |" for name, s in timings.items())
    return "\n".join(
        [
            SECTION,
            "",
            _header(),
            "",
            f"A synthetic catalogue of {songs:,} songs (seed 7, {args.artists:,} artists) in "
            f"SQLite, served by one `musicsim serve` process with "
            f"`MUSICSIM_INDEX_KIND={args.kind}`"
            + (f", `MUSICSIM_INDEX_STORE={args.store}`" if args.kind == "flat" else "")
            + " and default parameters, but MUSICSIM_SCORING_WARMUP=false (l2 only: the "
            "other scorings' neighbourhoods are a search per song, not built here).",
            "",
            "| step | time |",
            "|---|---|",
            steps,
            "",
            "| measure | value |",
            "|---|---|",
            f"| server peak RSS (VmHWM), cold start-up | {cold_peak / 1024:,.0f} MiB |",
            f"| server peak RSS (VmHWM), warm, after {N_QUERIES} queries | "
            f"{warm_peak / 1024:,.0f} MiB |",
            f"| server RSS after the queries: all / heap (RssAnon) / mapped files (RssFile) | "
            f"{' / '.join(f'{warm_rss[f] / 1024:,.0f}' for f in RSS_FIELDS)} MiB |",
            f"| GET /songs/{{id}}/similar?k=10 p50 / p99, one client | {p50:.1f} / {p99:.1f} ms |",
            f"| recall@10 against exact search ({N_QUERIES} random songs) | {recall:.3f} |",
            *(
                [f"| largest peak RSS of demo-data / import | {import_mib:,.0f} MiB |"]
                if import_mib
                else []
            ),
            "",
            "RSS counts the pages of the memory-mapped embeddings that the queries touched; "
            "the kernel can drop those under memory pressure, unlike the heap.",
            "",
        ]
    )


if __name__ == "__main__":
    sys.exit(main())
