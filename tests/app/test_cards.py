"""The lean answers (cards in memory, JSON written once) say what the database says.

Every similarity route's items and query record are compared, field for field, with
a reference read straight from the database rows with SQL (not through the ORM or
the cards), for each filter and scoring, and again after an add, a PATCH, a DELETE
and a follower poll that picks up another process's song.
"""

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from app.main import create_app
from app.schemas import SimilarSong, SongOut

ROWS = text(
    """
    SELECT s.id, s.title, s.album, s.duration, s.file_path, s.source,
           a.id, a.name, a.location, a.latitude, a.longitude, g.title,
           s.album_artist, s.track_number
    FROM songs s JOIN artists a ON s.artist_id = a.id LEFT JOIN genres g ON s.genre_id = g.id
    """
)


def database_rows(url: str) -> dict[int, dict]:
    """song id -> the SongOut fields, from SQL alone."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(ROWS).all()
    finally:
        engine.dispose()
    return {
        song_id: {
            "id": song_id,
            "title": title,
            "artist": {"id": artist_id, "name": name},
            "genre": genre,
            "duration": duration,
            "album": album,
            "location": location,
            "latitude": latitude,
            "longitude": longitude,
            "source": source,
            "file": file_path,
            "audio_url": f"/songs/{song_id}/audio" if file_path else None,
            "album_artist": album_artist,
            "track_number": track_number,
        }
        for (song_id, title, album, duration, file_path, source, artist_id, name, location,
             latitude, longitude, genre, album_artist, track_number) in rows
    }  # fmt: skip


ITEM_FIELDS = (
    "id", "title", "artist", "genre", "album", "duration", "audio_url", "album_artist",
    "track_number",
)  # fmt: skip


def assert_items_match(items: list[dict], rows: dict[int, dict], *, query: np.ndarray, index):
    assert items, "an answer with no results proves nothing"
    for item in items:
        assert set(item) == set(SimilarSong.model_fields)
        assert {f: item[f] for f in ITEM_FIELDS} == {f: rows[item["id"]][f] for f in ITEM_FIELDS}
        stored = index.embedding_of(item["id"]).astype(np.float64)
        assert item["distance"] == pytest.approx(np.linalg.norm(stored - query), rel=1e-4, abs=1e-4)
        assert item["similarity"] is None or 0.0 <= item["similarity"] <= 1.0


def embedding(client, song_id: int) -> np.ndarray:
    return client.app.state.service.index.embedding_of(song_id).astype(np.float64)


def filters(catalogue) -> list[dict]:
    located = catalogue.tracks.dropna(subset=["latitude"])
    lat, lon = located["latitude"].iloc[0], located["longitude"].iloc[0]
    genre = catalogue.tracks["genre"].dropna().iloc[0]
    return [
        {},
        {"exclude_same_artist": True},
        {"genre": genre},
        {"near": f"{lat},{lon}", "radius_km": 2000},
        {"scoring": "local-scaling"},
        {"scoring": "mutual-proximity", "genre": genre},
    ]


def test_similar_songs_of_a_stored_song_match_the_database_for_every_filter(
    client, settings, catalogue
):
    rows = database_rows(settings.database_url)
    index = client.app.state.service.index
    for position in (0, 7):
        song = int(catalogue.track_ids[position])
        for params in filters(catalogue):
            answer = client.get(f"/songs/{song}/similar", params={"k": 8, **params})
            assert answer.status_code == 200, (params, answer.text)
            assert answer.headers["content-type"] == "application/json"
            body = answer.json()
            assert body["query"] == rows[song] == client.get(f"/songs/{song}").json()
            assert set(body["query"]) == set(SongOut.model_fields)
            assert song not in {r["id"] for r in body["results"]}
            assert_items_match(body["results"], rows, query=embedding(client, song), index=index)


def test_posted_features_and_batches_match_the_database_for_every_filter(
    client, settings, catalogue
):
    rows = database_rows(settings.database_url)
    index = client.app.state.service.index
    songs = [int(catalogue.track_ids[i]) for i in (3, 11)]
    features = [catalogue.features[i].tolist() for i in (3, 11)]
    for params in filters(catalogue):
        posted = {k: v for k, v in params.items() if k != "exclude_same_artist"}
        if "exclude_same_artist" in params:
            posted["exclude_artist"] = int(catalogue.artist_ids[3])
        one = client.post("/songs/similar", json={"features": features[0], "k": 6, **posted})
        assert one.status_code == 200, (params, one.text)
        assert one.json()["query"] is None
        query = np.asarray(client.app.state.service.bundle.embed(np.asarray(features[:1]))[0])
        assert_items_match(one.json()["results"], rows, query=query, index=index)
        batch = client.post(
            "/songs/similar/batch",
            json={"items": [{"features": f} for f in features], "k": 4, **posted},
        )
        assert batch.status_code == 200, (params, batch.text)
        answers = batch.json()["results"]
        assert len(answers) == 2 and all(a["query"] is None for a in answers)
        for answer, song in zip(answers, songs, strict=True):
            assert_items_match(answer["results"], rows, query=embedding(client, song), index=index)


def test_playlists_list_the_songs_as_the_database_has_them(client, settings, catalogue):
    rows = database_rows(settings.database_url)
    a, b, c = (int(catalogue.track_ids[i]) for i in (1, 2, 3))
    answers = [
        client.post("/recommend", json={"positive": [a, b], "k": 6}),
        client.get(f"/songs/{a}/path/{b}", params={"length": 5}),
        client.post("/radio", json={"seeds": [c], "n": 5}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        items = answer.json()["results"]
        assert items and set(answer.json()) == {"results"}
        for item in items:
            assert set(item) == set(SimilarSong.model_fields)
            expected = rows[item["id"]]
            assert {f: item[f] for f in ITEM_FIELDS} == {f: expected[f] for f in ITEM_FIELDS}
            assert 0.0 <= item["similarity"] <= 1.0


def test_m3u_lists_the_json_answers_songs_with_their_stored_titles(client, settings, catalogue):
    rows = database_rows(settings.database_url)
    song = int(catalogue.track_ids[4])
    found = client.get(f"/songs/{song}/similar", params={"k": 5}).json()["results"]
    m3u = client.get(f"/songs/{song}/similar", params={"k": 5, "format": "m3u"})
    assert m3u.headers["content-type"].startswith("audio/x-mpegurl")
    lines = m3u.text.splitlines()
    assert lines[0] == "#EXTM3U"
    for (info, url), result in zip(zip(lines[1::2], lines[2::2], strict=True), found, strict=True):
        row = rows[result["id"]]
        length = -1 if row["duration"] is None else round(row["duration"])
        label = f"{row['artist']['name']} - {row['title'] or 'song ' + str(row['id'])}"
        assert info == f"#EXTINF:{length},{label}"
        assert url.endswith(f"/songs/{result['id']}/audio")


def features_near(catalogue, position: int) -> list[float]:
    # Not the stored song's own features: an exact copy counts as the same recording,
    # and answers hold one copy of each.
    return (catalogue.features[position] * 1.01).tolist()


def song_body(catalogue, title: str, position: int = 8) -> dict:
    return {
        "title": title,
        "artist": int(catalogue.artist_ids[0]),
        "features": features_near(catalogue, position),
    }


def nearest_to(client, catalogue, position: int, **params) -> dict:
    body = {"features": features_near(catalogue, position), "k": 3, **params}
    return client.post("/songs/similar", json=body).json()


def test_answers_follow_an_add_a_patch_and_a_delete_at_once(client, settings, catalogue):
    song = client.post("/songs", json=song_body(catalogue, "Fresh", position=9)).json()["id"]
    first = nearest_to(client, catalogue, 9)["results"]
    assert song in {r["id"] for r in first}
    assert next(r for r in first if r["id"] == song) == {
        **{f: database_rows(settings.database_url)[song][f] for f in ITEM_FIELDS},
        "distance": pytest.approx(0.0, abs=1e-3),
        "similarity": next(r for r in first if r["id"] == song)["similarity"],
    }
    genre = catalogue.tracks["genre"].dropna().iloc[0]
    patch = {"title": "Renamed", "album": "New album", "duration": 123.5, "genre": genre}
    assert client.patch(f"/songs/{song}", json=patch).status_code == 200
    rows = database_rows(settings.database_url)
    assert rows[song]["title"] == "Renamed"  # the reference itself saw the change
    item = next(r for r in nearest_to(client, catalogue, 9)["results"] if r["id"] == song)
    assert {f: item[f] for f in ITEM_FIELDS} == {f: rows[song][f] for f in ITEM_FIELDS}
    own = client.get(f"/songs/{song}/similar", params={"k": 3}).json()["query"]
    assert own == rows[song]
    assert client.delete(f"/songs/{song}").status_code == 204
    assert song not in {r["id"] for r in nearest_to(client, catalogue, 9, k=50)["results"]}
    assert client.get(f"/songs/{song}/similar").status_code == 404


def test_a_follower_poll_brings_another_process_song_into_the_answers(settings, catalogue):
    # Only the polls below: the follower's own thread (every second) would race them.
    settings = settings.model_copy(update={"sync_interval_seconds": 3600})
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        song = one.post("/songs", json=song_body(catalogue, "From one", position=12)).json()["id"]
        assert two.get(f"/songs/{song}/similar").status_code == 409  # stored, not yet known
        assert song not in {r["id"] for r in nearest_to(two, catalogue, 12)["results"]}
        assert two.app.state.service.follower.poll_once() == 1
        rows = database_rows(settings.database_url)
        item = next(r for r in nearest_to(two, catalogue, 12)["results"] if r["id"] == song)
        assert {f: item[f] for f in ITEM_FIELDS} == {f: rows[song][f] for f in ITEM_FIELDS}
        assert two.get(f"/songs/{song}/similar").json()["query"] == rows[song]
        assert one.delete(f"/songs/{song}").status_code == 204
        two.app.state.service.follower.poll_once()
        assert song not in {r["id"] for r in nearest_to(two, catalogue, 12, k=50)["results"]}
        assert two.get(f"/songs/{song}/similar").status_code == 404


def test_a_patch_in_another_process_reaches_the_answers_after_a_poll(settings, catalogue):
    # A PATCH moves the song's revision, not the catalogue version: the follower must
    # still hand the revised song to the cards.
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        song = int(catalogue.track_ids[12])
        neighbour = two.get(f"/songs/{song}/similar", params={"k": 1}).json()["results"][0]["id"]
        two.app.state.service.follower.poll_once()  # the catalogue version is now known
        assert one.patch(f"/songs/{song}", json={"title": "Patched elsewhere"}).status_code == 200
        two.app.state.service.follower.poll_once()
        rows = database_rows(settings.database_url)
        assert two.get(f"/songs/{song}/similar").json()["query"] == rows[song]
        item = next(
            r
            for r in two.get(f"/songs/{neighbour}/similar", params={"k": 10}).json()["results"]
            if r["id"] == song
        )
        assert item["title"] == "Patched elsewhere" == rows[song]["title"]
