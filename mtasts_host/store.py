"""The policies being served: one immutable snapshot, replaced whole."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from ._gc import collector_paused
from .config import Config
from .policy import Policy, policy_id

# RFC 8461 section 8.2 suggests 60 s for proxies in front of a multi-domain policy host; it
# bounds how long a proxy may serve an old policy after a reload.
CACHE_CONTROL = b"max-age=60"


@dataclass(frozen=True, slots=True)
class Served:
    """A policy as it goes on the wire, computed once per distinct policy at load time."""

    policy: Policy
    body: bytes
    id: str
    headers: tuple[tuple[bytes, bytes], ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One configuration and the responses rendered from it; never changed once built."""

    config: Config
    served: Mapping[str, Served]
    loaded_at: float


def text_headers(body: bytes, cache_control: bytes) -> tuple[tuple[bytes, bytes], ...]:
    """The headers of every answer on a policy host, the policy or an error: plain text."""
    return (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache_control),
        (b"x-content-type-options", b"nosniff"),
    )


def _serve(policy: Policy) -> Served:
    body = policy.render()
    return Served(policy, body, policy_id(body), text_headers(body, CACHE_CONTROL))


def build_snapshot(config: Config, previous: Snapshot | None = None) -> Snapshot:
    """
    Render every policy of ``config``; domains with equal policies share one ``Served``, and
    so do policies unchanged since ``previous``.
    """
    rendered: dict[Policy, Served] = {}
    if previous is not None:
        rendered = {entry.policy: entry for entry in previous.served.values()}
    served = {}
    with collector_paused():
        for domain, settings in config.domains.items():
            policy = settings.policy
            entry = rendered.get(policy)
            if entry is None:
                entry = rendered[policy] = _serve(policy)
            served[domain] = entry
    return Snapshot(config, served, time.time())


class PolicyStore:
    """
    Holds the current snapshot. Readers take ``snapshot`` once per request; ``replace``
    swaps in a whole new one with a single assignment, so no reader ever sees a mix.
    """

    def __init__(self, config: Config) -> None:
        self.snapshot = build_snapshot(config)

    @property
    def config(self) -> Config:
        return self.snapshot.config

    def replace(self, config: Config) -> Snapshot:
        """Serve ``config`` from now on; return the snapshot it replaced."""
        old = self.snapshot
        self.snapshot = build_snapshot(config, old)
        return old

    def lookup(self, domain: str) -> Served | None:
        """The response for a policy domain (normalised, A-labels), or None."""
        return self.snapshot.served.get(domain)
