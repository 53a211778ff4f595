"""A cap on request body size and on the time its upload takes, enforced as it is read.

A body announced larger than the cap (Content-Length) is refused at once; a
chunked body is counted as it streams and refused when it passes the cap.
Either way the client gets a 413 that states the limit. A body that has not
arrived whole `body_timeout_s` after the handler started reading it gets a 408
(a client trickling bytes would otherwise hold a worker thread for ever).
"""

from __future__ import annotations

import json
import time

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The least a song posted to /evaluate can take as JSON: 518 one-digit features with
# their commas and `{"artist":0,"features":[]},`. MUSICSIM_MAX_EVALUATE_SONGS beyond
# MUSICSIM_MAX_JSON_BYTES / this could never be reached.
MIN_POSTED_SONG_BYTES = 2 * 518 - 1 + 27


class BodySizeLimit:
    """Multipart uploads may be up to `max_upload_bytes`; any other body `max_json_bytes`."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_json_bytes: int,
        max_upload_bytes: int,
        body_timeout_s: float = 60.0,
    ):
        self.app = app
        self.max_json_bytes = max_json_bytes
        self.max_upload_bytes = max_upload_bytes
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        is_upload = headers.get(b"content-type", b"").startswith(b"multipart/")
        limit = self.max_upload_bytes if is_upload else self.max_json_bytes
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, limit)
            return
        received = 0
        refused = False
        complete = False
        deadline: float | None = None

        async def counting_receive() -> Message:
            # Past the limit: answer 413 now and tell the app the client has gone, so
            # that it stops reading; whatever it sends afterwards is dropped.
            nonlocal received, refused, complete, deadline
            if complete or refused:  # after the body: only a disconnect can come
                return await receive()
            if deadline is None:
                deadline = time.monotonic() + self.body_timeout_s
            with anyio.move_on_after(max(0.0, deadline - time.monotonic())):
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    complete = not message.get("more_body", False)
                    if received > limit:
                        refused = True
                        await self._refuse(send, limit)
                        return {"type": "http.disconnect"}
                return message
            refused = True
            detail = f"the request body did not arrive within {self.body_timeout_s:g} s"
            await self._answer(send, 408, detail)
            return {"type": "http.disconnect"}

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send, limit: int) -> None:
        await self._answer(send, 413, f"request body larger than the limit of {limit} bytes")

    async def _answer(self, send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        if status == 408:  # the rest of the body will not be read: the connection cannot be reused
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
