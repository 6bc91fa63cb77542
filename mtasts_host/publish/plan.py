"""
A publication plan: the records the configuration wants, what the DNS holds, and the change
that takes one to the other. Pure values: no sockets here.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .. import dns
from .._text import printable
from ..names import POLICY_HOST_PREFIX, STS_PREFIX, TLSRPT_PREFIX
from ..settings import txt_cname_groups
from ..store import Snapshot

_OWNER_PREFIXES = (STS_PREFIX, POLICY_HOST_PREFIX, TLSRPT_PREFIX)


class Action(enum.Enum):
    """What a record needs."""

    UNCHANGED = "unchanged"
    """The DNS holds exactly the wanted record, TTL included."""
    CREATE = "create"
    """The name holds no record of the wanted type (nor a CNAME)."""
    REPLACE = "replace"
    """The name holds another value, another TTL, more than one value, or the other type."""


@dataclass(frozen=True, slots=True)
class Wanted:
    """One record the configuration asks for, and the policy domains it belongs to."""

    record: dns.Record
    domains: tuple[str, ...]
    """Its domain; for a shared ``txt_cname`` TXT record, every member of the group."""
    sts: bool
    """Whether it leads senders to a policy id: an ``_mta-sts`` TXT or CNAME record, or a
    shared TXT record. Before such a record changes value, the policies of ``domains`` must
    be served (RFC 8461 section 8.1)."""


@dataclass(frozen=True, slots=True)
class Current:
    """The RRset the DNS holds at a name: the wanted type, or a CNAME in its place."""

    type: str
    ttl: int
    values: tuple[str, ...]
    """Each record's data as one unquoted string (TXT strings joined, CNAME targets without
    the final dot, in lower case), sorted, whatever order the server gave them in."""
    texts: tuple[str, ...] = ()
    """Each record's data in zone-file syntax, exactly as read: the prerequisite of a
    compare-and-swap update must name the records as the server holds them."""

    def show(self) -> str:
        return " ".join(_show(self.type, value) for value in self.values)

    def others(self, record: dns.Record) -> tuple[str, ...]:
        """
        The texts of the records at the name that are none of ``record``'s kind: TXT
        records without its version tag (a site verification beside ``v=STSv1``), which
        senders discard (RFC 8461 section 3.1, RFC 8460 section 3) and which a change
        keeps.
        """
        texts = self.texts or tuple(f'"{value}"' for value in self.values)
        return tuple(
            text
            for value, text in zip(self.values, texts, strict=True)
            if not self._of_kind(value, record)
        )

    def ours(self, record: dns.Record) -> tuple[str, ...]:
        """The values of the records at the name of ``record``'s kind (all but ``others``)."""
        return tuple(value for value in self.values if self._of_kind(value, record))

    def kept(self, record: dns.Record) -> tuple[str, ...]:
        """The values of ``others``, as ``values`` holds them."""
        return tuple(value for value in self.values if not self._of_kind(value, record))

    def _of_kind(self, value: str, record: dns.Record) -> bool:
        # Only TXT records share a name with others of their type but not of their kind.
        if self.type != "TXT" or record.type != "TXT":
            return True
        return value.startswith(_tag(record.value))


@dataclass(frozen=True, slots=True)
class Change:
    """One record of the plan: what is wanted, and what the DNS held when it was read."""

    wanted: Wanted
    current: Current | None

    @property
    def record(self) -> dns.Record:
        return self.wanted.record

    @property
    def action(self) -> Action:
        if self.current is None or not self.current.ours(self.record):
            return Action.CREATE
        return Action.UNCHANGED if holds(self.current, self.record) else Action.REPLACE

    @property
    def guarded(self) -> bool:
        """Whether the change shows senders a new id, or a policy they did not see before:
        then the new bodies must be served first. A new TTL alone is not such a change."""
        current = self.current
        same = current is not None and holds(current, self.record, ttl=False)
        return self.wanted.sts and not same

    def line(self) -> str:
        """``<action> <name> <ttl> <type> <value>``, with ``-> new`` for a replacement."""
        record = self.record
        new = f"{record.ttl} {record.type} {_show(record.type, record.value)}"
        current = self.current
        action = self.action
        others = current.others(record) if current is not None else ()
        kept = f" (kept: {' '.join(others)})" if others else ""
        if action is Action.REPLACE and current is not None:
            ours = " ".join(_show(current.type, value) for value in current.ours(record))
            old = f"{current.ttl} {current.type} {ours}"
            return f"{action.value} {record.name} {old} -> {new}{kept}"
        return f"{action.value} {record.name} {new}{kept}"


def holds(current: Current, record: dns.Record, *, ttl: bool = True) -> bool:
    """Whether ``current`` is exactly ``record`` (its TTL too, unless ``ttl`` is false),
    beside TXT records of other kinds."""
    return (
        current.type == record.type
        and current.ours(record) == (normal(record.type, record.value),)
        and (not ttl or current.ttl == record.ttl)
    )


def normal(type: str, value: str) -> str:
    """A value as ``Current.values`` holds it: CNAME targets compare without case."""
    return value.lower().rstrip(".") if type == "CNAME" else value


def _tag(value: str) -> str:
    """
    A TXT value's version tag: ``v=STSv1`` of ``v=STSv1; id=...``. Every record at the name
    that starts with it is ours to replace, a malformed one (``v=STSv1 id=1``) too, so that
    none is left to make two.
    """
    return value.partition(";")[0].strip()


def _show(type: str, value: str) -> str:
    # A value read from the DNS can hold anything: a line break in it made a log line of its
    # own in serve's text logs.
    value = printable(value)
    return f'"{value}"' if type == "TXT" else value


def owner(name: str) -> str:
    """The policy domain a record name belongs to: ``_mta-sts.example.com`` gives
    ``example.com``."""
    for prefix in _OWNER_PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def wanted(snapshot: Snapshot, domains: Sequence[str] = ()) -> list[Wanted]:
    """
    The records ``mtasts-host dns`` prints, each with its domains; only those of
    ``domains`` (and their groups' shared records) if any are given.
    """
    groups = txt_cname_groups(snapshot.config.domains)
    result = []
    for record in dns.records(snapshot):
        if record.type == "TXT" and record.name in groups:
            result.append(Wanted(record, tuple(groups[record.name]), sts=True))
        else:
            sts = record.name.startswith(STS_PREFIX)
            result.append(Wanted(record, (owner(record.name),), sts))
    if domains:
        only = set(domains)
        result = [item for item in result if only.intersection(item.domains)]
    return result


def ordered(changes: Iterable[Change]) -> list[Change]:
    """
    The order in which to apply changes: what no sender acts on first (the ``mta-sts``
    CNAME, ``_smtp._tls``), then the TXT records with the ids, then the ``_mta-sts`` CNAMEs
    that point senders at a shared TXT record, which must hold the right id by then.
    """

    def rank(change: Change) -> int:
        if not change.wanted.sts:
            return 0
        return 2 if change.record.type == "CNAME" else 1

    return sorted(changes, key=rank)
