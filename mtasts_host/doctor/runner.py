"""
One run of the doctor: every configured domain (or those asked for) probed concurrently,
with a bounded number at once, and judged by the checks.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .. import dns as records_to_publish
from ..config import DomainConfig
from ..names import STS_PREFIX, TLSRPT_PREFIX
from ..policy import Mode
from ..settings import txt_cname_groups, txt_record
from ..store import Snapshot
from . import dnschecks, mxchecks, tlschecks
from .dnsprobe import Lookup
from .ehlo import machine_name
from .facts import Fetch, Names, Publishing, Session
from .findings import Finding, Report
from .options import DoctorOptions, prepare, select
from .records import sts_id
from .smtpprobe import starttls
from .tlsprobe import fetch_policy

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, slots=True)
class _Expected:
    """What the config says about one domain's records and policy."""

    record: str
    """What to publish at ``_mta-sts``, in words, as ``mtasts-host dns`` prints it."""
    id: str
    body: bytes
    group: tuple[str, ...]
    """The domains whose policies the id covers: this one, and those sharing its record."""
    announced: bytes
    """What the id is computed over: the body, or with others sharing the record, theirs too."""


def _expected(snapshot: Snapshot) -> dict[str, _Expected]:
    """Per domain, the id ``mtasts-host dns`` prints for its name, shared groups included."""
    txt = {r.name: r.value for r in records_to_publish.records(snapshot) if r.type == "TXT"}
    groups = txt_cname_groups(snapshot.config.domains)
    result = {}
    for domain, settings in snapshot.config.domains.items():
        target, name = settings.txt_cname, txt_record(domain, settings)
        value = txt[name]
        record = f"'{value}'" if target is None else f"a CNAME to {target}, where '{value}' is"
        group = tuple(groups.get(name, [domain]))
        body = snapshot.served[domain].body
        announced = records_to_publish.shared_body((d, snapshot.served[d].body) for d in group)
        result[domain] = _Expected(record, sts_id(value), body, group, announced)
    return result


def _served(fetches: Sequence[Fetch]) -> bytes | None:
    """The body the policy host serves, if any address answered 200."""
    return next((f.answer.body for f in fetches if f.answer and f.answer.status == 200), None)


class _Shared(Generic[K, V]):
    """
    Each key's lookup or probe runs once per run, however many domains ask for it. Once it
    has run, its result alone is kept, not its task; and a key that ``uses`` counts is
    forgotten once as many domains have released it, so that what a run holds is bounded by
    the domains checked at once and by what they share (MX hosts), not by every domain.
    """

    def __init__(
        self, make: Callable[[K], Coroutine[Any, Any, V]], uses: Counter[K] | None = None
    ) -> None:
        self._make = make
        self._uses: Counter[K] = uses or Counter()
        self._running: dict[K, asyncio.Task[V]] = {}
        self._found: dict[K, V] = {}

    def __call__(self, key: K) -> asyncio.Future[V]:
        if key in self._found:
            future = asyncio.get_running_loop().create_future()
            future.set_result(self._found[key])
            return future
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.ensure_future(self._make(key))
            task.add_done_callback(functools.partial(self._done, key))
        return task

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if not task.cancelled() and task.exception() is None:
            self._found[key] = task.result()
            del self._running[key]

    def release(self, keys: Iterable[K]) -> None:
        """A domain is done with ``keys``: each is forgotten once no domain counted on to ask
        for it is left (at once if none was)."""
        for key in keys:
            self._uses[key] -= 1
            if self._uses[key] <= 0:
                del self._uses[key]
                self._found.pop(key, None)


async def _starttls(
    options: DoctorOptions, context: ssl.SSLContext, helo: str | None, key: tuple[str, str]
) -> Session:
    address, host = key
    return await starttls(address, host, options.smtp_port, context, options.timeout, helo)


async def _policy_host(
    addresses: Callable[[str], Awaitable[Names]],
    options: DoctorOptions,
    context: ssl.SSLContext,
    host: str,
) -> tuple[Names, tuple[Fetch, ...]]:
    found = await addresses(host)
    fetches = await asyncio.gather(
        *(
            fetch_policy(address, host, options.https_port, context, options.timeout)
            for address in found.values
        )
    )
    return found, tuple(fetches)


def _policy_hosts(domain: str, expected: _Expected) -> set[str]:
    """The policy hosts the checks of ``domain`` fetch from: its own, and its group's."""
    return {f"mta-sts.{member}" for member in (domain, *expected.group)}


class _Run:
    def __init__(
        self,
        options: DoctorOptions,
        lookup: Lookup,
        context: ssl.SSLContext,
        helo: str | None,
        domains: Iterable[tuple[str, DomainConfig, _Expected]],
    ) -> None:
        self.options = options
        self.lookup = lookup
        self.context = context
        self.helo = helo
        # The MX hosts and their addresses are shared by any number of domains, and kept for
        # the run; the policy hosts and each record's authoritative answers are a domain's
        # own, or its group's, and forgotten once the domains that ask for them are done.
        hosts: Counter[str] = Counter()
        records: Counter[str] = Counter()
        for domain, settings, expected in domains:
            hosts.update(_policy_hosts(domain, expected))
            records[txt_record(domain, settings)] += 1
        self.addresses = _Shared(lookup.addresses)
        self.authorities = _Shared(lookup.authorities, records)
        # Functions of their own, not methods: a _Shared holding a bound method of the run
        # would make the run, and every task and result it keeps, a reference cycle that
        # only the cyclic collector frees, all at once after a run of every domain.
        self.smtp = _Shared(functools.partial(_starttls, options, context, helo))
        self.policy_hosts = _Shared(
            functools.partial(_policy_host, lookup.addresses, options, context), hosts
        )
        self.certificates: dict[str, float] = {}

    async def _mx(self, domain: str) -> tuple[Names, dict[str, Names], tuple[Session, ...]]:
        mx = await self.lookup.mx(domain)
        hosts = mxchecks.mx_hosts(domain, mx)
        found = dict(zip(hosts, await asyncio.gather(*map(self.addresses, hosts)), strict=True))
        keys = [(address, host) for host in hosts for address in found[host].values]
        return mx, found, tuple(await asyncio.gather(*map(self.smtp, keys)))

    def _note(self, sessions: Sequence[Session]) -> None:
        for session in sessions:
            if session.not_after is not None:
                # An intermediate the server sends that expires first takes the chain with it.
                ends = min([session.not_after, *(ca.not_after for ca in session.chain)])
                known = self.certificates.get(session.host, ends)
                self.certificates[session.host] = min(known, ends)

    async def domain(
        self,
        domain: str,
        settings: DomainConfig,
        expected: _Expected,
        publishing: Publishing | None = None,
    ) -> list[Finding]:
        """Every check that applies to ``domain``, in the order of ``Check``."""
        policy = settings.policy
        full = policy.mode is not Mode.NONE
        txt_task = asyncio.ensure_future(self.lookup.txt(STS_PREFIX + domain))
        https_task = self.policy_hosts(f"mta-sts.{domain}")
        if full:
            mx_task = asyncio.ensure_future(self._mx(domain))
            tlsrpt_task = asyncio.ensure_future(self.lookup.txt(TLSRPT_PREFIX + domain))
        txt = await txt_task
        published = dnschecks.published_id(txt)
        authorities = await self.authorities(txt.target) if published else ()
        addresses, fetches = await https_task
        served = _served(fetches)
        if len(expected.group) > 1:
            # The record's id covers every policy of the group: the body it announces is
            # served only when every member's is (RFC 8461 section 8.1).
            members = [self.policy_hosts(f"mta-sts.{member}") for member in expected.group]
            fetched = [_served(answers) for _, answers in await asyncio.gather(*members)]
            pairs = [(d, b) for d, b in zip(expected.group, fetched, strict=True) if b is not None]
            served = records_to_publish.shared_body(pairs) if len(pairs) == len(fetched) else None
        sessions = [fetch.session for fetch in fetches]
        self._note(sessions)
        now = time.time()
        findings = [
            dnschecks.dns_txt(domain, txt, expected.record, publishing),
            dnschecks.dns_id(
                domain, txt, expected.id, authorities, served, expected.announced, publishing
            ),
        ]
        if full:
            findings.append(tlschecks.https(domain, addresses, sessions, now))
        announced = published == expected.id
        findings.append(
            tlschecks.policy(domain, fetches, expected.body, announced, self.options.https_port)
        )
        if full:
            mx, found, mx_sessions = await mx_task
            hosts = mxchecks.mx_hosts(domain, mx)
            # Only the MX hosts the policy names get a metric series: the config bounds them.
            self._note(
                [s for s in mx_sessions if any(mxchecks.matches(p, s.host) for p in policy.mx)]
            )
            findings += [
                mxchecks.mx_coverage(domain, policy.mode, policy.mx, mx),
                tlschecks.mx_tls(
                    domain,
                    policy.mode,
                    hosts,
                    found,
                    mx_sessions,
                    now,
                    null_mx=mxchecks.NULL_MX in mx.values,
                ),
                dnschecks.tlsrpt(domain, await tlsrpt_task, settings.tlsrpt_rua),
            ]
        self.policy_hosts.release(_policy_hosts(domain, expected))
        self.authorities.release(
            {txt_record(domain, settings), *([txt.target] if published else [])}
        )
        return findings


async def check(
    snapshot: Snapshot,
    options: DoctorOptions | None = None,
    publishing: Mapping[str, Publishing] | None = None,
) -> Report:
    """
    Check the domains of ``snapshot`` against the world, concurrently.

    Args:
        publishing: the domains whose ``_mta-sts`` records the automatic publisher of
            ``serve`` has pending (see ``Publishing``); none for the command line.

    Raises:
        DoctorError: a domain asked for is not configured, the EHLO name or the CA file is
            unusable, or there is no resolver.
    """
    options = options or DoctorOptions()
    started = time.time()
    config = snapshot.config
    domains = select(config, options.domains)
    context, lookup = prepare(options)
    expected = _expected(snapshot)
    helo = options.helo or await asyncio.to_thread(machine_name, options.timeout)
    run = _Run(
        options,
        lookup,
        context,
        helo,
        ((domain, config.domains[domain], expected[domain]) for domain in domains),
    )
    results: dict[str, tuple[Finding, ...]] = {}
    queue = iter(domains)
    pending = publishing or {}

    async def worker() -> None:
        for domain in queue:
            settings, wanted = config.domains[domain], expected[domain]
            findings = await run.domain(domain, settings, wanted, pending.get(domain))
            results[domain] = tuple(findings)

    await asyncio.gather(*(worker() for _ in range(min(options.concurrency, len(domains)))))
    ordered = {domain: results[domain] for domain in domains}
    return Report(ordered, dict(run.certificates), started, time.time())


def run(snapshot: Snapshot, options: DoctorOptions | None = None) -> Report:
    """
    ``check`` with an event loop of its own: for the command line and for threads.

    Raises:
        DoctorError: as ``check``.
    """
    return asyncio.run(check(snapshot, options))
