"""The explorer end to end: headless Chromium against `musicsim serve` on loopback.

Debian's /usr/bin/chromium is driven by Playwright (never a downloaded browser;
scripts/test.sh installs the package when it is missing). The server is the real
command with JSON logs, over a database holding the small catalogue. What the page
shows is checked against the API's own answer to the same query. A screenshot is
left in test-artifacts/explorer.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from pathlib import Path

import httpx
import pytest
from browser import WAIT_MS, chromium_page
from paths import ROOT, real_clip
from playwright.sync_api import Page
from uvicorn_processes import http_client, start_logged, stop_all

from app.catalogue.importing import import_catalogue
from app.db import open_database

ARTIFACTS = ROOT / "test-artifacts"
AUDIO_WAIT_MS = 120_000  # ... and for an uploaded clip to be analysed


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir, catalogue):
    """`musicsim serve` on a free loopback port; yields (url, path of its log)."""
    workdir = tmp_path_factory.mktemp("explorer")
    database = workdir / "musicsim.db"
    engine = open_database(f"sqlite:///{database}")
    import_catalogue(engine, catalogue)
    engine.dispose()
    with serving(workdir, database, bundle_dir) as running:
        yield running


@contextlib.contextmanager
def serving(workdir: Path, database: Path, bundle_dir: Path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSICSIM_")}
    env |= {
        "MUSICSIM_MODEL_DIR": str(bundle_dir),
        "MUSICSIM_DATABASE_URL": f"sqlite:///{database}",
        "MUSICSIM_LOG_FORMAT": "json",
        "MUSICSIM_MAP_POINTS": "500",
        # the checkout under test, not whichever one the `musicsim` script was installed from
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
    }
    musicsim = Path(sys.executable).parent / "musicsim"
    command = [str(musicsim), "serve", "--host", "127.0.0.1", "--port", "0"]
    started: list = []
    try:
        _, url = start_logged(command, env=env, workdir=workdir, name="server", started=started)
        yield url, workdir / "server.log"
    finally:
        stop_all(started)


@pytest.fixture(scope="module")
def library_server(tmp_path_factory, bundle_dir, catalogue, library_dir):
    """The demo catalogue and, beside it, the extracted real clips, which keep their files."""
    from app.catalogue.importing import source_of
    from training.data.fma import load_catalogue

    workdir = tmp_path_factory.mktemp("explorer-library")
    database = workdir / "musicsim.db"
    engine = open_database(f"sqlite:///{database}")
    import_catalogue(engine, catalogue)
    import_catalogue(engine, load_catalogue(data_dir=library_dir), source=source_of(library_dir))
    engine.dispose()
    with serving(workdir, database, bundle_dir) as running:
        yield running


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh user-data dir
    with chromium_page(profile, viewport={"width": 1280, "height": 1000}) as page:
        yield page


def shown_rows(page: Page) -> list[tuple[int, str, str, str, float]]:
    """The similar-songs table: (id, title, artist, genre, distance) per row."""
    return page.eval_on_selector_all(
        "#similar-results tr[data-song-id]",
        """rows => rows.map(r => [Number(r.dataset.songId),
             ...[...r.cells].slice(1, 4).map(c => c.textContent),
             Number(r.cells[4].dataset.distance)])""",
    )


def wait_for_rows(page: Page, ids: list[int]) -> None:
    """Wait until the table lists exactly these songs, in this order."""
    page.wait_for_function(
        """ids => JSON.stringify([...document.querySelectorAll('#similar-results tr')]
                 .map(r => Number(r.dataset.songId))) === JSON.stringify(ids)""",
        arg=ids,
    )


def assert_table_is(page: Page, answer: dict) -> None:
    expected = [
        (r["id"], r["title"] or "(untitled)", r["artist"]["name"], r["genre"] or "", r["distance"])
        for r in answer["results"]
    ]
    wait_for_rows(page, [row[0] for row in expected])
    shown = shown_rows(page)
    assert [tuple(row[:4]) for row in shown] == [row[:4] for row in expected]
    assert [row[4] for row in shown] == pytest.approx([row[4] for row in expected], rel=1e-6)
    texts = page.eval_on_selector_all(
        "#similar-results td.distance", "cs => cs.map(c => c.textContent)"
    )
    assert texts == [f"{r['distance']:.4f}" for r in answer["results"]]


def heading(song: dict) -> str:
    return f"{song['title'] or '(untitled)'} — {song['artist']['name']}"


def test_search_click_through_filter_map_and_posted_queries(page, server, catalogue):
    url, log_path = server
    api = http_client(base_url=url, timeout=30.0)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{url}/")
    page.wait_for_selector("#search-results a")  # the first page of all songs

    # search: the list is the API's first page for the same q
    q = str(catalogue.tracks["title"].dropna().iloc[3]).split()[-1].upper()
    page.fill("#search", q)
    page.click("#search-form button")
    listing = api.get("/songs", params={"q": q, "limit": 20, "offset": 0}).json()
    assert listing["total"] > 0
    page.wait_for_function(
        "text => document.getElementById('search-summary').textContent.endsWith(text)",
        arg=f"of {listing['total']} songs",
    )
    ids = page.eval_on_selector_all(
        "#search-results a", "bs => bs.map(b => Number(b.dataset.songId))"
    )
    assert ids == [song["id"] for song in listing["items"]]

    # open a song: its neighbours as the API gives them
    first = listing["items"][0]
    page.click(f'#search-results a[data-song-id="{first["id"]}"]')
    answer = api.get(f"/songs/{first['id']}/similar", params={"k": 10}).json()
    assert_table_is(page, answer)
    assert page.text_content("#query-title") == heading(first)

    # click through to a neighbour: the page and the URL follow
    neighbour = answer["results"][2]["id"]
    page.click(f'#similar-results tr[data-song-id="{neighbour}"] a')
    answer = api.get(f"/songs/{neighbour}/similar", params={"k": 10}).json()
    assert_table_is(page, answer)
    assert page.text_content("#query-title") == heading(answer["query"])
    assert page.url.endswith(f"#song/{neighbour}")

    # filters: other artists only, in one genre
    genre = next(r["genre"] for r in answer["results"] if r["genre"])
    page.check("#filter-other-artists")
    page.select_option("#filter-genre", genre)
    page.click("#filters button")
    params = {"k": 10, "exclude_same_artist": "true", "genre": genre}
    filtered = api.get(f"/songs/{neighbour}/similar", params=params).json()
    assert_table_is(page, filtered)
    query_artist = answer["query"]["artist"]["name"]
    assert all(row[3] == genre and row[2] != query_artist for row in shown_rows(page))
    assert len(filtered["results"]) == 10

    page.wait_for_function("document.getElementById('map-summary').textContent.includes('500 of')")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explorer.png"), full_page=True)

    # a bad filter: the API's reason is shown, the table stays
    page.fill("#filter-near", "95,0")
    page.fill("#filter-radius", "100")
    page.click("#filters button")
    page.wait_for_selector("#message:not([hidden])")
    assert "off the globe" in page.text_content("#message")
    assert [row[0] for row in shown_rows(page)] == [r["id"] for r in filtered["results"]]

    # the map: a click on a point opens the song drawn there
    page.fill("#filter-near", "")
    page.fill("#filter-radius", "")
    page.uncheck("#filter-other-artists")
    page.select_option("#filter-genre", "")
    page.locator("#map").scroll_into_view_if_needed()
    song_map = api.get("/songs/map").json()
    target = song_map["ids"][len(song_map["ids"]) // 2]
    point = page.evaluate("id => window.musicsimExplorer.mapPointOf(id)", target)
    page.mouse.click(point["x"], point["y"])
    page.wait_for_function(
        "() => /^#song\\/\\d+$/.test(location.hash) && "
        "location.hash !== '#song/" + str(neighbour) + "'"
    )
    opened = int(re.fullmatch(r".*#song/(\d+)", page.url).group(1))
    at = page.evaluate("id => window.musicsimExplorer.mapPointOf(id)", opened)
    assert (at["x"] - point["x"]) ** 2 + (at["y"] - point["y"]) ** 2 <= 36  # within 6 px
    assert_table_is(page, api.get(f"/songs/{opened}/similar", params={"k": 10}).json())

    # pasted features: the API's answer for the same vector
    features = [float(v) for v in catalogue.features[40]]
    page.fill("#features", ", ".join(repr(v) for v in features))
    page.click("#features-form button")
    posted = api.post("/songs/similar", json={"features": features, "k": 10}).json()
    assert_table_is(page, posted)
    assert page.text_content("#query-title") == "Pasted features"

    # an uploaded recording: the API's answer for the same file
    clip = real_clip("147793__setuniman__sweet-waltz-0i-22mi.ogg")
    page.set_input_files("#upload-file", str(clip))
    page.click("#upload-form button")
    # Analysing audio takes seconds (more on a busy machine): let the page's request
    # finish before the API is asked, so that the two do not compete.
    page.wait_for_function(
        "name => document.getElementById('query-title').textContent === 'Uploaded: ' + name",
        arg=clip.name,
        timeout=AUDIO_WAIT_MS,
    )
    with clip.open("rb") as handle:
        files = {"file": (clip.name, handle, "audio/ogg")}
        form = {"k": "10"}
        uploaded = api.post("/songs/audio", files=files, data=form, timeout=120.0).json()
    assert_table_is(page, uploaded)

    # nothing was fetched from anywhere but this server
    assert requested and all(r.startswith(f"{url}/") for r in requested), requested

    # the server's log is JSON lines only (uvicorn's included), with an access line per call
    lines = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert any(line["logger"] == "uvicorn.error" for line in lines)
    routes = {(line.get("method"), line.get("route")) for line in lines}
    assert {("GET", "/"), ("GET", "/songs"), ("GET", "/songs/{song_id}/similar")} <= routes
    assert {("POST", "/songs/similar"), ("POST", "/songs/audio"), ("GET", "/songs/map")} <= routes
    assert all(line["request_id"] for line in lines if line["logger"] == "musicsim.access")


SUGAR_PLUM = "Kevin_MacLeod_-_P_I_Tchaikovsky_Dance_of_the_Sugar_Plum_Fairy.ogg"


def test_library_songs_play_in_place_and_show_album_and_duration(page, library_server):
    url, _ = library_server
    api = http_client(base_url=url, timeout=30.0)
    listing = api.get("/songs", params={"q": "Sugar Plum"}).json()["items"]
    song = next(s for s in listing if s["file"] == SUGAR_PLUM)
    page.goto(f"{url}/#song/{song['id']}")
    page.wait_for_function(
        "() => document.getElementById('query-details').textContent.includes('album')"
    )
    details = page.text_content("#query-details")
    minutes, seconds = divmod(round(song["duration"]), 60)
    assert f"album {song['album']}" in details and f"{minutes}:{seconds:02d}" in details
    assert song["album"] == "Classical Sampler" and "Classical" in details
    assert page.get_attribute("#query-player audio", "src") == f"/songs/{song['id']}/audio"

    # ask for enough neighbours that a library song (one with a file) is among them
    everything = api.get(f"/songs/{song['id']}/similar", params={"k": 1000}).json()["results"]
    rank = next(i for i, r in enumerate(everything) if r["audio_url"])
    page.fill("#filter-k", str(rank + 1))
    # the list is drawn again when its answer arrives: play the element of that drawing
    with page.expect_response(lambda r: "/similar" in r.url):
        page.click("#filters button")
    page.wait_for_load_state("networkidle")
    playable = f'#similar-results tr[data-song-id="{everything[rank]["id"]}"] audio'
    page.wait_for_selector(playable)
    # muted, as browsers let pages start muted media without a gesture
    page.eval_on_selector(playable, "a => { a.muted = true; a.play(); }")
    page.wait_for_function(
        "sel => document.querySelector(sel).readyState >= 2", arg=playable, timeout=WAIT_MS
    )
    assert page.eval_on_selector(playable, "a => a.error") is None
    # the links are real links: each result's title points at its song
    href = page.get_attribute(
        f'#similar-results tr[data-song-id="{everything[0]["id"]}"] a', "href"
    )
    assert href == f"#song/{everything[0]['id']}"


def test_an_upload_added_to_the_catalogue_stays_in_the_address(page, library_server):
    url, _ = library_server
    clip = real_clip("sorohanro_-_solo-trumpet-06.ogg")
    page.goto(f"{url}/")
    page.wait_for_selector("#search-results a")
    page.set_input_files("#upload-file", str(clip))
    page.check("#upload-add")
    page.fill("#upload-artist", "Explorer tester")
    page.click("#upload-form button")
    page.wait_for_selector("#upload-progress:not([hidden])")  # shown while it is analysed
    page.wait_for_function("() => /^#song\\/\\d+$/.test(location.hash)", timeout=AUDIO_WAIT_MS)
    song_id = int(page.evaluate("location.hash").split("/")[1])
    page.reload()
    page.wait_for_function(
        "() => document.getElementById('query-title').textContent.includes('Explorer tester')"
    )
    stored = httpx.get(f"{url}/songs/{song_id}").json()
    assert stored["artist"]["name"] == "Explorer tester"
    assert stored["title"] == clip.stem


def test_the_api_docs_render_without_internet_access(page, server):
    url, _ = server
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(f"{url}/docs")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "musicsim" in page.text_content(".swagger-ui .info .title")
    page.wait_for_selector('.opblock-summary-path[data-path="/songs/{song_id}/audio"]')
    assert all(r.startswith(f"{url}/") or r.startswith("data:") for r in requested), requested
