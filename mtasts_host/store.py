"""The policies being served: one immutable snapshot, replaced whole, and how reloads went."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ._gc import collector_paused
from ._text import counted
from .config import Config
from .policy import Mode, Policy, policy_id


@dataclass(frozen=True, slots=True)
class Served:
    """A policy as served, rendered once per distinct policy at load time."""

    policy: Policy
    body: bytes
    id: str
    """The id for the ``_mta-sts`` TXT record (see ``policy_id``)."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One configuration and the policies rendered from it; never changed once built."""

    config: Config
    served: Mapping[str, Served]
    loaded_at: float
    digest: str
    """A digest of every domain and its policy id: replicas serving the same policies
    show the same digest."""

    def describe(self) -> str:
        """``<file>: <n> domains, digest <digest>``, for start-up and reload log lines."""
        count = len(self.served)
        return f"{self.config.path}: {counted(count, 'domain')}, digest {self.digest}"


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
                body = policy.render()
                entry = rendered[policy] = Served(policy, body, policy_id(body))
            served[domain] = entry
        listing = "".join(f"{domain} {entry.id}\n" for domain, entry in sorted(served.items()))
    return Snapshot(config, served, time.time(), policy_id(listing.encode()))


@dataclass
class ReloadStatus:
    """How reloads went: counts, and the last error while it is the latest news."""

    succeeded: int = 0
    failed: int = 0
    last_error: str | None = None
    last_error_at: float | None = None


class PolicyStore:
    """
    The hub: the current snapshot and the reload status. Everything that serves or reports
    reads ``snapshot`` once per use; ``replace`` swaps in a whole new one with a single
    assignment, so no reader ever sees a mix. Producers of snapshots (the reloader) call
    ``replace`` or ``reject``.
    """

    def __init__(self, config: Config) -> None:
        self.snapshot = build_snapshot(config)
        self.status = ReloadStatus()
        self.listeners: list[Callable[[Snapshot, Snapshot], None]] = []
        """Called with the old and the new snapshot after each reload that succeeded, once
        it is logged (the automatic publisher is one)."""
        self.cached_until: dict[str, tuple[float, Policy]] = {}
        """For each domain, the policy it served before (mode none aside) that senders may
        keep longest, and until when: when it stopped being served plus its max_age (RFC 8461
        section 8.3). Policies already expired are forgotten; so is everything at a restart."""
        self.publishing = False
        """An automatic publisher acts on the ``publish`` block's ``auto: true``: only
        ``serve`` runs one, not an app under another ASGI server or mounted in another."""

    @property
    def config(self) -> Config:
        return self.snapshot.config

    def replace(self, config: Config) -> Snapshot:
        """Serve ``config`` from now on; return the snapshot it replaced."""
        old = self.snapshot
        self.snapshot = build_snapshot(config, old)
        now = self.snapshot.loaded_at
        cached = {d: kept for d, kept in self.cached_until.items() if kept[0] > now}
        for domain, entry in old.served.items():
            current = self.snapshot.served.get(domain)
            if entry.policy.mode is Mode.NONE or (current is not None and current is entry):
                continue
            if (
                current is not None
                and current.policy.mode is not Mode.NONE
                and current.policy.max_age >= entry.policy.max_age
            ):
                continue  # the policy served now outlasts it in senders' caches
            until = now + entry.policy.max_age
            if until > cached.get(domain, (0.0, entry.policy))[0]:
                cached[domain] = (until, entry.policy)
        self.cached_until = cached
        self.status.succeeded += 1
        self.status.last_error = self.status.last_error_at = None
        return old

    def reject(self, error: str) -> None:
        """Record a configuration that was not served, and why."""
        self.status.failed += 1
        self.status.last_error = error
        self.status.last_error_at = time.time()

    def lookup(self, domain: str) -> Served | None:
        """The policy served for a policy domain (normalised, A-labels), or None."""
        return self.snapshot.served.get(domain)
