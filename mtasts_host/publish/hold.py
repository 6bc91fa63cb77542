"""
The wait of RFC 8461 section 8.1 before a new id is published: until its policy is served at
``verify_url``, and then ``cache_wait`` seconds more for caches, fetching it on meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ..blocks.publish import PublishSettings
from ..store import Snapshot
from . import guard

VERIFIERS = 8
"""Domains whose policies are checked at once."""


class Hold:
    """One run's wait for the new policies of its domains."""

    def __init__(
        self,
        snapshot: Snapshot,
        settings: PublishSettings,
        fetcher: guard.Fetch,
        stop: threading.Event,
    ) -> None:
        self.snapshot = snapshot
        self.settings = settings
        self.fetcher = fetcher
        self.stop = stop
        self.deadlines: dict[str, float] = {}
        """When each domain's ``verify_timeout`` ends (``time.monotonic()``)."""
        self.began: dict[str, float] = {}
        """When the wait for each domain began (``time.monotonic()``)."""

    def sight(self, domain: str) -> guard.Sighting:
        """Wait until ``domain``'s new policy is served (``guard.await_body``)."""
        body = self.snapshot.served[domain].body
        url = guard.url_for(self.settings.verify_url, domain)
        timeout = self.settings.verify_timeout
        # Seen again after a streak, a domain has what is left of its deadline (see wait).
        began = self.began.setdefault(domain, time.monotonic())
        deadline = self.deadlines.setdefault(domain, began + timeout)
        return guard.await_body(
            domain,
            url,
            body,
            self.fetcher,
            timeout=timeout,
            stop=self.stop,
            deadline=deadline,
            began=began,
        )

    def wait(
        self,
        sightings: dict[str, guard.Sighting],
        pool: ThreadPoolExecutor,
        info: Callable[[str], None],
        problem: Callable[[str], None],
    ) -> bool:
        """
        Wait until ``cache_wait`` seconds have passed since the latest streak of ``sightings``
        began, fetching each served policy on meanwhile: three answers in a row may all have
        come from the replicas that had reloaded (a balancer choosing at random does that
        often), so a domain whose URL serves another body is awaited again, within its
        ``verify_timeout``, and the wait counts from its new streak. A few domains a round,
        in turn (``guard.in_turn``). False if stopped.
        """
        told = False
        turn = 0
        # A domain seen again has what is left of its verify_timeout, or of one from here:
        # the first streaks of a large change can take longer than one.
        floor = time.monotonic() + self.settings.verify_timeout
        while True:
            seen = [s.served_since for s in sightings.values() if s.served_since is not None]
            wait = max(seen, default=0.0) + self.settings.cache_wait - time.monotonic()
            if not seen or wait <= 0:
                return True
            if not told:
                info(
                    f"the new policies are served; waiting {wait:.0f} s more for caches "
                    f"(cache_wait {self.settings.cache_wait} s)"
                )
                told = True
            if self.stop.wait(min(guard.INTERVAL, wait)):
                problem("stopped before any new id was published")
                return False
            served = [d for d, s in sightings.items() if s.served_since is not None]
            checked = guard.in_turn(served, turn, VERIFIERS)
            turn += 1
            again = []
            for domain, other in zip(checked, pool.map(self._differs, checked), strict=True):
                if other is not None:
                    url = guard.url_for(self.settings.verify_url, domain)
                    info(
                        f"{domain}: {url} no longer serves the new policy ({other}); "
                        "waiting for it again"
                    )
                    again.append(domain)
                    self.deadlines[domain] = max(self.deadlines[domain], floor)
            sightings.update((s.domain, s) for s in pool.map(self.sight, again))

    def _differs(self, domain: str) -> str | None:
        url = guard.url_for(self.settings.verify_url, domain)
        body = self.snapshot.served[domain].body
        return guard.differs(url, body, self.fetcher, failures=False)
