"""The system's DNS resolver as dnspython configures it, or one line saying why it cannot."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TypeVar

import dns.exception
import dns.name
import dns.resolver

from ._text import printable

RESOLV_CONF = "/etc/resolv.conf"
R = TypeVar("R")


class NoSystemResolver(ValueError):
    """dnspython cannot configure the system's resolver; the message says why, in one line."""

    def __init__(self, message: str, *, in_file: bool = True) -> None:
        super().__init__(message)
        self.in_file = in_file
        """Whether the fault is in ``/etc/resolv.conf``, not in the host name, which dnspython
        reads for every resolver, one given its server too."""


def system_resolver(make: Callable[[], R]) -> R:
    """
    ``make()``, which configures a dnspython resolver as the system's: from this machine's
    host name (the domain of relative names) and ``/etc/resolv.conf``.

    Raises:
        NoSystemResolver: dnspython cannot; the message names the host name or the file.
    """
    try:
        return make()
    except dns.resolver.NoResolverConfiguration as exc:  # "cannot open ...", "no nameservers"
        why = "cannot be opened" if str(exc).startswith("cannot") else "names no nameserver"
        raise NoSystemResolver(f"no system resolver: {RESOLV_CONF} {why}") from None
    # dnspython raises what it meets: a name error for the host name or a "search" or
    # "domain" line, ValueError for a "nameserver" line, UnicodeDecodeError for the file.
    except (dns.exception.DNSException, ValueError) as exc:
        host = socket.gethostname()
        try:
            dns.name.from_text(host)
        except (dns.exception.DNSException, ValueError) as bad:  # IDNA's errors: ValueError
            why = f"this machine's host name {host!r} is not a DNS name ({_said(bad)})"
            raise NoSystemResolver(printable(why), in_file=False) from None
        raise NoSystemResolver(_why(exc)) from None


def _why(exc: Exception) -> str:
    if isinstance(exc, UnicodeDecodeError):
        return f"{RESOLV_CONF} is not UTF-8 text: {exc.reason} at byte {exc.start}"
    if isinstance(exc, dns.exception.DNSException):
        why = f"a 'domain' or 'search' name is not a DNS name ({_said(exc)})"
        return printable(f"{RESOLV_CONF}: {why}")
    return printable(f"{RESOLV_CONF}: {_said(exc)}")


def _said(exc: Exception) -> str:
    return str(exc).rstrip(".")  # dnspython's messages are sentences: "A DNS label is empty."
