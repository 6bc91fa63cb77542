"""The ASGI application: policies on ``mta-sts.*`` hosts, anything else through Starlette."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import Message, Receive, Scope, Send

from . import names, ops
from .config import load_config
from .logs import ACCESS_LOGGER
from .metrics import UNKNOWN, RequestCounts
from .metrics import registry as metrics_registry
from .reload import Reloader
from .store import PolicyStore, text_headers

access_logger = logging.getLogger(ACCESS_LOGGER)

POLICY_PATH = "/.well-known/mta-sts.txt"

_Headers = tuple[tuple[bytes, bytes], ...]


def _plain(status: int, text: str, *extra: tuple[bytes, bytes]) -> tuple[int, _Headers, bytes]:
    body = text.encode() + b"\n"
    return status, (*text_headers(body, b"no-store"), *extra), body


_NO_POLICY = _plain(404, "No MTA-STS policy is served for this host.")
_NOT_FOUND = _plain(404, f"Not found. The MTA-STS policy is at {POLICY_PATH}.")
_NOT_ALLOWED = _plain(405, "Method not allowed.", (b"allow", b"GET, HEAD"))
_BAD_HOST = _plain(400, "Bad request: more than one Host header.")


def _log_access(scope: Scope, start: float, status: int, sent: int, domain: str | None) -> None:
    headers = dict(scope["headers"])
    client = scope.get("client")
    access_logger.info(
        "request",
        extra={
            "fields": {
                "domain": domain,
                "host": headers.get(b"host", b"").decode("latin-1"),
                "method": scope["method"],
                "path": scope["path"],
                "query": scope["query_string"].decode("latin-1"),
                "status": status,
                "bytes": sent,
                "duration_ms": round((time.perf_counter() - start) * 1000, 3),
                "user_agent": headers.get(b"user-agent", b"").decode("latin-1"),
                "client": client[0] if client else None,
            }
        },
    )


def _policy_domain(host: bytes) -> str | None:
    host = host.lower()
    if (
        host.startswith(b"mta-sts.")
        and host.isascii()
        and b":" not in host
        and not host.endswith(b".")
    ):
        return host[8:].decode()  # the usual Host header, with nothing to strip
    try:
        text = host.decode("ascii") if host.isascii() else host.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return names.policy_domain_of_host(text)


def _route_path(scope: Scope) -> str:
    # As Starlette's Mount does: the path below the mount point, if we are mounted.
    path: str = scope["path"]
    root = scope.get("root_path")
    return path[len(root) :] if root and path.startswith(root) else path


class PolicyApp(Starlette):
    """
    A Starlette app that answers every request for an ``mta-sts.*`` host from the store
    itself, in front of Starlette's middleware and routing (which would cost about a fifth of
    the throughput), and passes every other request to them: the operational endpoints.

    Responses are rendered at load time. None is ever a redirect, and conditional and range
    headers are ignored: senders accept only a plain 200 (RFC 8461 section 3.3).
    """

    def __init__(self, reloader: Reloader, *, watch: bool, metrics: bool, access_log: bool) -> None:
        self.store = reloader.store
        self.reloader = reloader
        """Reloads the configuration; ``reloader.stop()`` ends the watching, if any."""
        self.requests = RequestCounts() if metrics else None
        self.registry = metrics_registry(reloader, self.requests) if self.requests else None
        self.access_log = access_log
        self._unstarted = reloader if watch else None
        super().__init__(routes=ops.routes(reloader, self.registry), lifespan=self._lifespan)
        # No trailing-slash redirects: senders never follow a 3xx (RFC 8461 section 3.3).
        self.router.redirect_slashes = False

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        self.reloader.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._unstarted is not None:
            # Started by the first event of any kind, not by the lifespan: a mounted app
            # never sees the lifespan (encode/starlette#649), and a forked worker gets here.
            self._unstarted.start()
            self._unstarted = None
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        start = time.perf_counter() if self.access_log else 0.0
        host: bytes | None = None
        repeated = False
        for key, value in scope["headers"]:
            if key == b"host":
                repeated = host is not None
                if repeated:
                    break
                host = value
        domain = _policy_domain(host) if host and not repeated else None
        if domain is None and not repeated:
            if self.access_log:
                await self._pass_logged(scope, receive, send, start)
            else:
                await super().__call__(scope, receive, send)
            return
        served = self.store.snapshot.served.get(domain) if domain else None
        method = scope["method"]
        if repeated:
            status, headers, body = _BAD_HOST
        elif scope["path"] != POLICY_PATH and _route_path(scope) != POLICY_PATH:
            status, headers, body = _NOT_FOUND
        elif method != "GET" and method != "HEAD":
            status, headers, body = _NOT_ALLOWED
        elif served is None:
            status, headers, body = _NO_POLICY
        else:
            status, headers, body = 200, served.headers, served.body
        requests = self.requests
        if requests is not None:
            label = domain if served is not None and domain else UNKNOWN
            if status == 200:
                requests.ok[label] += 1
            else:
                requests.other[label, status] += 1
        # A fresh headers list each time: middleware of a host app may change it in place.
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        if method == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})
        if self.access_log:
            _log_access(scope, start, status, len(body), domain if served else None)

    async def _pass_logged(self, scope: Scope, receive: Receive, send: Send, start: float) -> None:
        status, sent = 500, 0

        async def watch(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await super().__call__(scope, receive, watch)
        finally:
            _log_access(scope, start, status, sent, None)


def create_app(
    config_path: str | os.PathLike[str],
    *,
    watch: bool = True,
    metrics: bool = True,
    access_log: bool = True,
) -> PolicyApp:
    """
    Load the configuration and return the ASGI application that serves it.

    Args:
        config_path: the YAML configuration file.
        watch: reload the file whenever it changes. Watching starts with the first request
            or lifespan event, so it also works when the app is mounted in another one.
            ``app.reloader.stop()`` ends it; the app's own lifespan does that at shutdown.
            Either way the watcher never keeps the process alive.
        metrics: count policy requests and serve ``/metrics`` on non-policy hosts.
        access_log: log one line per request to the ``mtasts_host.access`` logger.

    Raises:
        ConfigError: the configuration is invalid.
    """
    reloader = Reloader(PolicyStore(load_config(config_path)), config_path)
    return PolicyApp(reloader, watch=watch, metrics=metrics, access_log=access_log)
