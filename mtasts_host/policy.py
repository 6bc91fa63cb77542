"""The MTA-STS policy of one domain, and its canonical text (RFC 8461 section 3.2)."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass

VERSION = "STSv1"
POLICY_PATH = "/.well-known/mta-sts.txt"
"""Where senders fetch the policy on ``mta-sts.<domain>`` (RFC 8461 section 3.2)."""
MAX_AGE_LIMIT = 31_557_600
"""The largest ``max_age`` RFC 8461 allows: 365.25 days."""
DEFAULT_MAX_AGE = 604_800
"""One week: RFC 8461 expects "weeks or greater", and senders refresh daily anyway."""
MAX_BODY_SIZE = 65_536
"""Senders may refuse larger policies (RFC 8461 section 3.3); several real ones do."""


class Mode(enum.Enum):
    """What a sending MTA does when a delivery fails the policy."""

    ENFORCE = "enforce"
    """Do not deliver to MX hosts that fail MX matching or certificate validation."""
    TESTING = "testing"
    """Deliver anyway, and report failures through TLS-RPT."""
    NONE = "none"
    """Treat the domain as having no active policy; used to withdraw a policy safely."""


@dataclass(frozen=True, slots=True)
class Policy:
    """
    A validated policy: ``mx`` holds normalised patterns, in order and without duplicates.

    Raises:
        ValueError: the fields break an RFC 8461 rule that holds whatever the source.
    """

    mode: Mode
    mx: tuple[str, ...]
    max_age: int = DEFAULT_MAX_AGE

    def __post_init__(self) -> None:
        if not isinstance(self.mode, Mode):
            raise ValueError(f"mode must be a Mode, not {self.mode!r}")
        # Exactly an int: a bool is one to Python, and a float renders as 'max_age: 1.5'.
        if type(self.max_age) is not int or not 0 <= self.max_age <= MAX_AGE_LIMIT:
            raise ValueError(f"max_age must be an integer 0..{MAX_AGE_LIMIT}")
        if self.mode is not Mode.NONE and not self.mx:
            raise ValueError(f"mode {self.mode.value} needs at least one mx pattern")
        if len(set(self.mx)) != len(self.mx):
            raise ValueError("mx patterns must be unique")

    def render(self) -> bytes:
        """
        Return the canonical policy text that every strict sender accepts.

        ``version`` first, then ``mode``, one ``mx`` line per pattern and ``max_age``, each
        line ended by CRLF: no blank line, no extension field, no BOM, ASCII only.
        """
        mx = "".join([f"mx: {pattern}\r\n" for pattern in self.mx])
        text = f"version: {VERSION}\r\nmode: {self.mode.value}\r\n{mx}max_age: {self.max_age}\r\n"
        return text.encode("ascii")


def policy_id(body: bytes) -> str:
    """
    Return the ``id`` for the ``_mta-sts`` TXT record of a rendered policy.

    It is derived from the body alone, so every replica agrees on it and it changes exactly
    when the body does: 32 hex digits, the longest id RFC 8461 section 3.1 allows.
    """
    return hashlib.sha256(body).hexdigest()[:32]
