"""Operational endpoints, answered only on hosts that are not ``mta-sts.*`` policy hosts."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from prometheus_client import CollectorRegistry, exposition
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from . import names
from ._gc import collector_paused
from .config import Config
from .store import PolicyStore, Snapshot


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


def _text(value: object) -> str:
    if value is None:
        return "-"
    return "".join(_json(value, compact=False)) if isinstance(value, dict | list) else str(value)


_PIECE = 1_000
"""Items of a long list encoded at once."""


def _json(value: object, *, compact: bool) -> Iterator[str]:
    """
    ``value`` as JSON in pieces, a long list a thousand items at a time: as Starlette's
    ``JSONResponse`` writes it if ``compact``, else as ``json.dumps`` does by default. The
    encoder, written in C, holds the GIL for as long as it runs: 160 ms for the doctor's
    70,000 problems at 10,000 domains, in which no policy was answered.
    """
    item, key = (",", ":") if compact else (", ", ": ")

    def dumps(part: object) -> str:
        return json.dumps(
            part, ensure_ascii=not compact, allow_nan=not compact, separators=(item, key)
        )

    if isinstance(value, dict):
        yield "{"
        for n, (name, member) in enumerate(value.items()):
            # The key as the encoder writes it: a number, True or None as a string.
            yield f"{item if n else ''}{dumps({name: 0})[1 : -len(key) - 2]}{key}"
            yield from _json(member, compact=compact)
        yield "}"
    elif isinstance(value, list) and len(value) > _PIECE:
        yield "["
        for n in range(0, len(value), _PIECE):
            yield f"{item if n else ''}{dumps(value[n : n + _PIECE])[1:-1]}"
        yield "]"
    else:
        yield dumps(value)


def _readyz_body(detail: Mapping[str, object], as_json: bool) -> bytes:
    with collector_paused():  # as for a scrape, below
        if as_json:
            return b"".join(piece.encode() for piece in _json(detail, compact=True))
        return "".join(f"{key}: {_text(value)}\n" for key, value in detail.items()).encode()


_PROBES = 4
"""``/readyz`` answers rendered at once, in threads beside the worker threads of requests."""

Detail = Callable[[bool], Awaitable[Mapping[str, object]]]
"""Something a capability adds to ``/readyz``: keys and values, never its status. Given
whether the answer is JSON, which may list what the text, the answer probes read, counts."""


def _report_hosts(config: Config) -> frozenset[str]:
    """
    The host names, normalised, of the ``https`` URIs in ``tlsrpt_rua`` that lead to this
    app's intake (its path), if it takes reports in: the names beside the policy hosts that
    Caddy may get certificates for. A collector elsewhere gives none, nor does a URI without
    a host name (``https:///tlsrpt``, ``https://*.example.com/tlsrpt``).
    """
    if config.reports is None:
        return frozenset()
    found = set()
    for uris in {domain.tlsrpt_rua for domain in config.domains.values()}:
        for uri in uris:
            with contextlib.suppress(ValueError):  # no host name, or brackets left open
                parts = urlsplit(uri)
                if parts.scheme.lower() == "https" and parts.path == config.reports.path:
                    found.add(names.host_name(parts.hostname or ""))
    return frozenset(found)


def _host_name(text: str) -> str | None:
    try:
        return names.host_name(text)
    except ValueError:
        return None


def _certificate_name(text: str) -> str | None:
    """
    The host name, normalised, of a name as a TLS client sends it (RFC 6066 section 3:
    ASCII, international names as A-labels, no port), or None for any other text. Caddy
    gets its certificate for the name as it asked, not as normalised here: a port
    (``mta-sts.example.com:443``, ``:0443``, ...) or U-labels that only UTS 46 makes ours
    (a fullwidth ``a``, U+FF41, or a decomposed ``ü``) would each have it get one for a
    name not ours.
    """
    return _host_name(text) if text.isascii() else None


Rendered = Callable[[], bytes]
"""A capability's metric families, in the text format, as it has rendered them last."""


def _render(registry: CollectorRegistry, rendered: Sequence[Rendered] = ()) -> bytes:
    # Without the collector: the hundreds of thousands of objects a scrape of a large config
    # makes would start full collections, each holding the GIL, and so the event loop, for
    # 100 to 300 ms at 100,000 domains.
    with collector_paused():
        return b"".join([exposition.generate_latest(registry), *(text() for text in rendered)])


def routes(
    store: PolicyStore,
    registry: CollectorRegistry | None,
    details: Sequence[Detail] = (),
    rendered: Sequence[Rendered] = (),
) -> list[BaseRoute]:
    """
    The routes for ``/healthz``, ``/readyz``, ``/tls-allowed`` and, if on, ``/metrics``.
    ``details`` is read at each ``/readyz``, and ``rendered`` (follows the registry's
    families) at each scrape, so capabilities may add to them later.
    """

    probes = anyio.CapacityLimiter(_PROBES)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def readyz(request: Request) -> Response:
        # Ready as soon as the app exists: it cannot be created without a valid config, and a
        # rejected reload keeps the last good policies, so it is reported but not fatal.
        snapshot, status = store.snapshot, store.status
        detail: dict[str, object] = {
            "status": "ready",
            "config": snapshot.config.path,
            "loaded_at": _iso(snapshot.loaded_at),
            "domains": len(snapshot.served),
            "digest": snapshot.digest,
            "reloads_succeeded": status.succeeded,
            "reloads_failed": status.failed,
            "last_error": status.last_error,
            "last_error_at": _iso(status.last_error_at),
        }
        as_json = request.query_params.get("format") == "json" or "json" in request.headers.get(
            "accept", ""
        )
        for extra in details:
            detail.update(await extra(as_json))
        # Off the loop: the doctor's problems make this large for large configs. With threads
        # of its own, so that a probe never waits for requests holding the others.
        body = await anyio.to_thread.run_sync(_readyz_body, detail, as_json, limiter=probes)
        return Response(body, media_type="application/json" if as_json else "text/plain")

    hosts: tuple[Snapshot | None, frozenset[str]] = (None, frozenset())

    def report_hosts() -> frozenset[str]:
        nonlocal hosts
        if hosts[0] is not store.snapshot:
            hosts = (store.snapshot, _report_hosts(store.snapshot.config))
        return hosts[1]

    async def tls_allowed(request: Request) -> Response:
        # Caddy's on-demand TLS asks before it requests a certificate for a name: a policy
        # host served here, or a host the domains send their reports to, if they come here.
        name = request.query_params.get("domain")
        if not name:
            return PlainTextResponse("missing ?domain=\n", status_code=400)
        host = _certificate_name(name)
        if host is None:
            return PlainTextResponse("not a host served here\n", status_code=404)
        domain = names.policy_domain_of_host(host)
        if domain is None and host in report_hosts():
            return PlainTextResponse("ok\n")
        if domain is None or store.lookup(domain) is None:
            return PlainTextResponse("not a host served here\n", status_code=404)
        return PlainTextResponse("ok\n")

    result: list[BaseRoute] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/tls-allowed", tls_allowed, methods=["GET"]),
    ]
    if registry is not None:

        async def metrics(request: Request) -> Response:
            # Rendering a series per domain takes a while for large configs: off the loop.
            body = await run_in_threadpool(_render, registry, rendered)
            return Response(body, media_type=exposition.CONTENT_TYPE_LATEST)

        result.append(Route("/metrics", metrics, methods=["GET"]))
    return result
