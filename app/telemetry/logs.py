"""Log records carry the id of the request being served; JSON or text lines on stderr.

>>> configure_logging("json")      # musicsim serve, MUSICSIM_LOG_FORMAT=json
{"time": "2026-11-28T10:00:00.123+00:00", "level": "INFO", "logger": "musicsim.access",
 "message": "GET /songs/{song_id}/similar 200 4.1 ms", "request_id": "5f0c...", ...}

The id lives in a context variable set by the request middleware (app/telemetry/middleware.py);
FastAPI runs sync handlers in threads that inherit it, so every line logged while
serving a request carries that request's id.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

request_id_var: ContextVar[str | None] = ContextVar("musicsim_request_id", default=None)

# What a client may send as X-Request-ID: printable, no spaces or quotes, bounded.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "taskName",
    "color_message",  # uvicorn's copy of the message with terminal colour codes
}


def request_id_from(header: str | None) -> str:
    """The client's X-Request-ID when it is acceptable, else a fresh random id."""
    if header is not None and _REQUEST_ID.fullmatch(header):
        return header
    return uuid.uuid4().hex


class RequestIdFilter(logging.Filter):
    """Stamps each record with the current request's id ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id and any extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        entry.update(
            (key, value) for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES
        )
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def log_handler(
    log_format: Literal["text", "json"], stream: TextIO | None = None
) -> logging.Handler:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    return handler


def configure_logging(log_format: Literal["text", "json"]) -> None:
    """Route every logger (uvicorn's too) through one stderr handler in this format.

    uvicorn must then be started with log_config=None, so that it keeps its own
    handlers off. uvicorn's access lines stay off here too, not only through its
    access_log=False: the request middleware writes the access lines, and a `serve
    --workers` process calls this after uvicorn has applied that setting (each request
    was logged twice there).
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(log_handler(log_format))
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = name != "uvicorn.access"
