"""Request ids and structured logs: one JSON object per line, the request's id on each."""

import io
import json
import logging
import re

import pytest

from app.telemetry.logs import configure_logging, log_handler, request_id_from


@pytest.fixture
def json_lines(caplog):
    """What the JSON handler writes while the test runs, as parsed objects."""
    caplog.set_level(logging.INFO)  # the root logger's level, restored afterwards
    stream = io.StringIO()
    handler = log_handler("json", stream)
    logging.getLogger().addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        logging.getLogger().removeHandler(handler)


def test_a_valid_incoming_request_id_is_kept_and_returned(client):
    response = client.get("/health", headers={"X-Request-ID": "checkout-42.a:b"})
    assert response.headers["X-Request-ID"] == "checkout-42.a:b"


@pytest.mark.parametrize("given", ["x" * 129, "has space", 'quote"d', "", "é"])
def test_an_unacceptable_request_id_is_replaced_by_a_fresh_one(client, given):
    response = client.get("/health", headers={"X-Request-ID": given.encode("utf-8")})
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_each_request_without_an_id_gets_its_own(client):
    ids = {client.get("/health").headers["X-Request-ID"] for _ in range(3)}
    assert len(ids) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert request_id_from(None) != request_id_from(None)


def test_every_line_logged_while_serving_carries_that_requests_id(client, catalogue, json_lines):
    body = {"title": "Logged", "artist": "Log Band", "features": catalogue.features[5].tolist()}
    response = client.post("/songs", json=body, headers={"X-Request-ID": "req-add-1"})
    assert response.status_code == 201
    client.get("/songs/999999999", headers={"X-Request-ID": "req-missing-2"})

    lines = json_lines()
    mine = [line for line in lines if line["request_id"] == "req-add-1"]
    # the handler's own line (written in a worker thread) and the access line
    stored = [line for line in mine if line["logger"] == "musicsim.catalogue"]
    assert [line["song_id"] for line in stored] == [response.json()["id"]]
    (access,) = [line for line in mine if line["logger"] == "musicsim.access"]
    assert access["method"] == "POST" and access["route"] == "/songs"
    assert access["status"] == 201 and access["path"] == "/songs"
    assert access["duration_ms"] > 0 and access["level"] == "INFO"
    (missing,) = [line for line in lines if line["request_id"] == "req-missing-2"]
    assert missing["status"] == 404 and missing["route"] == "/songs/{song_id}"
    assert all({"time", "level", "logger", "message", "request_id"} <= set(ln) for ln in lines)


def test_lines_outside_a_request_have_no_id(json_lines):
    logging.getLogger("musicsim").info("between requests")
    (line,) = json_lines()
    assert line["message"] == "between requests" and line["request_id"] == "-"


def test_an_exception_is_logged_inside_its_json_line(json_lines):
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("musicsim").exception("failed")
    (line,) = json_lines()
    assert line["level"] == "ERROR" and "ValueError: boom" in line["exception"]


def test_configure_logging_routes_uvicorn_and_musicsim_through_one_format(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("json")
        logging.getLogger("uvicorn.error").info("Started server process")
        configure_logging("text")
        logging.getLogger("musicsim").warning("plain")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = capsys.readouterr().err.splitlines()
    assert json.loads(first)["logger"] == "uvicorn.error"
    assert re.fullmatch(r".* WARNING musicsim \[-\] plain", second)


def test_configure_logging_leaves_the_access_lines_to_the_middleware(capsys):
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    access = logging.getLogger("uvicorn.access")
    access.propagate = True  # as uvicorn leaves it when its own access log is on
    try:
        configure_logging("text")
        access.info('127.0.0.1:1 - "GET /health HTTP/1.1" 200')
        logging.getLogger("musicsim.access").info("GET /health 200 1.0 ms")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    (line,) = capsys.readouterr().err.splitlines()
    assert "musicsim.access" in line
