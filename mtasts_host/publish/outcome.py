"""How a publication speaks while it runs, and how it ends."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from .. import dns
from .plan import Change


class Output(Protocol):
    """Where a run says what it does: the terminal, or the log inside ``serve``."""

    def info(self, line: str) -> None: ...

    def unchanged(self, line: str) -> None:
        """A record of the plan the DNS already holds: a line of its own on the terminal;
        inside ``serve``, the count in the run's last line says it (thousands of domains
        made thousands of such lines at each start and reload)."""

    def warning(self, line: str) -> None:
        """Something to look at that fails nothing: a TTL the provider keeps differently."""

    def problem(self, line: str) -> None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a run ended."""

    changes: tuple[Change, ...]
    """The plan, as read before anything was changed."""
    problems: tuple[str, ...]
    written: tuple[dns.Record, ...] = ()
    settled: frozenset[dns.Record] = field(default_factory=frozenset)
    """Every wanted record known to be in the DNS at the end."""

    @property
    def exit_code(self) -> int:
        """0 when everything is published, 1 when anything is not."""
        return 1 if self.problems else 0
