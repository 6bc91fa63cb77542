"""
The reports capability inside a running server: the intake, the ``/reports`` page, the
metrics and the store's readiness, on the hosts that are not policy hosts, for the app to
wire in.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime

import anyio
import anyio.to_thread
from prometheus_client.core import Metric
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from .._gc import collector_paused
from ..policy import Policy
from ..store import PolicyStore, Snapshot
from . import metrics, page, sums
from .http import IntakeEndpoint
from .intake import Intake
from .rows import DAY, mx_key
from .settings import DEFAULT_THRESHOLDS, ReportsSettings, Thresholds
from .store import ReportStore, StoreUnavailable, open_store
from .summary import TOP_MX, DomainSummary, since_day, summarize

logger = logging.getLogger(__name__)

READINESS_WAIT = 0.5
"""Seconds ``/readyz`` waits for the store: a probe must never time out on its account."""
PAGE_CHUNK = 256 * 1024
"""Bytes of the page sent at once, at least (a domain's section is not cut)."""
READINESS_STALE = 10.0
"""Seconds after which ``/readyz`` asks the store again instead of telling the last news."""
OPENING = "not checked yet: the store is being opened"
"""What ``/readyz`` says of the store while ``start`` opens it."""


def read_summaries(
    store: ReportStore,
    policies: Mapping[str, Policy],
    *,
    days: int = 30,
    now: float | None = None,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    daily: bool = True,
) -> dict[str, DomainSummary]:
    """
    Summarise the stored reports of each configured domain (blocking); ``daily`` as for
    ``summarize``. ``policies`` are the ones the domains serve now, from one snapshot: the
    sessions reported against a policy with other ``mx`` are left out (``older_policy``).

    Raises:
        StoreUnavailable: the store cannot be read.
    """
    today = int((time.time() if now is None else now) // DAY)
    first = since_day(today, max(days, thresholds.window_days))
    served = {domain: mx_key(policy.mx) for domain, policy in policies.items()}
    totals = sums.totals(store, first, served)
    failures = sums.failure_totals(store, first, served)
    by_mx = sums.failures_by_mx(store, since_day(today, days), today, served, TOP_MX)
    return summarize(
        policies,
        totals,
        failures,
        by_mx,
        today=today,
        days=days,
        thresholds=thresholds,
        daily=daily,
    )


class Reports:
    """
    TLS reports in a running server.

    Args:
        settings: the ``reports:`` block.
        policies: the served configuration: its domains and their policies, read at each
            use, so reloads apply at once.
        thresholds: when a ``testing`` domain is ready.
        clock: seconds since the epoch, for the tests.

    Raises:
        ValueError: ``settings.store`` names no supported store.
    """

    def __init__(
        self,
        settings: ReportsSettings,
        policies: PolicyStore,
        *,
        thresholds: Thresholds = DEFAULT_THRESHOLDS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.policies = policies
        self.thresholds = thresholds
        self.clock = clock
        self.store = open_store(settings.store)
        self.intake = Intake(self.store, settings.retention_days, clock=clock)
        self.endpoint = IntakeEndpoint(self.intake, settings.path)
        self._probing = False
        self._opener: threading.Thread | None = None

    def open(self) -> str | None:
        """
        Create or upgrade the tables and prune old reports, at start-up (blocking). Never
        raises: the server starts anyway and the intake answers 503 until the store is back.

        Returns:
            the problem, or None if the store is ready.
        """
        try:
            self.intake.use(self.store.upgrade)
            self.intake.use(self.intake.prune)
        except StoreUnavailable:
            pass
        return self.intake.problem

    def start(self) -> None:
        """
        ``open`` in a daemon thread of its own (a problem is logged by the intake, once, as
        any outage of the store is): a server serves its policies meanwhile, however long
        the store takes (a lock another replica holds, a server that never answers), and
        ``/readyz`` says the store is being opened.
        """
        self._opener = threading.Thread(
            target=self.open, name="mtasts-host report store", daemon=True
        )
        self._opener.start()

    def matches(self, scope: Scope) -> bool:
        """
        Whether a request is for the intake; the app asks only about requests for hosts
        that are not ``mta-sts.*`` policy hosts, and sends those to ``handle``.
        """
        return self.endpoint.matches(scope)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer an intake request (see ``IntakeEndpoint``)."""
        await self.endpoint(scope, receive, send)

    def routes(self) -> list[BaseRoute]:
        """``GET /reports``, for the operational hosts only, never the ``mta-sts.*`` ones."""
        return [Route("/reports", self._page, methods=["GET"])]

    def summaries(self, days: int = 30, *, now: float | None = None) -> dict[str, DomainSummary]:
        """Every configured domain's summary (blocking), as of ``now`` (default: the clock)."""
        served = self.policies.snapshot.served
        policies = {domain: entry.policy for domain, entry in served.items()}
        return self.intake.use(
            lambda: read_summaries(
                self.store,
                policies,
                days=days,
                now=self.clock() if now is None else now,
                thresholds=self.thresholds,
            )
        )

    def metrics(self, snapshot: Snapshot) -> Iterator[Metric]:
        """The reports' metric families for the domains of ``snapshot``, the one the scrape
        read the policies from, for the app's collector (blocking)."""
        return metrics.metric_families(self.intake, snapshot.served.keys())

    async def readiness(self) -> str | None:
        """
        None while the store works, else why it does not, for ``/readyz`` (which stays
        200: policies are served all the same). Asks the store again when the last news is
        stale, waiting at most ``READINESS_WAIT`` seconds for the answer.
        """
        opener = self._opener
        if opener is not None and opener.is_alive():
            # Polled on the loop, not joined in a thread, which might all be taken.
            with anyio.move_on_after(READINESS_WAIT):
                while opener.is_alive():
                    await anyio.sleep(0.01)
            # Not probed meanwhile: the probe would wait for the opening, and say "ok" when
            # its own wait ended, before the store had ever answered.
            if opener.is_alive():
                return OPENING
        if time.monotonic() - self.intake.checked_at > READINESS_STALE and not self._probing:
            self._probing = True
            started = threading.Event()
            try:
                with anyio.move_on_after(READINESS_WAIT):
                    await anyio.to_thread.run_sync(self._probe, started, abandon_on_cancel=True)
            finally:
                # Given up before a worker thread took it (all busy, say with requests
                # waiting for the store), it never runs to clear the flag: /readyz would
                # never ask again, and tell the same news for ever.
                if not started.is_set():
                    self._probing = False
        return self.intake.problem

    def _probe(self, started: threading.Event) -> None:
        started.set()
        try:
            self.intake.probe()
        finally:
            self._probing = False

    def _render(self, generated: datetime) -> list[bytes]:
        # Without the collector, as for a scrape (see ``ops``): a page of many domains would
        # otherwise hold the event loop for full collections of the heap. In chunks, each
        # encoded here: a page of 20,000 domains with reports is over 100 MB, whose joining
        # and encoding at once held the GIL, and so every policy answer, for as long.
        with collector_paused():
            chunks: list[bytes] = []
            pending: list[bytes] = []
            size = 0
            # As of the time the page shows: read later, after midnight, its chart would end
            # on a day that the page's own date has not reached.
            summaries = self.summaries(now=generated.timestamp())
            for part in page.page_parts(summaries, generated=generated):
                pending.append(part.encode())
                size += len(pending[-1])
                if size >= PAGE_CHUNK:
                    chunks.append(b"".join(pending))
                    pending, size = [], 0
            chunks.append(b"".join(pending))
            return chunks

    async def _page(self, request: Request) -> Response:
        generated = datetime.fromtimestamp(self.clock(), UTC)
        headers = {
            "content-security-policy": page.CONTENT_SECURITY_POLICY,
            "cache-control": "no-store",
            "x-content-type-options": "nosniff",
        }
        try:
            # Off the event loop, rendering too: policies keep being served meanwhile.
            chunks = await run_in_threadpool(self._render, generated)
        except StoreUnavailable as exc:
            html = page.render_page({}, generated=generated, problem=str(exc))
            return HTMLResponse(html, status_code=503, headers=headers)
        headers["content-length"] = str(sum(map(len, chunks)))

        async def body() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield chunk

        return StreamingResponse(body(), headers=headers, media_type="text/html")
