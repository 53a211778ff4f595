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


def http_request(method: str, path: str, *, headers: bytes = b"", body: bytes = b"") -> bytes:
    length = b"Content-Length: %d\r\n" % len(body) if body else b""
    return (
        f"{method} {path} HTTP/1.1\r\nHost: test\r\n".encode()
        + headers
        + length
        + b"Content-Type: application/json\r\n\r\n"
        + body
    )


def read_answers(sock: socket.socket, count: int) -> bytes:
    """Read until `count` HTTP answers have arrived (each ends in a JSON body)."""
    received = b""
    while received.count(b"HTTP/1.1 ") < count or not received.rstrip().endswith(b"}"):
        chunk = sock.recv(65_536)
        if not chunk:
            break
        received += chunk
    return received


def test_headers_past_the_limit_get_a_431_in_one_read_or_streamed(server):
    port, _ = server
    too_long = b"X-Padding: " + b"a" * 20_000 + b"\r\n"  # the limit is 16,384 bytes
    with connect(port) as sock:
        sock.sendall(http_request("GET", "/health", headers=too_long))
        assert read_until_closed(sock).startswith(b"HTTP/1.1 431")
    with connect(port) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: test\r\n")
        for _ in range(100):  # 100 kB of headers, 1 kB at a time, never finished
            sock.sendall(b"X-Padding: " + b"a" * 1_000 + b"\r\n")
        assert read_until_closed(sock).startswith(b"HTTP/1.1 431")


def test_a_kept_alive_connections_next_request_has_the_same_header_limit(server):
    port, _ = server
    with connect(port) as sock:
        sock.sendall(http_request("GET", "/health"))
        assert read_answers(sock, 1).startswith(b"HTTP/1.1 200")
        padding = b"X-Padding: " + b"a" * 20_000 + b"\r\n"
        sock.sendall(http_request("GET", "/health", headers=padding))
        assert read_until_closed(sock).startswith(b"HTTP/1.1 431")


def test_a_body_far_larger_than_the_header_limit_is_not_counted_as_headers(server):
    port, _ = server
    features = json.dumps([0.5] * 518)
    body = ('{"k": 3, "features": ' + features + " " * 100_000 + "}").encode()  # JSON whitespace
    with connect(port) as sock:
        sock.sendall(http_request("POST", "/songs/similar", body=body))
        answer = read_answers(sock, 1)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:300]
    assert len(json.loads(answer.split(b"\r\n\r\n", 1)[1])["results"]) == 3


def test_pipelined_requests_with_bodies_are_each_answered(server):
    port, _ = server
    body = ('{"k": 2, "features": ' + json.dumps([0.5] * 518) + " " * 30_000 + "}").encode()
    with connect(port) as sock:
        sock.sendall(http_request("POST", "/songs/similar", body=body) * 3)
        answer = read_answers(sock, 3)
    assert answer.count(b"HTTP/1.1 200") == 3, answer[:300]
