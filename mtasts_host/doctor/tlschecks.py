"""
The rules for what the TLS endpoints answer: ``https`` and ``policy`` for the policy host,
``mx-tls`` for the MX hosts. Each takes what was observed and returns one finding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .._text import counted
from ..policy import MAX_BODY_SIZE, Mode, policy_id
from .facts import Failure, Fetch, Names, Session
from .findings import Check, Finding, Status, date

EXPIRY_WARNING = 14 * 86400
"""Warn this long before a certificate expires: time for one failed automatic renewal."""

_ADVICE = {
    Failure.TIMEOUT: "check that the server runs and that no firewall drops the connection",
    Failure.UNREACHABLE: "check that the server runs and listens on that port",
    Failure.REFUSED: (
        "the doctor could not check STARTTLS there: run it from another address, and if other "
        "senders are refused too, see the MX's log"
    ),
    Failure.EHLO: (
        "the doctor's EHLO name may be the cause: give it one the server accepts (--ehlo NAME)"
    ),
    Failure.NO_STARTTLS: "offer STARTTLS with a certificate for the MX name",
    Failure.PROTOCOL: "check what listens there",
    Failure.HANDSHAKE: "offer TLS 1.2 or 1.3 and a certificate for this name (SNI)",
    Failure.EXPIRED: "renew the certificate, and serve the CA's current intermediate with it",
    Failure.NOT_YET_VALID: "check the server's clock, or wait until the chain is valid",
    Failure.NAME: "use a certificate that names this host as a DNS name (the CN does not count)",
    Failure.UNTRUSTED: "use a certificate from a public CA and serve the full chain",
    Failure.INVALID: "replace the certificate",
}


def judge(session: Session, now: float) -> tuple[Status, str] | None:
    """
    A session's problem: FAIL if it has no valid TLS, WARN if it expires soon or if the server
    refused the doctor, which cannot tell whether it refuses others too; else None.
    """
    where = f"{session.host} ({session.address})"
    if session.failure is Failure.NO_ROUTE:
        return None
    if session.failure is not None:
        status = Status.WARN if session.failure is Failure.REFUSED else Status.FAIL
        return status, f"{where}: {session.detail}; {_ADVICE[session.failure]}"
    # Verified at its handshake, out of its dates now: a run judges a host that several
    # domains share (an MX host, the policy hosts of a txt_cname group) with its last domain.
    lapsed = [
        f"{which} expired {date(not_after)}"
        for which, not_after in (
            ("the certificate", session.not_after),
            *((f"{ca.named} that it sends", ca.not_after) for ca in session.chain),
        )
        if not_after is not None and not_after < now
    ]
    if lapsed:
        detail = "; ".join(lapsed)
        return Status.FAIL, f"{where}: {detail}, during the run; {_ADVICE[Failure.EXPIRED]}"
    soon: list[str] = []
    if session.not_after is not None and session.not_after - now < EXPIRY_WARNING:
        soon.append(f"the certificate expires {_expiry(session.not_after, now)}: renew it")
    # An intermediate that expires breaks senders' validation as the server's own does, and
    # renewing the server's certificate does not replace it if the chain file is kept.
    soon += [
        f"{ca.named} that it sends expires {_expiry(ca.not_after, now)}: serve the CA's current "
        f"{'chain' if ca.root else 'intermediate'} in its place"
        for ca in session.chain
        if ca.not_after - now < EXPIRY_WARNING
    ]
    return (Status.WARN, f"{where}: " + "; ".join(soon)) if soon else None


def _expiry(not_after: float, now: float) -> str:
    days = (not_after - now) / 86400
    left = "less than a day" if days < 1 else counted(round(days), "day")
    return f"{date(not_after)}, in {left}"


def _unreachable(sessions: Sequence[Session]) -> bool:
    """Every address is out of reach from here (IPv6 only, on a host without IPv6)."""
    return all(session.failure is Failure.NO_ROUTE for session in sessions)


def _not_checked(sessions: Sequence[Session], where: Callable[[Session], str]) -> str:
    """What an ok finding adds about the addresses skipped, without a route from here: it must
    not count them among those it vouches for."""
    skipped = [where(s) for s in sessions if s.failure is Failure.NO_ROUTE]
    return f"; not checked, no route from here: {', '.join(skipped)}" if skipped else ""


def _valid_until(sessions: Sequence[Session]) -> str:
    dates = [s.not_after for s in sessions if s.not_after is not None]
    if not dates:
        return "no address checked"
    valid = f"certificate valid until {date(min(dates))}"
    # Where an intermediate it sends ends first, that is when senders stop accepting it.
    chain = [ca for s in sessions for ca in s.chain]
    first = min(chain, key=lambda ca: ca.not_after, default=None)
    if first is not None and first.not_after < min(dates):
        valid += f", {first.named} it sends until {date(first.not_after)}"
    return valid


def https(domain: str, addresses: Names, sessions: Sequence[Session], now: float) -> Finding:
    """``mta-sts.<domain>`` resolves, and each address presents a valid certificate."""
    host = f"mta-sts.{domain}"

    def finding(status: Status, message: str) -> Finding:
        return Finding(domain, Check.HTTPS, status, message)

    if addresses.error is not None:
        return finding(Status.FAIL, f"could not look up {host}: {addresses.error}")
    if not addresses.values:
        message = f"{host} has no address: point it at your TLS proxy (A/AAAA or CNAME)"
        return finding(Status.FAIL, message)
    if _unreachable(sessions):
        return finding(Status.WARN, f"no address of {host} is reachable from here")
    problems = [problem for problem in (judge(s, now) for s in sessions) if problem]
    if problems:
        status = max((status for status, _ in problems), key=lambda status: status.level)
        return finding(status, "; ".join(message for _, message in problems))
    versions = sorted({s.version for s in sessions if s.version})
    checked = [s.address for s in sessions if s.failure is not Failure.NO_ROUTE]
    message = f"{host} ({', '.join(checked)}): {', '.join(versions)}, " + _valid_until(sessions)
    return finding(Status.OK, message + _not_checked(sessions, lambda s: s.address))


def _first_difference(got: bytes, expected: bytes) -> str:
    got_lines, expected_lines = got.splitlines(keepends=True), expected.splitlines(keepends=True)
    for number, (line, want) in enumerate(zip(got_lines, expected_lines, strict=False), 1):
        if line != want:
            return f"line {number} is {line!r}, expected {want!r}"
    if len(got_lines) > len(expected_lines):
        return f"line {len(expected_lines) + 1} {got_lines[len(expected_lines)]!r} is extra"
    if len(got_lines) < len(expected_lines):
        return f"line {len(got_lines) + 1} {expected_lines[len(got_lines)]!r} is missing"
    return "the line endings differ"


def _judge_fetch(fetch: Fetch, expected: bytes) -> str | None:
    where = fetch.session.address
    answer = fetch.answer
    if answer is None:
        return f"{where}: {fetch.error}"
    if answer.status in (206, 304):
        # Answers to a Range or a condition, which neither the doctor nor senders send.
        return (
            f"{where}: answers {answer.status} to a request with no Range and no condition: "
            "senders accept only 200 with the whole policy (RFC 8461 section 3.3); a cache or "
            "file server in front answers instead of mtasts-host: serve its answer unchanged"
        )
    if 300 <= answer.status < 400:
        target = "without a Location" if answer.location is None else f"to {answer.location}"
        return (
            f"{where}: answers {answer.status}, a redirect {target}: senders never follow "
            "redirects (RFC 8461 section 3.3); serve the policy itself there (look for "
            "http-to-https, www or CDN redirect rules)"
        )
    if answer.status != 200:
        return (
            f"{where}: answers {answer.status}, not 200: senders then have no policy; check that "
            "the proxy passes the Host header on to mtasts-host and serves no error page"
        )
    media_type = (answer.content_type or "").split(";")[0].strip().lower()
    if media_type != "text/plain":
        given = answer.content_type
        header = "without a Content-Type" if given is None else f"with Content-Type {given!r}"
        return (
            f"{where}: answers {header}, not text/plain: "
            "strict senders reject it; serve mtasts-host's answer unchanged"
        )
    if answer.content_encoding is not None:
        return (
            f"{where}: answers with Content-Encoding {answer.content_encoding!r} although asked "
            "for identity: senders that do not decode it see no valid policy; turn off "
            "compression for /.well-known/mta-sts.txt"
        )
    if answer.too_large:
        return f"{where}: the body is larger than {MAX_BODY_SIZE} bytes: senders refuse it"
    if answer.body != expected:
        return (
            f"{where}: serves another body than this config (id {policy_id(answer.body)}): "
            f"{_first_difference(answer.body, expected)}; a stale cache or another server "
            "in front answers, or the server has not loaded this config"
        )
    return None


def policy(
    domain: str, fetches: Sequence[Fetch], expected: bytes, announced: bool, port: int = 443
) -> Finding:
    """
    Each address of ``mta-sts.<domain>`` answers 200, ``text/plain``, at most 64 KiB, with
    ``expected`` byte for byte, without a redirect.

    Args:
        announced: whether DNS already publishes this config's id, which makes a stale body
            worse: senders may cache it under the new id (RFC 8461 section 8.1).
        port: the port fetched (``--https-port``), named in the URL unless it is 443.
    """
    host = f"mta-sts.{domain}"
    origin = f"https://{host}" if port == 443 else f"https://{host}:{port}"
    if fetches and _unreachable([fetch.session for fetch in fetches]):
        message = f"not fetched: no address of {host} is reachable from here"
        return Finding(domain, Check.POLICY, Status.WARN, message)
    # Addresses without a route from here are skipped, as the https check skips them.
    reachable = [fetch for fetch in fetches if fetch.session.failure is not Failure.NO_ROUTE]
    fetched = [fetch for fetch in reachable if fetch.session.failure is None]
    if not fetched:
        # Said here in full: in mode none there is no https finding to point at.
        why = "; ".join(f"{f.session.address}: {f.session.detail}" for f in reachable)
        message = f"not fetched: {origin}/ is not reachable with valid TLS ({why or 'no address'})"
        return Finding(domain, Check.POLICY, Status.FAIL, message)
    # Every address counts: a sender that reaches a broken one fetches no policy and keeps
    # applying the one it cached (RFC 8461 section 3.3), a withdrawn one too in mode none.
    problems = [
        f"{f.session.address}: not fetched, {f.session.detail}: senders that reach this "
        "address get none and keep applying the one they cached; fix the server there, or "
        f"remove the address from {host}"
        for f in reachable
        if f.session.failure is not None
    ]
    problems += [problem for problem in (_judge_fetch(f, expected) for f in fetched) if problem]
    if problems:
        if announced and any("another body" in problem for problem in problems):
            problems.append(
                "DNS already announces this config's id: senders may cache the wrong body "
                "under it for max_age (RFC 8461 section 8.1)"
            )
        return Finding(domain, Check.POLICY, Status.FAIL, "; ".join(problems))
    message = f"{origin}/.well-known/mta-sts.txt serves this config's policy, "
    return Finding(domain, Check.POLICY, Status.OK, message + f"{len(expected)} bytes")


def mx_tls(
    domain: str,
    mode: Mode,
    hosts: Sequence[str],
    addresses: Mapping[str, Names],
    sessions: Sequence[Session],
    now: float,
    null_mx: bool = False,
) -> Finding:
    """
    Every address of every MX host offers STARTTLS with a valid certificate for its name:
    a failure in enforce, a warning in testing; an expiry within 14 days warns in both.

    Args:
        null_mx: the domain has a null MX (RFC 7505): no host to check, and no mail that a
            policy could stop; mx-coverage says what to do.
    """
    strict = Status.FAIL if mode is Mode.ENFORCE else Status.WARN

    def finding(status: Status, message: str) -> Finding:
        return Finding(domain, Check.MX_TLS, status, message)

    if not hosts and null_mx:
        return finding(
            Status.WARN, f"no MX host to check: {domain} has a null MX (see mx-coverage)"
        )
    if not hosts:
        return finding(strict, "no MX host to check (see mx-coverage)")
    problems: list[tuple[Status, str]] = []
    for host in hosts:
        names = addresses[host]
        if names.error is not None:
            problems.append((strict, f"{host}: could not look up its address: {names.error}"))
        elif not names.values:
            problems.append((strict, f"{host} has no address: senders cannot reach it"))
    for session in sessions:
        problem = judge(session, now)
        if problem is not None:
            status, message = problem
            problems.append((strict if status is Status.FAIL else status, message))
    if problems:
        status = max((status for status, _ in problems), key=lambda status: status.level)
        return finding(status, "; ".join(message for _, message in problems))
    if _unreachable(sessions):
        return finding(Status.WARN, "no MX address is reachable from here")
    checked = [s for s in sessions if s.failure is not Failure.NO_ROUTE]
    reached = [host for host in hosts if any(s.host == host for s in checked)]
    count = f"{len(checked)} address{'' if len(checked) == 1 else 'es'}"
    message = f"STARTTLS on {count} of {', '.join(reached)}, " + _valid_until(sessions)
    return finding(Status.OK, message + _not_checked(sessions, lambda s: f"{s.host} ({s.address})"))
