"""GET /songs: a paged, case-insensitive search over titles and artist names."""

import pytest
from fastapi.testclient import TestClient

from app.catalogue.importing import import_catalogue
from app.config import Settings
from app.db import open_database
from app.main import create_app


@pytest.fixture(scope="module")
def reader(tmp_path_factory, bundle_dir, catalogue):
    """One app over the small catalogue, for tests that only read."""
    url = f"sqlite:///{tmp_path_factory.mktemp('listing') / 'musicsim.db'}"
    engine = open_database(url)
    import_catalogue(engine, catalogue)
    engine.dispose()
    settings = Settings(model_dir=bundle_dir, database_url=url, _env_file=None)
    with TestClient(create_app(settings)) as client:
        yield client


def expected_ids(catalogue, q: str) -> list[int]:
    """The catalogue filtered in pandas: q in the title or the artist name, ignoring case."""
    tracks = catalogue.tracks
    needle = q.lower()
    hit = tracks["title"].fillna("").str.lower().str.contains(needle, regex=False)
    hit |= tracks["artist_name"].fillna("").str.lower().str.contains(needle, regex=False)
    return sorted(int(i) for i in tracks.index[hit])


def all_pages(client, q: str | None, limit: int) -> tuple[list[int], set[int]]:
    """Every page of a query concatenated, and the totals the pages reported."""
    ids: list[int] = []
    totals: set[int] = set()
    offset = 0
    while True:
        params = {"limit": limit, "offset": offset} | ({"q": q} if q is not None else {})
        page = client.get("/songs", params=params).json()
        totals.add(page["total"])
        ids += [song["id"] for song in page["items"]]
        if len(page["items"]) < limit:
            return ids, totals
        offset += limit


def test_search_finds_what_a_pandas_filter_finds_in_any_case(reader, catalogue):
    title_word = str(catalogue.tracks["title"].dropna().iloc[7]).split()[-1]
    artist_part = str(catalogue.tracks["artist_name"].dropna().iloc[11])[:4]
    for q in (title_word.upper(), title_word.lower(), artist_part.swapcase(), "zzzz-no-such"):
        want = expected_ids(catalogue, q)
        ids, totals = all_pages(reader, q, limit=100)
        assert ids == want, q
        assert totals == {len(want)}, q
    assert 0 < len(expected_ids(catalogue, title_word)) < len(catalogue.tracks)


def test_without_q_every_song_is_listed_in_id_order(reader, catalogue):
    ids, totals = all_pages(reader, None, limit=100)
    assert ids == sorted(int(i) for i in catalogue.track_ids)
    assert totals == {len(catalogue.tracks)}
    assert all_pages(reader, "   ", limit=100)[0] == ids  # blank q is no filter


def test_pages_are_stable_and_neither_skip_nor_repeat(reader, catalogue):
    q = "a"
    small_pages, _ = all_pages(reader, q, limit=7)
    assert small_pages == expected_ids(catalogue, q)
    assert small_pages == all_pages(reader, q, limit=7)[0]  # the same pages again


def test_a_page_carries_each_song_as_get_song_does(reader, catalogue):
    page = reader.get("/songs", params={"limit": 3, "offset": 5}).json()
    assert (page["limit"], page["offset"]) == (3, 5)
    for song in page["items"]:
        assert song == reader.get(f"/songs/{song['id']}").json()
    beyond = reader.get("/songs", params={"offset": len(catalogue.tracks) + 10}).json()
    assert beyond["items"] == [] and beyond["total"] == len(catalogue.tracks)


def test_like_wildcards_in_q_match_only_themselves(client, catalogue):
    features = catalogue.features[0].tolist()
    titles = ["100% Pure", "snake_case", "back\\slash", "percent sign absent"]
    added = {}
    for title in titles:
        body = {"title": title, "artist": "Wildcard Band", "features": features}
        added[title] = client.post("/songs", json=body).json()["id"]
    for q, title in [("%", "100% Pure"), ("_", "snake_case"), ("\\", "back\\slash")]:
        # none of the catalogue's own titles or names holds these characters
        assert expected_ids(catalogue, q) == []
        page = client.get("/songs", params={"q": q}).json()
        assert [s["id"] for s in page["items"]] == [added[title]], q
        assert page["total"] == 1
    page = client.get("/songs", params={"q": "wildcard band"}).json()
    assert sorted(s["id"] for s in page["items"]) == sorted(added.values())


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": 2**63}, "offset"),
        ({"q": "x" * 201}, "q"),
    ],
)
def test_bad_paging_is_a_422_naming_the_parameter(reader, params, field):
    response = reader.get("/songs", params=params)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["query", field]
    assert error["msg"]


def test_a_nul_character_in_q_is_a_422(reader):
    response = reader.get("/songs", params={"q": "a\x00b"})
    assert response.status_code == 422
    assert "NUL" in response.json()["detail"]


def test_a_wrong_method_on_songs_names_both_of_its_methods(reader):
    # GET /songs (this listing) and POST /songs (an addition) are separate routes
    response = reader.request("DELETE", "/songs")
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET, POST"
    assert reader.put("/songs/similar").headers["Allow"] == "POST"
