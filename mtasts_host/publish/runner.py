"""
One publication: read what the DNS holds, plan, update what shows senders no new id, make
sure the new policies are served, wait for caches, update the ids, and read everything back;
each update a compare-and-swap.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from .. import dns
from .._resolver import NoSystemResolver
from ..blocks.publish import PublishSettings
from ..store import Snapshot
from ..tls import sender_context
from . import authority, guard, query
from .backend import Backend, Result
from .fetch import fetch
from .hold import VERIFIERS, Hold
from .hook import Hook
from .outcome import Outcome, Output
from .plan import Action, Change, Current, Wanted, holds, ordered, wanted
from .query import DnsError, Server, Unreachable
from .readback import propagated, read_back
from .rfc2136 import Rfc2136

_FETCH_TIMEOUT = 10.0


def publish(
    snapshot: Snapshot,
    output: Output,
    *,
    domains: Sequence[str] = (),
    dry_run: bool = False,
    stop: threading.Event | None = None,
    fetcher: guard.Fetch | None = None,
) -> Outcome:
    """
    Put the records of the policies in ``snapshot`` (of ``domains`` only, if given) in the
    DNS its configuration's ``publish`` block names, in the order RFC 8461 section 8.1 asks.

    Args:
        output: told each step, one line at a time, and each problem.
        dry_run: stop once the plan is shown.
        stop: set it to end the run early (inside ``serve``).
        fetcher: GET a URL (for tests); by default as ``verify_url`` and the block say.
    """
    settings = snapshot.config.publish
    if settings is None:
        raise ValueError(f"{snapshot.config.path}: no publish block")
    try:
        fixed = query.server(*settings.server) if settings.server else None
        if fixed is None:
            authority.check_resolver()
    except (Unreachable, NoSystemResolver) as exc:
        output.problem(str(exc))
        return Outcome((), (str(exc),))
    backend: Backend
    if settings.tsig_key_file is not None and fixed is not None:
        backend = Rfc2136(fixed, settings.tsig_key_file)
    else:
        backend = Hook(settings.command or ())
    if fetcher is None:
        context = (
            sender_context(settings.ca_file) if settings.verify_url.startswith("https") else None
        )
        fetcher = partial(
            fetch, connect=settings.verify_connect, context=context, timeout=_FETCH_TIMEOUT
        )
    run = _Run(snapshot, settings, output, backend, fixed, fetcher, stop or threading.Event())
    return run.run(wanted(snapshot, domains), dry_run)


class _Run:
    def __init__(
        self,
        snapshot: Snapshot,
        settings: PublishSettings,
        output: Output,
        backend: Backend,
        fixed: Server | None,
        fetcher: guard.Fetch,
        stop: threading.Event,
    ) -> None:
        self.settings = settings
        self.output = output
        self.backend = backend
        self.fixed = fixed
        self.stop = stop
        self.hold = Hold(snapshot, settings, fetcher, stop)
        self.problems: list[str] = []
        self.servers: dict[str, Server] = {}
        self.primaries: dict[str, Server] = {}
        """The server read from for each zone, without a fixed one."""
        self.zones: dict[str, str] = {}
        self.shared: dict[str, dns.Record] = {}
        """The shared TXT record wanted at each ``txt_cname`` target."""

    def problem(self, line: str) -> None:
        self.problems.append(line)
        self.output.problem(line)

    def where(self, name: str) -> Server:
        # Called by the readers of step 1 at once: two may look up one zone's name servers
        # at the same time, and either's answer is right.
        if self.fixed is not None:
            return self.fixed
        if name not in self.servers:
            self.servers[name] = authority.primary_for(name, self.primaries)
        return self.servers[name]

    def run(self, items: Sequence[Wanted], dry_run: bool) -> Outcome:
        self.shared = {i.record.name: i.record for i in items if i.sts and i.record.type == "TXT"}
        changes = self.read(items)
        if changes is None:
            return Outcome((), tuple(self.problems))
        plan = tuple(changes)
        pending = [c for c in plan if c.action is not Action.UNCHANGED]
        settled = {c.record for c in plan if c.action is Action.UNCHANGED}
        if dry_run or not pending:
            verb = "would change" if dry_run else "changed"
            self.output.info(f"{verb} {len(pending)} of {len(plan)} records")
            return Outcome(plan, tuple(self.problems), (), frozenset(settled))
        by_zone: dict[str, list[Change]] = {}
        for change in pending:
            by_zone.setdefault(self.zones[change.record.name], []).append(change)
        problem = self.backend.check(dict(sorted(by_zone.items())))
        if problem is not None:
            self.problem(problem)
            return Outcome(plan, tuple(self.problems), (), frozenset(settled))
        # What shows senders no new id goes first: the mta-sts CNAME may be what makes
        # verify_url resolve at all.
        written: list[dns.Record] = []
        early = [c for c in pending if not c.guarded]
        if self.write(early, written, settled):
            ready = self.verify([c for c in pending if c.guarded])
            self.write(ready or (), written, settled)
        if written:
            # What this run changed, or found changed by another: step 1 has just read the
            # rest, and reading every record of thousands of domains again, at every name
            # server, for one change would keep an automatic run busy for minutes.
            done = [c for c in pending if c.record in settled]
            warning = None if self.backend.keeps_ttl else self.output.warning
            checked = read_back(
                done, self.where, self.zones, self.output.info, self.problem, warning
            )
            settled = settled.difference(c.record for c in done) | checked
        self.output.info(f"changed {len(written)} of {len(plan)} records")
        return Outcome(plan, tuple(self.problems), tuple(written), frozenset(settled))

    def write(
        self, changes: Iterable[Change], written: list[dns.Record], settled: set[dns.Record]
    ) -> bool:
        """Step 3 for ``changes``, in order; False once the key is refused, or the run is
        stopped (each record written leaves the DNS as a run may: never one cut off)."""
        for change in ordered(changes):
            if self.stop.is_set():
                self.problem(f"stopped before {change.record.name} {change.record.type} changed")
                return False
            if not self.leads_to_settled(change, settled):
                continue
            result = self.apply(change)
            if result is Result.REFUSED:
                return False
            if result is Result.DONE:
                written.append(change.record)
            if result in (Result.DONE, None):
                settled.add(change.record)
        return True

    def leads_to_settled(self, change: Change, settled: set[dns.Record]) -> bool:
        """
        Whether a new ``_mta-sts`` CNAME leads to a shared TXT record that holds its group's
        id: until it does, the CNAME would show senders no policy, or another id, in place of
        the record it replaces.
        """
        record = change.record
        if not (change.guarded and record.type == "CNAME"):
            return True
        target = self.shared.get(record.value)
        if target is None or target in settled:
            return True
        self.problem(
            f"{record.name} CNAME: not changed: {target.name} TXT does not hold "
            f'"{target.value}" yet, and the CNAME would lead senders there'
        )
        return False

    def read(self, items: Iterable[Wanted]) -> list[Change] | None:
        """Step 1: the plan, one line per record, in order; None if the server is
        unreachable, or the run is stopped."""
        items = list(items)
        changes: list[Change] = []
        with ThreadPoolExecutor(max(1, min(authority.READERS, len(items)))) as pool:
            try:
                for change in pool.map(self.read_one, items):
                    if change is None or self.stop.is_set():
                        self.problem(
                            f"stopped after reading {len(changes)} of {len(items)} records"
                        )
                        return None
                    if isinstance(change, Unreachable):
                        self.problem(str(change))
                        return None
                    if isinstance(change, DnsError):
                        self.problem(str(change))
                        continue
                    changes.append(change)
                    if change.action is Action.UNCHANGED:
                        self.output.unchanged(change.line())
                    else:
                        self.output.info(change.line())
            finally:
                # Ended early (unreachable, stopped, Ctrl-C): the records not yet asked for
                # are not; those being read finish within a query's timeout.
                pool.shutdown(cancel_futures=True)
        return changes

    def read_one(self, item: Wanted) -> Change | DnsError | None:
        """One record's change, from what the server holds, or why it cannot tell; None once
        the run is stopped. In a reader thread. The zone is asked for only if the record is
        to change: of thousands of domains, most are not, and the SOA lookup was two queries
        of each record's five."""
        name, type = item.record.name, item.record.type
        if self.stop.is_set():
            return None  # not shown: the run ends before this record's line
        try:
            where = self.where(name)
            try:
                change = Change(item, authority.read(where, name, type))
            except Unreachable:
                raise
            except DnsError:
                self.zone(where, name)  # a zone the server does not hold says more
                raise
            if change.action is not Action.UNCHANGED:
                self.zone(where, name)
            return change
        except DnsError as exc:
            return exc

    def zone(self, where: Server, name: str) -> None:
        if name not in self.zones:
            self.zones[name] = authority.zone_of(where, name)

    def verify(self, pending: Sequence[Change]) -> list[Change] | None:
        """
        Step 2: the changes (each showing senders a new id) whose new policies are served,
        once caches have had ``cache_wait`` seconds to forget the old ones; None if stopped
        meanwhile.
        """
        settings = self.settings
        domains = list(dict.fromkeys(d for c in pending if c.guarded for d in c.wanted.domains))
        if domains:
            url = settings.verify_url
            if len(domains) == 1:
                url = guard.url_for(url, domains[0])
            self.output.info(
                f"waiting for the new policies of {', '.join(domains)} to be served at {url}"
            )
        with ThreadPoolExecutor(max(1, min(VERIFIERS, len(domains)))) as pool:
            try:
                sightings = {s.domain: s for s in pool.map(self.hold.sight, domains)}
                if not self.hold.wait(sightings, pool, self.output.info, self.problem):
                    return None
            except BaseException as exc:
                # Ctrl-C, or SIGTERM to publish, reach this thread alone: the pool's end
                # waited for its threads, which fetched on until verify_timeout.
                if not isinstance(exc, Exception):
                    self.stop.set()
                raise
        failed = {d for d, sighting in sightings.items() if sighting.served_since is None}
        for domain in failed:
            self.problem(sightings[domain].problem or f"{domain}: not verified")
        return [c for c in pending if not failed.intersection(c.wanted.domains)]

    def apply(self, change: Change) -> Result | None:
        """Step 3: one compare-and-swap; None when there was nothing left to do."""
        record = change.record
        label = f"{record.name} {record.type}"
        zone = self.zones[record.name]
        where = self.where(record.name)
        if not self.backend.atomic:
            try:
                now = authority.read(where, record.name, record.type)
            except DnsError as exc:
                self.problem(f"{label}: not changed: {exc}")
                return Result.FAILED
            if now != change.current:
                return self.judge(change, now)
        applied = self.backend.apply(change, zone)
        if applied.result is Result.DONE and not self.backend.atomic:
            # What comes next (a CNAME to this record, the read-back) must see it there.
            why = propagated(where, record, self.stop)
            if why is not None:
                self.problem(f"{label}: the command succeeded, but {why}")
                return Result.FAILED
        if applied.result is Result.DONE:
            self.output.info(f"published {_shown(change.record)}")
            return Result.DONE
        if applied.result is Result.PREREQUISITE:
            try:
                now = authority.read(where, record.name, record.type)
            except DnsError as exc:
                self.problem(f"{label}: {applied.message}, and then: {exc}")
                return Result.PREREQUISITE
            return self.judge(change, now, applied.message)
        if applied.result is Result.REFUSED:
            self.problem(applied.message)
        else:
            self.problem(f"{label}: not changed: {applied.message}")
        return applied.result

    def judge(self, change: Change, now: Current | None, why: str = "") -> Result | None:
        """The record changed since it was read: fine if it now holds the wanted value (with
        the TTL asked for, unless the provider keeps its own: the read-back tells)."""
        record = change.record
        if now is not None and holds(now, record, ttl=self.backend.keeps_ttl):
            self.output.info(f"already published (by another run): {_shown(record)}")
            return None
        before = change.current.show() if change.current else "nothing"
        after = now.show() if now else "nothing"
        because = f" ({why})" if why else ""
        self.problem(
            f"{record.name} {record.type}: prerequisite failed{because}: changed by someone "
            f"else since it was read ({before} then, {after} now); not overwritten"
        )
        return Result.PREREQUISITE


def _shown(record: dns.Record) -> str:
    value = f'"{record.value}"' if record.type == "TXT" else record.value
    return f"{record.name} {record.ttl} {record.type} {value}"
