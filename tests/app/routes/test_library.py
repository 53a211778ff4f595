"""Library songs keep their file: GET /songs/{id}/audio streams it, only from under the root."""

import shutil

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from app.catalogue.importing import import_catalogue, source_of
from app.db import open_database
from app.main import create_app
from training.data.fma import load_catalogue


@pytest.fixture
def library_songs(settings, library_dir) -> dict[str, int]:
    """The extracted real clips imported beside the demo catalogue: file path -> song id."""
    engine = open_database(settings.database_url)
    import_catalogue(engine, load_catalogue(data_dir=library_dir), source=source_of(library_dir))
    with engine.connect() as connection:
        query = text("SELECT file_path, id FROM songs WHERE source = 'library'")
        songs = dict(connection.execute(query).all())
    engine.dispose()
    return songs


def set_file_path(settings, song_id: int, file_path: str) -> None:
    engine = open_database(settings.database_url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE songs SET file_path = :p WHERE id = :i"), {"p": file_path, "i": song_id}
        )
    engine.dispose()


TRUMPET = "sorohanro_-_solo-trumpet-06.ogg"


def test_a_library_song_streams_its_file_with_its_content_type(
    settings, library_songs, music_folder
):
    with TestClient(create_app(settings)) as client:
        song = client.get(f"/songs/{library_songs[TRUMPET]}").json()
        answer = client.get(song["audio_url"])
    assert song["file"] == TRUMPET
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "audio/ogg"
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.content == (music_folder / TRUMPET).read_bytes()


def test_a_range_request_gets_206_and_exactly_those_bytes(settings, library_songs, music_folder):
    data = (music_folder / TRUMPET).read_bytes()
    with TestClient(create_app(settings)) as client:
        url = f"/songs/{library_songs[TRUMPET]}/audio"
        middle = client.get(url, headers={"Range": "bytes=100-1099"})
        tail = client.get(url, headers={"Range": "bytes=-10"})
        beyond = client.get(url, headers={"Range": f"bytes={len(data) + 5}-"})
    assert middle.status_code == 206
    assert middle.headers["content-range"] == f"bytes 100-1099/{len(data)}"
    assert middle.content == data[100:1100]
    assert tail.status_code == 206 and tail.content == data[-10:]
    assert beyond.status_code == 416


def test_songs_without_a_file_have_no_audio(client):
    song = client.get("/songs", params={"limit": 1}).json()["items"][0]
    assert song["audio_url"] is None
    assert client.get(f"/songs/{song['id']}/audio").status_code == 404
    assert client.get("/songs/999999999/audio").status_code == 404


@pytest.mark.parametrize(
    "file_path",
    ["../secret.ogg", "sub/../../secret.ogg", "/etc/passwd", "escape.ogg", "missing.ogg"],
)
def test_a_path_outside_the_library_root_is_never_served(
    settings, library_songs, music_folder, tmp_path, file_path
):
    root = tmp_path / "root"
    shutil.copytree(music_folder, root)
    (tmp_path / "secret.ogg").write_bytes(b"not yours")
    (root / "escape.ogg").symlink_to(tmp_path / "secret.ogg")  # a link out of the root
    song_id = library_songs[TRUMPET]
    set_file_path(settings, song_id, file_path)
    served = settings.model_copy(update={"library_root": root})
    with TestClient(create_app(served)) as client:
        answer = client.get(f"/songs/{song_id}/audio")
    assert answer.status_code == 404
    assert "no audio file under the library root" in answer.json()["detail"]


def test_a_symlink_that_stays_inside_the_root_is_served(
    settings, library_songs, music_folder, tmp_path
):
    root = tmp_path / "root"
    shutil.copytree(music_folder, root)
    (root / "link.ogg").symlink_to(root / TRUMPET)
    song_id = library_songs[TRUMPET]
    set_file_path(settings, song_id, "link.ogg")
    served = settings.model_copy(update={"library_root": root})
    with TestClient(create_app(served)) as client:
        answer = client.get(f"/songs/{song_id}/audio")
    assert answer.status_code == 200 and answer.content == (root / TRUMPET).read_bytes()
