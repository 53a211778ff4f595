"""The HTTP server around the app: uvicorn with timeouts on every stage of a request.

    >>> serve(app, Settings(), host="127.0.0.1", port=8000)  # what `musicsim serve` runs
    >>> serve_workers("app.cli:worker_app", settings, host=..., port=..., workers=2)
    $ python -m app.server --host 127.0.0.1 --port 8000     # the same, without the CLI

A client that sends its headers slowly is cut off after MUSICSIM_HEADER_TIMEOUT_SECONDS
(uvicorn itself waits for headers forever), an idle keep-alive connection after
MUSICSIM_KEEP_ALIVE_SECONDS, and a body that does not arrive whole within
MUSICSIM_BODY_TIMEOUT_SECONDS gets a 408 (app/limits.py). Headers larger than
MUSICSIM_MAX_HEADER_BYTES are refused by h11 with a 400.
"""

from __future__ import annotations

import argparse
import asyncio
import functools

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from app.config import Settings


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request headers take too long."""

    header_timeout_s: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm_header_timer()

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._header_timer is None:
            self._arm_header_timer()  # the first bytes of the next request on this connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:  # the headers are complete
            self._disarm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        super().connection_lost(exc)

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


class WorkerH11Protocol(TimedH11Protocol):
    """TimedH11Protocol in a `--workers` process: its header timeout from that process's settings.

    Worker processes are spawned, so their protocol is named by an import string
    (a class made at run time cannot be pickled across) and reads the setting itself.
    """

    @property
    def header_timeout_s(self) -> float:  # type: ignore[override]
        return _worker_settings().header_timeout_seconds


@functools.cache
def _worker_settings() -> Settings:
    return Settings()


def server_config(app, settings: Settings, *, host: str, port: int, **extra) -> uvicorn.Config:
    """uvicorn's configuration; `extra` (workers=, factory=) is for `serve_workers`."""
    protocol: type | str = type(
        "ConfiguredH11Protocol",
        (TimedH11Protocol,),
        {"header_timeout_s": settings.header_timeout_seconds},
    )
    if isinstance(app, str):  # spawned workers import the app and the protocol by name
        protocol = f"{__name__}:WorkerH11Protocol"
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=protocol,
        timeout_keep_alive=settings.keep_alive_seconds,
        h11_max_incomplete_event_size=settings.max_header_bytes,
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
