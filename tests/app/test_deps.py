"""API keys for writes (and optionally reads), and CORS."""

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
