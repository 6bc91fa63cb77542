"""``mtasts-host publish``: the DNS records put in place, in the order RFC 8461 asks."""

from .auto import AutoPublisher
from .backend import Applied, Backend, Result
from .outcome import Outcome, Output
from .plan import Action, Change, Current, Wanted
from .runner import publish

__all__ = [
    "Action",
    "Applied",
    "AutoPublisher",
    "Backend",
    "Change",
    "Current",
    "Outcome",
    "Output",
    "Result",
    "Wanted",
    "publish",
]
