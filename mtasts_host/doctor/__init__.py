"""``mtasts-host doctor``: check the live world (DNS, HTTPS, MX hosts) against the config."""

from .background import Background
from .dnsprobe import resolver_address
from .facts import Publishing
from .findings import Check, Finding, Report, Status
from .metrics import families
from .options import DoctorError, DoctorOptions
from .runner import check, run

__all__ = [
    "Background",
    "Check",
    "DoctorError",
    "DoctorOptions",
    "Finding",
    "Publishing",
    "Report",
    "Status",
    "check",
    "families",
    "resolver_address",
    "run",
]
