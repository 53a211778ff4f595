"""DELETE and PATCH /songs/{id}: the index follows at once, replicas soon, restarts too.

(Routes in app/routes/library.py; the audio route's tests are in test_library.py.)
"""

import uuid

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app

KEY = "s3cret"
SETUPS = ["flat", "hnsw", "ivf", "ivfpq", "milvus"]
# Songs whose neighbours are read around the deletion. Milvus Lite answers a query in
# most of a second (its search is pure Python), so it reads fewer: 40 still hold a
# song that several of them find, the one deleted.
SAMPLE = {"faiss": 300, "milvus": 40}


@pytest.fixture(params=SETUPS)
def served(request, settings):
    """Settings with an API key, for each FAISS kind and for Milvus (on SQLite only)."""
    update = {"api_key": KEY}
    if request.param == "milvus":
        if "postgresql" in settings.database_url:
            pytest.skip("Milvus runs on SQLite only: the backend does not depend on the database")
        update |= {
            "index_backend": "milvus",
            "milvus_uri": request.getfixturevalue("milvus_lite_uri"),
            "milvus_collection": f"test_{uuid.uuid4().hex}",
            "scoring_warmup": False,
        }
    else:
        update["index_kind"] = request.param
    return settings.model_copy(update=update)


def neighbours_of(client, song_ids, k=10) -> dict[int, list[int]]:
    return {
        s: [r["id"] for r in client.get(f"/songs/{s}/similar", params={"k": k}).json()["results"]]
        for s in song_ids
    }


def test_a_deleted_song_is_never_returned_before_or_after_a_restart(served, catalogue):
    ids = catalogue.track_ids
    sample = ids[: SAMPLE[served.index_backend]]
    with TestClient(create_app(served)) as client:
        before = neighbours_of(client, sample)
        # the song most often among others' neighbours: a broken delete would show it
        counts = np.bincount(np.concatenate([np.asarray(v) for v in before.values()]))
        victim = int(np.argmax(counts))
        askers = [s for s, found in before.items() if victim in found]
        assert len(askers) >= 3
        assert client.delete(f"/songs/{victim}").status_code == 401
        assert client.delete(f"/songs/{victim}", headers={"X-API-Key": KEY}).status_code == 204
        assert client.delete(f"/songs/{victim}", headers={"X-API-Key": KEY}).status_code == 404
        assert client.get(f"/songs/{victim}").status_code == 404
        after = neighbours_of(client, [s for s in sample if s != victim])
        assert all(victim not in found and len(found) == 10 for found in after.values())
        queried = catalogue.features[: min(len(sample), 200)]
        features = {"items": [{"features": f.tolist()} for f in queried], "k": 10}
        batch = client.post("/songs/similar/batch", json=features).json()["results"]
        assert all(victim not in [r["id"] for r in b["results"]] for b in batch)
    with TestClient(create_app(served)) as restarted:
        again = neighbours_of(restarted, askers)
        assert all(victim not in found and len(found) == 10 for found in again.values())
        assert restarted.get("/health").json()["songs_indexed"] == len(ids) - 1


def test_patching_metadata_changes_the_song_and_new_features_move_it(served, catalogue):
    song, other = (int(i) for i in catalogue.track_ids[:2])
    headers = {"X-API-Key": KEY}
    with TestClient(create_app(served)) as client:
        patched = client.patch(
            f"/songs/{song}", json={"title": "Corrected", "album": "Live"}, headers=headers
        )
        assert patched.status_code == 200, patched.text
        assert (patched.json()["title"], patched.json()["album"]) == ("Corrected", "Live")
        assert client.get(f"/songs/{song}").json()["title"] == "Corrected"
        # give the song features beside another song's: it becomes that song's nearest
        # neighbour (an exact copy would be the same recording, never returned with it)
        body = {"features": (catalogue.features[1] * 1.01).tolist()}
        assert client.patch(f"/songs/{song}", json=body, headers=headers).status_code == 200
        found = client.get(f"/songs/{other}/similar", params={"k": 2}).json()["results"]
        assert found[0]["id"] == song and found[0]["distance"] < found[1]["distance"] / 2
        assert (
            client.patch(f"/songs/{song}", json={"genre": "Polka"}, headers=headers).status_code
            == 422
        )
        assert (
            client.patch(f"/songs/{song}", json={"features": None}, headers=headers).status_code
            == 422
        )
        assert (
            client.patch("/songs/999999999", json={"title": "x"}, headers=headers).status_code
            == 404
        )
        assert client.patch(f"/songs/{song}", json={"title": "x"}).status_code == 401
    with TestClient(create_app(served)) as restarted:
        nearest = restarted.get(f"/songs/{other}/similar", params={"k": 1}).json()["results"][0]
        assert nearest["id"] == song


def test_a_song_deleted_while_the_service_was_down_is_not_served_after_it_starts(served, catalogue):
    from sqlalchemy import text

    from app.db import open_database

    victim = int(catalogue.track_ids[5])
    with TestClient(create_app(served)) as client:
        asker = client.get(f"/songs/{victim}/similar", params={"k": 1}).json()["results"][0]["id"]
    engine = open_database(served.database_url)
    with engine.begin() as connection:  # another program deletes it while no service runs
        connection.execute(text("DELETE FROM songs WHERE id = :i"), {"i": victim})
    engine.dispose()
    with TestClient(create_app(served)) as restarted:
        found = restarted.get(f"/songs/{asker}/similar", params={"k": 20}).json()["results"]
        assert victim not in [r["id"] for r in found] and len(found) == 20
