"""Fault injection against real server processes on 127.0.0.1: SIGKILL, WAL and cache damage.

    python bench/faults.py                      # 2 rounds of each kind, a bundle trained here
    python bench/faults.py --rounds 3 --kinds cache --model models/default

Each round starts `python -m app.server` on a SQLite database, posts songs from a few
threads (distinct titles) while others read neighbours, and SIGKILLs the process
mid-stream once enough writes are acknowledged. Then, by kind:
  sigkill  nothing more;
  wal      half a WAL frame of random bytes is appended to musicsim.db-wal, a torn write;
  cache    a second process embeds the catalogue as it now is (and is killed too), then
           its persisted entry is damaged (truncated, every other row zeroed with the
           checksum left stale, a broken manifest, in turn); "detected" means the
           restarted process logged the damage and rebuilt the entry.
A new process on the same files must serve every acknowledged song. Printed per round:
  acknowledged  201s the clients received
  lost          acknowledged songs missing (or with another title) after the restart
  unindexed     stored songs the restarted index does not hold, plus acknowledged songs
                whose /similar is not a 200 with results
  wrong         sampled songs whose neighbours differ from a brute-force search on
                freshly computed embeddings (damaged cache served)
Every process started here is killed on exit.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.catalogue.importing import import_catalogue  # noqa: E402
from app.db import open_database  # noqa: E402
from training.artefacts import load_bundle, save_bundle  # noqa: E402
from training.config import TrainConfig  # noqa: E402
from training.data.fma import load_catalogue  # noqa: E402
from training.data.synthetic import write_demo_catalogue  # noqa: E402
from training.train import train_on_catalogue  # noqa: E402

WRITERS, READERS = 3, 2
KILL_AFTER_ACKS = 60
LOAD_SECONDS = 20.0
TIMEOUT = httpx.Timeout(10.0)
START_SECONDS = 180.0
FRAME_BYTES = 24 + 4096  # a WAL frame: header plus one page (SQLite's default page size)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(env: dict, workdir: Path, name: str, started: list) -> str:
    port = free_port()
    log = (workdir / f"{name}.log").open("wb")
    command = [sys.executable, "-m", "app.server", "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(command, cwd=workdir, env=env, stdout=log, stderr=log)
    started.append(process)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return url
        time.sleep(0.2)
    raise SystemExit(f"server {name} did not start; see {workdir / (name + '.log')}")


def load(url: str, features: np.ndarray, song_ids: list[int], counter, round_name: str):
    """Writers and readers until KILL_AFTER_ACKS acknowledgements; returns the acks."""
    acknowledged: dict[int, str] = {}
    stop = threading.Event()
    deadline = time.monotonic() + LOAD_SECONDS

    def writer(w: int) -> None:
        rng = random.Random(w)
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                n = next(counter)
                title = f"{round_name} song {n:05d}"
                vector = (features[n % len(features)] * rng.uniform(0.9, 1.1)).tolist()
                body = {"title": title, "artist": f"Fault writer {w}", "features": vector}
                try:
                    response = client.post("/songs", json=body)
                except httpx.HTTPError:
                    return
                if response.status_code == 201:
                    acknowledged[response.json()["id"]] = title

    def reader(r: int) -> None:
        rng = random.Random(100 + r)
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            while not stop.is_set() and time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"/songs/{rng.choice(song_ids)}/similar", params={"k": 5})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    threads += [threading.Thread(target=reader, args=(r,)) for r in range(READERS)]
    for thread in threads:
        thread.start()
    while len(acknowledged) < KILL_AFTER_ACKS and time.monotonic() < deadline:
        time.sleep(0.01)
    return acknowledged, stop, threads


def damage_wal(database: Path) -> str:
    wal = database.with_name(database.name + "-wal")
    if not wal.exists():
        return "no WAL file to damage"
    with wal.open("ab") as f:
        f.write(os.urandom(FRAME_BYTES // 2))
    return f"appended {FRAME_BYTES // 2} random bytes to {wal.name}"


def damage_cache(cache: Path, turn: int) -> str:
    entries = [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    if not entries:
        return "no cache entry to damage"
    entry = max(entries, key=lambda p: p.stat().st_mtime)
    embeddings, manifest = entry / "embeddings.npy", entry / "manifest.json"
    if turn % 3 == 0:
        embeddings.write_bytes(embeddings.read_bytes()[: embeddings.stat().st_size // 2])
        return "truncated embeddings.npy to half"
    if turn % 3 == 1:
        stored = np.load(embeddings)
        stored[::2] = 0.0
        np.save(embeddings, stored)
        return "zeroed every other row of embeddings.npy"
    manifest.write_text(manifest.read_text()[:30])
    return "cut manifest.json to 30 bytes"


def stored_songs(database: Path) -> dict[int, str]:
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        return dict(connection.execute("SELECT id, title FROM songs").fetchall())


def wrong_neighbours(url: str, bundle, database: Path, sample: int = 100) -> int:
    """Sampled songs whose served neighbours differ from brute force on fresh embeddings."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        rows = connection.execute("SELECT id, features FROM songs ORDER BY id").fetchall()
    ids = np.array([r[0] for r in rows])
    fresh = bundle.embed(np.stack([np.frombuffer(r[1], dtype="<f4") for r in rows]))
    picked = np.random.default_rng(0).choice(len(ids), size=min(sample, len(ids)), replace=False)
    wrong = 0
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        for i in picked:
            d = ((fresh - fresh[i]) ** 2).sum(1)
            d[i] = np.inf
            expected = set(ids[np.argsort(d, kind="stable")[:5]].tolist())
            body = client.get(f"/songs/{int(ids[i])}/similar", params={"k": 5}).json()
            got = {r["id"] for r in body.get("results", [])}
            wrong += len(got & expected) < 4  # ties and float32 order may swap the fifth
    return wrong


def run_round(kind: str, turn: int, env: dict, workdir: Path, data: dict, counter) -> dict:
    started: list[subprocess.Popen] = []
    name = f"{kind}-{turn}"
    try:
        url = start(env, workdir, name, started)
        acknowledged, stop, threads = load(url, data["features"], data["ids"], counter, name)
        started[-1].send_signal(signal.SIGKILL)
        started[-1].wait(timeout=10)
        stop.set()
        for thread in threads:
            thread.join(timeout=TIMEOUT.read + 5)
        if kind == "wal":
            what = damage_wal(data["database"])
        elif kind == "cache":
            # The entry written before the writes no longer matches the catalogue: let a
            # process embed the catalogue as it now is, then damage that entry.
            start(env, workdir, f"{name}-settled", started)
            started[-1].send_signal(signal.SIGKILL)
            started[-1].wait(timeout=10)
            what = damage_cache(data["cache"], turn)
        else:
            what = "SIGKILL only"
        url = start(env, workdir, f"{name}-restarted", started)
        stored = stored_songs(data["database"])
        lost = sum(stored.get(song) != title for song, title in acknowledged.items())
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            indexed = client.get("/health").json()["songs_indexed"]
            not_served = 0
            for song in acknowledged:
                r = client.get(f"/songs/{song}/similar", params={"k": 3})
                not_served += r.status_code != 200 or len(r.json()["results"]) != 3
        wrong = wrong_neighbours(url, data["bundle"], data["database"])
        if kind == "cache":
            log = (workdir / f"{name}-restarted.log").read_text(errors="replace")
            found = "discarding persisted embeddings" in log or "differ from the model" in log
            what += ": detected and rebuilt" if found else ": NOT detected"
        return {
            "round": name,
            "damage": what,
            "acknowledged": len(acknowledged),
            "lost": lost,
            "unindexed": (len(stored) - indexed) + not_served,
            "wrong": wrong,
        }
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def prepare(workdir: Path, model: Path | None) -> dict:
    catalogue_dir = workdir / "catalogue"
    write_demo_catalogue(out_dir=catalogue_dir, n_tracks=1500, n_artists=220, seed=3)
    catalogue = load_catalogue(data_dir=catalogue_dir)
    if model is None:
        run = train_on_catalogue(catalogue, TrainConfig(epochs=3, seed=0))
        model = save_bundle(run, out_dir=workdir / "model", data_fingerprint=catalogue.fingerprint)
    database = workdir / "musicsim.db"
    engine = open_database(f"sqlite:///{database}")
    import_catalogue(engine, catalogue)
    engine.dispose()
    return {
        "model": model,
        "bundle": load_bundle(model),
        "database": database,
        "cache": workdir / "index-cache",
        "features": catalogue.features,
        "ids": [int(i) for i in catalogue.track_ids],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each kind")
    parser.add_argument("--model", type=Path, default=None, help="bundle (default: train one)")
    parser.add_argument(
        "--kinds", default="sigkill,wal,cache", help="comma-separated: sigkill, wal, cache"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="musicsim-faults-") as tmp:
        workdir = Path(tmp)
        data = prepare(workdir, args.model)
        env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
        env |= {
            "PYTHONPATH": str(ROOT),
            "MUSICSIM_MODEL_DIR": str(data["model"]),
            "MUSICSIM_DATABASE_URL": f"sqlite:///{data['database']}",
            "MUSICSIM_INDEX_CACHE_DIR": str(data["cache"]),
        }
        counter = itertools.count()
        results = [
            run_round(kind, turn, env, workdir, data, counter)
            for kind in args.kinds.split(",")
            for turn in range(args.rounds)
        ]
    header = ["round", "acknowledged", "lost", "unindexed", "wrong", "damage"]
    print(" | ".join(header))
    for row in results:
        print(" | ".join(str(row[h]) for h in header))
    totals = {h: sum(r[h] for r in results) for h in ("acknowledged", "lost", "unindexed", "wrong")}
    print(f"total: {totals}")


if __name__ == "__main__":
    main()
