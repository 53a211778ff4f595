"""Serving speed in one run: the bare-route floor, each index kind over HTTP, in-process search.

    .venv/bin/python bench/serving.py                       # FMA size, writes BENCHMARKS.md
    .venv/bin/python bench/serving.py --kinds flat,hnsw --duration 5 --no-write

Needs `wrk` (Debian: `apt-get install wrk`), a C load generator, so that the client
costs little beside the server on the same machine. Steps, all in `--work`:
a synthetic catalogue of FMA's size (`musicsim demo-data`), a 20-epoch model
(its weights change no cost here), `musicsim import` into SQLite (all kept for
the next run). Then, in one run:

- the floor: a bare FastAPI + uvicorn app in this venv whose route returns a fixed
  10-result JSON of the same shape, under wrk at 1, 8 and 32 connections;
- each index kind: `musicsim serve` with MUSICSIM_INDEX_KIND, under wrk for
  GET /songs/{id}/similar?k=10 (a Lua script picks random stored ids) at 1, 8
  and 32 connections, and POST /songs/similar (random stored songs' features) at 8;
- in this process: the same index kind searched alone (stored embedding, the song
  excluded, k=10), and numpy BLAS brute force (norms - 2 X q, argpartition);
- with `--workers N` (N > 1), also the floor and `--workers-kinds` served by N
  processes on one port (`uvicorn --workers N`, `musicsim serve --workers N`), GET only.

Ratios: musicsim / floor throughput at the same connections; HTTP p50 at one
connection / in-process search p50.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import faiss
import numpy as np
from benchmarks_doc import write_section
from load import FMA_ARTISTS, FMA_TRACKS, _free_port, _proc_status_kib, _stop
from perf import Server, _env, _header, _musicsim
from sqlalchemy.orm import Session

from app.cards import SongCards
from app.catalogue.reads import read_index_rows
from app.db import open_database
from app.index.cache import EmbeddingCache
from app.index.kinds import INDEX_KINDS, IndexSpec
from app.index.loading import build_index
from app.similarity import search_distinct
from training.artefacts import load_bundle
from training.evaluation.scoring import SCORINGS

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Serving speed: floor, index kinds over HTTP, in-process search"
CONNECTIONS = (1, 8, 32)
N_QUERIES = 300  # in-process single queries per method
POSTED_BODIES = 200

GET_LUA = """
local ids = {}
local extra = ""
init = function(args)
  for line in io.lines(args[1]) do ids[#ids + 1] = line end
  extra = args[2] or ""
  math.randomseed(os.time())
end
request = function()
  return wrk.format("GET", "/songs/" .. ids[math.random(#ids)] .. "/similar?k=10" .. extra)
end
"""
POST_LUA = """
local bodies = {}
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  math.randomseed(os.time())
end
request = function()
  local headers = {["Content-Type"] = "application/json"}
  return wrk.format("POST", "/songs/similar", headers, bodies[math.random(#bodies)])
end
"""
FLOOR_APP = '''
"""The floor: the cheapest FastAPI route answering a 10-result similar-songs JSON."""
from fastapi import FastAPI

app = FastAPI()
RESULTS = [
    {"id": i, "title": f"Song {i}", "artist": {"id": i, "name": f"Artist {i}"},
     "genre": "Rock", "distance": 0.5 + i / 100}
    for i in range(10)
]


@app.get("/songs/{song_id}/similar")
async def similar(song_id: int, k: int = 10):
    return {"query": {"id": song_id}, "results": RESULTS[:k]}


@app.get("/health")
async def health():
    return {"status": "ok"}
'''


def main() -> None:
    args = _arguments()
    work = args.work
    database, model = _prepare(work, tracks=args.tracks, artists=args.artists, epochs=args.epochs)
    if args.prepare_only:
        return
    ids_file, bodies_file, rows, embeddings = _inputs(work, database, model)
    if args.flat_alone:
        print(_flat_alone(rows, embeddings, seconds=args.duration))
        return
    if args.ef_sweep:
        print(_ef_sweep(database, model, work / "index-cache", args.ef_sweep))
        return
    if shutil.which("wrk") is None:  # only the HTTP cells need it, not the steps above
        sys.exit("wrk is needed: apt-get install wrk (Debian)")
    (work / "get.lua").write_text(GET_LUA)
    (work / "post.lua").write_text(POST_LUA)
    floor = _floor(work, ids_file, duration=args.duration)
    results, scored = {}, {}
    for kind in args.kinds:
        scorings = SCORINGS if kind in args.scoring_kinds else ("l2",)
        # Other kinds serve l2 only: no background build competing with their cells (the
        # flat kind's is an exact pass over the catalogue per song).
        warmup = "true" if len(scorings) > 1 else "false"
        env = _env(database, model, work / "index-cache", index_kind=kind, scoring_warmup=warmup)
        with Server(work, env) as server:
            if len(scorings) > 1:
                _wait_for_neighbourhoods(server.url)
            http = {c: _wrk(server.url, work / "get.lua", ids_file, c, args.duration)
                    for c in CONNECTIONS}  # fmt: skip
            posted = _wrk(server.url, work / "post.lua", bodies_file, 8, args.duration)
            by_scoring = {}
            if kind in args.scoring_kinds:
                for name in SCORINGS:
                    extra = f"&scoring={name}"
                    by_scoring[name] = {
                        c: _wrk(server.url, work / "get.lua", ids_file, c, args.duration, extra)
                        for c in (1, 8)
                    }
            rss = _proc_status_kib(server.process.pid, "VmHWM") / 1024
        # After the server: it persisted the embeddings, index and radii this reuses.
        alone = _in_process(kind, database, model, work / "index-cache", scorings=scorings)
        results[kind] = (http, posted, alone, rss)
        if by_scoring:
            scored[kind] = (by_scoring, alone)
        print(kind, http, posted, by_scoring, alone, f"{rss:.0f} MiB", flush=True)
    several = _several_workers(work, database, model, ids_file, args) if args.workers > 1 else ""
    blas = _blas(embeddings)
    body = _report(floor, results, blas, n_songs=len(rows), duration=args.duration)
    body += "\n" + _cards_memory(database)
    if several:
        body += "\n\n" + several
    if scored:
        body += "\n\n" + _scoring_report(scored, duration=args.duration)
    print(body)
    if args.write:
        text = "\n".join([SECTION, "", _header(), "", body, ""])
        write_section(SECTION, text)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "serving-bench")
    parser.add_argument("--tracks", type=int, default=FMA_TRACKS)
    parser.add_argument("--artists", type=int, default=FMA_ARTISTS)
    parser.add_argument("--kinds", default=",".join(INDEX_KINDS))
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--no-write", dest="write", action="store_false")
    parser.add_argument(
        "--epochs", type=int, default=20, help="of the model trained once (no cost depends on it)"
    )
    parser.add_argument(
        "--scoring-kinds", default="hnsw", help="kinds also measured per scoring= value"
    )
    parser.add_argument(
        "--flat-alone",
        action="store_true",
        help="only the flat kind in this process: one query vs BLAS, 8 threads with and "
        "without coalescing (no server)",
    )
    parser.add_argument(
        "--ef-sweep",
        type=lambda text: [int(v) for v in text.split(",")],
        help="only HNSW in this process, for each efSearch given (e.g. 16,32,64,128): "
        "the kind's and the route's p50 and recall@10 against exact search (no server)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="also measure the floor and --workers-kinds "
        "served by this many processes (GET only; 1: not measured)",
    )
    parser.add_argument("--workers-kinds", default="hnsw", help="kinds measured with --workers")
    parser.add_argument("--prepare-only", action="store_true", help="build data, model, database")
    args = parser.parse_args()
    args.kinds = args.kinds.split(",")
    args.scoring_kinds = args.scoring_kinds.split(",")
    args.workers_kinds = args.workers_kinds.split(",")
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    return args


def _prepare(work: Path, *, tracks: int, artists: int, epochs: int) -> tuple[Path, Path]:
    data, model, database = work / "catalogue", work / "model", work / "serving.db"
    if not (data / "features.csv").exists():
        _musicsim("demo-data", "--out", data, "--tracks", tracks, "--artists", artists,
                  "--seed", 1)  # fmt: skip
    if not (model / "manifest.json").exists():
        _musicsim("train", "--data", data, "--out", model, "--epochs", epochs)
    if not database.exists():
        _musicsim("import", "--data", data, env=_env(database, model, work / "index-cache"))
    return database, model


def _inputs(work: Path, database: Path, model: Path):
    engine = open_database(f"sqlite:///{database}")
    with Session(engine) as session:
        rows, features = read_index_rows(session)
    engine.dispose()
    ids_file = work / "ids.txt"
    ids_file.write_text("\n".join(map(str, rows.ids.tolist())) + "\n")
    rng = np.random.default_rng(0)
    picks = rng.choice(len(rows), size=POSTED_BODIES, replace=False)
    bodies = [json.dumps({"features": features[p].tolist(), "k": 10}) for p in picks]
    bodies_file = work / "bodies.txt"
    bodies_file.write_text("\n".join(bodies) + "\n")
    embeddings = load_bundle(model).embed(features)
    return ids_file, bodies_file, rows, np.ascontiguousarray(embeddings, dtype=np.float32)


def _floor(work: Path, ids_file: Path, *, duration: int, workers: int = 1) -> dict:
    (work / "floor_app.py").write_text(textwrap.dedent(FLOOR_APP))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "floor.log"
    command = [sys.executable, "-m", "uvicorn", "floor_app:app", "--port", str(port),
               "--no-access-log", "--workers", str(workers)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=work, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait(url)
        _wait_for_workers(log, workers)
        return {c: _wrk(url, work / "get.lua", ids_file, c, duration) for c in CONNECTIONS}
    finally:
        _stop(process)


def _wait_for_workers(log: Path, workers: int, *, timeout_s: float = 600.0) -> None:
    """Until every worker has logged its start-up: /health is answered by the first up,
    and a cell measured while another still loads its index would measure fewer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if log.read_text(errors="replace").count("Application startup complete") >= workers:
            return
        time.sleep(0.5)
    raise RuntimeError(f"fewer than {workers} workers started in {timeout_s:.0f} s (see {log})")


def _several_workers(
    work: Path, database: Path, model: Path, ids_file: Path, args: argparse.Namespace
) -> str:
    """GET cells of the floor and of --workers-kinds served by args.workers processes,
    beside the one-process floor measured again in the same stretch of time."""
    n, duration = args.workers, args.duration
    floors = {
        1: _floor(work, ids_file, duration=duration),
        n: _floor(work, ids_file, duration=duration, workers=n),
    }
    served = {}
    for kind in args.workers_kinds:
        env = _env(database, model, work / "index-cache", index_kind=kind,
                   scoring_warmup="false", workers=str(n))  # fmt: skip
        with Server(work, env) as server:
            _wait_for_workers(server.log, n)
            served[kind] = {c: _wrk(server.url, work / "get.lua", ids_file, c, duration)
                            for c in CONNECTIONS}  # fmt: skip
        print(kind, n, "workers", served[kind], flush=True)
    lines = [
        f"| what | 1 conn req/s | p50 ms | 8 conn req/s | 32 conn req/s | "
        f"/ one-process floor at 1, 8, 32 | / {n}-process floor at 1, 8, 32 |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [("bare FastAPI route (floor), 1 process", floors[1]),
            (f"bare FastAPI route (floor), {n} processes", floors[n])]  # fmt: skip
    rows += [(f"musicsim `{kind}`, {n} processes", http) for kind, http in served.items()]
    for what, http in rows:
        ratios = [", ".join(f"{http[c]['rps'] / f[c]['rps']:.3f}" for c in CONNECTIONS)
                  for f in (floors[1], floors[n])]  # fmt: skip
        lines.append(
            f"| {what} | {http[1]['rps']:,.0f} | {http[1]['p50_ms']:.2f} | "
            f"{http[8]['rps']:,.0f} | {http[32]['rps']:,.0f} | {ratios[0]} | {ratios[1]} |"
        )
    lines += [
        "",
        f"GET /songs/{{id}}/similar?k=10 as above, wrk {duration} s per cell; "
        f"`musicsim serve --workers {n}` (MUSICSIM_WORKERS) and `uvicorn --workers {n}`: "
        "processes sharing one listening socket. Each cell starts after every worker has "
        "started.",
    ]
    return "\n".join(lines)


def _wait(url: str) -> None:
    import httpx

    for _ in range(200):
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


def _wait_for_neighbourhoods(url: str, *, timeout_s: float = 3600.0) -> None:
    """Until /health reports the scorings' neighbourhoods ready: an l2 server computes
    them in the background from start-up, and the cells measure it serving, not building."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = httpx.get(f"{url}/health", timeout=5.0).json()["scoring"]["neighbourhoods"]
        if state["state"] == "ready":
            return
        if state["state"] == "failed":
            raise RuntimeError(f"{url}: the neighbourhoods failed: {state['error']}")
        time.sleep(1.0)
    raise RuntimeError(f"{url}: the neighbourhoods were not ready after {timeout_s:.0f} s")


def _wrk(
    url: str, script: Path, inputs: Path, connections: int, duration: int, extra: str = ""
) -> dict:
    threads = min(connections, 2)
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency",
               "-s", str(script), url, "--", str(inputs), extra]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    p50 = re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if p50 is None or rps is None:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return {
        "rps": float(rps.group(1)),
        "p50_ms": float(p50.group(1)) * scale,
        "errors": int(errors.group(1)) if errors else 0,
    }


def _in_process(
    kind: str, database: Path, model: Path, cache_dir: Path, *, scorings: tuple[str, ...]
) -> dict:
    """p50 ms of searches alone, in this process, on the index the server built.

    `backend`: the FAISS kind alone at k=10. Per scoring: what the route runs,
    `search_distinct` over the ScoredIndex (its pool of L2 candidates re-ranked in
    float64, copies of one recording dropped, keys from the song cards). Coalescing off:
    one query at a time. Scorings other than l2 read the neighbourhoods the server persisted.
    """
    bundle = load_bundle(model)
    engine = open_database(f"sqlite:///{database}")
    spec = IndexSpec(kind=kind, coalesce_wait_ms=0)  # type: ignore[arg-type]
    with Session(engine) as session:
        index = build_index(
            session,
            bundle.embed,
            bundle.embedding_dim,
            spec=spec,
            cache=EmbeddingCache(cache_dir),
            model_sha256=bundle.manifest_sha256,
            scoring=bundle.scoring,
        )
        if scorings != ("l2",):
            index.ensure_neighbourhoods()  # normally read above: the server persisted them
        cards = SongCards.load(session)
    engine.dispose()
    ids = index.ids()
    picks = ids[np.random.default_rng(1).choice(len(ids), size=N_QUERIES, replace=False)]
    vectors = index.embeddings_of(picks)

    def p50(search) -> float:
        seconds = []
        for song, vector in zip(picks, vectors, strict=True):
            started = time.perf_counter()
            search(vector, int(song))
            seconds.append(time.perf_counter() - started)
        return float(np.median(seconds) * 1000)

    backend = index.backend
    found = {"backend": p50(lambda v, s: backend.search(v, k=10, exclude_song=s))}
    for name in scorings:
        found[name] = p50(
            lambda v, s, n=name: search_distinct(
                index, v, keys_of=cards.recording_keys, k=10, exclude_song=s, scoring=n
            )
        )
    return found


def _ef_sweep(database: Path, model: Path, cache_dir: Path, values: list[int]) -> str:
    """HNSW's recall knob: p50 of the kind alone and of the route's search, and recall@10
    of the kind alone against exact search (faiss.knn over the same stored vectors)."""
    bundle = load_bundle(model)
    engine = open_database(f"sqlite:///{database}")
    with Session(engine) as session:
        index = build_index(
            session, bundle.embed, bundle.embedding_dim, spec=IndexSpec(kind="hnsw"),
            cache=EmbeddingCache(cache_dir), model_sha256=bundle.manifest_sha256,
        )  # fmt: skip
        cards = SongCards.load(session)
    engine.dispose()
    ids = index.ids()
    picks = ids[np.random.default_rng(1).choice(len(ids), size=N_QUERIES, replace=False)]
    vectors = index.embeddings_of(picks)
    _, rows = faiss.knn(vectors, index.embeddings_of(ids), 11)  # the song itself, then 10
    truth = [set(ids[r].tolist()) - {int(s)} for r, s in zip(rows, picks, strict=True)]
    backend = index.backend
    lines = [
        "| efSearch | kind alone p50 ms | route's search p50 ms | recall@10 (kind alone) |",
        "|---|---|---|---|",
    ]
    for ef in values:
        backend.spec = dataclasses.replace(backend.spec, hnsw_ef_search=ef)
        found, alone, route = [], [], []
        for song, vector in zip(picks, vectors, strict=True):
            started = time.perf_counter()
            answer = backend.search(vector, k=10, exclude_song=int(song))[0]
            alone.append(time.perf_counter() - started)
            started = time.perf_counter()
            search_distinct(
                index, vector, keys_of=cards.recording_keys, k=10, exclude_song=int(song)
            )
            route.append(time.perf_counter() - started)
            found.append({n.song_id for n in answer})
        recall = np.mean([len(f & t) / len(t) for f, t in zip(found, truth, strict=True)])
        lines.append(
            f"| {ef} | {np.median(alone) * 1000:.2f} | {np.median(route) * 1000:.2f} | "
            f"{recall:.4f} |"
        )
    return "\n".join(lines)


def _flat_alone(rows, embeddings: np.ndarray, *, seconds: int) -> str:
    """The flat kind in this process: p50 of one query vs BLAS; 8 threads' throughput."""
    import threading

    from app.index.faiss_index import FaissSongIndex

    lines = []
    blas = _blas(embeddings)
    throughput = {}
    for wait_ms in (0.0, 0.5):
        spec = IndexSpec(kind="flat", coalesce_wait_ms=wait_ms)
        index = FaissSongIndex.from_embeddings(rows, embeddings, spec)
        if wait_ms == 0.0:
            picks = np.random.default_rng(1).choice(len(rows), size=N_QUERIES, replace=False)
            times = []
            for row in picks:
                started = time.perf_counter()
                index.search(embeddings[row], k=10, exclude_song=int(rows.ids[row]))
                times.append(time.perf_counter() - started)
            alone = float(np.median(times) * 1000)
        done = [0] * 8
        stop = time.perf_counter() + seconds

        def work(slot: int, index=index, done=done, stop=stop) -> None:
            rng = np.random.default_rng(slot)
            while time.perf_counter() < stop:
                row = int(rng.integers(len(rows)))
                index.search(embeddings[row], k=10, exclude_song=int(rows.ids[row]))
                done[slot] += 1

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        throughput[wait_ms] = sum(done) / seconds
    lines += [
        "| flat, in-process | p50 ms (1 query) | queries/s, 8 threads |",
        "|---|---|---|",
        f"| numpy BLAS brute force | {blas:.2f} | |",
        f"| `flat`, coalescing off | {alone:.2f} ({alone / blas:.2f}x BLAS) | "
        f"{throughput[0.0]:,.0f} |",
        f"| `flat`, coalescing 0.5 ms | | {throughput[0.5]:,.0f} |",
    ]
    return "\n".join(lines)


def _cards_memory(database: Path) -> str:
    """What the lean request path holds per song: SongCards' allocations (tracemalloc)."""
    import tracemalloc

    from app.cards import SongCards

    engine = open_database(f"sqlite:///{database}")
    tracemalloc.start()
    with Session(engine) as session:
        started = time.perf_counter()
        cards = SongCards.load(session)
        seconds = time.perf_counter() - started
        session.expunge_all()  # the ORM objects read while loading are not the cards
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    engine.dispose()
    return (
        f"Song cards (the lean path's attributes in memory): {len(cards):,} songs, "
        f"{held / 2**20:,.0f} MiB held after loading ({held / len(cards):,.0f} bytes a song, "
        f"tracemalloc), loaded in {seconds:.1f} s (under tracemalloc, which slows it)."
    )


def _blas(embeddings: np.ndarray) -> float:
    """p50 ms of numpy brute force: one BLAS matrix-vector product, argpartition."""
    norms = np.einsum("ij,ij->i", embeddings, embeddings)
    picks = np.random.default_rng(1).choice(len(embeddings), size=N_QUERIES, replace=False)
    seconds = []
    for row in picks:
        started = time.perf_counter()
        distances = norms - 2.0 * (embeddings @ embeddings[row])
        np.argpartition(distances, 11)[:11]
        seconds.append(time.perf_counter() - started)
    return float(np.median(seconds) * 1000)


def _scoring_report(scored: dict, *, duration: int) -> str:
    lines = [
        "| kind | scoring | 1 conn req/s | p50 ms | 8 conn req/s | p50 ms (8 conn) | "
        "in-process p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, (by_scoring, alone) in scored.items():
        for name, cells in by_scoring.items():
            lines.append(
                f"| `{kind}` | `{name}` | {cells[1]['rps']:,.0f} | {cells[1]['p50_ms']:.2f} | "
                f"{cells[8]['rps']:,.0f} | {cells[8]['p50_ms']:.2f} | {alone[name]:.2f} |"
            )
    lines += [
        "",
        f"GET /songs/{{id}}/similar?k=10&scoring=NAME, wrk {duration} s per cell, same servers "
        "as above; in-process: the route's search (search_distinct over the ScoredIndex) "
        "with that scoring alone.",
    ]
    return "\n".join(lines)


def _report(floor: dict, results: dict, blas: float, *, n_songs: int, duration: int) -> str:
    lines = [
        "| what | 1 conn req/s | p50 ms | 8 conn req/s | 32 conn req/s | "
        "/ floor at 1, 8, 32 | in-process p50 ms: kind alone, route's l2 | HTTP p50 / in-process | "
        "POST req/s (8 conn) | errors | peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines.append(
        f"| bare FastAPI route (floor) | {floor[1]['rps']:,.0f} | {floor[1]['p50_ms']:.2f} | "
        f"{floor[8]['rps']:,.0f} | {floor[32]['rps']:,.0f} | 1, 1, 1 | | | | "
        f"{sum(f['errors'] for f in floor.values())} | |"
    )
    for kind, (http, posted, alone, rss) in results.items():
        ratios = ", ".join(f"{http[c]['rps'] / floor[c]['rps']:.3f}" for c in CONNECTIONS)
        errors = sum(h["errors"] for h in http.values()) + posted["errors"]
        lines.append(
            f"| musicsim `{kind}` | {http[1]['rps']:,.0f} | {http[1]['p50_ms']:.2f} | "
            f"{http[8]['rps']:,.0f} | {http[32]['rps']:,.0f} | {ratios} | "
            f"{alone['backend']:.2f}, {alone['l2']:.2f} | {http[1]['p50_ms'] / alone['l2']:.1f} | "
            f"{posted['rps']:,.0f} ({posted['rps'] / http[8]['rps']:.2f} of GET) | {errors} | "
            f"{rss:,.0f} |"
        )
    flat = results.get("flat")
    lines += [
        f"| numpy BLAS brute force (in-process) | | | | | | {blas:.2f} | | | | |",
        "",
        f"{n_songs:,} songs, 518-dimensional embeddings, k=10, wrk {duration} s per cell "
        "(2 threads, random stored ids from a Lua script); POST bodies are 200 random stored "
        "songs' features. One `musicsim serve` process, SQLite, default settings "
        "(coalescing on for flat: MUSICSIM_COALESCE_WAIT_MS=0.5). In-process: the same kind "
        f"searched alone, {N_QUERIES} single queries, coalescing off: the kind alone at k=10, "
        "and the route's search (search_distinct over the ScoredIndex, l2: k + 8 asked of "
        "the backend, which ranks its candidates by float64 distances (a flat scan offers "
        "k + 8 + 10), copies of a recording dropped), on "
        "the index the server built and persisted. HTTP p50 / in-process divides by the "
        "route's search. Kinds not measured per scoring serve with "
        "MUSICSIM_SCORING_WARMUP=false (no neighbourhood build competing with the cells).",
    ]
    if flat is not None:
        lines.append(
            f"Flat kind alone, in-process p50 / numpy BLAS p50: {flat[2]['backend'] / blas:.2f}."
        )
    lines.append(
        "The machine is shared with other agents' jobs (see the load average above): "
        "absolute figures move from run to run; the ratios compare cells of this one run."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
