"""Sessions added up from the store's totals, and counts of them in the order they are shown."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .report import PolicyType
from .rows import Totals


@dataclass(frozen=True, slots=True)
class Sessions:
    """
    Reports and sessions shown apart from a summary's counts: of a policy type other than
    ``sts``, or reported against an older policy.
    """

    reports: int = 0
    successful: int = 0
    failed: int = 0


def summed(rows: Iterable[Totals]) -> Sessions:
    """The reports and sessions of ``rows``, added up."""
    every = list(rows)
    return Sessions(
        sum(row.reports for row in every),
        sum(row.successful for row in every),
        sum(row.failed for row in every),
    )


def other_policies(rows: Iterable[Totals]) -> dict[str, Sessions]:
    """The sessions of each policy type other than ``sts`` in ``rows``, by name."""
    kinds: dict[str, list[Totals]] = {}
    for row in rows:
        if row.policy_type != PolicyType.STS.value:
            kinds.setdefault(row.policy_type, []).append(row)
    return {kind: summed(kinds[kind]) for kind in sorted(kinds)}


def most_first(pairs: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Each key's count (failed sessions by result type or MX host) added up, in the order shown."""
    counts: Counter[str] = Counter()
    for key, count in pairs:
        counts[key] += count
    # Most first, then by name: the same totals always print the same way.
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
