"""The follower: each process indexes the songs other processes store in its database.

In one process, `index_missing_songs` is compared with the database it reads, for
every size of id block and look-up chunk; the follower's thread is counted poll by
poll. Then several API replicas (real uvicorn processes) on one PostgreSQL database:
a song written through either is served by the other, and a third replica started
after the writes builds an index equal to the database.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session
from stand_in_embed import CountingEmbed, first_columns
from uvicorn_processes import http_client, server_env, start_server, start_servers, stop_all

from app.catalogue.importing import import_catalogue
from app.catalogue.reads import read_index_rows, read_song_ids
from app.config import Settings
from app.db import open_database
from app.index.faiss_index import FaissSongIndex
from app.index.follower import NON_FINITE_SKIPPED, index_missing_songs
from app.main import create_app
from app.orm import Song, features_to_blob

HANG_GUARD_SECONDS = 120.0  # only ends a test that would otherwise wait for ever
TIMEOUT = httpx.Timeout(30.0)


def song_body(catalogue, title="Shared"):
    # beside song 8, not a copy of it: a copy would never be returned with it
    features = (catalogue.features[8] * 1.02).tolist()
    return {"title": title, "artist": "Two Workers", "features": features}


@pytest.fixture
def half_indexed(database_url):
    """A database holding the small catalogue, and an index holding a random 60% of it."""
    engine = open_database(database_url)
    with Session(engine) as session:
        ids = read_song_ids(session)
        kept = np.sort(
            np.random.default_rng(0).choice(ids, size=int(0.6 * len(ids)), replace=False)
        )
        rows, features = read_index_rows(session, ids=kept)
    index = FaissSongIndex(4)
    index.add(rows, first_columns(features))
    yield engine, index, ids, kept
    engine.dispose()


@pytest.mark.parametrize("id_block", [1, 2, "largest id", "largest id + 1"])
@pytest.mark.parametrize("lookup_chunk", [1, "missing - 1", "missing", "missing + 1", 97])
def test_missing_songs_are_indexed_for_every_block_and_chunk_size(
    half_indexed, catalogue, id_block, lookup_chunk
):
    engine, index, ids, kept = half_indexed
    missing = np.setdiff1d(ids, kept)
    # Blocks of one id, of two, and one boundary just below or above the largest id.
    id_block = {"largest id": int(ids.max()), "largest id + 1": int(ids.max()) + 1}.get(
        id_block, id_block
    )
    sizes = {
        "missing - 1": len(missing) - 1,
        "missing": len(missing),
        "missing + 1": len(missing) + 1,
    }
    lookup_chunk = sizes.get(lookup_chunk, lookup_chunk)
    embed = CountingEmbed()
    with Session(engine) as session:
        added = index_missing_songs(
            session, index, embed, id_block=id_block, lookup_chunk=lookup_chunk
        )
    assert added == len(missing) == sum(embed.sizes)
    assert max(embed.sizes) <= lookup_chunk
    assert sorted(index.ids().tolist()) == ids.tolist()
    row_of = {int(track): row for row, track in enumerate(catalogue.track_ids)}
    for song in missing[:: max(len(missing) // 25, 1)].tolist():
        expected = catalogue.features[row_of[song], :4]
        np.testing.assert_array_equal(index.embedding_of(song), expected)
    with Session(engine) as session:  # nothing is left to add
        assert index_missing_songs(session, index, embed, id_block=id_block) == 0


def test_songs_whose_embedding_is_not_finite_are_skipped_with_a_warning_and_counted(
    half_indexed, caplog
):
    engine, index, ids, kept = half_indexed
    missing = np.setdiff1d(ids, kept)
    with Session(engine) as session:
        rows, features = read_index_rows(session, ids=missing)
    song_of = {row.tobytes(): int(song) for song, row in zip(rows.ids, features, strict=True)}
    poisoned = set(missing[::5].tolist())

    def embed(batch):
        """The stand-in model, with a NaN or an infinity in each poisoned song's embedding."""
        out = first_columns(batch)
        for row, song in enumerate(song_of[f.tobytes()] for f in batch):
            if song in poisoned:
                out[row, song % 4] = np.nan if song % 2 else np.inf
        return out

    before = NON_FINITE_SKIPPED.total
    with caplog.at_level("WARNING", logger="musicsim.sync"), Session(engine) as session:
        added = index_missing_songs(session, index, embed, lookup_chunk=97)
    assert added == len(missing) - len(poisoned)
    assert set(index.ids().tolist()) == set(ids.tolist()) - poisoned
    assert np.isfinite(index.embeddings_of(index.ids())).all()
    assert NON_FINITE_SKIPPED.total - before == len(poisoned)
    warned = [r for r in caplog.records if "not finite" in r.getMessage()]
    assert {song for r in warned for song in r.song_ids} == poisoned
    with Session(engine) as session:  # still stored, still refused: tried again, counted again
        assert index_missing_songs(session, index, embed) == 0
    assert NON_FINITE_SKIPPED.total - before == 2 * len(poisoned)
    assert set(index.ids().tolist()) == set(ids.tolist()) - poisoned


class _GatedPolls:
    """Stands in for a follower's `poll_once` and lets its thread poll one round at a time.

    The thread looks `poll_once` up on the instance every round, so from its next
    round on it waits here for a permit; `open` lets every later round through.
    """

    def __init__(self, follower):
        self._poll = follower.poll_once
        self._permits = threading.Semaphore(0)
        self._at_gate = threading.Event()
        self._open = False
        self.results: queue.Queue[int] = queue.Queue()
        follower.poll_once = self

    def __call__(self) -> int:
        self._at_gate.set()
        if not self._open:
            assert self._permits.acquire(timeout=HANG_GUARD_SECONDS)
        added = self._poll()
        self.results.put(added)
        return added

    def wait_at_gate(self) -> None:
        """Return once the thread waits at the gate: no poll is running."""
        assert self._at_gate.wait(HANG_GUARD_SECONDS), "the follower thread never polled"

    def poll(self) -> int:
        """Let one round of the thread through; what that poll added."""
        self._permits.release()
        return self.results.get(timeout=HANG_GUARD_SECONDS)

    def open(self) -> None:
        self._open = True
        self._permits.release(2)


def test_the_follower_thread_indexes_a_song_in_the_first_poll_after_its_write(settings, catalogue):
    # The README's bound, as a count of polls: a song committed before a poll starts
    # is indexed by that poll, not by some later one.
    fast = settings.model_copy(update={"sync_interval_seconds": 0.05})
    with TestClient(create_app(fast)) as one, TestClient(create_app(fast)) as two:
        service = two.app.state.service
        polls = _GatedPolls(service.follower)
        try:
            polls.wait_at_gate()
            before = len(service.index)
            song = one.post("/songs", json=song_body(catalogue, "Later")).json()["id"]
            assert two.get(f"/songs/{song}/similar").status_code == 409
            assert polls.poll() == 1
            assert len(service.index) == before + 1
            assert two.get(f"/songs/{song}/similar").status_code == 200
            assert polls.poll() == 0  # the next round finds nothing new
        finally:
            polls.open()


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_a_song_added_through_one_process_is_served_by_another(settings, catalogue):
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        song = one.post("/songs", json=song_body(catalogue)).json()["id"]
        # The follower thread polls every second; polling here makes the test exact.
        two.app.state.service.follower.poll_once()
        body = two.get(f"/songs/{song}/similar", params={"k": 1}).json()
        assert body["results"][0]["id"] == int(catalogue.track_ids[8])
        for client in (one, two):  # their start-up builds, which /health reports
            client.app.state.service.index.wait_for_neighbourhoods()
        assert one.get("/health").json() == two.get("/health").json()
        assert two.app.state.service.follower.poll_once() == 0  # nothing indexed twice


def test_a_process_own_newer_song_does_not_hide_an_older_one_from_another(settings, catalogue):
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        older = two.post("/songs", json=song_body(catalogue, "Older")).json()["id"]
        newer = one.post("/songs", json=song_body(catalogue, "Newer")).json()["id"]
        assert newer > older
        one.app.state.service.follower.poll_once()
        assert one.get(f"/songs/{older}/similar").status_code == 200


def test_a_song_whose_id_commits_after_a_larger_one_is_still_indexed(
    postgres_url, bundle_dir, catalogue
):
    # PostgreSQL hands out a sequence id when a transaction inserts, not when it commits:
    # here id `early` is taken first and committed last, after the follower saw `later`.
    # No timed polls: the test's own poll_once calls must be the ones that find the songs.
    settings = Settings(
        model_dir=bundle_dir, database_url=postgres_url, sync_interval_seconds=3600, _env_file=None
    )
    engine = open_database(postgres_url)
    with TestClient(create_app(settings)) as one, Session(engine) as slow_writer:
        slow = Song(
            title="Slow commit",
            artist_id=int(catalogue.artist_ids[0]),
            features=features_to_blob(catalogue.features[8]),
            source="cold-start",
        )
        slow_writer.add(slow)
        slow_writer.flush()  # takes its id now; the commit comes later
        early = slow.id
        later = one.post("/songs", json=song_body(catalogue, "Quick")).json()["id"]
        assert later > early
        follower = one.app.state.service.follower
        assert follower.poll_once() == 0  # `early` is not visible yet
        assert one.get(f"/songs/{early}").status_code == 404
        slow_writer.commit()
        assert follower.poll_once() == 1
        assert one.get(f"/songs/{early}/similar").status_code == 200
        assert one.get("/health").json()["songs_indexed"] == len(catalogue.tracks) + 2
    engine.dispose()


def test_songs_imported_later_below_the_largest_id_are_indexed_by_the_follower(settings, catalogue):
    ids = set(catalogue.track_ids.tolist())
    free = [i for i in range(min(ids), max(ids)) if i not in ids][:3]  # gaps between tracks
    assert len(free) == 3
    extra = catalogue.tracks.iloc[:3].copy()
    extra.index = free
    late = dataclasses.replace(catalogue, tracks=extra, features=catalogue.features[:3])
    quiet = settings.model_copy(update={"sync_interval_seconds": 3600})  # only our polls
    with TestClient(create_app(quiet)) as one:
        newest = one.post("/songs", json=song_body(catalogue, "Newest")).json()["id"]
        assert newest > max(free)
        engine = open_database(settings.database_url)
        import_catalogue(engine, late)
        engine.dispose()
        assert one.app.state.service.follower.poll_once() == 3
        for song in free:
            assert one.get(f"/songs/{song}/similar", params={"k": 1}).status_code == 200
        assert one.app.state.service.follower.poll_once() == 0


WRITES_PER_REPLICA = 3


def _song(catalogue, n: int) -> dict:
    features = (catalogue.features[n] * 1.02).tolist()
    return {"title": f"Replicated {n}", "artist": "Replica Band", "features": features}


def _seconds_until_served(client: httpx.Client, song: int, written: float) -> float:
    """Ask a replica until it serves the song's neighbours; seconds since the write's answer.

    Printed for information only: how soon is the in-process poll count's business
    (above); a wall-clock bound here would fail on a busy machine, not on a defect.
    """
    while True:
        response = client.get(f"/songs/{song}/similar", params={"k": 1})
        waited = time.monotonic() - written
        if response.status_code == 200:
            return waited
        # 409: stored but not indexed by this replica yet; anything else is a defect
        assert response.status_code == 409, response.text
        assert waited <= HANG_GUARD_SECONDS, f"song {song} never served ({waited:.0f} s)"
        time.sleep(0.02)


def _stored_songs(database_url: str) -> tuple[int, list[int]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            count = connection.execute(text("SELECT COUNT(*) FROM songs")).scalar_one()
            cold = "SELECT id FROM songs WHERE source = 'cold-start' ORDER BY id"
            return count, list(connection.execute(text(cold)).scalars())
    finally:
        engine.dispose()


def test_replicas_serve_each_others_songs(tmp_path, postgres_url, bundle_dir, catalogue):
    env = server_env(bundle_dir, postgres_url, sync_interval_seconds="0.5")
    started: list = []
    try:
        url_a, url_b = start_servers(env, tmp_path, ["a", "b"], started)
        with (
            http_client(base_url=url_a, timeout=TIMEOUT) as a,
            http_client(base_url=url_b, timeout=TIMEOUT) as b,
        ):
            delays = []
            for n in range(2 * WRITES_PER_REPLICA):
                writer, reader = (a, b) if n % 2 == 0 else (b, a)
                response = writer.post("/songs", json=_song(catalogue, n))
                written = time.monotonic()
                assert response.status_code == 201, response.text
                song = response.json()["id"]
                delays.append(_seconds_until_served(reader, song, written))
                assert reader.get(f"/songs/{song}").json()["title"] == f"Replicated {n}"
            print(f"delays until the other replica served a song: {delays} s")

            count, cold_start = _stored_songs(postgres_url)
            assert len(cold_start) == 2 * WRITES_PER_REPLICA
            assert count == len(catalogue.tracks) + len(cold_start)

            _, url_c = start_server(env, tmp_path, "c", started)
            with http_client(base_url=url_c, timeout=TIMEOUT) as c:
                assert c.get("/health").json()["songs_indexed"] == count
                for client in (a, b):
                    assert client.get("/health").json()["songs_indexed"] == count
                queries = cold_start + [int(i) for i in catalogue.track_ids[:5]]
                for song in queries:
                    late = c.get(f"/songs/{song}/similar", params={"k": 5})
                    assert late.status_code == 200, late.text
                    live = a.get(f"/songs/{song}/similar", params={"k": 5})
                    assert [r["id"] for r in late.json()["results"]] == [
                        r["id"] for r in live.json()["results"]
                    ]
    finally:
        stop_all(started)


def test_a_song_deleted_by_one_process_is_dropped_by_the_others_next_poll(settings, catalogue):
    from fastapi.testclient import TestClient

    from app.main import create_app

    # a long interval: only the explicit polls below run, so the test decides when
    quiet = settings.model_copy(update={"sync_interval_seconds": 3600, "index_cache_dir": None})
    victim = int(catalogue.track_ids[0])
    with TestClient(create_app(quiet)) as writer, TestClient(create_app(quiet)) as reader:
        follower = reader.app.state.service.follower
        assert follower.poll_once() == 0
        nearest = reader.get(f"/songs/{victim}/similar", params={"k": 1}).json()["results"][0]
        assert writer.delete(f"/songs/{victim}").status_code == 204
        added = writer.post(
            "/songs",
            json={
                "title": "New",
                "artist": "Someone new",
                "features": catalogue.features[0].tolist(),
            },
        ).json()["id"]
        assert victim in reader.app.state.service.index  # not yet: nothing polled
        assert follower.poll_once() in (0, 1)  # the addition may wait for the next poll
        follower.poll_once()
        index = reader.app.state.service.index
        assert victim not in index and added in index
        results = reader.get(f"/songs/{nearest['id']}/similar", params={"k": 20}).json()
        assert victim not in [r["id"] for r in results["results"]]
        assert len(index) == len(catalogue.track_ids)  # one gone, one added
