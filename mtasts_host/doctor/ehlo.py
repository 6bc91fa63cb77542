"""
The name the doctor gives in EHLO. RFC 5321 section 4.1.1.1 asks for a fully qualified domain
name, or an address literal when the client has none: some MX hosts refuse anything else.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading

from ..names import host_name

logger = logging.getLogger(__name__)


def ehlo_name(text: str) -> str:
    """
    A name as given to ``--ehlo``: a fully qualified host name, or an address literal.

    Raises:
        ValueError: it is neither; the message says what was expected.
    """
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1]
        ipv6 = inner[:5].upper() == "IPV6:"
        try:
            address = ipaddress.ip_address(inner[5:] if ipv6 else inner)
        except ValueError:
            address = None
        if address is not None and (address.version == 6) == ipv6:
            return address_literal(str(address))
        raise ValueError("expected an address literal like '[192.0.2.1]' or '[IPv6:2001:db8::1]'")
    try:
        return host_name(text)
    except ValueError:
        raise ValueError(
            "expected a fully qualified host name like 'doctor.example.com', or an address "
            "literal like '[192.0.2.1]'"
        ) from None


class _Lookup:
    """One ``socket.getfqdn()`` in a daemon thread, and what it found once it has."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.thread = threading.Thread(target=self._look, name="mtasts-host-fqdn", daemon=True)
        self.thread.start()

    def _look(self) -> None:
        try:
            self.found.append(socket.getfqdn())
        except UnicodeError:  # a host name IDNA cannot encode ("a..b"): no name
            self.found.append("")


_hung: _Lookup | None = None
"""A lookup that had not answered when last waited for: the next waits for it again."""
_lock = threading.Lock()


def machine_name(timeout: float) -> str | None:
    """
    This machine's fully qualified name, if it has one; None if it has only a bare name (a
    container's id) or a loopback one, or if the resolver gives none within ``timeout``
    seconds. Blocking, up to ``timeout``.
    """
    global _hung
    # getfqdn() may ask the resolver, which nothing bounds but its own settings: it runs in a
    # daemon thread, left behind if it hangs, so that it keeps neither the doctor nor the
    # process at exit waiting. The doctor of serve asks at every run: while one lookup
    # hangs, each run waits for it rather than leave another thread behind, and the
    # warning comes once, not once a run.
    with _lock:
        hung, _hung = _hung, None
        # One copied by a fork has no thread in this process to answer it: asked again.
        again = hung is not None and (hung.thread.is_alive() or bool(hung.found))
        lookup = hung if hung is not None and again else _Lookup()
    lookup.thread.join(timeout)
    found = lookup.found
    if not found:
        with _lock:
            _hung = lookup
        if not again:
            logger.warning(
                "doctor: no name for this machine within %g s (the resolver hangs?): EHLO "
                "gives the address literal of each connection instead; set one with --ehlo",
                timeout,
            )
        return None
    name = found[0]
    try:
        name = host_name(name)
    except ValueError:
        return None
    # /etc/hosts often gives the loopback line's names: they name no host to anyone else.
    if name.split(".")[0].startswith("localhost") or name.endswith(".localdomain"):
        return None
    return name


def address_literal(address: str) -> str:
    """``[192.0.2.1]``, or ``[IPv6:2001:db8::1]`` (RFC 5321 section 4.1.3)."""
    ip = ipaddress.ip_address(address.partition("%")[0])  # without an IPv6 zone (%eth0)
    return f"[{ip}]" if ip.version == 4 else f"[IPv6:{ip}]"
