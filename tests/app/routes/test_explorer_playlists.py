"""The explorer's playlists end to end: headless Chromium builds a mix, a path and a radio
continuation, plays the list in order and downloads it as .m3u8.

The server is uvicorn on loopback serving this checkout (tests/support/uvicorn_processes);
Debian's /usr/bin/chromium is driven by Playwright, as in test_explorer.py. What the page
lists is checked against the API's own answers to the same requests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from browser import chromium_page
from playwright.sync_api import Page
from uvicorn_processes import http_client, server_env, start_server, stop_all

from app.catalogue.importing import import_catalogue
from app.db import open_database


@pytest.fixture(scope="module")
def server(tmp_path_factory, bundle_dir, catalogue):
    workdir = tmp_path_factory.mktemp("explorer-playlists")
    database = workdir / "musicsim.db"
    engine = open_database(f"sqlite:///{database}")
    import_catalogue(engine, catalogue)
    engine.dispose()
    started: list = []
    try:
        env = server_env(bundle_dir, f"sqlite:///{database}", map_points="300")
        _, url = start_server(env, workdir, "explorer", started)
        yield url
    finally:
        stop_all(started)


@pytest.fixture(scope="module")
def page(server, tmp_path_factory):
    profile = tmp_path_factory.mktemp("chromium-profile")  # fresh user-data dir
    with chromium_page(
        profile, viewport={"width": 1280, "height": 1400}, accept_downloads=True
    ) as page:
        yield page


def listed(page: Page) -> list[int]:
    return page.eval_on_selector_all(
        "#pl-results li", "items => items.map(li => Number(li.dataset.songId))"
    )


def wait_for_list(page: Page, ids: list[int]) -> None:
    page.wait_for_function(
        """ids => JSON.stringify([...document.querySelectorAll('#pl-results li')]
                 .map(li => Number(li.dataset.songId))) === JSON.stringify(ids)""",
        arg=ids,
    )


def pick(page: Page, title: str, song_id: int, role: str) -> None:
    """Search for a title in the playlists' own search, then press like/avoid/from/to."""
    page.fill("#pl-search", title)
    page.click("#pl-search-form button")
    page.click(f"#pl-search-results li[data-song-id='{song_id}'] .pl-pick-{role}")


def test_a_mix_a_path_and_a_radio_are_listed_played_and_downloaded(page, server, catalogue):
    api = http_client(base_url=server, timeout=30.0)
    tracks = catalogue.tracks
    like, avoid, a, b = (int(catalogue.track_ids[i]) for i in (4, 500, 20, 1100))
    page.goto(f"{server}/")
    pick(page, tracks.loc[like, "title"], like, "like")
    pick(page, tracks.loc[avoid, "title"], avoid, "avoid")
    page.fill("#pl-k", "8")
    page.fill("#pl-diversity", "0.3")
    page.click("#pl-mix")
    mix = api.post(
        "/recommend", json={"positive": [like], "negative": [avoid], "k": 8, "diversity": 0.3}
    ).json()
    wait_for_list(page, [r["id"] for r in mix["results"]])
    assert len(listed(page)) == 8 and like not in listed(page) and avoid not in listed(page)

    pick(page, tracks.loc[a, "title"], a, "from")
    pick(page, tracks.loc[b, "title"], b, "to")
    page.fill("#pl-k", "6")
    page.click("#pl-path")
    path = [
        r["id"] for r in api.get(f"/songs/{a}/path/{b}", params={"length": 6}).json()["results"]
    ]
    assert path[0] == a and path[-1] == b and len(path) == 6
    wait_for_list(page, path)

    page.click("#pl-more")  # keep playing: a radio from the path's ends, after the path
    radio = api.post("/radio", json={"seeds": [a, b], "history": path, "n": 10}).json()
    whole = path + [r["id"] for r in radio["results"]]
    wait_for_list(page, whole)

    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.click("#pl-play")  # songs without audio are skipped, so every song is asked for
    page.wait_for_function("document.getElementById('pl-now').textContent === ''")
    audio = [int(m.group(1)) for u in requested if (m := re.search(r"/songs/(\d+)/audio$", u))]
    assert sorted(set(audio), key=audio.index) == whole  # asked for in playing order

    with page.expect_download() as info:
        page.click("#pl-download")
    download = info.value
    assert download.suggested_filename.endswith(".m3u8")
    lines = Path(download.path()).read_text().splitlines()
    assert lines[0] == "#EXTM3U" and len(lines) == 1 + 2 * len(whole)
    for i, song in enumerate(whole):
        info_line, location = lines[1 + 2 * i], lines[2 + 2 * i]
        assert re.fullmatch(r"#EXTINF:-?\d+,.+ - .+", info_line)
        assert location == f"{server}/songs/{song}/audio"
