"""The doctor run again and again in the background of ``serve``, off the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from .._gc import collector_paused
from .._text import counted
from ..metrics import collector
from ..store import PolicyStore, Snapshot
from .facts import Publishing
from .findings import Report, Status
from .metrics import FailedRuns, families
from .options import DoctorError, DoctorOptions, validate
from .runner import check

logger = logging.getLogger(__name__)
_RECANCEL = 0.2
"""Seconds between cancellations while a stopped run has not ended yet."""
SOONEST = 10.0
"""Seconds at least from the start of one run to the next, however often the file reloads."""


class Background:
    """
    Runs the doctor every ``interval`` seconds, in a daemon thread with an event loop of its
    own, so that policy answers never wait for it; ``latest`` holds the last report. Each
    run checks the configuration the store serves at that moment, and a reload starts the
    next run at once (but ``soonest`` seconds after the start of the one before): a removed
    or changed domain's results do not linger for an interval.

    Logs one line per run, and one per finding whose status changed since the run before;
    one when runs can no longer be made (not one per run), and one when they can again.

    Args:
        publishing: asked at the start of each run, the domains whose ``_mta-sts`` records
            the automatic publisher has pending (see ``check``); ``run_soon`` is then for
            it to call once it has published.

    Raises:
        DoctorError: the options cannot work (see ``validate``).
    """

    def __init__(
        self,
        store: PolicyStore,
        options: DoctorOptions,
        interval: float,
        *,
        soonest: float = SOONEST,
        publishing: Callable[[], Mapping[str, Publishing]] | None = None,
    ) -> None:
        validate(options)
        self.store = store
        self.publishing = publishing
        """Set before ``start``, if not given here."""
        self.options = options
        self.interval = interval
        self.soonest = min(soonest, interval)
        self._results: tuple[Report | None, FailedRuns] = (None, {})
        """The latest report, and how many runs in a row have found each of its checks
        failing: replaced together, so that a scrape never mixes two runs."""
        self._summary: tuple[Report | None, dict[str, object]] = (None, {"finished_at": None})
        """The summary of a report, made once (see ``detail``)."""
        self._error: str | None = None
        """Why the last run could not be made, if it could not: the latest report is then
        older than one interval, which /readyz must say rather than pass it off as current."""
        self._exposition: tuple[tuple[Report | None, FailedRuns] | None, bytes] = (None, b"")
        self._scraped = False
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._running: tuple[asyncio.AbstractEventLoop, asyncio.Task[Report]] | None = None
        self._thread: threading.Thread | None = None

    @property
    def latest(self) -> Report | None:
        return self._results[0]

    def start(self) -> None:
        """Start the first run now, in a daemon thread, and one after each reload; once only."""
        if self._thread is None:
            # Heard after the listeners already there: the publisher's, set before this starts,
            # has taken on the records a reload changed when a run woken by it asks.
            self.store.listeners.append(self._reloaded)
            self._thread = threading.Thread(target=self._loop, name="mtasts-host-doctor")
            self._thread.daemon = True  # never keeps the process alive at exit
            self._thread.start()

    def run_soon(self) -> None:
        """Start the next run at once (but ``soonest`` seconds after the start of the one
        before): the world changed, as when the publisher has just written records."""
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel the run in progress, if any, and wait up to ``timeout`` s for the thread."""
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self._thread is not None and self._thread.is_alive():
            with self._lock:
                running = self._running
            if running is not None:
                loop, task = running
                with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                    loop.call_soon_threadsafe(task.cancel)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            # Cancel again until the run ends: on Python 3.11 asyncio.wait_for, which
            # dnspython's lookups use, can swallow a cancellation (CPython gh-86296).
            self._thread.join(min(left, _RECANCEL))

    def collect(self) -> Iterator[Metric]:
        """The latest report's metric families (see ``families``): with this method the
        instance is a collector, to register on a ``CollectorRegistry``."""
        return families(*self._results)

    def exposition(self) -> bytes:
        """
        ``collect``'s families in the Prometheus text format, rendered once per run: by the
        doctor's thread as the run ends, once scraped. Two series per domain and check, 1.4
        million at 100,000 domains, made every scrape 12 s long, past Prometheus's 10 s timeout.
        """
        self._scraped = True
        results, text = self._exposition
        if results is not self._results:
            results = self._results
            with collector_paused():  # as for a scrape (see ``ops``)
                registry = CollectorRegistry(auto_describe=False)
                registry.register(collector(lambda: families(*results)))
                text = generate_latest(registry)
            self._exposition = results, text
        return text

    def detail(self, *, problems: bool = True) -> dict[str, object]:
        """
        For ``/readyz``: the interval, and the latest results (see ``Report.summary``),
        without the list of ``problems`` unless asked for it.
        """
        latest = self.latest
        if self._summary[0] is not latest:
            # Once per run, not per probe: a second's work when 100,000 domains fail.
            self._summary = (latest, {"finished_at": None} if latest is None else latest.summary())
        summary = self._summary[1]
        if not problems:
            summary = {key: value for key, value in summary.items() if key != "problems"}
        error = {} if self._error is None else {"last_run_error": self._error}
        return {"interval_seconds": self.interval, **summary, **error}

    def _loop(self) -> None:
        while not self._stopping.is_set():
            began = time.monotonic()
            self._wake.clear()  # a reload from now on asks for another run
            # Without the collector, as the command line's doctor: a run keeps a task and its
            # result for every host it probes, which set off a full collection every few
            # seconds, each holding the GIL, and so every policy answer, for up to 2 s at
            # 100,000 domains.
            with collector_paused():
                try:
                    if not self._run():
                        return
                finally:
                    # One full collection, before the collector is back: it would start with
                    # the three the pause left due (young, middle, full: each over what the
                    # run made, 1.0 to 1.4 s apiece at 100,000 domains). Made even if another
                    # thread's pause keeps it off a while longer.
                    gc.collect()
            self._wake.wait(max(0.0, self.interval - (time.monotonic() - began)))
            self._stopping.wait(max(0.0, self.soonest - (time.monotonic() - began)))

    def _run(self) -> bool:
        """One run, its results published; False if it was cancelled."""
        before = self._error
        try:
            report = asyncio.run(self._once())
        except asyncio.CancelledError:
            return False
        except DoctorError as exc:  # the options stopped working: a --ca-file removed
            self._error = str(exc)
            # Said once, as the report store's outage is: /readyz keeps saying it.
            if self._error != before:
                logger.error("doctor: the run failed: %s", exc)
        except Exception as exc:
            self._error = f"{type(exc).__name__}: {exc}"
            if self._error != before:
                logger.exception("doctor: the run failed")
        else:
            self._error = None
            if before is not None:
                logger.info("doctor: runs work again")
            self._publish(report)
            # What /readyz and /metrics show of it, made here rather than by the first probe
            # or scrape after the run: 1.4 s and 12 s at 100,000 domains.
            self.detail()
            if self._scraped:
                self.exposition()
        return True

    def _reloaded(self, old: Snapshot, new: Snapshot) -> None:
        self.run_soon()

    async def _once(self) -> Report:
        task = asyncio.current_task()
        assert task is not None
        with self._lock:
            if self._stopping.is_set():
                raise asyncio.CancelledError
            self._running = asyncio.get_running_loop(), task
        try:
            # Asked before any lookup: a record pending then and found old is the publisher's.
            # The snapshot before the answer: one taken after could be of a reload between
            # the two, whose new id the publisher, idle when asked, was about to publish: a
            # failure advising to publish by hand. The reload has the next run check it.
            snapshot = self.store.snapshot
            pending = None if self.publishing is None else self.publishing()
            return await check(snapshot, self.options, pending)
        finally:
            with self._lock:
                self._running = None

    def _publish(self, report: Report) -> None:
        latest, failed_runs = self._results
        before = {}
        if latest is not None:
            before = {(f.domain, f.check): f.status for f in latest.findings()}
        findings = report.findings()
        self._results = (
            report,
            {
                (f.domain, f.check): failed_runs.get((f.domain, f.check), 0) + 1
                for f in findings
                if f.status is Status.FAIL
            },
        )
        for finding in findings:
            if before.get((finding.domain, finding.check), Status.OK) is not finding.status:
                level = logging.INFO if finding.status is Status.OK else logging.WARNING
                logger.log(level, "doctor: %s", finding)
        failing = sum(finding.status is Status.FAIL for finding in findings)
        warning = sum(finding.status is Status.WARN for finding in findings)
        logger.info(
            "doctor: %s checked in %.1f s: %d failing, %d warning",
            counted(len(report.domains), "domain"),
            report.finished_at - report.started_at,
            failing,
            warning,
        )
