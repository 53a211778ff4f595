"""Admission control: a bound on expensive requests in flight, and an optional rate limit.

    app.add_middleware(Admission, max_expensive=4, rate_per_minute=600)

Batch queries, audio uploads and evaluations cost seconds of CPU and up to tens of
megabytes each; past `max_expensive` of them at once, another gets a 503 with
Retry-After before its body is read, so a burst cannot exhaust memory. With a
rate limit, each client address may make `rate_per_minute` requests per minute
(a token bucket: bursts up to that many, refilled evenly); past it, 429 with
Retry-After. /health is never limited (orchestrators call it).
"""

from __future__ import annotations

import json
import math
import threading
import time

from starlette.types import ASGIApp, Receive, Scope, Send

# (method, path) of the expensive routes; POST /songs/audio stays cheap to refuse.
EXPENSIVE = {
    ("POST", "/songs/similar/batch"),
    ("POST", "/songs/audio"),
    ("POST", "/evaluate"),
}
NEVER_LIMITED = {"/health"}
MAX_CLIENTS_TRACKED = 100_000  # buckets of clients idle longest are dropped beyond this


class Admission:
    def __init__(self, app: ASGIApp, *, max_expensive: int, rate_per_minute: int = 0):
        self.app = app
        self.max_expensive = max_expensive
        self.rate_per_minute = rate_per_minute
        self.in_flight = 0  # only touched on the event loop's thread
        self._buckets: dict[str, tuple[float, float]] = {}  # client -> (tokens, when)
        self._lock = threading.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_LIMITED:
            await self.app(scope, receive, send)
            return
        if self.rate_per_minute:
            wait_s = self._take_token(_client(scope))
            if wait_s > 0:
                detail = f"more than {self.rate_per_minute} requests a minute from this client"
                await _answer(send, 429, detail, retry_after=wait_s)
                return
        if (scope["method"], scope["path"].rstrip("/")) not in EXPENSIVE:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_expensive:
            detail = (
                f"{self.in_flight} expensive requests (batch, audio, evaluate) are in flight, "
                f"the limit is {self.max_expensive} (MUSICSIM_MAX_EXPENSIVE_REQUESTS); retry"
            )
            await _answer(send, 503, detail, retry_after=1.0)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    def _take_token(self, client: str) -> float:
        """0 when the client may proceed, else the seconds until its next token."""
        rate_s = self.rate_per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, then = self._buckets.pop(client, (float(self.rate_per_minute), now))
            tokens = min(float(self.rate_per_minute), tokens + (now - then) * rate_s)
            if len(self._buckets) >= MAX_CLIENTS_TRACKED:
                del self._buckets[next(iter(self._buckets))]  # the least recently seen
            if tokens >= 1.0:
                self._buckets[client] = (tokens - 1.0, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            return (1.0 - tokens) / rate_s


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


async def _answer(send: Send, status: int, detail: str, *, retry_after: float) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", b"%d" % len(body)),
        (b"retry-after", b"%d" % max(1, math.ceil(retry_after))),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
