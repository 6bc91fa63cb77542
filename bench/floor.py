"""The floor: the least an ASGI app on uvicorn can do to answer with a policy."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send

BODY = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
HEADERS = [
    (b"content-type", b"text/plain; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode()),
    (b"cache-control", b"max-age=60"),
    (b"x-content-type-options", b"nosniff"),
]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
