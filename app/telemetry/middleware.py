"""The outermost middleware: a request id, an access log line and metrics for each request.

    >>> app.add_middleware(ObserveRequests, metrics=RequestMetrics(service=...))

The id is the client's X-Request-ID when it is acceptable (app/logs.py), else a new
one; it is returned in the X-Request-ID response header. Routes are labelled by
their template (`/songs/{song_id}/similar`), so ids in paths cannot grow the number
of time series; a request that matched no route is labelled "unmatched".
"""

from __future__ import annotations

import logging
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.telemetry.logs import request_id_from, request_id_var
from app.telemetry.prometheus import RequestMetrics

access_log = logging.getLogger("musicsim.access")
UNMATCHED = "unmatched"


def route_template(scope: Scope) -> str:
    """The path template of the route that handled the request (after routing ran)."""
    route = scope.get("route")
    template = getattr(route, "path_format", None)
    return template if isinstance(template, str) else UNMATCHED


class ObserveRequests:
    def __init__(self, app: ASGIApp, *, metrics: RequestMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        given = headers.get(b"x-request-id")
        request_id = request_id_from(given.decode("latin-1") if given is not None else None)
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = route_template(scope)
            method = scope["method"]
            self.metrics.observe(method=method, route=route, status=status, seconds=seconds)
            access_log.info(
                "%s %s %d %.1f ms",
                method,
                scope["path"],
                status,
                seconds * 1000,
                extra={
                    "method": method,
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
            request_id_var.reset(token)
