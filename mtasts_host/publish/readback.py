"""
Step 4 of a publication: every record written, read again at the primary server (which must
hold it) and at the zone's other name servers (which may not yet: zone transfers take time).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

from .. import dns
from . import authority
from .plan import Change, holds
from .query import DnsError, Server, Unreachable

_TIMEOUT = 2.0
"""Seconds for each other name server: they only inform, they never fail a run."""
PROPAGATION_TIMEOUT = 120.0
"""Seconds a command's change may take to show at the server it is read from: a provider's
API may apply it after it has answered (Route53's PENDING, an eventually consistent API)."""
PROPAGATION_INTERVAL = 1.0
"""Seconds between two reads while a command's change is not there yet."""


def propagated(
    where: Server, record: dns.Record, stop: threading.Event, timeout: float | None = None
) -> str | None:
    """
    Read ``record`` at ``where`` until it holds its value, for at most ``timeout`` seconds
    (``PROPAGATION_TIMEOUT`` by default): None once it does (or ``stop`` is set), else what
    ``where`` holds in its place. Its TTL is not waited for: a provider may keep another
    (its minimum) for good, which ``read_back`` tells.
    """
    timeout = PROPAGATION_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + timeout
    while True:
        try:
            now = authority.read(where, record.name, record.type)
        except DnsError as exc:
            seen = f"cannot read it: {exc}"
        else:
            if now is not None and holds(now, record, ttl=False):
                return None
            seen = f"{now.ttl} {now.type} {now.show()}" if now else "nothing"
            seen = f"{where} still holds {seen}"
        wait = min(PROPAGATION_INTERVAL, deadline - time.monotonic())
        if wait <= 0:
            return f"{seen} after {timeout:g} s"
        if stop.wait(wait):
            return None


def read_back(
    plan: Sequence[Change],
    where: Callable[[str], Server],
    zones: Mapping[str, str],
    info: Callable[[str], None],
    problem: Callable[[str], None],
    warning: Callable[[str], None] | None = None,
) -> set[dns.Record]:
    """
    Read the records of ``plan`` again; report each; return those the primary holds as
    wanted. ``where`` gives the primary of a name, ``zones`` its zone. With ``warning``, a
    record holding the wanted value with another TTL is held as wanted, and told there; without
    it (a server that keeps the TTL an update gives), it is a problem.
    """
    others: dict[str, list[Server]] = {}
    for change in plan:
        zone = zones[change.record.name]
        if zone not in others:
            others[zone] = authority.nameservers(where(change.record.name), zone)
    unreachable: set[Server] = set()

    def check(change: Change) -> tuple[bool, list[tuple[Callable[[str], None], str]]]:
        """Whether the primary holds the record as wanted, and what to say, in order."""
        record = change.record
        primary = where(record.name)
        try:
            now = authority.read(primary, record.name, record.type)
        except DnsError as exc:
            return False, [(problem, f"{record.name} {record.type}: cannot read it back: {exc}")]
        if now is None or not holds(now, record, ttl=warning is None):
            shown = f"{now.ttl} {now.type} {now.show()}" if now else "nothing"
            return False, [
                (problem, f"{record.name} {record.type}: reads back as {shown} at {primary}")
            ]
        said: list[tuple[Callable[[str], None], str]] = []
        if warning is not None and now.ttl != record.ttl:
            said.append(
                (
                    warning,
                    f"{record.name} {record.type}: {primary} holds it with TTL {now.ttl}, not "
                    f"the {record.ttl} asked for: the provider may have a minimum (or a "
                    f"maximum), or apply it later; while they differ, each run writes it again "
                    f"(dns_ttl: {now.ttl} would match it)",
                )
            )
        seen = [f"{primary}: ok"]
        for server in others[zones[record.name]]:
            seen.append(f"{server}: {_secondary(server, record, now.ttl, unreachable)}")
        said.append((info, f"checked {record.name} {record.type}: {'; '.join(seen)}"))
        return True, said

    settled = set()
    # Several at once, as step 1 reads, and told in order: a change to thousands of domains
    # is read back at the primary and at every other name server.
    with ThreadPoolExecutor(max(1, min(authority.READERS, len(plan)))) as pool:
        try:
            for change, (held, said) in zip(plan, pool.map(check, plan), strict=True):
                for tell, line in said:
                    tell(line)
                if held:
                    settled.add(change.record)
        finally:
            pool.shutdown(cancel_futures=True)  # Ctrl-C: the records not yet read are not
    return settled


def _secondary(server: Server, record: dns.Record, ttl: int, unreachable: set[Server]) -> str:
    """What ``server`` holds of ``record``, which the primary holds with ``ttl``."""
    if server in unreachable:
        return "unreachable"
    try:
        now = authority.read(server, record.name, record.type, _TIMEOUT)
    except Unreachable:
        unreachable.add(server)
        return "unreachable"
    except authority.Occupied:
        now = None  # records the primary no longer holds: an older version of the zone
    except DnsError as exc:
        return str(exc).removeprefix(f"{server} ")  # named once, before the colon
    if now is not None and holds(now, record, ttl=False) and now.ttl == ttl:
        return "ok"
    return "not yet (a zone transfer may be pending)"
