"""What puts a change in the DNS: RFC 2136 updates or a command, behind one small interface."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from .plan import Change


class Result(enum.Enum):
    """How one change went."""

    DONE = "done"
    """The DNS holds the new record."""
    PREREQUISITE = "prerequisite failed"
    """The record no longer held what was read (compare-and-swap): nothing was written."""
    REFUSED = "key refused"
    """The server refused the TSIG key: no update will pass in this run."""
    FAILED = "failed"
    """Anything else: the server unreachable, the command failing."""


@dataclass(frozen=True, slots=True)
class Applied:
    result: Result
    message: str = ""
    """Why, for anything but DONE: one line, which never holds a secret."""


class Backend(Protocol):
    """Puts changes in the DNS."""

    @property
    def atomic(self) -> bool:
        """Whether ``apply`` itself writes only if the record still holds what was read; if
        not, the caller reads it again just before."""

    @property
    def keeps_ttl(self) -> bool:
        """Whether the DNS holds a record with the TTL ``apply`` gave it; if not (a provider's
        minimum), a record holding the wanted value with another TTL is a warning."""

    def check(self, pending: Mapping[str, Sequence[Change]]) -> str | None:
        """A problem that would stop the ``pending`` changes of each zone (a key refused for
        their names), found before any waiting; None if there is none."""

    def apply(self, change: Change, zone: str) -> Applied:
        """Put ``change`` in ``zone``."""
