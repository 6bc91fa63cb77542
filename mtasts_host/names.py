"""DNS names as MTA-STS uses them: policy domains, MX patterns and policy hosts."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import idna

POLICY_HOST_PREFIX = "mta-sts."
STS_PREFIX = "_mta-sts."
"""The ``_mta-sts`` TXT record of a domain is at this prefix and the domain."""
TLSRPT_PREFIX = "_smtp._tls."
"""Where a domain's TLS-RPT record is: this prefix and the domain (RFC 8460 section 3)."""

# RFC 5321 "Domain": letters, digits and inner hyphens, 1..63 octets a label.
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_RECORD_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
MAX_NAME = 253
"""The longest DNS name, in characters, without its trailing dot (RFC 1035 section 2.3.4)."""
_MAX_TEXT = 4 * MAX_NAME
"""The longest text read as a name. Unicode normalisation can make a name shorter (a letter
and two accents composed into one code point, some code points dropped), but not four times
shorter; and a regular expression or IDNA over a value of megabytes took seconds and
gigabytes, at every reload."""
_MAX_POLICY_DOMAIN = MAX_NAME - len(STS_PREFIX)
"""The longest policy domain whose ``_mta-sts`` record is a DNS name: 244 characters."""
# Two or more ASCII labels, the last not all digits (that would be an IP address).
_PLAIN_NAME = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?=[A-Za-z0-9-]*[A-Za-z-])[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
)


def host_name(text: str) -> str:
    """
    Normalise a fully qualified host name to lower-case A-labels without a trailing dot.

    Raises:
        ValueError: the text is not a host name; the message says what was expected.
    """
    name = text[:-1] if text.endswith(".") else text
    if len(name) > _MAX_TEXT:
        raise ValueError(f"name is {len(name)} characters long, at most {MAX_NAME} allowed")
    if _PLAIN_NAME.fullmatch(name) and len(name) <= MAX_NAME:
        name = name.lower()
        if "xn--" not in name:
            return name  # the common case, checked in one match
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"not a valid international host name ({exc})") from None
    name = name.lower()
    labels = name.split(".")
    if len(labels) < 2 or not all(labels):
        raise ValueError("expected a fully qualified host name like 'mail.example.com'")
    if labels[-1].isdigit():
        raise ValueError("expected a host name, not an IP address")
    if ":" in name:
        # A port or a URL: an IPv6 address with a dot ends in digits, and one without a dot is
        # no fully qualified name.
        raise ValueError("expected a host name alone, without a port or a URL scheme")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise ValueError(
                f"label {label!r} is not a host name label "
                "(letters, digits and inner hyphens, at most 63)"
            )
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except idna.IDNAError:
                raise ValueError(f"label {label!r} is not a valid A-label") from None
    if len(name) > MAX_NAME:
        raise ValueError(f"name is {len(name)} characters long, at most {MAX_NAME} allowed")
    return name


def dns_name(text: str) -> str:
    """
    Normalise the owner name of a record, such as ``_mta-sts.provider.example``: like a host
    name, but labels may hold underscores. Lower case, international labels as A-labels, no
    trailing dot.

    Raises:
        ValueError: the text is not such a name.
    """
    name = (text[:-1] if text.endswith(".") else text).lower()
    if len(name) > _MAX_TEXT:
        raise ValueError(f"name is {len(name)} characters long, at most {MAX_NAME} allowed")
    if not name.isascii():
        name = ".".join(_a_label(label) for label in name.split("."))
    labels = name.split(".")
    if not name.isascii() or len(labels) < 2 or len(name) > MAX_NAME:
        raise ValueError("expected a DNS name like '_mta-sts.provider.example'")
    for label in labels:
        if not _RECORD_LABEL.fullmatch(label):
            raise ValueError(f"label {label!r} is not a DNS label (letters, digits, '-' and '_')")
    return name


def _a_label(label: str) -> str:
    """One label of a record name, an international one as its A-label."""
    if label.isascii():
        return label
    try:
        return idna.encode(label, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"label {label!r} is not a valid international label ({exc})") from None


def policy_domain(text: str) -> str:
    """
    Normalise a policy domain as configured: a host name that is not itself a policy host.

    Raises:
        ValueError: the text is not a policy domain.
    """
    if "*" in text or "/" in text:
        raise ValueError("expected a plain domain name like 'example.com'")
    name = host_name(text)
    if name.startswith(POLICY_HOST_PREFIX):
        domain = name[len(POLICY_HOST_PREFIX) :]
        raise ValueError(f"expected the policy domain, not its policy host; use {domain!r}")
    if len(name) > _MAX_POLICY_DOMAIN:
        # Its _mta-sts TXT record (and its mta-sts host) could not exist in the DNS.
        raise ValueError(
            f"name is {len(name)} characters long, at most {_MAX_POLICY_DOMAIN} allowed: "
            f"{STS_PREFIX}<domain> must fit in {MAX_NAME}"
        )
    return name


def mx_pattern(text: str) -> str:
    """
    Normalise an RFC 8461 ``mx`` pattern: a host name, or ``*.`` and a host name.

    Raises:
        ValueError: the text is not an mx pattern.
    """
    if text.startswith("."):
        raise ValueError(f"the leading-dot form is not RFC 8461; use '*{text}'")
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    if "*" in name:
        raise ValueError("a wildcard must be the whole leftmost label, as in '*.example.net'")
    return ("*." if wildcard else "") + host_name(name)


def policy_domain_of_host(host: str) -> str | None:
    """
    Return the policy domain that a Host header asks for, or None if it is no policy host.

    The header is matched case-insensitively, without surrounding blanks, its port (which
    may be empty) and one trailing dot; international names may come as U-labels or
    A-labels. The result is only a lookup key: it is not checked further, since a key that
    is not configured simply finds nothing. A host that starts with ``mta-sts.`` but cannot
    be read gets the empty key: it is a policy host all the same, with nothing served.
    """
    host = host.strip(" \t").lower()
    unreadable = "" if host.startswith(POLICY_HOST_PREFIX) else None
    if host.startswith("["):
        return None
    name, colon, port = host.rpartition(":")
    if colon:
        if port and not (port.isascii() and port.isdigit()):  # not "²" or "٣"
            return unreadable
        host = name
    if host.endswith("."):
        host = host[:-1]
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except idna.IDNAError:
            return unreadable
    if not host.startswith(POLICY_HOST_PREFIX):
        # "mta-sts." and "mta-sts.:443" lose their prefix's dot with the trailing one: still
        # policy hosts (a proxy passes them on as such), never the operational endpoints.
        return unreadable
    return host[len(POLICY_HOST_PREFIX) :]


def policy_domain_of_url(url: str) -> str | None:
    """
    Return the policy domain whose policy host an ``https://`` URL names, or None if it
    names no policy host: its host, port and all, is read as ``policy_domain_of_host`` reads
    a Host header, which is how the app tells a policy host.
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # a bracket left open
        return None
    if parts.scheme.lower() != "https":
        return None
    return policy_domain_of_host(parts.netloc.rpartition("@")[2])


def sts_owner(name: str) -> str | None:
    """The domain whose ``_mta-sts`` record ``name`` is, if it is one."""
    return name[len(STS_PREFIX) :] if name.startswith(STS_PREFIX) else None


def is_address(text: str) -> bool:
    """Whether ``text`` is an IP address, v4 or v6, rather than a name."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def split_host_port(text: str) -> tuple[str, str | None]:
    """
    ``host:port``, ``[v6]:port``, ``[v6]``, a host alone or a bare IPv6 address, split into
    the host and the port as written (None if there is none); neither is checked.

    Raises:
        ValueError: a bracket left open, or anything but ``:port`` after the closing one.
    """
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected a port after the bracketed address")
        return host, rest[1:] if rest else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, port
    return text, None
