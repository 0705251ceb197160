"""Structured logs: one JSON object per line, and the request id of the request a line belongs to.

The request id lives in a context variable that the request middleware (api/observability.py) sets
for the whole of one request, so every line logged while it runs carries it, not only the request's
own line: a failure's traceback and the request that caused it share one id.
"""

from __future__ import annotations

import logging
import os
import re
from contextvars import ContextVar
from typing import IO, Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

# An incoming X-Request-ID is kept only when it looks like an id (a UUID, a trace id): anything else,
# such as quotes, spaces, control characters or a long value, is replaced by a generated one, so a
# client can never write into a log line or grow it.
REQUEST_ID_PATTERN = re.compile(rb"[A-Za-z0-9._:-]{1,128}")

# The request's own line: the logger operators filter on (`CHECKIN_LOG_LEVEL=warning` turns it off).
ACCESS_LOGGER = "api.access"


def new_request_id() -> str:
    return os.urandom(16).hex()


def request_id_from(header: bytes | None) -> str:
    """The client's X-Request-ID when it is a safe id, else a fresh one."""
    if header is not None and REQUEST_ID_PATTERN.fullmatch(header):
        return header.decode("ascii")
    return new_request_id()


class RequestIdFilter(logging.Filter):
    """Adds the current request's id (None outside a request) to every record a handler emits."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonLines(JsonFormatter):
    """python-json-logger with our field names: time (UTC, ISO 8601), level, logger, message, then the
    record's extra fields (request_id, route, status...)."""

    def __init__(self) -> None:
        super().__init__(
            ["levelname", "name", "message"],
            rename_fields={"levelname": "level", "name": "logger"},
            timestamp="time",
            # uvicorn adds a coloured copy of some messages for terminals: noise in JSON.
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )


def json_handler(stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing JSON lines, each with the request id: what `serve` installs, and what tests read."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLines())
    handler.addFilter(RequestIdFilter())
    return handler


def logging_config(level: str) -> dict[str, Any]:
    """The logging set-up `checkin-offers serve` hands to uvicorn (it applies it in every worker):
    every logger, uvicorn's own included, writes JSON lines to stdout through one handler, and
    uvicorn's access log is off, because api/observability.py writes one line per request itself."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonLines"}},
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "handlers": {
            "stdout": {
                "class": "logging.StreamHandler",
                "stream": "ext://sys.stdout",
                "formatter": "json",
                "filters": ["request_id"],
            }
        },
        "root": {"level": level.upper(), "handlers": ["stdout"]},
        "loggers": {
            "uvicorn": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level.upper(), "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
            "alembic": {"level": "WARNING"},  # its plugin set-up at import, not news
            # At debug, SQL statements with their parameters hidden (core/db.py, hide_parameters);
            # never SQLAlchemy's DEBUG, which logs result rows: codes and positions.
            "sqlalchemy.engine": {"level": "INFO" if level.upper() == "DEBUG" else "WARNING"},
        },
    }
