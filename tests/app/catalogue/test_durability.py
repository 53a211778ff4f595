"""A real server killed with SIGKILL in the middle of a stream of writes loses nothing it
acknowledged and leaves nothing half-written.

One uvicorn process (the app factory, settings from MUSICSIM_* variables) serves a
database holding the small catalogue on a free loopback port. A few threads post new
songs (distinct titles) while others read neighbours; once enough writes are
acknowledged the process gets SIGKILL, mid-stream. A new process on the same database
must then serve every acknowledged song, index every stored song, and every row must
be whole. Bounded: at most MAX_WRITES writes, LOAD_SECONDS of load, and every request
has a timeout; every process started here is killed in a finally block.
"""

from __future__ import annotations

import contextlib
import itertools
import random
import signal
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from uvicorn_processes import http_client, server_env, start_server, stop_all

from app.catalogue.importing import import_catalogue
from app.db import open_database
from training.data.features import N_FEATURES

WRITERS = 3
READERS = 2
MAX_WRITES = 200
KILL_AFTER_ACKS = 60  # SIGKILL once this many writes are acknowledged ...
LOAD_SECONDS = 15.0  # ... or when this much time has passed, whichever comes first
REQUEST_TIMEOUT = httpx.Timeout(10.0)
BLOB_BYTES = N_FEATURES * 4  # 518 little-endian float32


@dataclass
class Traffic:
    """What the client threads saw; lists are appended under the GIL, one item at a time."""

    attempted: list[str] = field(default_factory=list)  # titles, recorded before sending
    acknowledged: list[tuple[int, str]] = field(default_factory=list)  # (id, title) of 201s
    refused: list[tuple[str, int, str]] = field(default_factory=list)  # non-201 answers
    read_statuses: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    numbers: itertools.count = field(default_factory=itertools.count)


@pytest.fixture
def database(tmp_path, catalogue) -> Path:
    path = tmp_path / "db.sqlite"
    engine = open_database(f"sqlite:///{path}")
    import_catalogue(engine, catalogue)
    engine.dispose()
    return path


def _writer(url: str, writer: int, traffic: Traffic, vectors: np.ndarray, artist_ids, deadline):
    rng = random.Random(writer)
    with http_client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        while not traffic.stop.is_set() and time.monotonic() < deadline:
            n = next(traffic.numbers)
            if n >= MAX_WRITES:
                return
            title = f"durability song {n:04d}"
            # a new artist per writer (created once, then reused by name), or an existing id
            artist = rng.choice(artist_ids) if n % 3 == 0 else f"Durability writer {writer}"
            features = (vectors[n % len(vectors)] * rng.uniform(0.9, 1.1)).tolist()
            traffic.attempted.append(title)
            try:
                response = client.post(
                    "/songs", json={"title": title, "artist": artist, "features": features}
                )
            except httpx.HTTPError:  # the server was killed: this write is unacknowledged
                return
            if response.status_code == 201:
                traffic.acknowledged.append((response.json()["id"], title))
            else:
                traffic.refused.append((title, response.status_code, response.text))


def _reader(url: str, reader: int, traffic: Traffic, song_ids, deadline):
    rng = random.Random(100 + reader)
    with http_client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
        while not traffic.stop.is_set() and time.monotonic() < deadline:
            recent = traffic.acknowledged[-5:]
            song = rng.choice(recent)[0] if recent and rng.random() < 0.3 else rng.choice(song_ids)
            try:
                response = client.get(f"/songs/{song}/similar", params={"k": 5})
            except httpx.HTTPError:
                return
            traffic.read_statuses.append(response.status_code)


def _rows(database: Path) -> list[tuple]:
    """Every song with its artist looked up, read with the sqlite3 module directly."""
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return connection.execute(
            "SELECT s.id, s.title, s.source, s.features, a.id FROM songs s "
            "LEFT JOIN artists a ON a.id = s.artist_id ORDER BY s.id"
        ).fetchall()


def test_acknowledged_songs_survive_a_sigkill(tmp_path, database, bundle_dir, catalogue):
    env = server_env(bundle_dir, f"sqlite:///{database}")
    song_ids = [int(i) for i in catalogue.track_ids]
    artist_ids = sorted({int(a) for a in catalogue.tracks["artist_id"]})
    started: list[subprocess.Popen] = []
    traffic = Traffic()
    threads: list[threading.Thread] = []
    try:
        server, url = start_server(env, tmp_path, "first", started)
        deadline = time.monotonic() + LOAD_SECONDS
        threads = [
            threading.Thread(
                target=_writer, args=(url, w, traffic, catalogue.features, artist_ids, deadline)
            )
            for w in range(WRITERS)
        ] + [
            threading.Thread(target=_reader, args=(url, r, traffic, song_ids, deadline))
            for r in range(READERS)
        ]
        for thread in threads:
            thread.start()
        while len(traffic.acknowledged) < KILL_AFTER_ACKS and time.monotonic() < deadline:
            time.sleep(0.01)
        server.send_signal(signal.SIGKILL)  # mid-stream: the writers are still sending
        server.wait(timeout=10)
        traffic.stop.set()
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT.read + 5)
        assert not any(thread.is_alive() for thread in threads)

        acknowledged = dict(traffic.acknowledged)
        assert acknowledged, "no write was acknowledged before the kill"
        assert not traffic.refused, traffic.refused[:3]
        assert set(traffic.read_statuses) <= {200}, sorted(set(traffic.read_statuses))
        rows_after_kill = _rows(database)  # opening it also recovers the WAL

        _, url = start_server(env, tmp_path, "restarted", started)
        with http_client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
            # every acknowledged song is served, with its title and its neighbours
            for song, title in acknowledged.items():
                body = client.get(f"/songs/{song}").json()
                assert body["title"] == title and body["source"] == "cold-start", body
                similar = client.get(f"/songs/{song}/similar", params={"k": 3})
                assert similar.status_code == 200, similar.text
                assert similar.json()["query"]["id"] == song
                assert len(similar.json()["results"]) == 3

            rows = _rows(database)
            assert len(rows) == len(rows_after_kill)
            health = client.get("/health").json()
            assert health["songs_indexed"] == len(rows)

            # no row is half there: a whole features blob and an existing artist, always
            for song, _title, source, blob, artist in rows:
                assert artist is not None, f"song {song} has no artist row"
                assert isinstance(blob, bytes) and len(blob) == BLOB_BYTES, song
                assert np.isfinite(np.frombuffer(blob, dtype="<f4")).all(), song
                assert source in ("fma", "cold-start"), song
            cold_start = {song: title for song, title, source, _, _ in rows if source != "fma"}
            assert len(rows) - len(cold_start) == len(catalogue.tracks)
            assert acknowledged.items() <= cold_start.items()
            titles = list(cold_start.values())
            assert len(titles) == len(set(titles)), "a write was stored twice"

            # A song stored but never acknowledged is allowed: its commit happened and the
            # server died before the 201 went out (or the client never read it). Each writer
            # has at most one request in flight, and such a song must be whole and served.
            unacknowledged = {s: t for s, t in cold_start.items() if s not in acknowledged}
            assert len(unacknowledged) <= WRITERS, unacknowledged
            assert set(unacknowledged.values()) <= set(traffic.attempted)
            for song, title in unacknowledged.items():
                assert client.get(f"/songs/{song}").json()["title"] == title
                assert client.get(f"/songs/{song}/similar", params={"k": 3}).status_code == 200
        print(
            f"{len(traffic.attempted)} writes sent, {len(acknowledged)} acknowledged, "
            f"{len(unacknowledged)} stored unacknowledged, {len(traffic.read_statuses)} reads"
        )
    finally:
        traffic.stop.set()
        stop_all(started)
        for thread in threads:
            thread.join(timeout=REQUEST_TIMEOUT.read + 5)
