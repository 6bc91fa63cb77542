"""The ASGI application: policies on ``mta-sts.*`` hosts, anything else through Starlette."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Protocol

from starlette.applications import Starlette
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import answers, ops
from ._mount import route_path
from .config import load_config
from .logs import log_access
from .metrics import MetricSource, RequestCounts
from .metrics import registry as metrics_registry
from .policy import POLICY_PATH
from .reload import Reloader
from .reports import Reports
from .store import PolicyStore

_MEMO_SIZE = 65_536
"""Host headers whose answers are remembered, per snapshot."""
_MEMO_HOST_SIZE = 300
"""The longest Host header remembered: a policy host name (at most 252 bytes), a port, and
room to spare."""
Ready = tuple[Message, Message, str | None, list[int]]
"""
An answer as the hot path takes it: its two ASGI messages (the start, with the status and
headers, and the body), the policy domain, and the counter of such answers (see
``RequestCounts``). A plain tuple, not a NamedTuple: the interpreter unpacks only an exact
tuple on its fast path.
"""
_NO_BODY: Message = {"type": "http.response.body", "body": b""}
"""The body message of every answer to a HEAD, when messages are reused."""
CLIENT_CLOSED = 499
"""The status logged for a request the client abandoned before any answer (as nginx does)."""
logger = logging.getLogger(__name__)


class _Startable(Protocol):
    def start(self) -> None: ...


class PolicyApp(Starlette):
    """
    A Starlette app that answers every request for an ``mta-sts.*`` host from the store
    itself, in front of Starlette's middleware and routing (which would cost about a fifth of
    the throughput), and passes every other request to the report intake if it is for it,
    else to them: the operational endpoints.

    Args:
        store: the policies to serve.
        reloader: keeps the store in step with its file, if given; it starts watching with
            the app's first event of any kind.
        metrics: serve the Prometheus metrics at ``/metrics`` on non-policy hosts.
        access_log: log one line per request to the ``mtasts_host.access`` logger.
        reports: TLS reports: the intake, and the ``/reports`` page, metrics and readiness,
            on the hosts that are not policy hosts only. A policy host serves the policy and
            nothing else, so reports go to a host name of their own.
        open_reports: open the report store in a thread of its own with the app's first
            event (``Reports.start``), as ``create_app`` does; else its first use opens it.
    """

    def __init__(
        self,
        store: PolicyStore,
        *,
        reloader: Reloader | None = None,
        metrics: bool = True,
        access_log: bool = True,
        reports: Reports | None = None,
        open_reports: bool = False,
    ) -> None:
        self.store = store
        self.reloader = reloader
        self.reports = reports
        self.requests = RequestCounts()
        self.metric_sources: list[MetricSource] = [] if reports is None else [reports.metrics]
        """The metric families of the capabilities that depend on the domains served: each
        scrape gives them the snapshot it read the policies from."""
        self.registry = (
            metrics_registry(store, self.requests, self.metric_sources) if metrics else None
        )
        self.details: list[ops.Detail] = []
        """What ``/readyz`` adds about the capabilities; it never changes its status."""
        self.rendered_metrics: list[ops.Rendered] = []
        """Metric families that capabilities render themselves, once for many scrapes."""
        self.access_log = access_log
        self.reuse_messages = False
        """
        Send the same message objects for every request a remembered answer answers rather
        than new ones: for a server that only reads them, with nothing between it and the
        app, as under ``serve``: building them was two thirds of what the app cost a policy
        request over a bare ASGI callable. A host app's middleware changes them in place
        (Starlette's GZipMiddleware replaces the body, MutableHeaders appends to the
        headers), so off by default.
        """
        unstarted: list[_Startable] = [] if reloader is None else [reloader]
        if reports is not None and open_reports:
            unstarted.append(reports)
        self._unstarted: list[_Startable] | None = unstarted or None
        self._memo: dict[bytes | None, Ready] = {}
        self._starts: dict[tuple[int, answers.Headers], Message] = {}
        """One start message for each status and headers: few, since answers of one length
        share their headers."""
        self._memo_for = store.snapshot
        routes = ops.routes(store, self.registry, self.details, self.rendered_metrics)
        if reports is not None:
            routes += reports.routes()
            self.details.append(_reports_detail(reports))
        super().__init__(routes=routes, lifespan=self._lifespan)
        # No trailing-slash redirects: senders never follow a 3xx (RFC 8461 section 3.3).
        self.router.redirect_slashes = False

    def stop(self) -> None:
        """Stop watching the configuration, if the app does; for a host app's lifespan. The
        next request or lifespan event starts watching again."""
        if self.reloader is not None:
            self.reloader.stop()
            if self._unstarted is None:
                self._unstarted = [self.reloader]

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        self.stop()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._unstarted is not None:
            # Started by the first event of any kind, not by the lifespan: a mounted app
            # never sees the lifespan (encode/starlette#649), and a forked worker gets here.
            for unstarted in self._unstarted:
                unstarted.start()
            self._unstarted = None
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        start = time.perf_counter() if self.access_log else 0.0
        host: bytes | None = None
        repeated = False
        for key, value in scope["headers"]:
            if key == b"host":
                if host is not None:
                    repeated = True
                    break
                host = value
        method = scope["method"]
        ready: Ready | None
        if repeated:
            ready = self._ready(answers.BAD_HOST)
        elif scope["path"] == POLICY_PATH and (method == "GET" or method == "HEAD"):
            # The hot path: answers memoised per snapshot and Host header, since almost every
            # request is this one, and most Host headers come again and again.
            if self.store.snapshot is not self._memo_for:
                self._new_snapshot()
            ready = self._memo.get(host)
            if ready is None:
                ready = self._remember(host)
        else:
            domain = answers.policy_domain(host) if host else None
            ready = None
            if domain is not None:
                if self.store.snapshot is not self._memo_for:
                    self._new_snapshot()
                path = route_path(scope)
                ready = self._ready(answers.answer(self._memo_for, domain, path, method))
        if ready is None:  # not a policy host: the report intake, the operational endpoints
            if host is not None or scope.get("http_version") != "1.1":
                reports = self.reports
                if reports is not None and reports.matches(scope):
                    await self._logged(reports.handle, scope, receive, send, start)
                else:
                    await self._logged(super().__call__, scope, receive, send, start)
                return
            # RFC 9112 section 3.2: an HTTP/1.1 request without Host is a 400 (h11 refuses
            # it itself, httptools passes it on). HTTP/1.0 has no Host to miss: a 404 there.
            ready = self._ready(answers.NO_HOST)
        start_message, body_message, domain, counter = ready
        counter[0] += 1
        if self.reuse_messages:
            await send(start_message)
            await send(_NO_BODY if method == "HEAD" else body_message)
        else:
            # New messages, and a list of headers of its own, for each answer: what a host
            # app's middleware changes in place must not reach the remembered answer.
            await send({**start_message, "headers": [*start_message["headers"]]})
            await send({**body_message, "body": b""} if method == "HEAD" else {**body_message})
        if self.access_log:
            sent = 0 if method == "HEAD" else len(body_message["body"])
            log_access(scope, start, start_message["status"], sent, domain)

    def _new_snapshot(self) -> None:
        """Forget the answers remembered for the snapshot before, and the request counters
        of the domains it served that the new one does not."""
        self._memo = {}
        self._memo_for = snapshot = self.store.snapshot
        # Here, in the event loop, where counters are made: in another thread, a counter made
        # meanwhile for a domain the new snapshot serves could be forgotten while a
        # remembered answer still adds to it.
        self.requests.retain(snapshot.served)

    def _ready(self, answer: answers.Answer) -> Ready:
        """``answer`` as its messages, with the counter it adds to."""
        status, headers, body, domain = answer
        start_message = self._starts.get((status, headers))
        if start_message is None:
            start_message = self._starts[status, headers] = {
                "type": "http.response.start",
                "status": status,
                "headers": headers,
            }
        body_message = {"type": "http.response.body", "body": body}
        return start_message, body_message, domain, self.requests.counter(domain, status)

    def _remember(self, host: bytes | None) -> Ready | None:
        """
        The answer to a GET of the policy path with this Host header, or None if it is no
        policy host. A policy is remembered for the snapshot while the memo has room, if the
        header is of a sensible length: made-up or padded Host headers cannot fill memory.
        """
        domain = answers.policy_domain(host) if host else None
        if domain is None:
            return None
        answer = answers.answer(self._memo_for, domain, POLICY_PATH, "GET")
        ready = self._ready(answer)
        if (
            answer.domain is not None
            and host is not None
            and len(host) <= _MEMO_HOST_SIZE
            and len(self._memo) < _MEMO_SIZE
        ):
            self._memo[host] = ready
        return ready

    async def _logged(
        self, app: ASGIApp, scope: Scope, receive: Receive, send: Send, start: float
    ) -> None:
        """Pass the request to ``app``, logging its access line if access logs are on."""
        if not self.access_log:
            await app(scope, receive, send)
            return
        status: int | None = None
        sent = 0
        # Starlette's answers to a HEAD carry their body, which the server does not send.
        head = scope["method"] == "HEAD"

        async def watch(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not head:
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await app(scope, receive, watch)
        except BaseException:
            if status is None:
                status = 500  # a fault of ours: the server answers 500
            raise
        finally:
            # No answer and no fault: the client went away first (nginx's 499), which must
            # not read as a server error in the log.
            log_access(scope, start, CLIENT_CLOSED if status is None else status, sent, None)


def create_app(
    config: str | os.PathLike[str] | PolicyStore,
    *,
    watch: bool = True,
    metrics: bool = True,
    access_log: bool = True,
) -> PolicyApp:
    """
    Return the ASGI application that serves a configuration.

    Args:
        config: the YAML configuration file, or a store already holding one.
        watch: reload the file whenever it changes. Watching starts with the first request
            or lifespan event, so it also works when the app is mounted in another one.
            ``app.stop()`` ends it; the app's own lifespan does that at shutdown. Either way
            the watcher never keeps the process alive.
        metrics: serve the Prometheus metrics at ``/metrics`` on non-policy hosts.
        access_log: log one line per request to the ``mtasts_host.access`` logger.

    Raises:
        ConfigError: the configuration is invalid.
    """
    store = config if isinstance(config, PolicyStore) else PolicyStore(load_config(config))
    logger.info("serving %s", store.snapshot.describe())
    reports = None if store.config.reports is None else Reports(store.config.reports, store)
    return PolicyApp(
        store,
        reloader=Reloader(store) if watch else None,
        metrics=metrics,
        access_log=access_log,
        reports=reports,
        # In the background, not here: policies are served while the store is opened, and a
        # server that forks its workers after creating the app forks no thread's locks.
        open_reports=True,
    )


def _reports_detail(reports: Reports) -> ops.Detail:
    async def detail(as_json: bool) -> dict[str, object]:
        return {"reports_store": await reports.readiness() or "ok"}

    return detail
