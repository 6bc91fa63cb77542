"""The thresholds of the verdict; the ``reports:`` block itself is read with the configuration."""

from __future__ import annotations

from dataclasses import dataclass

from ..blocks import ReportsSettings

__all__ = ["DEFAULT_THRESHOLDS", "ReportsSettings", "Thresholds"]


@dataclass(frozen=True, slots=True)
class Thresholds:
    """
    When a ``testing`` domain is ready for ``enforce``, and how far back to look for
    failures of an ``enforce`` domain.

    Attributes:
        window_days: the days of reports the verdict looks at.
        min_organizations: distinct reporting organisations needed: one sender's view is
            not enough to trust.
        max_failure_rate: the share of failed STS sessions that must not be reached.
    """

    window_days: int = 14
    min_organizations: int = 2
    max_failure_rate: float = 0.001


DEFAULT_THRESHOLDS = Thresholds()
