"""Several API replicas (real uvicorn processes) on one PostgreSQL database.

Two replicas serve one database on free loopback ports. A song written through
either is served by the other within the README's bound: MUSICSIM_SYNC_INTERVAL_SECONDS
plus two polls of the follower (app/sync.py), which POLL_ALLOWANCE covers together
with the requests themselves. A third replica started after the writes must build
an index equal to the database: the same number of songs, every stored song served,
the same neighbours as a replica that followed the writes live.
"""

from __future__ import annotations

import time

import httpx
from sqlalchemy import create_engine, text
from uvicorn_processes import server_env, start_server, start_servers, stop_all

SYNC_INTERVAL_SECONDS = 0.5
POLL_ALLOWANCE_SECONDS = 3.0  # two polls and a request, with room for a busy machine
BOUND_SECONDS = SYNC_INTERVAL_SECONDS + POLL_ALLOWANCE_SECONDS
WRITES_PER_REPLICA = 3
TIMEOUT = httpx.Timeout(30.0)


def _song(catalogue, n: int) -> dict:
    features = (catalogue.features[n] * 1.02).tolist()
    return {"title": f"Replicated {n}", "artist": "Replica Band", "features": features}


def _seconds_until_served(client: httpx.Client, song: int, written: float) -> float:
    """Poll a replica until it serves the song's neighbours; seconds since the write's answer."""
    while True:
        response = client.get(f"/songs/{song}/similar", params={"k": 1})
        waited = time.monotonic() - written
        if response.status_code == 200:
            return waited
        # 409: stored but not indexed by this replica yet; anything else is a defect
        assert response.status_code == 409, response.text
        assert waited <= BOUND_SECONDS, f"song {song} not served after {waited:.2f} s"
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


def test_replicas_serve_each_others_songs_within_the_bound(
    tmp_path, postgres_url, bundle_dir, catalogue
):
    env = server_env(bundle_dir, postgres_url, sync_interval_seconds=str(SYNC_INTERVAL_SECONDS))
    started: list = []
    try:
        url_a, url_b = start_servers(env, tmp_path, ["a", "b"], started)
        with (
            httpx.Client(base_url=url_a, timeout=TIMEOUT) as a,
            httpx.Client(base_url=url_b, timeout=TIMEOUT) as b,
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
            with httpx.Client(base_url=url_c, timeout=TIMEOUT) as c:
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
