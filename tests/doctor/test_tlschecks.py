"""The TLS rules, on observed sessions and answers: ``https``, ``policy`` and ``mx-tls``."""

from __future__ import annotations

import pytest

from mtasts_host.doctor.facts import Answer, Certificate, Failure, Fetch, Names, Session
from mtasts_host.doctor.findings import Check, Finding, Status
from mtasts_host.doctor.tlschecks import https, judge, mx_tls, policy
from mtasts_host.policy import Mode, policy_id

D = "example.com"
HOST = "mta-sts.example.com"
NOW = 1_700_000_000.0  # 2023-11-14 22:13 UTC
DAY = 86400.0
BODY = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"


def good(host: str = HOST, address: str = "192.0.2.1", days: float = 60) -> Session:
    return Session(host, address, "TLSv1.3", NOW + days * DAY)


def middle(days: float) -> Certificate:
    return Certificate("C=US, O=Let's Encrypt, CN=R11", NOW + days * DAY)


def broken(failure: Failure, detail: str, host: str = HOST) -> Session:
    return Session(host, "192.0.2.1", failure=failure, detail=detail)


@pytest.mark.parametrize(
    ("session", "expected"),
    [
        pytest.param(good(), None, id="valid"),
        pytest.param(good(days=14.5), None, id="expires-in-15-days"),
        pytest.param(
            good(days=5),
            (
                Status.WARN,
                f"{HOST} (192.0.2.1): the certificate expires 2023-11-19 22:13 UTC, in 5 days: "
                "renew it",
            ),
            id="expires-soon",
        ),
        pytest.param(
            broken(Failure.EXPIRED, "the certificate has expired"),
            (
                Status.FAIL,
                f"{HOST} (192.0.2.1): the certificate has expired; renew the certificate, "
                "and serve the CA's current intermediate with it",
            ),
            id="expired",
        ),
        pytest.param(
            broken(Failure.NAME, f"the certificate is not valid for {HOST}"),
            (
                Status.FAIL,
                f"{HOST} (192.0.2.1): the certificate is not valid for {HOST}; use a certificate "
                "that names this host as a DNS name (the CN does not count)",
            ),
            id="name",
        ),
        pytest.param(
            broken(Failure.HANDSHAKE, "the TLS handshake failed: UNSUPPORTED_PROTOCOL"),
            (
                Status.FAIL,
                f"{HOST} (192.0.2.1): the TLS handshake failed: UNSUPPORTED_PROTOCOL; offer "
                "TLS 1.2 or 1.3 and a certificate for this name (SNI)",
            ),
            id="old-tls",
        ),
        pytest.param(
            good(days=0.3),
            (
                Status.WARN,
                f"{HOST} (192.0.2.1): the certificate expires 2023-11-15 05:25 UTC, in less than "
                "a day: renew it",
            ),
            id="expires-within-a-day",
        ),
        pytest.param(broken(Failure.NO_ROUTE, "no route to port 443"), None, id="no-route"),
        pytest.param(
            Session(HOST, "192.0.2.1", "TLSv1.3", NOW + 60 * DAY, (middle(days=30),)),
            None,
            id="intermediate-valid",
        ),
        pytest.param(
            Session(HOST, "192.0.2.1", "TLSv1.3", NOW + 5 * DAY, (middle(days=3),)),
            (
                Status.WARN,
                f"{HOST} (192.0.2.1): the certificate expires 2023-11-19 22:13 UTC, in 5 days: "
                'renew it; the intermediate certificate "C=US, O=Let\'s Encrypt, CN=R11" that it '
                "sends expires 2023-11-17 22:13 UTC, in 3 days: serve the CA's current "
                "intermediate in its place",
            ),
            id="both-expire-soon",
        ),
        pytest.param(
            # Verified at its handshake, expired by the time a later domain that shares the
            # host is judged: senders refuse it now.
            good(days=-60 / DAY),
            (
                Status.FAIL,
                f"{HOST} (192.0.2.1): the certificate expired 2023-11-14 22:12 UTC, during the "
                "run; renew the certificate, and serve the CA's current intermediate with it",
            ),
            id="expired-during-the-run",
        ),
        pytest.param(
            Session(HOST, "192.0.2.1", "TLSv1.3", NOW + 5 * DAY, (middle(days=-60 / DAY),)),
            (
                Status.FAIL,
                f"{HOST} (192.0.2.1): the intermediate certificate \"C=US, O=Let's Encrypt, "
                'CN=R11" that it sends expired 2023-11-14 22:12 UTC, during the run; renew the '
                "certificate, and serve the CA's current intermediate with it",
            ),
            id="intermediate-expired-during-the-run",
        ),
    ],
)
def test_judge(session: Session, expected: tuple[Status, str] | None) -> None:
    assert judge(session, NOW) == expected


@pytest.mark.parametrize(
    ("addresses", "sessions", "status", "message"),
    [
        pytest.param(
            Names(("192.0.2.1", "2001:db8::1")),
            [good(), good(address="2001:db8::1", days=30)],
            Status.OK,
            f"{HOST} (192.0.2.1, 2001:db8::1): TLSv1.3, certificate valid until 2023-12-14 "
            "22:13 UTC",
            id="valid",
        ),
        pytest.param(
            Names(error="no answer within 10 s"),
            [],
            Status.FAIL,
            f"could not look up {HOST}: no answer within 10 s",
            id="lookup-failed",
        ),
        pytest.param(
            Names(),
            [],
            Status.FAIL,
            f"{HOST} has no address: point it at your TLS proxy (A/AAAA or CNAME)",
            id="no-address",
        ),
        pytest.param(
            Names(("2001:db8::1",)),
            [broken(Failure.NO_ROUTE, "no route to port 443")],
            Status.WARN,
            f"no address of {HOST} is reachable from here",
            id="ipv6-only",
        ),
        pytest.param(
            Names(("192.0.2.1", "2001:db8::1")),
            [good(), Session(HOST, "2001:db8::1", failure=Failure.NO_ROUTE, detail="no route")],
            Status.OK,
            # Not "(192.0.2.1, 2001:db8::1): TLSv1.3": the IPv6 address was never checked.
            f"{HOST} (192.0.2.1): TLSv1.3, certificate valid until 2024-01-13 22:13 UTC; not "
            "checked, no route from here: 2001:db8::1",
            id="ipv6-skipped",
        ),
        pytest.param(
            Names(("192.0.2.1", "192.0.2.2")),
            [good(days=3), broken(Failure.TIMEOUT, "no TLS handshake within 10 s on port 443")],
            Status.FAIL,
            f"{HOST} (192.0.2.1): the certificate expires 2023-11-17 22:13 UTC, in 3 days: "
            f"renew it; {HOST} (192.0.2.1): no TLS handshake within 10 s on port 443; check "
            "that the server runs and that no firewall drops the connection",
            id="one-soon-one-silent",
        ),
    ],
)
def test_https(addresses: Names, sessions: list[Session], status: Status, message: str) -> None:
    assert https(D, addresses, sessions, NOW) == Finding(D, Check.HTTPS, status, message)


def fetched(answer: Answer | None, error: str | None = None) -> Fetch:
    return Fetch(good(), answer, error)


OK = Answer(200, "text/plain; charset=utf-8", None, BODY)
STALE = BODY.replace(b"enforce", b"testing")
LF = BODY.replace(b"\r\n", b"\n")
EXTRA = BODY + b"x: y\r\n"


@pytest.mark.parametrize(
    ("fetches", "announced", "message"),
    [
        pytest.param(
            [fetched(OK), fetched(Answer(200, "TEXT/PLAIN", None, BODY))],
            False,
            None,
            id="ok",
        ),
        pytest.param(
            [Fetch(broken(Failure.EXPIRED, "the certificate has expired"))],
            False,
            f"not fetched: https://{HOST}/ is not reachable with valid TLS "
            "(192.0.2.1: the certificate has expired)",
            id="no-tls",
        ),
        pytest.param(
            [
                fetched(OK),
                Fetch(
                    Session(HOST, "192.0.2.2", failure=Failure.UNREACHABLE, detail="refused on 443")
                ),
            ],
            False,
            "192.0.2.2: not fetched, refused on 443: senders that reach this address get none "
            f"and keep applying the one they cached; fix the server there, or remove the "
            f"address from {HOST}",
            id="one-address-of-two-broken",
        ),
        pytest.param(
            [
                fetched(OK),
                Fetch(Session(HOST, "2001:db8::1", failure=Failure.NO_ROUTE, detail="no route")),
            ],
            False,
            None,
            id="an-address-without-a-route-from-here-skipped",
        ),
        pytest.param(
            [],
            False,
            f"not fetched: https://{HOST}/ is not reachable with valid TLS (no address)",
            id="no-address",
        ),
        pytest.param(
            [fetched(None, "no HTTP answer within 10 s")],
            False,
            "192.0.2.1: no HTTP answer within 10 s",
            id="no-answer",
        ),
        pytest.param(
            [fetched(Answer(301, None, f"https://www.{D}/"))],
            False,
            f"192.0.2.1: answers 301, a redirect to https://www.{D}/: senders never follow "
            "redirects (RFC 8461 section 3.3); serve the policy itself there (look for "
            "http-to-https, www or CDN redirect rules)",
            id="redirect",
        ),
        pytest.param(
            [fetched(Answer(302, None, None))],
            False,
            "192.0.2.1: answers 302, a redirect without a Location: senders never follow "
            "redirects (RFC 8461 section 3.3); serve the policy itself there (look for "
            "http-to-https, www or CDN redirect rules)",
            id="redirect-without-location",
        ),
        pytest.param(
            [fetched(Answer(304))],
            False,
            "192.0.2.1: answers 304 to a request with no Range and no condition: senders accept "
            "only 200 with the whole policy (RFC 8461 section 3.3); a cache or file server in "
            "front answers instead of mtasts-host: serve its answer unchanged",
            id="not-modified-is-no-redirect",
        ),
        pytest.param(
            [fetched(Answer(206, "text/plain", None, BODY[:6]))],
            False,
            "192.0.2.1: answers 206 to a request with no Range and no condition: senders accept "
            "only 200 with the whole policy (RFC 8461 section 3.3); a cache or file server in "
            "front answers instead of mtasts-host: serve its answer unchanged",
            id="partial",
        ),
        pytest.param(
            [fetched(Answer(404, "text/html"))],
            False,
            "192.0.2.1: answers 404, not 200: senders then have no policy; check that the proxy "
            "passes the Host header on to mtasts-host and serves no error page",
            id="not-found",
        ),
        pytest.param(
            [fetched(Answer(200, "text/html", None, BODY))],
            False,
            "192.0.2.1: answers with Content-Type 'text/html', not text/plain: strict senders "
            "reject it; serve mtasts-host's answer unchanged",
            id="html",
        ),
        pytest.param(
            [fetched(Answer(200, None, None, BODY))],
            False,
            "192.0.2.1: answers without a Content-Type, not text/plain: strict senders reject "
            "it; serve mtasts-host's answer unchanged",
            id="no-type",
        ),
        pytest.param(
            [fetched(Answer(200, "text/plain", None, b"x" * 65536, too_large=True))],
            False,
            "192.0.2.1: the body is larger than 65536 bytes: senders refuse it",
            id="too-large",
        ),
        pytest.param(
            [fetched(Answer(200, "text/plain", None, STALE))],
            True,
            f"192.0.2.1: serves another body than this config (id {policy_id(STALE)}): line 2 "
            "is b'mode: testing\\r\\n', expected b'mode: enforce\\r\\n'; a stale cache or "
            "another server in front answers, or the server has not loaded this config; DNS "
            "already announces this config's id: senders may cache the wrong body under it for "
            "max_age (RFC 8461 section 8.1)",
            id="stale-and-announced",
        ),
        pytest.param(
            [fetched(Answer(200, "text/plain", None, LF))],
            False,
            f"192.0.2.1: serves another body than this config (id "
            f"{policy_id(LF)}): line 1 is b'version: STSv1\\n', "
            "expected b'version: STSv1\\r\\n'; a stale cache or another server in front "
            "answers, or the server has not loaded this config",
            id="line-endings",
        ),
        pytest.param(
            [fetched(Answer(200, "text/plain", None, EXTRA))],
            False,
            f"192.0.2.1: serves another body than this config (id "
            f"{policy_id(EXTRA)}): line 5 b'x: y\\r\\n' is extra; "
            "a stale cache or another server in front answers, or the server has not loaded "
            "this config",
            id="extra-line",
        ),
    ],
)
def test_policy(fetches: list[Fetch], announced: bool, message: str | None) -> None:
    finding = policy(D, fetches, BODY, announced)
    if message is None:
        ok = f"https://{HOST}/.well-known/mta-sts.txt serves this config's policy, 70 bytes"
        assert finding == Finding(D, Check.POLICY, Status.OK, ok)
    else:
        assert finding == Finding(D, Check.POLICY, Status.FAIL, message)


MX = "mail.example.com"


@pytest.mark.parametrize(
    ("mode", "addresses", "sessions", "status", "message"),
    [
        pytest.param(
            Mode.ENFORCE,
            Names(("192.0.2.1",)),
            [good(MX)],
            Status.OK,
            f"STARTTLS on 1 address of {MX}, certificate valid until 2024-01-13 22:13 UTC",
            id="valid",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(("192.0.2.1",)),
            [broken(Failure.NO_STARTTLS, "does not offer STARTTLS", MX)],
            Status.FAIL,
            f"{MX} (192.0.2.1): does not offer STARTTLS; offer STARTTLS with a certificate for "
            "the MX name",
            id="no-starttls-enforce",
        ),
        pytest.param(
            Mode.TESTING,
            Names(("192.0.2.1",)),
            [broken(Failure.NO_STARTTLS, "does not offer STARTTLS", MX)],
            Status.WARN,
            f"{MX} (192.0.2.1): does not offer STARTTLS; offer STARTTLS with a certificate for "
            "the MX name",
            id="no-starttls-testing",
        ),
        pytest.param(
            # The doctor cannot tell whether only its own address is refused (a blocklist):
            # a warning, as for addresses without a route from here, even in enforce.
            Mode.ENFORCE,
            Names(("192.0.2.1", "192.0.2.2")),
            [
                good(MX, "192.0.2.2"),
                broken(
                    Failure.REFUSED,
                    "refuses the session: 554 5.7.1 blocked using zen.spamhaus.org (the "
                    "doctor's address may be blocklisted there)",
                    MX,
                ),
            ],
            Status.WARN,
            f"{MX} (192.0.2.1): refuses the session: 554 5.7.1 blocked using zen.spamhaus.org "
            "(the doctor's address may be blocklisted there); the doctor could not check "
            "STARTTLS there: run it from another address, and if other senders are refused "
            "too, see the MX's log",
            id="refused-enforce",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(("192.0.2.1",)),
            [broken(Failure.EHLO, "answers EHLO vm with 501 5.5.4 Invalid domain name", MX)],
            Status.FAIL,
            f"{MX} (192.0.2.1): answers EHLO vm with 501 5.5.4 Invalid domain name; the "
            "doctor's EHLO name may be the cause: give it one the server accepts (--ehlo NAME)",
            id="ehlo-refused",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(("192.0.2.1",)),
            [good(MX, days=1)],
            Status.WARN,
            f"{MX} (192.0.2.1): the certificate expires 2023-11-15 22:13 UTC, in 1 day: renew it",
            id="expires-soon",
        ),
        pytest.param(
            # An MX that several domains share is probed once, and judged with each.
            Mode.ENFORCE,
            Names(("192.0.2.1",)),
            [good(MX, days=-60 / DAY)],
            Status.FAIL,
            f"{MX} (192.0.2.1): the certificate expired 2023-11-14 22:12 UTC, during the run; "
            "renew the certificate, and serve the CA's current intermediate with it",
            id="expired-during-the-run",
        ),
        pytest.param(
            Mode.TESTING,
            Names(("192.0.2.1",)),
            [good(MX, days=-60 / DAY)],
            Status.WARN,
            f"{MX} (192.0.2.1): the certificate expired 2023-11-14 22:12 UTC, during the run; "
            "renew the certificate, and serve the CA's current intermediate with it",
            id="expired-during-the-run-testing",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(("192.0.2.1", "2001:db8::1")),
            [good(MX), Session(MX, "2001:db8::1", failure=Failure.NO_ROUTE, detail="no route")],
            Status.OK,
            # Not "STARTTLS on 2 addresses": the IPv6 address was never checked.
            f"STARTTLS on 1 address of {MX}, certificate valid until 2024-01-13 22:13 UTC; not "
            f"checked, no route from here: {MX} (2001:db8::1)",
            id="ipv6-skipped",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(),
            [],
            Status.FAIL,
            f"{MX} has no address: senders cannot reach it",
            id="no-address",
        ),
        pytest.param(
            Mode.TESTING,
            Names(error="no answer within 10 s"),
            [],
            Status.WARN,
            f"{MX}: could not look up its address: no answer within 10 s",
            id="lookup-failed",
        ),
    ],
)
def test_mx_tls(
    mode: Mode, addresses: Names, sessions: list[Session], status: Status, message: str
) -> None:
    finding = mx_tls(D, mode, [MX], {MX: addresses}, sessions, NOW)
    assert finding == Finding(D, Check.MX_TLS, status, message)


def test_policy_warns_when_no_address_has_a_route_from_here() -> None:
    # As https does: the doctor cannot tell, and exit 1 would page for where it runs.
    nowhere = Fetch(Session(HOST, "2001:db8::1", failure=Failure.NO_ROUTE, detail="no route"))
    message = f"not fetched: no address of {HOST} is reachable from here"
    assert policy(D, [nowhere], BODY, True) == Finding(D, Check.POLICY, Status.WARN, message)


def test_mx_tls_names_only_the_hosts_it_checked() -> None:
    # An IPv6-only MX host, from a doctor without IPv6: skipped, and not named as checked.
    v6 = "mx6.example.com"
    addresses = {MX: Names(("192.0.2.1",)), v6: Names(("2001:db8::1",))}
    sessions = [good(MX), Session(v6, "2001:db8::1", failure=Failure.NO_ROUTE, detail="x")]
    finding = mx_tls(D, Mode.ENFORCE, [MX, v6], addresses, sessions, NOW)
    assert finding == Finding(
        D,
        Check.MX_TLS,
        Status.OK,
        f"STARTTLS on 1 address of {MX}, certificate valid until 2024-01-13 22:13 UTC; not "
        f"checked, no route from here: {v6} (2001:db8::1)",
    )


def test_mx_tls_without_mx_hosts() -> None:
    finding = mx_tls(D, Mode.ENFORCE, [], {}, [], NOW)
    assert finding == Finding(D, Check.MX_TLS, Status.FAIL, "no MX host to check (see mx-coverage)")


def test_mx_tls_with_a_null_mx_only_warns() -> None:
    # A null MX receives no mail, so none can bounce; mx-coverage says to set mode none.
    finding = mx_tls(D, Mode.ENFORCE, [], {}, [], NOW, null_mx=True)
    message = f"no MX host to check: {D} has a null MX (see mx-coverage)"
    assert finding == Finding(D, Check.MX_TLS, Status.WARN, message)


def test_an_ok_finding_gives_the_date_of_an_intermediate_that_ends_first() -> None:
    # It gave the server's own date, though senders refuse the chain once the intermediate ends.
    sessions = [Session(HOST, "192.0.2.1", "TLSv1.3", NOW + 60 * DAY, (middle(days=30),))]
    finding = https(D, Names(("192.0.2.1",)), sessions, NOW)
    assert finding == Finding(
        D,
        Check.HTTPS,
        Status.OK,
        f"{HOST} (192.0.2.1): TLSv1.3, certificate valid until 2024-01-13 22:13 UTC, the "
        'intermediate certificate "C=US, O=Let\'s Encrypt, CN=R11" it sends until 2023-12-14 '
        "22:13 UTC",
    )
