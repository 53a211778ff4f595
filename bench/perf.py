"""Performance at FMA size, side by side with the obvious alternatives; writes BENCHMARKS.md.

    .venv/bin/python bench/perf.py                  # every part, on data/load-bench
    .venv/bin/python bench/perf.py --parts offline,indexes --no-write

Parts (`--parts`, comma-separated; default all):
  offline  features.csv first parse vs cached load; training with the paper's settings;
           evaluation of every evaluation artist (raw, z-score, model spaces)
  startup  `musicsim import` into a fresh SQLite file; `musicsim serve` until /health with
           no persisted embeddings (cold) and with them (warm), for flat and HNSW
  serve    GET /songs/{id}/similar and POST /songs/similar over HTTP against the same
           search done by FAISS in this process and by brute-force numpy; throughput
           with concurrent clients; the server's peak RSS
  indexes  flat / HNSW / IVF / IVF-PQ: build time, size, latency, recall@10 against exact

The catalogue is the synthetic one of FMA's size (`--work`/catalogue, made by
`musicsim demo-data` when absent, as bench/load.py does), and the model one
trained with the paper's settings (`--work`/paper-model, trained by the offline
part when absent).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import faiss
import httpx
import numpy as np
from benchmarks_doc import write_section
from load import (
    FMA_ARTISTS,
    FMA_TRACKS,
    MUSICSIM,
    Load,
    _free_port,
    _load,
    _machine,
    _proc_status_kib,
    _stop,
    _wait_for_health,
)
from sqlalchemy.orm import Session

from app.catalogue.reads import read_index_rows
from app.db import open_database
from app.index.faiss_index import FaissSongIndex
from app.index.kinds import IndexSpec
from app.index.protocol import SongFilter
from training.artefacts import load_bundle, save_bundle
from training.config import TrainConfig
from training.data.fma import load_catalogue, load_features
from training.experiments.paper import evaluate_run
from training.train import train_on_catalogue

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("offline", "startup", "serve", "indexes")
N_QUERIES = 500  # sequential single-query latencies per method
KINDS = ("flat", "hnsw", "ivf", "ivfpq")


def main() -> None:
    args = _arguments()
    work = args.work
    catalogue_dir = _catalogue(work)
    model = work / "paper-model"
    header = _header()

    def record(section: tuple[str, str]) -> None:
        # Written as soon as measured: a later part's failure loses nothing.
        title, body = section
        text = "\n".join([title, "", header, "", body, ""])
        print(text, flush=True)
        if args.write:
            write_section(title, text)

    if "offline" in args.parts:
        record(_offline(catalogue_dir, model))
    if not (model / "manifest.json").exists():
        sys.exit(f"no model in {model}: run the offline part first")
    database = work / "perf.db"
    if "startup" in args.parts or not database.exists():
        record(_startup(work, catalogue_dir, model, database))
    if "serve" in args.parts:
        record(_serve(work, model, database, clients=args.clients))
    if "indexes" in args.parts:
        record(_indexes(work, model, database))


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "load-bench")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"any of {', '.join(PARTS)}")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (8)")
    parser.add_argument("--no-write", dest="write", action="store_false")
    args = parser.parse_args()
    args.parts = set(args.parts.split(","))
    if not args.parts <= set(PARTS):
        parser.error(f"--parts must be among {', '.join(PARTS)}")
    args.work = args.work.resolve()  # servers run with the work folder as cwd
    args.work.mkdir(parents=True, exist_ok=True)
    return args


def _header() -> str:
    script = f"bench/{Path(sys.argv[0]).name}"
    command = shlex.join([".venv/bin/python", script, *sys.argv[1:]])
    return f"Measured {dt.date.today().isoformat()} with `{command}` on {_machine()}."


def _catalogue(work: Path) -> Path:
    data = work / "catalogue"
    if not (data / "features.csv").exists():
        _musicsim("demo-data", "--out", data, "--tracks", FMA_TRACKS, "--artists", FMA_ARTISTS,
                  "--seed", 1)  # fmt: skip
    return data


def _musicsim(*argv, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run([*MUSICSIM, *(str(a) for a in argv)], cwd=ROOT, env=env, check=True)
    return time.perf_counter() - started


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


# --- offline: loading, training, evaluation -------------------------------------------------


def _offline(data: Path, model: Path) -> tuple[str, str]:
    shutil.rmtree(data / ".musicsim-cache", ignore_errors=True)
    _, first = _timed(load_features, path=data / "features.csv")
    _, cached = _timed(load_features, path=data / "features.csv")
    catalogue, whole = _timed(load_catalogue, data_dir=data)
    run, trained = _timed(train_on_catalogue, catalogue, TrainConfig())
    shutil.rmtree(model, ignore_errors=True)
    save_bundle(run, out_dir=model, data_fingerprint=catalogue.fingerprint)
    scores, evaluated = _timed(evaluate_run, catalogue, run, seed=0)
    model_only = _timed(evaluate_run, catalogue, run, seed=0, spaces=("model",))[1]
    score = scores[0]
    table = [
        "| step | seconds | note |",
        "|---|---|---|",
        f"| load `features.csv`, first parse | {first:.1f} | "
        f"{catalogue.features.shape[0]:,} tracks x 518 |",
        f"| load `features.csv`, cached | {cached:.2f} | {first / cached:.0f}x faster "
        "(the CSV's SHA-256 is remembered by size and mtime) |",
        f"| load the whole catalogue, cached features | {whole:.2f} | "
        "tracks.csv and genres.csv parsed, joined |",
        f"| train, paper settings (200 epochs x 512 triplets) | {trained:.1f} | loading excluded |",
        f"| evaluate raw, z-score and model spaces | {evaluated:.1f} | "
        f"{score.n_queries:,} queries over {score.n_songs:,} songs, each space |",
        f"| evaluate the model space only | {model_only:.1f} | embedding included |",
        "",
        "Mean AUC: " + ", ".join(f"{s.space} {s.mean_auc:.3f}" for s in scores) + ".",
    ]
    return "## FMA size: loading, training, evaluation", "\n".join(table)


# --- start-up --------------------------------------------------------------------------------


def _env(database: Path, model: Path, cache: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
    env |= {
        "MUSICSIM_DATABASE_URL": f"sqlite:///{database}",
        "MUSICSIM_MODEL_DIR": str(model),
        "MUSICSIM_INDEX_CACHE_DIR": str(cache),
        "PYTHONPATH": str(ROOT),  # servers run from their work folder: import this checkout
    }
    return env | {f"MUSICSIM_{k.upper()}": v for k, v in extra.items()}


class Server:
    """`musicsim serve` on a free loopback port, timed until /health answers."""

    def __init__(self, work: Path, env: dict[str, str]):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = work / "perf-server.log"
        started = time.perf_counter()
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*MUSICSIM, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.health = _wait_for_health(self.process, self.url, self.log)
        self.startup_s = time.perf_counter() - started
        _wait_for_audio_workers(self.url)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *_exc) -> None:
        _stop(self.process)


def _wait_for_audio_workers(url: str, *, timeout_s: float = 300.0) -> None:
    """Until /health reports every audio worker up: their warm-up compiles the feature
    recipe for tens of seconds on both cores, and the cells measure serving, not that."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        audio = httpx.get(f"{url}/health", timeout=5.0).json()["audio"]
        if audio["up"] == audio["workers"]:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{url}: the audio workers were not up after {timeout_s:.0f} s")


def _startup(work: Path, data: Path, model: Path, database: Path) -> tuple[str, str]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    cache = work / "perf-index-cache"
    shutil.rmtree(cache, ignore_errors=True)
    imported = _musicsim("import", "--data", data, env=_env(database, model, cache))
    rows = [f"| `musicsim import` into a new SQLite file | {imported:.1f} | |"]
    for kind in ("flat", "hnsw"):
        for state in ("cold: nothing persisted", "warm: persisted embeddings and index"):
            with Server(work, _env(database, model, cache, index_kind=kind)) as server:
                songs = server.health["songs_indexed"]
                rows.append(f"| `musicsim serve` until /health, {kind}, {state} | "
                            f"{server.startup_s:.1f} | {songs:,} songs |")  # fmt: skip
    table = ["| step | seconds | note |", "|---|---|---|", *rows]
    note = (
        "Cold start-up reads every song's features from SQLite and embeds them (and, for "
        "HNSW, builds the graph); warm start-up reads only the song attributes, memory-maps "
        "the persisted embeddings, loads the persisted index and re-embeds 64 random songs "
        "to check them."
    )
    return "## FMA size: import and start-up", "\n".join([*table, "", note])


# --- serving ---------------------------------------------------------------------------------


def _percentiles(seconds: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(np.asarray(seconds) * 1000, [50, 99])
    return float(p50), float(p99)


def _serve(work: Path, model: Path, database: Path, *, clients: int) -> tuple[str, str]:
    bundle = load_bundle(model)
    engine = open_database(f"sqlite:///{database}")
    with Session(engine) as session:
        rows, features = read_index_rows(session)
    embeddings = bundle.embed(features)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(rows), size=N_QUERIES, replace=False)
    env = _env(database, model, work / "perf-index-cache")
    with Server(work, env) as server:
        http_get, http_post = _http_latencies(server.url, rows.ids[picks], features[picks])
        load = _load([server.url], rows.ids, clients=clients, duration=30.0, cap=10**6)
        posted = _post_load(server.url, features, clients=clients, duration=30.0)
        peak = _proc_status_kib(server.process.pid, "VmHWM")
    direct_get, direct_post = _faiss_latencies(embeddings, features[picks], picks, bundle)
    numpy_get = _numpy_latencies(embeddings, picks)
    table = [
        "| search, k=10, one query at a time | p50 ms | p99 ms | HTTP p50 / FAISS p50 |",
        "|---|---|---|---|",
        *_rows("GET /songs/{id}/similar over HTTP", http_get, direct_get),
        *_rows("FAISS flat in one process (stored embedding)", direct_get, direct_get),
        *_rows("numpy brute force (stored embedding)", numpy_get, direct_get),
        *_rows("POST /songs/similar (one 518-float vector) over HTTP", http_post, direct_post),
        *_rows("embed + FAISS flat in one process", direct_post, direct_post),
    ]
    p50, p99 = _percentiles(load.latencies)
    post_p50, post_p99 = _percentiles(posted.latencies)
    body = [
        *table,
        "",
        f"{N_QUERIES} queries each, one client, sequential; the same songs for every method.",
        "",
        f"| throughput, {clients} concurrent clients, 30 s each | requests/s | p50 ms | p99 ms "
        "| errors |",
        "|---|---|---|---|---|",
        f"| GET /songs/{{id}}/similar?k=10 | {load.requests / load.seconds:.1f} | {p50:.1f} | "
        f"{p99:.1f} | {load.errors} |",
        f"| POST /songs/similar, k=10 | {len(posted.latencies) / posted.seconds:.1f} | "
        f"{post_p50:.1f} | {post_p99:.1f} | {posted.errors} |",
        "",
        "The clients are httpx threads on the same machine, sharing its two cores with the "
        f"server. Server peak RSS (VmHWM) {peak / 1024:,.0f} MiB over {len(rows):,} songs, "
        "flat index.",
    ]
    return "## FMA size: serving over HTTP vs FAISS vs numpy", "\n".join(body)


def _post_load(url: str, features: np.ndarray, *, clients: int, duration: float) -> Load:
    """Like load._load for POST /songs/similar with stored songs' features."""
    load, lock = Load(), threading.Lock()
    deadline = time.perf_counter() + duration

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.perf_counter() < deadline:
                vector = features[rng.integers(len(features))]
                body = {"features": [float(v) for v in vector], "k": 10}
                started = time.perf_counter()
                try:
                    ok = http.post("/songs/similar", json=body).status_code == 200
                except httpx.HTTPError:
                    ok = False
                with lock:
                    if ok:
                        load.latencies.append(time.perf_counter() - started)
                    else:
                        load.exceptions["failed"] = load.exceptions.get("failed", 0) + 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - started
    return load


def _rows(name: str, seconds: list[float], reference: list[float]) -> list[str]:
    p50, p99 = _percentiles(seconds)
    ratio = p50 / _percentiles(reference)[0]
    return [f"| {name} | {p50:.2f} | {p99:.2f} | {ratio:.2f} |"]


def _http_latencies(url: str, ids: np.ndarray, features: np.ndarray):
    get, post = [], []
    with httpx.Client(base_url=url, timeout=30) as http:
        for song_id, vector in zip(ids, features, strict=True):
            started = time.perf_counter()
            answer = http.get(f"/songs/{int(song_id)}/similar", params={"k": 10})
            get.append(time.perf_counter() - started)
            answer.raise_for_status()
            body = {"features": [float(v) for v in vector], "k": 10}
            started = time.perf_counter()
            http.post("/songs/similar", json=body).raise_for_status()
            post.append(time.perf_counter() - started)
    return get, post


def _faiss_latencies(embeddings, features, picks, bundle):
    index = faiss.IndexFlatL2(embeddings.shape[1])
    index.add(embeddings)
    get, post = [], []
    for row, vector in zip(picks, features, strict=True):
        started = time.perf_counter()
        index.search(embeddings[row : row + 1], 11)  # k + 1: the song itself comes first
        get.append(time.perf_counter() - started)
        started = time.perf_counter()
        index.search(bundle.embed(vector[None, :]), 10)
        post.append(time.perf_counter() - started)
    return get, post


def _numpy_latencies(embeddings, picks):
    norms = (embeddings * embeddings).sum(axis=1)
    seconds = []
    for row in picks:
        started = time.perf_counter()
        distances = norms - 2.0 * (embeddings @ embeddings[row])
        nearest = np.argpartition(distances, 11)[:11]
        nearest[np.argsort(distances[nearest])]
        seconds.append(time.perf_counter() - started)
    return seconds


# --- index kinds -----------------------------------------------------------------------------


def _indexes(work: Path, model: Path, database: Path) -> tuple[str, str]:
    bundle = load_bundle(model)
    engine = open_database(f"sqlite:///{database}")
    with Session(engine) as session:
        rows, features = read_index_rows(session)
    embeddings = bundle.embed(features)
    exact = FaissSongIndex.from_embeddings(rows, embeddings)
    rng = np.random.default_rng(1)
    picks = rng.choice(len(rows), size=N_QUERIES, replace=False)
    genre = _commonest(rows.genres)
    n_genre = int((rows.genres == genre).sum())
    path = "exact" if n_genre <= IndexSpec().exact_below else "filtered approximate"
    truth = _answers(exact, rows, embeddings, picks, None)
    truth_genre = _answers(exact, rows, embeddings, picks, SongFilter(genre=genre))
    table = [
        "| index | build s | size MiB | p50 ms | p99 ms | recall@10 | recall@10, genre filter |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind in KINDS:
        index, built = _timed(
            FaissSongIndex.from_embeddings, rows, embeddings, IndexSpec(kind=kind)
        )
        held = index.faiss_index  # None for flat: it scans the vectors themselves
        size_bytes = len(faiss.serialize_index(held)) if held else index.exact_scan.scanned_bytes
        size = size_bytes / 2**20
        found, seconds = _answers(index, rows, embeddings, picks, None, timed=True)
        found_genre = _answers(index, rows, embeddings, picks, SongFilter(genre=genre))
        p50, p99 = _percentiles(seconds)
        table.append(
            f"| {kind} | {built:.1f} | {size:,.0f} | {p50:.2f} | {p99:.2f} | "
            f"{_recall(found, truth):.3f} | {_recall(found_genre, truth_genre):.3f} |"
        )
    spec = IndexSpec()
    note = (
        f"{len(rows):,} songs, {embeddings.shape[1]} dimensions; {N_QUERIES} stored songs as "
        "queries through `FaissSongIndex.search` (the service's path, the song itself excluded), "
        "k=10, one at a time. Recall@10 is against the exact flat answers. Defaults: HNSW "
        f"M={spec.hnsw_m}, efConstruction={spec.hnsw_ef_construction}, "
        f"efSearch={spec.hnsw_ef_search}; IVF about sqrt(n) lists, nprobe={spec.ivf_nprobe}; "
        f"IVF-PQ one byte per 8 dimensions, {spec.pq_refine}k candidates re-ranked exactly. "
        f"The genre filter ({genre!r}, the commonest) passes {n_genre:,} songs; approximate "
        f"kinds search a filter passing at most exact_below={spec.exact_below:,} songs "
        f"exactly, so this column shows the {path} path. "
        "Size is the serialised FAISS index; p50/p99 are without filter."
    )
    return "## Index kinds at FMA size", "\n".join([*table, "", note])


def _commonest(genres: np.ndarray) -> str:
    values, counts = np.unique(genres[genres != None].astype(str), return_counts=True)  # noqa: E711
    return str(values[np.argmax(counts)])


def _answers(index, rows, embeddings, picks, where, *, timed=False):
    found, seconds = [], []
    for row in picks:
        started = time.perf_counter()
        hits = index.search(embeddings[row], k=10, where=where, exclude_song=int(rows.ids[row]))
        seconds.append(time.perf_counter() - started)
        found.append([n.song_id for n in hits[0]])
    return (found, seconds) if timed else found


def _recall(found, truth) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / sum(len(t) for t in truth)


if __name__ == "__main__":
    main()
