"""API keys for writes (and optionally reads), CORS, and two processes on one database."""

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


def song_body(catalogue, title="Shared"):
    return {"title": title, "artist": "Two Workers", "features": catalogue.features[8].tolist()}


def test_reads_can_require_the_key_too(settings, catalogue):
    guarded = settings.model_copy(update={"api_key": "k", "api_key_for_reads": True})
    song = int(catalogue.track_ids[0])
    with TestClient(create_app(guarded)) as client:
        assert client.get(f"/songs/{song}").status_code == 401
        assert client.get(f"/songs/{song}", headers={"X-API-Key": "x"}).status_code == 403
        assert client.get(f"/songs/{song}", headers={"X-API-Key": "k"}).status_code == 200
        assert client.get("/health").status_code == 200  # health checks stay open


def test_reads_stay_open_by_default_when_a_key_guards_writes(settings, catalogue):
    with TestClient(create_app(settings.model_copy(update={"api_key": "k"}))) as client:
        assert client.get(f"/songs/{int(catalogue.track_ids[0])}").status_code == 200
        assert client.post("/songs", json=song_body(catalogue)).status_code == 401


def test_cors_is_off_unless_origins_are_configured(settings):
    preflight = {"Origin": "https://example.org", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(settings)) as client:
        response = client.options("/health", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
    allowed = settings.model_copy(update={"cors_origins": ["https://example.org"]})
    with TestClient(create_app(allowed)) as client:
        response = client.options("/health", headers=preflight)
        assert response.headers["access-control-allow-origin"] == "https://example.org"


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_a_song_added_through_one_process_is_served_by_another(settings, catalogue):
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        song = one.post("/songs", json=song_body(catalogue)).json()["id"]
        # The follower thread polls every second; polling here makes the test exact.
        two.app.state.service.follower.poll_once()
        body = two.get(f"/songs/{song}/similar", params={"k": 1}).json()
        assert body["results"][0]["id"] == int(catalogue.track_ids[8])
        assert one.get("/health").json() == two.get("/health").json()
        assert two.app.state.service.follower.poll_once() == 0  # nothing indexed twice


def test_the_follower_thread_indexes_other_processes_songs_by_itself(settings, catalogue):
    import time

    fast = settings.model_copy(update={"sync_interval_seconds": 0.2})
    with TestClient(create_app(fast)) as one, TestClient(create_app(fast)) as two:
        song = one.post("/songs", json=song_body(catalogue, "Later")).json()["id"]
        deadline = time.monotonic() + 30  # generous: a bound on waiting, not a speed check
        while two.get(f"/songs/{song}/similar").status_code == 409:
            assert time.monotonic() < deadline, "the other process never indexed the song"
            time.sleep(0.1)
        assert two.get(f"/songs/{song}/similar").status_code == 200


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
    from sqlalchemy.orm import Session

    from app.config import Settings
    from app.db import open_database
    from app.orm import Song, features_to_blob

    settings = Settings(model_dir=bundle_dir, database_url=postgres_url, _env_file=None)
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
    import dataclasses

    from app.catalogue.importing import import_catalogue
    from app.db import open_database

    ids = set(catalogue.track_ids.tolist())
    free = [i for i in range(min(ids), max(ids)) if i not in ids][:3]  # gaps between tracks
    assert len(free) == 3
    extra = catalogue.tracks.iloc[:3].copy()
    extra.index = free
    late = dataclasses.replace(catalogue, tracks=extra, features=catalogue.features[:3])
    with TestClient(create_app(settings)) as one:
        newest = one.post("/songs", json=song_body(catalogue, "Newest")).json()["id"]
        assert newest > max(free)
        engine = open_database(settings.database_url)
        import_catalogue(engine, late)
        engine.dispose()
        assert one.app.state.service.follower.poll_once() == 3
        for song in free:
            assert one.get(f"/songs/{song}/similar", params={"k": 1}).status_code == 200
        assert one.app.state.service.follower.poll_once() == 0
