"""The DNS records an operator publishes for each domain served."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

from .names import POLICY_HOST_PREFIX, STS_PREFIX, TLSRPT_PREFIX
from .policy import policy_id
from .settings import txt_cname_groups, txt_record
from .store import Snapshot
from .wire import txt_strings

STS_VERSION = "v=STSv1"
"""The version tag an ``_mta-sts`` TXT record starts with (RFC 8461 section 3.1)."""
TLSRPT_VERSION = "v=TLSRPTv1"
"""The version tag a ``_smtp._tls`` TXT record starts with (RFC 8460 section 3)."""


@dataclass(frozen=True, slots=True)
class Record:
    name: str
    type: str
    ttl: int
    value: str


def records(snapshot: Snapshot) -> Iterator[Record]:
    """
    Per domain: the ``_mta-sts`` TXT record with the id of the policy served (or, with
    ``txt_cname``, a CNAME to the shared record, which comes once per group with the group's
    id and the shortest ``dns_ttl`` of its members, also where a configured domain's own
    record is the one shared), the ``mta-sts`` CNAME if a target is configured, and the
    ``_smtp._tls`` TXT record if report URIs are configured.
    """
    domains = snapshot.config.domains
    groups = txt_groups(snapshot)
    members = txt_cname_groups(domains)
    written = set()
    for domain, settings in domains.items():
        ttl = settings.dns_ttl
        own = STS_PREFIX + domain
        if settings.txt_cname is not None:
            yield Record(own, "CNAME", ttl, settings.txt_cname)
        txt = txt_record(domain, settings)
        if txt not in written:
            written.add(txt)
            sts_id = groups.get(txt) or snapshot.served[domain].id
            # A shared record changes with any member's policy: the shortest TTL of its
            # members, so that none waits longer for a new id than its own dns_ttl says.
            shared_ttl = min((domains[m].dns_ttl for m in members.get(txt, ())), default=ttl)
            yield Record(txt, "TXT", shared_ttl, f"{STS_VERSION}; id={sts_id}")
        if settings.cname is not None:
            yield Record(POLICY_HOST_PREFIX + domain, "CNAME", ttl, settings.cname)
        if settings.tlsrpt_rua:
            rua = ",".join(settings.tlsrpt_rua)
            yield Record(TLSRPT_PREFIX + domain, "TXT", ttl, f"{TLSRPT_VERSION}; rua={rua}")


def compare(old: Snapshot, new: Snapshot) -> tuple[list[Record], list[Record]]:
    """
    What a reload changes in the records: those of ``new`` that ``old`` did not have (new,
    or with another value or TTL), and those of ``old`` at a name where ``new`` has none. A
    record of another type at a name still used (a CNAME that a TXT record replaces) goes
    with the update of that name.
    """
    before = list(records(old))
    after = list(records(new))
    kept, names = set(before), {record.name for record in after}
    added = [record for record in after if record not in kept]
    return added, [record for record in before if record.name not in names]


def txt_groups(snapshot: Snapshot) -> dict[str, str]:
    """
    The id of each shared ``_mta-sts`` record: the policy id if its domains serve one policy,
    else an id over all their policies, so that it changes whenever any of them does.
    """
    served = snapshot.served
    return {
        target: policy_id(shared_body((domain, served[domain].body) for domain in members))
        for target, members in txt_cname_groups(snapshot.config.domains).items()
    }


def shared_body(policies: Iterable[tuple[str, bytes]]) -> bytes:
    """
    What the id of a shared ``_mta-sts`` record is computed over, from each domain and its
    policy: a single policy is itself; several are each domain's name and policy, by name.
    Not the policies alone: two domains that swap theirs leave the same set of policies, and
    senders would keep each one's old policy under an id that did not change.
    """
    pairs = sorted(policies)
    if len({body for _, body in pairs}) == 1:
        return pairs[0][1]
    return b"".join(domain.encode() + b"\n" + body for domain, body in pairs)


def to_json(snapshot: Snapshot) -> str:
    return json.dumps([asdict(record) for record in records(snapshot)], indent=2)


def to_zone(snapshot: Snapshot) -> str:
    """The records as zone-file lines, with absolute names."""
    lines = []
    for record in records(snapshot):
        if record.type == "TXT":
            # Long values are split into several strings; senders join them without spaces.
            value = " ".join(f'"{string}"' for string in txt_strings(record.value))
        else:
            value = record.value + "."
        lines.append(f"{record.name}.\t{record.ttl}\tIN\t{record.type}\t{value}")
    return "\n".join(lines)


def to_hosts(snapshot: Snapshot) -> str:
    """The policy host names, one a line: what the TLS certificates must cover."""
    return "\n".join(POLICY_HOST_PREFIX + domain for domain in snapshot.served)
