"""Bad input gets a 4xx naming the problem; the service keeps serving."""

import pytest

SONG = None


@pytest.fixture
def song(catalogue):
    return int(catalogue.track_ids[0])


def features(n=518, value=0.5):
    return [value] * n


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"features": features(517)}, "at least 518"),
        ({"features": features(519)}, "at most 518"),
        ({"features": ["loud"] * 518}, "valid number"),
        ({"features": features(), "k": 0}, "greater than or equal to 1"),
        ({"features": features(), "k": 1001}, "k must be between 1 and 1000"),
        ({"features": features(), "near": "north", "radius_km": 5}, "near must be 'LAT,LON'"),
        ({"features": features(), "near": "91,0", "radius_km": 5}, "off the globe"),
        ({"features": features(), "near": "1,1"}, "near and radius_km go together"),
        ({"features": features(), "genre": "Polka"}, "unknown genre 'Polka'"),
        ({}, "features"),
    ],
)
def test_bad_posted_queries_get_a_4xx_naming_the_problem(client, body, fragment):
    response = client.post("/songs/similar", json=body)
    assert 400 <= response.status_code < 500
    assert fragment in response.text


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_features_are_refused(client, token):
    raw = '{"features": [' + ",".join(["0.5"] * 517 + [token]) + "]}"
    response = client.post(
        "/songs/similar", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "finite" in response.text


def test_malformed_json_is_a_422(client):
    response = client.post(
        "/songs/similar", content="{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "JSON" in response.text


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"k": 0}, "greater than or equal to 1"),
        ({"k": 5000}, "k must be between 1 and 1000"),
        ({"near": "1;2", "radius_km": 10}, "near must be 'LAT,LON'"),
        ({"near": "1,2", "radius_km": -3}, "radius_km must be"),
        ({"genre": "Polka"}, "unknown genre"),
        ({"k": "ten"}, "valid integer"),
    ],
)
def test_bad_similar_parameters_get_a_422(client, song, params, fragment):
    response = client.get(f"/songs/{song}/similar", params=params)
    assert response.status_code == 422 and fragment in response.text


def test_a_bad_song_post_stores_nothing(client, catalogue):
    before = client.get("/health").json()["songs_indexed"]
    bad = [
        {"title": "x", "artist": "y", "features": features(3)},
        {"title": "x", "artist": "y", "features": features(), "genre": "Polka"},
        {"title": "", "artist": "y", "features": features()},
        {"title": "x", "artist": 10**9, "features": features()},
    ]
    for body in bad:
        assert client.post("/songs", json=body).status_code == 422
    assert client.get("/health").json()["songs_indexed"] == before


def test_batches_over_the_limit_are_413(client):
    items = [{"features": features()}] * 257
    response = client.post("/songs/similar/batch", json={"items": items})
    assert response.status_code == 413 and "at most 256" in response.text


def test_a_body_over_the_json_limit_is_413(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    small = settings.model_copy(update={"max_json_bytes": 2048})
    with TestClient(create_app(small)) as client:
        response = client.post("/songs/similar", json={"features": features()})
        assert response.status_code == 413 and "limit of 2048 bytes" in response.text

        def chunks():  # no Content-Length: the body is counted as it streams
            yield b'{"features": ['
            for _ in range(517):
                yield b"0.5,"
            yield b"0.5]}"

        streamed = client.post(
            "/songs/similar", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413


@pytest.mark.parametrize(
    "path",
    [
        "/songs/" + "9" * 4_301,
        "/songs/" + "1" * 20_000 + "/similar",
        "/songs/" + "9" * 20,  # short enough for int(), past the largest 64-bit id
    ],
)
def test_an_id_too_long_for_any_song_is_a_422_not_a_500(client, path):
    response = client.get(path)
    assert response.status_code == 422
    assert "less than or equal to 9223372036854775807" in response.text
    assert len(response.content) < 1_000  # the id is not echoed back


def test_leading_zeros_still_name_the_song(client, song):
    response = client.get("/songs/" + "0" * 5_000 + str(song))
    assert response.status_code == 200 and response.json()["id"] == song


@pytest.mark.parametrize("field", ["title", "artist", "location"])
def test_nul_in_a_stored_text_is_a_422_and_stores_nothing(client, field):
    before = client.get("/health").json()["songs_indexed"]
    body = {"title": "fine", "artist": "also fine", "features": features()}
    body[field] = "before\x00after"
    response = client.post("/songs", json=body)
    assert response.status_code == 422
    assert f"{field} must not contain NUL characters" in response.text
    assert client.get("/health").json()["songs_indexed"] == before


def test_an_unknown_genre_is_not_echoed_back_whole(client):
    genre = "Polka" * 200_000  # a megabyte
    response = client.post("/songs/similar", json={"features": features(), "genre": genre})
    assert response.status_code == 422 and "unknown genre 'PolkaPolka" in response.text
    assert "(1000000 characters)" in response.text and len(response.content) < 2_000
    body = {"title": "t", "artist": "a", "genre": genre, "features": features()}
    stored = client.post("/songs", json=body)
    assert stored.status_code == 422 and len(stored.content) < 2_000


def test_a_401_names_what_needs_the_key(settings):
    from fastapi.testclient import TestClient

    from app.main import create_app

    song = {"title": "t", "artist": "a", "features": features()}
    with TestClient(create_app(settings.model_copy(update={"api_key": "k"}))) as client:
        write = client.post("/songs", json=song)
        assert write.status_code == 401 and "changes the catalogue" in write.text
    guarded = settings.model_copy(update={"api_key": "k", "api_key_for_reads": True})
    with TestClient(create_app(guarded)) as client:
        read = client.get("/genres")
        assert read.status_code == 401 and "needs the key for reads too" in read.text
        assert "changes the catalogue" not in read.text


# SQLite only: the refusal is decided from the body's sizes, and the batch route answers
# from the in-memory song cards: no database read during the request.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_batch_of_256_items_at_k_1000_is_refused_for_its_total_work(client):
    body = {"items": [{"features": features()}] * 256, "k": 1000}
    response = client.post("/songs/similar/batch", json=body)
    assert response.status_code == 413
    assert "256 items x k=1000 is 256000 results, more than 25600" in response.text
    small = client.post("/songs/similar/batch", json={"items": body["items"][:25], "k": 1000})
    assert small.status_code == 200 and len(small.json()["results"]) == 25
