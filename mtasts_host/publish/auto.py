"""The publisher inside ``serve``: a run after each reload that changes a record, off the
event loop, one at a time, retried with backoff when it fails."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .. import dns
from ..store import PolicyStore, Snapshot
from . import hook
from .outcome import Outcome
from .plan import Action, wanted
from .runner import publish

logger = logging.getLogger(__name__)

FIRST_RETRY = 5.0
"""Seconds before the first retry of a failed run; doubled after each failure."""
LAST_RETRY = 600.0
"""The longest wait between retries."""


class _Log:
    def __init__(self, abandon: threading.Event) -> None:
        self.abandon = abandon

    def info(self, line: str) -> None:
        logger.info("publish: %s", line)

    def unchanged(self, line: str) -> None:
        logger.debug("publish: %s", line)

    def warning(self, line: str) -> None:
        logger.warning("publish: %s", line)

    def problem(self, line: str) -> None:
        # A run ended early by a reload (or by the service stopping) is no failure: what it
        # could not do, the next run does at once.
        level = logging.INFO if self.abandon.is_set() else logging.ERROR
        logger.log(level, "publish: %s", line)


class AutoPublisher:
    """
    Publishes the records of the configuration the store serves, in a daemon thread: at
    start-up and whenever ``reloaded`` (a store listener) sees a reload that changed a
    record. Runs never overlap; a failed one is retried after ``first_retry`` seconds,
    twice as long after each further failure, at most ``last_retry``.

    Several replicas may do the same at once: each update is a compare-and-swap, so one
    wins and the others find nothing left to do.

    ``listeners`` are called, in the publisher's thread, after each run that wrote records
    (or found them written meanwhile by another replica), that failed after runs that did
    not, or that succeeded after runs that failed: what the DNS holds, or what ``pending``
    says, has changed.
    """

    def __init__(
        self,
        store: PolicyStore,
        *,
        first_retry: float = FIRST_RETRY,
        last_retry: float = LAST_RETRY,
    ) -> None:
        self.store = store
        self.first_retry = first_retry
        self.last_retry = last_retry
        self.runs = {"success": 0, "failure": 0}
        self.settled: frozenset[dns.Record] = frozenset()
        """The records the last run found or put in the DNS."""
        self.failed_runs = 0
        """The runs in a row, up to the last, that failed (each is retried)."""
        self.listeners: list[Callable[[], None]] = []
        self._running = False
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._abandon = threading.Event()
        """Set to end the run in progress early: the service stops, or a reload made its
        snapshot obsolete."""
        self._current: tuple[Snapshot, frozenset[dns.Record], dict[str, bool]] | None = None

    def start(self) -> None:
        """Start the thread and a first run, once; later calls only ask for a run."""
        with self._lock:
            if self._thread is None and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._loop, name="mtasts-host-publish")
                self._thread.daemon = True  # never keeps the process alive at exit
                self._thread.start()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        """End the run in progress at its next wait, and the thread; after ``timeout``
        seconds, the command still writing a record too."""
        self._stopping.set()
        self._abandon.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                # The record in hand had its time: its command does not outlive the service.
                hook.end_started_by(self._thread)

    def reloaded(self, old: Snapshot, new: Snapshot) -> None:
        """
        After a successful reload: log the records now pending, and publish them; publish
        too when the ``publish`` block itself changed (``auto`` turned on, another server or
        key), which no record shows. ``auto`` turned off is said too: nothing else shows it.
        """
        settings = new.config.publish
        if settings is None or not settings.auto:
            # A run in progress waits for nothing now: it ends at its next wait.
            self._abandon.set()
            was = old.config.publish
            if was is not None and was.auto:
                logger.info(
                    "publish: auto is off in %s: the DNS records are no longer published "
                    "automatically; run 'mtasts-host publish' after each change",
                    new.config.path,
                )
            return
        pending, _ = dns.compare(old, new)
        if pending:
            logger.info(
                "publish: pending after the reload of %s: %s",
                new.config.path,
                ", ".join(f"{r.name} {r.type} {r.value!r}" for r in pending),
            )
        elif old.config.publish == settings:
            return
        else:
            logger.info("publish: the publish block of %s changed", new.config.path)
        # A run of the old snapshot may wait for a body no longer served: the next run,
        # of this one, replaces it.
        self._abandon.set()
        self.start()

    def current(self, snapshot: Snapshot | None = None) -> dict[str, bool]:
        """Per domain of ``snapshot`` (by default, the one served): whether its ``_mta-sts``
        records, as the last run found them, lead to the id of its policy."""
        snapshot = self.store.snapshot if snapshot is None else snapshot
        settled = self.settled
        cached = self._current
        if cached is not None and cached[0] is snapshot and cached[1] is settled:
            return cached[2]
        needed: dict[str, list[dns.Record]] = {d: [] for d in snapshot.config.domains}
        for item in wanted(snapshot):
            if item.sts:
                for domain in item.domains:
                    needed[domain].append(item.record)
        result = {d: all(r in settled for r in records) for d, records in needed.items()}
        self._current = snapshot, settled, result
        return result

    def pending(self) -> dict[str, int]:
        """
        The domains served whose ``_mta-sts`` records a run in progress or scheduled is to
        put in place (see ``current``), each with ``failed_runs``; none while the publisher
        is idle, or ``auto`` is off.
        """
        settings = self.store.snapshot.config.publish
        if settings is None or not settings.auto or self._stopping.is_set():
            return {}
        failed = self.failed_runs
        if not (self._running or self._wake.is_set() or failed):
            return {}
        return {domain: failed for domain, ok in self.current().items() if not ok}

    def collect(self, snapshot: Snapshot) -> Iterator[Metric]:
        """``mtasts_publish_runs_total{outcome}`` and ``mtasts_dns_id_current{domain}`` for the
        domains of ``snapshot``, the scrape's; none without ``auto: true``, where nothing reads
        the DNS and a 0 would be a false alarm."""
        settings = snapshot.config.publish
        if settings is None or not settings.auto:
            return
        runs = CounterMetricFamily(
            "mtasts_publish_runs", "Automatic publications by outcome.", labels=["outcome"]
        )
        for outcome, count in self.runs.items():
            runs.add_metric([outcome], count)
        yield runs
        current = GaugeMetricFamily(
            "mtasts_dns_id_current",
            "1 when the id the DNS publishes for the domain is that of the policy served.",
            labels=["domain"],
        )
        for domain, ok in self.current(snapshot).items():
            current.add_metric([domain], int(ok))
        yield current

    def _loop(self) -> None:
        delay: float | None = None
        while not self._stopping.is_set():
            self._running = False  # idle: only a wake or a failed run leaves records pending
            self._wake.wait(delay)
            if self._stopping.is_set():
                return
            self._running = True
            self._wake.clear()
            abandon = self._abandon = threading.Event()
            if self._stopping.is_set():
                return
            snapshot = self.store.snapshot
            settings = snapshot.config.publish
            if settings is None or not settings.auto:
                delay = None
                continue
            try:
                outcome = publish(snapshot, _Log(abandon), stop=abandon)
            except Exception:
                logger.exception("publish: the run failed")
                outcome = Outcome((), ("crashed",))
            if self._stopping.is_set():
                return
            if abandon.is_set() and outcome.problems:
                # Not a failure: the reload set _wake, and the next run starts at once, unless
                # the reload turned auto off.
                settings = self.store.snapshot.config.publish
                then = "starting again" if settings is not None and settings.auto else "auto is off"
                logger.info("publish: the configuration was reloaded; %s", then)
                continue
            self.settled = outcome.settled
            failed_before = self.failed_runs
            self.failed_runs = failed_before + 1 if outcome.problems else 0
            if outcome.problems:
                self.runs["failure"] += 1
                delay = self.first_retry if delay is None else min(delay * 2, self.last_retry)
                logger.warning(
                    "publish: %d problem(s); trying again in %g s", len(outcome.problems), delay
                )
            else:
                self.runs["success"] += 1
                delay = None
                if outcome.written:
                    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    logger.info(
                        "publish: %s published at %s",
                        ", ".join(f"{r.name} {r.type}" for r in outcome.written),
                        at,
                    )
            if (
                outcome.written
                or _written_by_another(outcome)
                or bool(failed_before) != bool(self.failed_runs)
            ):
                for listener in self.listeners:
                    listener()


def _written_by_another(outcome: Outcome) -> bool:
    """Whether records the run was to change were changed meanwhile by another writer (the
    publisher of another replica, which won the race): the DNS holds something new all the
    same, though this run wrote nothing."""
    planned = {c.record for c in outcome.changes if c.action is not Action.UNCHANGED}
    return bool(planned.intersection(outcome.settled).difference(outcome.written))
