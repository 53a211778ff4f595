"""Property-based fuzzing of the whole OpenAPI schema with schemathesis.

Every operation gets at most 25 generated requests (schemathesis's examples,
coverage and fuzzing phases; valid and schema-violating data), sent in-process
to the ASGI app: no socket, no network. Each response must not be a 5xx and must
conform to the schema: a documented status code, the documented content type and
headers, a body matching the documented response schema; schema-violating
requests must be refused. Writes are fuzzed too (POST /songs, and POST
/songs/audio with add=true, half the time with a decodable clip), into a
database of this module's own.

The lifespan: schemathesis 4 (4.32) runs an ASGI application's lifespan itself
(`schemathesis.python.asgi`): its transport starts it before the first request,
keeps it running between requests and its pytest plugin stops it at each test's
teardown. So every fuzzed request reaches an app whose database, model and index
are open; `test_the_fuzzed_app_has_run_its_lifespan` checks that through the
same transport.

The schema is the app factory's own OpenAPI document (it does not depend on the
settings); the live app built from this module's settings is passed to every
call, and `test_the_fuzzed_app_has_run_its_lifespan` checks the two documents are
the same.
"""

import io
import time

import numpy as np
import pytest
import schemathesis
import soundfile as sf
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.checks import max_response_time
from schemathesis.python.asgi import get_client
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.catalogue.importing import import_catalogue
from app.config import Settings
from app.db import open_database
from app.main import create_app

OPENAPI = create_app(Settings(_env_file=None)).openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)

EXCLUDED_CHECKS = [
    # Schema-valid requests that the catalogue's data refuse (an artist id that does not
    # exist, a genre that is not a top-level genre, k above MUSICSIM_MAX_K, `near` without
    # `radius_km`, bytes that are no audio, posted songs all by one artist) are rightly
    # answered 4xx: validity here depends on the data, which no schema can say, so
    # "every schema-valid request succeeds" does not hold for this API.
    positive_data_acceptance,
    # Speed is measured by benchmarks, never asserted in tests (DEVELOPERS.md).
    max_response_time,
]


def _clip(seconds: float = 2.0, sr: int = 22_050) -> bytes:
    """A short decodable WAV clip: a tone with some noise."""
    t = np.arange(int(seconds * sr)) / sr
    noise = np.random.default_rng(0).standard_normal(t.size)
    signal = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * noise).astype(np.float32)
    buffer = io.BytesIO()
    sf.write(buffer, signal, sr, format="WAV")
    return buffer.getvalue()


CLIP = _clip()


@schema.hook("flatmap_body").apply_to(method="POST", path="/songs/audio")
def sometimes_a_decodable_clip(context, body):
    """Random bytes never decode, so without this only the 422 path would be fuzzed;
    with a real clip the analysis, the search and the add=true write are fuzzed too."""
    if isinstance(body, dict) and "file" in body:
        return st.sampled_from([body, {**body, "file": CLIP}])
    return st.just(body)


@pytest.fixture(scope="module")
def fuzz_settings(tmp_path_factory, bundle_dir, catalogue) -> Settings:
    """A database for this module alone: the fuzzed writes land in it."""
    folder = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{folder / 'musicsim.db'}"
    engine = open_database(url)
    import_catalogue(engine, catalogue)
    engine.dispose()
    return Settings(
        model_dir=bundle_dir,
        database_url=url,
        index_cache_dir=folder / "index-cache",
        _env_file=None,
    )


@pytest.fixture(scope="module")
def fuzz_app(fuzz_settings):
    """The app, after one start-up that computed and persisted the songs' neighbourhoods:
    every fuzzed call starts the app again and reads them, so a local-scaling or
    mutual-proximity case never meets the 503 of a table still being computed."""
    app = create_app(fuzz_settings)
    with get_client(app) as client:
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            state = client.get("/health").json()["scoring"]["neighbourhoods"]["state"]
            assert state != "failed"
            if state == "ready":
                break
            time.sleep(0.2)
        else:
            pytest.fail("the neighbourhoods were not computed within 600 s")
    return app


def test_the_fuzzed_app_has_run_its_lifespan(fuzz_app, catalogue):
    assert fuzz_app.openapi() == OPENAPI
    with get_client(fuzz_app) as client:  # the transport the fuzzed calls go through
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["songs_indexed"] >= len(catalogue.tracks)


@schema.parametrize()
@settings(
    max_examples=25,
    deadline=None,
    database=None,  # no .hypothesis/ folder in the work tree; every run starts afresh
    derandomize=True,  # the same requests on every run: a failure reproduces
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_its_schema(case, fuzz_app):
    # A generated WAV is really analysed, by a worker process that may be starting
    # (spawn, then librosa's import) on a busy machine: schemathesis' default 10 s read
    # timeout is not the service's limit (MUSICSIM_AUDIO_TIMEOUT_SECONDS is).
    case.call_and_validate(app=fuzz_app, excluded_checks=EXCLUDED_CHECKS, timeout=180)


# --- what fuzzing and probing around it found, pinned as plain requests ---------------------

TOO_BIG_ID = 2**63  # one past SQLite's (and PostgreSQL's bigint) largest integer
FEATURES = [0.5] * 518


def _add_from_audio(artist: str) -> dict:
    form = {"add": "true", "title": "Tone", "artist": artist, "k": "1"}
    return {"files": {"file": ("tone.wav", CLIP, "audio/wav")}, "data": form}


@pytest.mark.parametrize(
    ("method", "path", "request_kwargs"),
    [
        ("GET", f"/songs/{TOO_BIG_ID}", {}),
        ("GET", f"/songs/{TOO_BIG_ID}/similar", {}),
        ("POST", "/songs", {"json": {"title": "t", "artist": TOO_BIG_ID, "features": FEATURES}}),
        ("POST", "/songs/audio", _add_from_audio(str(TOO_BIG_ID))),
        ("POST", "/songs/audio", _add_from_audio("²")),  # str.isdigit() is true, int() fails
    ],
    ids=["song-id", "similar-song-id", "artist-id", "audio-artist-id", "audio-artist-superscript"],
)
def test_odd_ids_get_an_answer_not_a_crash(fuzz_app, method, path, request_kwargs):
    with get_client(fuzz_app) as client:
        response = client.request(method, path, **request_kwargs)
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("value", [1e39, 1e37], ids=["beyond-float32", "overflows-zscore"])
def test_a_stored_song_is_served_or_refused(fuzz_app, value):
    """Features whose embedding is not finite must be refused: stored, the song is never found."""
    body = {"title": "Loud", "artist": "Loud Band", "features": [value] * 518}
    with get_client(fuzz_app) as client:
        response = client.post("/songs", json=body)
        if response.status_code == 201:
            song = response.json()["id"]
            similar = client.get(f"/songs/{song}/similar", params={"k": 1}).json()
            assert len(similar["results"]) == 1, "stored, but it has no neighbours"
        else:
            assert 400 <= response.status_code < 500, response.text


@pytest.mark.parametrize("value", [1e39, 1e37], ids=["beyond-float32", "overflows-zscore"])
def test_a_posted_query_gets_k_songs_or_is_refused(fuzz_app, value):
    with get_client(fuzz_app) as client:
        response = client.post("/songs/similar", json={"features": [value] * 518, "k": 3})
    if response.status_code == 200:
        assert len(response.json()["results"]) == 3, "answered 200 with fewer than k songs"
    else:
        assert 400 <= response.status_code < 500, response.text
