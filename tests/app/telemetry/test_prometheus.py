"""GET /metrics: counts by route template and status class, latency, index size, model."""

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from app.index.follower import NON_FINITE_SKIPPED
from app.main import create_app


def scrape(client, **headers) -> dict[tuple[str, frozenset], float]:
    """Every sample of GET /metrics by (name, labels), parsed with prometheus_client."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def requests(samples, route: str, status: str, method: str = "GET") -> float:
    labels = frozenset({"method": method, "route": route, "status": status}.items())
    return samples.get(("musicsim_http_requests_total", labels), 0.0)


def latency_count(samples, route: str, method: str = "GET") -> float:
    labels = frozenset({"method": method, "route": route}.items())
    return samples.get(("musicsim_http_request_duration_seconds_count", labels), 0.0)


def test_requests_are_counted_by_route_template_and_status_class(client, catalogue):
    song_ids = [int(i) for i in catalogue.track_ids[:3]]
    before = scrape(client)
    for song in song_ids:  # three ids, one route
        assert client.get(f"/songs/{song}/similar", params={"k": 2}).status_code == 200
    assert client.get("/songs/999999999/similar").status_code == 404
    assert client.get("/songs", params={"limit": 0}).status_code == 422
    assert client.get("/no/such/page").status_code == 404
    after = scrape(client)

    similar = "/songs/{song_id}/similar"
    assert requests(after, similar, "2xx") - requests(before, similar, "2xx") == 3
    assert requests(after, similar, "4xx") - requests(before, similar, "4xx") == 1
    assert latency_count(after, similar) - latency_count(before, similar) == 4
    assert requests(after, "/songs", "4xx") - requests(before, "/songs", "4xx") == 1
    assert requests(after, "unmatched", "4xx") - requests(before, "unmatched", "4xx") == 1
    # the scrape before this one is counted too, under its own route
    assert requests(after, "/metrics", "2xx") - requests(before, "/metrics", "2xx") == 1
    # raw paths never become labels
    routes = {dict(labels).get("route") for name, labels in after if "http_requests" in name}
    assert not any(str(song) in str(route) for route in routes for song in song_ids)


def test_index_size_and_model_follow_the_service(client, catalogue, bundle):
    samples = scrape(client)
    assert samples[("musicsim_index_songs", frozenset())] == len(catalogue.tracks)
    model = {"name": bundle.name, "manifest_sha256": bundle.manifest_sha256}
    assert samples[("musicsim_model_info", frozenset(model.items()))] == 1.0
    skipped = NON_FINITE_SKIPPED.total  # process-wide: other tests' follower runs count too
    assert samples[("musicsim_index_non_finite_skipped_total", frozenset())] == skipped
    NON_FINITE_SKIPPED.add(3)
    assert scrape(client)[("musicsim_index_non_finite_skipped_total", frozenset())] == skipped + 3

    new = {"title": "Counted", "artist": "Metric Band", "features": catalogue.features[3].tolist()}
    assert client.post("/songs", json=new).status_code == 201
    after = scrape(client)
    assert after[("musicsim_index_songs", frozenset())] == len(catalogue.tracks) + 1
    assert requests(after, "/songs", "2xx", method="POST") == 1


def test_a_body_over_the_limit_is_counted_as_a_413(settings):
    small = settings.model_copy(update={"max_json_bytes": 1024})
    with TestClient(create_app(small)) as client:
        response = client.post("/songs/similar", content=b"x" * 2048)
        assert response.status_code == 413
        samples = scrape(client)
        assert requests(samples, "unmatched", "4xx", method="POST") == 1


def test_metrics_need_the_key_when_reads_do(settings):
    guarded = settings.model_copy(update={"api_key": "k", "api_key_for_reads": True})
    with TestClient(create_app(guarded)) as client:
        assert client.get("/metrics").status_code == 401
        samples = scrape(client, **{"X-API-Key": "k"})
        assert requests(samples, "/metrics", "4xx") == 1
