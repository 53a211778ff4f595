"""The HTTP server around the app: uvicorn with timeouts on every stage of a request.

    >>> serve(app, Settings(), host="127.0.0.1", port=8000)  # what `musicsim serve` runs
    >>> serve_workers("app.cli:worker_app", settings, host=..., port=..., workers=2)
    $ python -m app.server --host 127.0.0.1 --port 8000     # the same, without the CLI

A client that sends its headers slowly is cut off after MUSICSIM_HEADER_TIMEOUT_SECONDS
(uvicorn itself waits for headers forever), an idle keep-alive connection after
MUSICSIM_KEEP_ALIVE_SECONDS, and a body that does not arrive whole within
MUSICSIM_BODY_TIMEOUT_SECONDS gets a 408 (app/limits.py). A request line plus headers
larger than MUSICSIM_MAX_HEADER_BYTES gets a 431. The parser is httptools (C).
"""

from __future__ import annotations

import argparse
import asyncio
import functools

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import Settings

LINGER_S = 2.0  # after refusing headers, how long the client's further bytes are drained


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with two limits uvicorn lacks: a connection whose
    request headers take longer than header_timeout_s is closed, and a request line plus
    headers larger than max_header_bytes gets a 431.

    httptools parses in C (llhttp); h11, uvicorn's pure-Python alternative, cost about a
    quarter of a similarity request. Header bytes are counted as they arrive, before
    they are parsed, so a client streaming endless headers is refused at the limit (a
    pipelined request begun inside a read is counted from the next read).
    """

    header_timeout_s: float = 10.0
    max_header_bytes: int = 16_384
    _header_timer: asyncio.TimerHandle | None = None
    _awaiting_headers = False  # from a request's first byte (or the connection) to its headers
    _header_bytes = 0
    _in_message = False  # the parser is between a request's first byte and its end
    _header_tail = b""
    _refused = False  # a 431 was sent: what follows is dropped

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._start_counting()
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # dropped until the connection closes
        if self._awaiting_headers:
            self._count_header_bytes(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse_headers()
                return
        super().data_received(data)

    def _count_header_bytes(self, data: bytes) -> None:
        """Add this read's bytes up to the blank line ending the headers (a body after
        it does not count); the last 3 bytes are kept for a blank line split across reads."""
        seen = self._header_tail + data
        end = seen.find(b"\r\n\r\n")
        self._header_bytes += len(data) if end < 0 else end + 4 - len(self._header_tail)
        self._header_tail = seen[-3:]

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_message = True
        if not self._awaiting_headers:  # begun mid-read (pipelined): counted from the next read
            self._start_counting()
        if self._header_timer is None:  # the next request on a kept-alive connection
            self._arm_header_timer()

    def on_message_complete(self) -> None:
        self._in_message = False
        super().on_message_complete()

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._disarm_header_timer()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self._in_message and not self.pipeline:  # the next bytes: the next request
            self._start_counting()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

    def _start_counting(self) -> None:
        self._awaiting_headers, self._header_bytes, self._header_tail = True, 0, b""

    def _arm_header_timer(self) -> None:
        self._disarm_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.info("closing a connection whose request headers took too long")
            self.transport.close()

    def _refuse_headers(self) -> None:
        """A 431, then the rest the client sends is read and dropped for a moment before
        closing: closing with unread bytes resets the connection, losing the answer."""
        self._disarm_header_timer()
        self._awaiting_headers, self._refused = False, True
        message = f"request line and headers larger than {self.max_header_bytes} bytes".encode()
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(message) + message
        )
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_S, self.transport.close)


class WorkerHttpToolsProtocol(TimedHttpToolsProtocol):
    """TimedHttpToolsProtocol in a `--workers` process: its limits from that process's settings.

    Worker processes are spawned, so their protocol is named by an import string
    (a class made at run time cannot be pickled across) and reads the settings itself.
    """

    @property
    def header_timeout_s(self) -> float:  # type: ignore[override]
        return _worker_settings().header_timeout_seconds

    @property
    def max_header_bytes(self) -> int:  # type: ignore[override]
        return _worker_settings().max_header_bytes


@functools.cache
def _worker_settings() -> Settings:
    return Settings()


def server_config(app, settings: Settings, *, host: str, port: int, **extra) -> uvicorn.Config:
    """uvicorn's configuration; `extra` (workers=, factory=) is for `serve_workers`."""
    protocol: type | str = type(
        "ConfiguredHttpToolsProtocol",
        (TimedHttpToolsProtocol,),
        {
            "header_timeout_s": settings.header_timeout_seconds,
            "max_header_bytes": settings.max_header_bytes,
        },
    )
    if isinstance(app, str):  # spawned workers import the app and the protocol by name
        protocol = f"{__name__}:WorkerHttpToolsProtocol"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=settings.keep_alive_seconds,
        log_config=None,  # our handlers (app/telemetry/logs.py); they carry request ids
        access_log=False,
        **extra,
    )


def serve(app, settings: Settings, *, host: str, port: int) -> None:
    uvicorn.Server(server_config(app, settings, host=host, port=port)).run()


def serve_workers(factory: str, settings: Settings, *, host: str, port: int, workers: int) -> None:
    """`workers` processes on one socket, each building its app by calling `factory`."""
    from uvicorn.supervisors import Multiprocess

    config = server_config(factory, settings, host=host, port=port, workers=workers, factory=True)
    Multiprocess(config, sockets=[config.bind_socket()]).run()


def main() -> None:
    from app.main import create_app
    from app.telemetry.logs import configure_logging

    parser = argparse.ArgumentParser(description="Serve musicsim (settings: MUSICSIM_*).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    settings = Settings()
    if settings.audio_warm_up is None:  # as `musicsim serve`: warm audio workers
        settings = settings.model_copy(update={"audio_warm_up": True})
    configure_logging(settings.log_format)
    serve(create_app(settings), settings, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
