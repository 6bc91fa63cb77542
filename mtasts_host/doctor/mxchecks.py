"""
The rule for the MX records, ``mx-coverage``: every MX host senders deliver to matches a
pattern of the policy (RFC 8461 section 4.1), and every pattern an MX host.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import names
from ..policy import Mode
from .facts import Names
from .findings import Check, Finding, Status

NULL_MX = "."
"""How the probe reports a null MX (RFC 7505): the domain accepts no mail."""


def mx_hosts(domain: str, mx: Names) -> tuple[str, ...]:
    """
    The hosts senders deliver to: the MX hosts, or without MX records the domain itself
    (the implicit MX, RFC 5321 section 5.1); none for a null MX.
    """
    if mx.error is not None:
        return ()
    if not mx.values:
        return (domain,)
    return tuple(host for host in mx.values if host != NULL_MX)


def matches(pattern: str, host: str) -> bool:
    """RFC 8461 section 4.1: ``*.`` stands for exactly one whole leftmost label."""
    host = host.lower().removesuffix(".")
    if pattern.startswith("*."):
        label, dot, parent = host.partition(".")
        return bool(label and dot) and parent == pattern[2:]
    return host == pattern


def mx_coverage(domain: str, mode: Mode, patterns: Sequence[str], mx: Names) -> Finding:
    """Every MX host matches a pattern (a failure in enforce), every pattern an MX host."""
    strict = Status.FAIL if mode is Mode.ENFORCE else Status.WARN
    if mx.error is not None:
        message = f"could not look up the MX records of {domain}: {mx.error}"
        return Finding(domain, Check.MX_COVERAGE, strict, message)
    hosts = mx_hosts(domain, mx)
    if NULL_MX in mx.values and not hosts:
        message = f"{domain} has a null MX (RFC 7505) and receives no mail: set mode none"
        return Finding(domain, Check.MX_COVERAGE, Status.WARN, message)
    uncovered = [host for host in hosts if not any(matches(p, host) for p in patterns)]
    unused = [p for p in patterns if not any(matches(p, host) for host in hosts)]
    problems = []
    if NULL_MX in mx.values:
        # RFC 7505 section 3: a null MX MUST NOT come with other MX records. Senders differ
        # on such a set: some skip the null MX, others bounce the mail as to no mail domain.
        problems.append(
            f"{domain} has a null MX (RFC 7505) beside MX {', '.join(hosts)}: RFC 7505 section "
            "3 forbids that, and some senders then take the domain to receive no mail; "
            "remove the null MX (MX 0 .)"
        )
    if uncovered:
        consequence = (
            "senders in enforce mode refuse to deliver to it"
            if mode is Mode.ENFORCE
            else "senders will refuse it once the mode is enforce"
        )
        if not mx.values:
            # Likely the MX records are what is missing, not a pattern: say so, and leave
            # the patterns be.
            problems.append(
                f"{domain} has no MX records, so senders deliver to {domain} itself (RFC 5321 "
                f"section 5.1), which matches no mx pattern: {consequence}; publish its MX "
                f"records, or add {domain} to the policy's mx list if it receives its own mail"
            )
            unused = []
        else:
            literals = [host for host in uncovered if names.is_address(host)]
            named = [host for host in uncovered if host not in literals]
            if named:
                problems.append(
                    f"MX {', '.join(named)} {'match' if len(named) > 1 else 'matches'} no mx "
                    f"pattern: {consequence}; add it to the policy's mx list"
                )
            if literals:
                # An mx pattern cannot be an address: never advise adding it.
                problems.append(
                    f"MX {', '.join(literals)} {'are' if len(literals) > 1 else 'is an'} IP "
                    f"address{'es' if len(literals) > 1 else ''}, which no mx pattern matches: "
                    f"{consequence}, and most senders find no address for it: an MX names a "
                    "host (RFC 1035 section 3.3.9), not an address; point the MX record at a "
                    "host name with that address, and add that name to the policy's mx list"
                )
    if unused:
        problems.append(
            f"mx {', '.join(unused)} {'match' if len(unused) > 1 else 'matches'} no MX "
            f"of {domain} ({', '.join(hosts) or 'none'}): remove it unless an MX is about to "
            "use it"
        )
    if problems:
        status = strict if uncovered else Status.WARN
        return Finding(domain, Check.MX_COVERAGE, status, "; ".join(problems))
    message = f"every MX ({', '.join(hosts)}) matches the policy, every pattern an MX"
    return Finding(domain, Check.MX_COVERAGE, Status.OK, message)
