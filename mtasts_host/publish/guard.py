"""
The ordering guard of RFC 8461 section 8.1: a new id is published only once the new body is
served, and once caches in front have had time to forget the old one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..policy import policy_id
from .fetch import FetchError

STREAK = 3
"""Consecutive fetches that must all give the new body. Each is a new connection, so that a
balancer in front of several replicas shows each of them (round robin shows three replicas
in three fetches; more replicas are still covered over the polls before the streak). One
choosing at random gives three in a row from one replica often: the fetches go on while
the run waits for caches, and any other answer then starts again."""
INTERVAL = 0.5
"""Seconds between fetches."""

Fetch = Callable[[str], bytes]
"""GET a URL and return the body, or raise FetchError."""


@dataclass(frozen=True, slots=True)
class Sighting:
    """What the guard saw of one domain's policy at its URL."""

    domain: str
    url: str
    served_since: float | None
    """``time.monotonic()`` when the first answer of the streak that showed the new body
    came in; None if it was not served within the timeout."""
    problem: str | None = None
    """Why not, in words."""


def await_body(
    domain: str,
    url: str,
    body: bytes,
    fetch: Fetch,
    *,
    timeout: float,
    stop: threading.Event | None = None,
    streak: int = STREAK,
    interval: float | None = None,
    deadline: float | None = None,
    began: float | None = None,
) -> Sighting:
    """
    Fetch ``url`` until it gives ``body`` ``streak`` times in a row, for at most ``timeout``
    seconds (or until ``deadline``, a ``time.monotonic()``, if given, for a wait that
    ``began`` then). Any other answer starts the streak again: a replica or a cache still serves
    the old body, so caches may still fill with it from that moment.
    """
    stop = stop or threading.Event()
    interval = INTERVAL if interval is None else interval
    began = time.monotonic() if began is None else began
    deadline = began + timeout if deadline is None else deadline
    seen = 0
    since = 0.0
    last = "nothing fetched"
    while True:
        other = differs(url, body, fetch)
        if other is None:
            # Counted from the answer's arrival: later than the moment it left the server.
            since = time.monotonic() if seen == 0 else since
            seen += 1
            if seen >= streak:
                return Sighting(domain, url, since)
            last = f"served {seen} of the {streak} times in a row needed"
        else:
            seen, last = 0, other
        if time.monotonic() + interval > deadline or stop.wait(interval):
            break
    # The time the domain was awaited: a wait again, once served, can end past its timeout
    # (see Hold.wait), which the message gave all the same.
    waited = deadline - began
    took = timeout if abs(waited - timeout) < 0.5 else round(waited)
    after = "before the run was stopped" if stop.is_set() else f"after {took:g} s"
    problem = (
        f"{domain}: the new policy (id {policy_id(body)}) is not served at {url} "
        f"{after} ({last}); that id is not published"
    )
    return Sighting(domain, url, None, problem)


def differs(url: str, body: bytes, fetch: Fetch, *, failures: bool = True) -> str | None:
    """
    Fetch ``url`` once: None if it gives ``body``, else what it gives instead, in words. A
    failed fetch gives its error, or None without ``failures``: while caches fill, one (a
    replica restarting, a balancer's 503) leaves nothing old for a cache to keep.
    """
    try:
        served = fetch(url)
    except FetchError as exc:
        return str(exc) if failures else None
    return None if served == body else f"it serves id {policy_id(served)}"


def in_turn(domains: Sequence[str], turn: int, size: int) -> list[str]:
    """The ``turn``-th ``size`` of ``domains`` (at most all of them), going round: while
    caches fill, a few fetches a round find a replica still serving old policies (it serves
    them for every domain changed) without a fetch of every domain twice a second, some
    thousands a second on a large config."""
    count = min(size, len(domains))
    return [domains[(turn * size + i) % len(domains)] for i in range(count)]


def url_for(template: str, domain: str) -> str:
    """``verify_url`` for one domain."""
    return template.replace("{domain}", domain)
