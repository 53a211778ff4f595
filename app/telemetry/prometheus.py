"""Prometheus metrics: requests by route template and status class, latency, index, model.

>>> metrics = RequestMetrics(service=lambda: app.state.service)
>>> metrics.observe(method="GET", route="/songs/{song_id}", status=200, seconds=0.004)
>>> metrics.exposition()            # the text format GET /metrics returns

Each app has its own registry, so several apps in one process (tests) do not
collide. With several worker processes each keeps its own counts: a scrape sees
the worker that answered it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from app.index.follower import NON_FINITE_SKIPPED
from app.service import Service

# Any other method is counted as "other": a client must not be able to mint label values.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# From a cached look-up (~1 ms) to an audio upload being analysed (seconds).
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServiceCollector(Collector):
    """Read at scrape time: songs indexed, and which model is served."""

    def __init__(self, service: Callable[[], Service | None]):
        self._service = service

    def collect(self) -> Iterator[Metric]:
        service = self._service()
        if service is None:  # before start-up has finished
            return
        songs = GaugeMetricFamily("musicsim_index_songs", "Songs in the similarity index")
        songs.add_metric([], len(service.index))
        yield songs
        skipped = CounterMetricFamily(
            "musicsim_index_non_finite_skipped",
            "Songs the follower left unindexed because their embedding is not finite "
            "(once per attempt; such a song is tried again each poll)",
        )
        skipped.add_metric([], NON_FINITE_SKIPPED.total)
        yield skipped
        model = InfoMetricFamily("musicsim_model", "The model bundle served")
        bundle = service.bundle
        model.add_metric([], {"name": bundle.name, "manifest_sha256": bundle.manifest_sha256})
        yield model


class RequestMetrics:
    def __init__(self, *, service: Callable[[], Service | None]):
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "musicsim_http_requests",
            "HTTP requests answered, by method, route template and status class",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "musicsim_http_request_duration_seconds",
            "Time from request to the end of the response, by method and route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(ServiceCollector(service))
        ProcessCollector(registry=self.registry)  # memory, CPU, open files of this process

    def observe(self, *, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in METHODS else "other"
        self.requests.labels(method, route, f"{status // 100}xx").inc()
        self.latency.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
