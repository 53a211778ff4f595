"""A real server (python -m app.server, as `musicsim serve` runs) cuts off slow and idle
clients, and stops an evaluation whose client has left.

Raw sockets on loopback; every wait below is bounded by a socket timeout far above
the configured limits, so a broken limit fails the test instead of hanging it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time

import numpy as np
import pytest
from uvicorn_processes import server_env, start_server, stop_all

LIMIT_S = 1  # header, body and keep-alive limits of the server under test
SOCKET_TIMEOUT_S = 30.0  # far above LIMIT_S: reaching it means the limit did not act


@pytest.fixture(scope="module")
def server(tmp_path_factory, sqlite_template, bundle_dir):
    workdir = tmp_path_factory.mktemp("server")
    database = workdir / "musicsim.db"
    database.write_bytes(sqlite_template.read_bytes())
    env = server_env(
        bundle_dir,
        f"sqlite:///{database}",
        header_timeout_seconds=str(LIMIT_S),
        body_timeout_seconds=str(LIMIT_S),
        keep_alive_seconds=str(LIMIT_S),
        index_cache_dir="",
    )
    started: list[subprocess.Popen] = []
    try:
        _, url = start_server(env, workdir, "timed", started, timed=True)
        port = int(url.rsplit(":", 1)[1])
        yield port, workdir / "timed.log"  # start_logged writes NAME.log
    finally:
        stop_all(started)


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_S)
    sock.settimeout(SOCKET_TIMEOUT_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65_536):  # b"" once the server has closed the connection
        received += chunk
    return received


def test_a_client_sending_its_body_slowly_is_cut_off_with_a_408(server):
    port, _ = server
    with connect(port) as sock:
        sock.sendall(
            b"POST /songs/similar HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 5000\r\n\r\n" + b'{"features": [0.5'
        )
        answer = read_until_closed(sock)  # the rest of the body never comes
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"did not arrive within 1 s" in answer


def test_a_client_sending_its_headers_slowly_is_disconnected(server):
    port, _ = server
    with connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")  # no blank line: unfinished
        assert read_until_closed(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(server):
    port, _ = server
    with connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n\r\n")
        answer = read_until_closed(sock)  # one answer, then the idle connection is closed
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1") == 1


def test_an_evaluation_stops_when_its_client_disconnects(server):
    port, log = server
    rng = np.random.default_rng(0)
    songs = [
        {"artist": 1 if i else 2, "features": rng.integers(0, 10, 518).tolist()}
        for i in range(7_000)
    ]
    body = json.dumps(
        {"space": "raw", "every_track": True, "songs": songs}, separators=(",", ":")
    ).encode()
    assert len(body) < 8_000_000
    with connect(port) as sock:
        sock.sendall(
            b"POST /evaluate HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body
        )
        time.sleep(0.5)  # the body is in; the ranking has begun
    deadline = time.monotonic() + SOCKET_TIMEOUT_S
    while "client disconnected" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "evaluation stopped: the client disconnected" in log.read_text(), log.read_text()[-3000:]
