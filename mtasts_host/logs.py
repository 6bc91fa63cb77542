"""Log output: one line per event, as text or JSON, with untrusted values escaped."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from starlette.types import Scope

from ._logwriter import QueuedHandler
from ._logwriter import close_all as close_all
from ._logwriter import dropped as dropped
from ._logwriter import flush_all as flush_all
from ._text import printable

ACCESS_LOGGER = "mtasts_host.access"
_access = logging.getLogger(ACCESS_LOGGER)
_KEPT = 256
"""Characters of a client's value that an access line keeps: a header of a megabyte must not
make a megabyte of log."""


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields: dict[str, Any] = getattr(record, "fields", {})
    return fields


class TextFormatter(logging.Formatter):
    """``time level logger: event key=value ...``; strings are JSON-quoted, so a quote or a
    newline from a client stays inside its value and cannot start a line of its own. What is
    not printable in the event is escaped too: uvicorn's lines quote the client address that
    X-Forwarded-For gives, the doctor's what mail servers answer, and a carriage return, an
    escape or U+0085 there would break or repaint the line for many readers."""

    def format(self, record: logging.LogRecord) -> str:
        event = printable(record.getMessage())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {event}"
        for key, value in _fields(record).items():
            text = json.dumps(value) if isinstance(value, str) else value
            line += f" {key}={text}"
        if record.exc_info:
            line += " " + json.dumps(self.formatException(record.exc_info))
        return line


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, event and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


_FORMATTERS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JSONFormatter}
"""The formatter of each ``--log-format``."""


def config(log_format: str = "text", level: str = "info") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the whole process, uvicorn's loggers included: to
    stderr, through a writer thread (``QueuedHandler``)."""
    formatter = _FORMATTERS[log_format]
    handler = {"()": QueuedHandler, "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": {"()": formatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # uvicorn's own access log is replaced by ours, which knows the policy domain.
            "uvicorn": {"handlers": [], "propagate": True},
            # A line for every change in the config's directory: a log file there would
            # log its own growth for ever. Reloads have lines of their own.
            "watchfiles": {"level": "WARNING"},
            "uvicorn.error": {"handlers": [], "propagate": True},
            "uvicorn.access": {"handlers": [], "propagate": False},
        },
    }


def attach(log_format: str = "text") -> None:
    """
    Give mtasts-host's loggers a handler of their own, at INFO, if nothing handles them: an
    ASGI server that configures only its own loggers would lose the access, reload and
    publish lines (warnings aside, which Python prints bare). It writes to stderr through a
    thread of its own, as serve's, which ``logging.shutdown`` drains at exit.
    """
    ours = logging.getLogger("mtasts_host")
    if ours.handlers or logging.getLogger().handlers:
        return
    handler = QueuedHandler()
    handler.setFormatter(_FORMATTERS[log_format]())
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def log_access(scope: Scope, start: float, status: int, sent: int, domain: str | None) -> None:
    """One access line: the request of ``scope``, begun at ``start`` (``perf_counter``),
    answered with ``status`` and ``sent`` bytes, for the policy ``domain`` if any."""
    if not _access.isEnabledFor(logging.INFO):
        return
    headers = dict(scope["headers"])
    client = scope.get("client")
    # makeRecord and handle, not info(), which looks for its caller up the stack: 40% of
    # what making this record cost, for a file and line that no line shows.
    record = _access.makeRecord(
        ACCESS_LOGGER,
        logging.INFO,
        __file__,
        0,
        "request",
        (),
        None,
        "log_access",
        {
            "fields": {
                "domain": domain,
                "host": _sent(headers.get(b"host", b"")),
                "method": _kept(scope["method"]),
                "path": _kept(scope["path"]),
                "query": _sent(scope["query_string"]),
                "status": status,
                "bytes": sent,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "user_agent": _sent(headers.get(b"user-agent", b"")),
                # X-Forwarded-For's, with --proxy-headers: a client's value too.
                "client": _kept(client[0]) if client else None,
            }
        },
    )
    _access.handle(record)


def _sent(value: bytes) -> str:
    """A client's bytes: UTF-8 where they are, escapes where not, cut to a readable size."""
    text = value[:_KEPT].decode("utf-8", "backslashreplace")
    return text if len(value) <= _KEPT else f"{text}... ({len(value)} bytes)"


def _kept(text: str) -> str:
    return text if len(text) <= _KEPT else f"{text[:_KEPT]}... ({len(text)} characters)"
