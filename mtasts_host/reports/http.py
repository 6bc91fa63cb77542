"""
The HTTPS intake (RFC 8460 section 5.4): ``POST <path>`` on every host but the ``mta-sts.*``
policy hosts, as a plain ASGI callable the app puts in front of its own routing.
"""

from __future__ import annotations

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.types import Receive, Scope, Send

from .._mount import route_path
from ..answers import text_headers
from .body import MAX_WIRE_SIZE, TooLarge
from .intake import Intake
from .report import BadReport
from .store import Outcome, StoreUnavailable

RETRY_AFTER = b"300"
"""Seconds: senders retry for a day (RFC 8460 section 5.5), so a few minutes is polite."""
_TOO_LARGE = f"the report is larger than {MAX_WIRE_SIZE >> 20} MiB as sent"
BODY_TIMEOUT = 60.0
"""Seconds a report body may take to arrive whole: a sender posts a few KiB at once, while a
client trickling a body would otherwise hold its bytes in memory for ever."""
MAX_READING = 32
"""Reports taken in at once, from the first byte of their body to their answer: at most this
many MiB of bodies are in memory, whether slow clients send them or fast ones wait for the
parser, which takes one report at a time; beyond it the intake answers 503 with Retry-After,
and senders try again (RFC 8460 section 5.5)."""


class IntakeEndpoint:
    """
    ``POST`` a report (gzip or JSON, whatever the Content-Type) to ``path``: 201 stored,
    200 duplicate, 400 bad, 408 too slow, 413 too large, 503 store unavailable or too many
    reports being taken in at once, 405 for other methods.

    Args:
        intake: stores and counts the reports.
        path: the intake path, e.g. ``/tlsrpt``.
    """

    def __init__(self, intake: Intake, path: str) -> None:
        self.intake = intake
        self.path = path
        self._reading = 0
        """Reports being read or parsed now (one event loop: no lock needed)."""

    def matches(self, scope: Scope) -> bool:
        """
        Whether a request is for the intake, by its path below any mount. The app asks only
        about requests for hosts that are not policy hosts.
        """
        if scope["type"] != "http":
            return False
        return route_path(scope) == self.path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            await _answer(send, 405, "method not allowed: POST a TLS report here", b"POST")
            return
        if self._reading >= MAX_READING:
            await _answer(send, 503, "too many reports arriving at once; try again later")
            return
        # Held until the answer, not only while the body comes: read at once, bodies waited
        # for the parser, 300 of them (one slow report ahead) holding 470 MB.
        self._reading += 1
        try:
            await self._take(scope, receive, send)
        finally:
            self._reading -= 1

    async def _take(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            with anyio.fail_after(BODY_TIMEOUT):
                body = await _read(scope, receive)
        except _Disconnected:
            return  # nobody is left to answer
        except TimeoutError:
            self.intake.reject(f"the body did not arrive within {BODY_TIMEOUT:g} s")
            await _answer(send, 408, f"the report did not arrive within {BODY_TIMEOUT:g} s")
            return
        if body is None:
            self.intake.reject(_TOO_LARGE)
            await _answer(send, 413, f"too large: {_TOO_LARGE}")
            return
        try:
            outcome, _ = await run_in_threadpool(self.intake.accept, body)
        except BadReport as exc:
            await _answer(send, 400, f"bad report: {exc}")
        except TooLarge as exc:
            await _answer(send, 413, f"too large: {exc}")
        except StoreUnavailable:
            # Nothing was stored: the sender keeps the report and tries again.
            await _answer(send, 503, "the report store is unavailable; try again later")
        else:
            if outcome is Outcome.STORED:
                await _answer(send, 201, "stored")
            else:
                await _answer(send, 200, "duplicate: this report is stored already")


class _Disconnected(Exception):
    """The client went away before the whole body came."""


async def _read(scope: Scope, receive: Receive) -> bytes | None:
    """The request body, or None beyond ``MAX_WIRE_SIZE`` (read no further than that)."""
    for key, value in scope["headers"]:
        if key == b"content-length" and value.strip().isdigit() and int(value) > MAX_WIRE_SIZE:
            return None
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_WIRE_SIZE:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _answer(send: Send, status: int, text: str, allow: bytes | None = None) -> None:
    body = text.encode() + b"\n"
    headers = list(text_headers(body, b"no-store"))
    if allow is not None:
        headers.append((b"allow", allow))
    if status == 503:
        headers.append((b"retry-after", RETRY_AFTER))
    if status == 408:
        headers.append((b"connection", b"close"))  # the rest of the body is not awaited
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
