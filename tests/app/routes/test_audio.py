"""POST /songs/audio with the real clips in ../shared/data/audio."""

import io

import numpy as np
import pytest
import soundfile as sf
from paths import real_clip
from reference import nearest_by_brute_force

from training.audio.recipe import decode, extract_features

CLIP_NAME = "Kevin_MacLeod_-_Vibe_Ace.ogg"


@pytest.fixture
def clip_bytes() -> bytes:
    """The real clip's bytes; a failure naming the clips' folder when it is absent."""
    return real_clip(CLIP_NAME).read_bytes()


def upload(client, data: bytes, name="clip.ogg", **form):
    files = {"file": (name, data, "application/octet-stream")}
    return client.post("/songs/audio", files=files, data=form)


def test_an_uploaded_clip_gets_neighbours(client, settings, clip_bytes):
    # In-process there is no warm-up: the upload starts a worker, and /health shows it.
    assert client.get("/health").json()["audio"] == {"workers": settings.audio_workers, "up": 0}
    response = upload(client, clip_bytes, k=5)
    assert client.get("/health").json()["audio"]["up"] == 1
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == 5 and body["id"] is None
    distances = [r["distance"] for r in body["results"]]
    assert distances == sorted(distances)


def test_an_uploads_neighbours_are_the_nearest_catalogue_songs_by_brute_force(
    client, settings, bundle, catalogue, clip_bytes
):
    # The reference: the recipe's features of the same excerpt, the bundle's embedding,
    # and L2 over every catalogue song in numpy (no index, no database).
    signal, sr = decode(clip_bytes, excerpt_seconds=settings.audio_excerpt_seconds)
    query = bundle.embed(extract_features(signal=signal, sr=sr)[None, :])[0]
    rows, distances = nearest_by_brute_force(bundle.embed(catalogue.features), query, 5)
    body = upload(client, clip_bytes, k=5).json()
    assert [r["id"] for r in body["results"]] == catalogue.track_ids[rows].tolist()
    np.testing.assert_allclose([r["distance"] for r in body["results"]], distances, rtol=1e-4)


@pytest.mark.parametrize("index_backend", ["faiss", "milvus"])
def test_an_added_upload_is_then_served_by_similar(client, clip_bytes):
    response = upload(client, clip_bytes, k=3, add="true", title="Vibe Ace", artist="Kevin MacLeod")
    assert response.status_code == 201
    song = response.json()["id"]
    body = client.get(f"/songs/{song}/similar", params={"k": 3}).json()
    assert body["query"]["title"] == "Vibe Ace" and body["query"]["source"] == "cold-start"
    assert len(body["results"]) == 3


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "the upload is empty"),
        (b"this is not audio at all" * 10, "cannot decode audio"),
        (None, "cannot decode audio"),  # truncated: the first kilobyte of a real clip
    ],
)
def test_bad_uploads_get_a_422_and_store_nothing(client, data, fragment, clip_bytes):
    before = client.get("/health").json()["songs_indexed"]
    data = clip_bytes[:1024] if data is None else data
    response = upload(client, data, add="true", title="x", artist="y")
    assert response.status_code == 422 and fragment in response.text
    assert client.get("/health").json()["songs_indexed"] == before


def test_an_oversized_upload_is_413(settings, clip_bytes):
    from fastapi.testclient import TestClient

    from app.main import create_app

    small = settings.model_copy(update={"max_upload_bytes": 10_000})
    with TestClient(create_app(small)) as client:
        response = upload(client, clip_bytes)
        assert response.status_code == 413 and "limit of 10000 bytes" in response.text


def test_adding_needs_a_title_and_an_artist(client, clip_bytes):
    response = upload(client, clip_bytes, add="true")
    assert response.status_code == 422 and "needs a title and an artist" in response.text


def test_adding_an_upload_needs_the_api_key_when_one_is_set(settings, clip_bytes):
    from fastapi.testclient import TestClient

    from app.main import create_app

    form = {"add": "true", "title": "t", "artist": "a"}
    with TestClient(create_app(settings.model_copy(update={"api_key": "k"}))) as client:
        assert upload(client, clip_bytes, **form).status_code == 401
        assert upload(client, clip_bytes).status_code == 200  # a look-up stays open


def wav_claiming_rate(rate: int, *, seconds: float) -> bytes:
    """A WAV written by soundfile at 22.05 kHz, then its `fmt ` chunk's rate patched."""
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(int(22_050 * seconds), np.float32), 22_050, format="WAV")
    data = bytearray(buffer.getvalue())
    fmt = data.index(b"fmt ")
    data[fmt + 12 : fmt + 16] = rate.to_bytes(4, "little")  # after id, size, tag, channels
    return bytes(data)


@pytest.mark.parametrize("seconds", [1.0, 30.0])  # the 44 KB and 1.3 MB files
def test_an_upload_claiming_a_2_ghz_sample_rate_is_refused(client, seconds):
    # Memory stays bounded because the refusal comes from the header (the recipe's tests
    # show that no sample is read), in a worker process capped by RLIMIT_AS.
    data = wav_claiming_rate(2_000_000_000, seconds=seconds)
    response = upload(client, data, name="claims-2ghz.wav", add="true", title="t", artist="a")
    assert response.status_code == 422
    assert "claims-2ghz.wav" in response.text
    assert "sample rate of 2000000000 Hz" in response.text and "8000-192000 Hz" in response.text


def test_a_busy_worker_pool_answers_503_with_retry_after(settings, clip_bytes):
    from fastapi.testclient import TestClient

    from app.main import create_app

    with TestClient(create_app(settings)) as client:
        workers = client.app.state.audio_workers
        for _ in range(settings.audio_workers + settings.audio_queue):
            workers._admitted.acquire()  # every place taken, as by uploads in flight
        response = upload(client, clip_bytes)
        assert response.status_code == 503 and "busy" in response.text
        assert int(response.headers["Retry-After"]) >= 1
