"""The organisations that report: one however its reports spell its name."""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Iterable

from .rows import Totals


def organization_key(name: str) -> str:
    """What tells an ``organization-name`` apart from another."""
    # "Google Inc." and "google  inc. " were two organisations, and one sender alone made a
    # domain ready: case, blanks and compatibility forms (NFKC) do not tell organisations
    # apart. Punctuation and legal suffixes do ("Google Inc" and "Google LLC"): no rule tells
    # a suffix from a name, and anyone can post under any name anyway (RFC 8460 reports are
    # not authenticated).
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def organizations(rows: Iterable[Totals]) -> tuple[str, ...]:
    """The organisations that sent ``rows``, sorted."""
    # One name per organisation, as most of its reports spell it (then the first in code
    # point order): each spelling listed would pass for an organisation of its own.
    spellings: dict[str, Counter[str]] = {}
    for row in rows:
        counts = spellings.setdefault(organization_key(row.organization), Counter())
        counts[row.organization] += row.reports
    names = (min(counts, key=lambda name: (-counts[name], name)) for counts in spellings.values())
    return tuple(sorted(names))
