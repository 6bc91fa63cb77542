"""The rules for the DNS records, on observed answers: ``dns-txt``, ``dns-id`` and ``tlsrpt``."""

from __future__ import annotations

import pytest

from mtasts_host.doctor.dnschecks import dns_id, dns_txt, tlsrpt
from mtasts_host.doctor.facts import Authority, Publishing, Txt
from mtasts_host.doctor.findings import Check, Finding, Status
from mtasts_host.policy import policy_id

D = "example.com"
NAME = "_mta-sts.example.com"
BODY = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
ID = policy_id(BODY)
RECORD = f"v=STSv1; id={ID}"
EXPECTED = f"'{RECORD}'"


@pytest.mark.parametrize(
    ("txt", "status", "message"),
    [
        pytest.param(
            Txt(NAME, (RECORD,), NAME),
            Status.OK,
            f"{NAME}: '{RECORD}'",
            id="one-record",
        ),
        pytest.param(
            Txt(NAME, ("spf1 -all", RECORD), "_mta-sts.provider.example"),
            Status.WARN,
            f"{NAME} (CNAME to _mta-sts.provider.example): '{RECORD}', beside 'spf1 -all': "
            "RFC 8461 section 3.1 has senders discard other records, but some (maddy's "
            f"go-mtasts) then see no policy; keep only {EXPECTED} at this name",
            id="through-a-cname-beside-another-record",
        ),
        pytest.param(
            Txt(NAME, error="no answer within 10 s"),
            Status.FAIL,
            f"could not look up {NAME}: no answer within 10 s",
            id="lookup-failed",
        ),
        pytest.param(
            Txt(NAME, ("google-site-verification=x",)),
            Status.FAIL,
            f"no v=STSv1 TXT record at {NAME}: senders see no MTA-STS policy; publish "
            f"{EXPECTED} (mtasts-host dns prints it)",
            id="none",
        ),
        pytest.param(
            Txt(NAME, ("V=STSV1; id=abc", f"\ufeff{RECORD}", " v=STSv1; id=abc")),
            Status.FAIL,
            f"no v=STSv1 TXT record at {NAME}: senders see no MTA-STS policy; publish "
            f"{EXPECTED} (mtasts-host dns prints it); senders ignore 'V=STSV1; id=abc', "
            f"'\\ufeff{RECORD}', ' v=STSv1; id=abc' there: v=STSv1 must begin a record exactly "
            "(in this case, with nothing before it)",
            id="look-alikes",  # the case, a byte-order mark, a space
        ),
        pytest.param(
            Txt(NAME, (RECORD, "v=STSv1; id=old")),
            Status.FAIL,
            f"2 v=STSv1 TXT records at {NAME}: senders then ignore MTA-STS (RFC 8461 section "
            f"3.1); keep only {EXPECTED}",
            id="two",
        ),
        pytest.param(
            Txt(NAME, ("v=STSv1; id=1.0",)),
            Status.FAIL,
            f"the record 'v=STSv1; id=1.0' at {NAME} is invalid: its id '1.0' is not 1 to 32 "
            f"letters and digits; senders then ignore MTA-STS; publish {EXPECTED} instead",
            id="invalid",
        ),
        pytest.param(
            Txt(NAME, (f"{RECORD}; id=other1",)),
            Status.FAIL,
            f"the record '{RECORD}; id=other1' at {NAME} has 2 id fields: RFC 8461 section 3.2 "
            f"has senders use the first, id={ID}, but some (mox) reject the record and then "
            f"ignore MTA-STS; publish {EXPECTED} alone",
            id="two-ids",
        ),
    ],
)
def test_dns_txt(txt: Txt, status: Status, message: str) -> None:
    assert dns_txt(D, txt, EXPECTED) == Finding(D, Check.DNS_TXT, status, message)


OTHER = b"version: STSv1\r\nmode: testing\r\nmx: mail.example.com\r\nmax_age: 604800\r\n"
OLD = "v=STSv1; id=old1"


def _authorities(*records: str | None) -> list[Authority]:
    return [
        Authority(f"ns{n}.example.net", f"192.0.2.{n}", (r,) if r else (), None if r else "timeout")
        for n, r in enumerate(records, 1)
    ]


@pytest.mark.parametrize(
    ("txt", "authorities", "served", "status", "message"),
    [
        pytest.param(
            Txt(NAME, (RECORD,)),
            _authorities(RECORD, RECORD),
            BODY,
            Status.OK,
            f"id={ID}, as this config gives",
            id="equal",
        ),
        pytest.param(
            Txt(NAME, ()),
            (),
            BODY,
            Status.FAIL,
            f"no valid v=STSv1 record at {NAME} to read an id from (see dns-txt)",
            id="no-record",
        ),
        pytest.param(
            Txt(NAME, (OLD,)),
            (),
            BODY,
            Status.FAIL,
            f"DNS has id=old1, but the policy changed since: publish the new id, '{RECORD}' "
            "(the new body is served already)",
            id="body-newer",
        ),
        pytest.param(
            Txt(NAME, (f"v=STSv1; id={policy_id(OTHER)}",)),
            (),
            OTHER,
            Status.FAIL,
            f"DNS has id={policy_id(OTHER)}, the id of the body mta-sts serves now, not of this "
            f"config: the server does not serve this config yet; reload it, then publish "
            f"'{RECORD}'",
            id="config-newer-than-server-and-txt",
        ),
        pytest.param(
            Txt(NAME, (OLD,)),
            (),
            OTHER,
            Status.FAIL,
            "DNS has id=old1, the id of neither this config nor the body served: the TXT "
            "changed but the body did not; senders may cache the served body under that id "
            f"(RFC 8461 section 8.1); serve this config, then publish '{RECORD}'",
            id="txt-newer",
        ),
        pytest.param(
            Txt(NAME, (OLD,)),
            (),
            None,
            Status.FAIL,
            f"DNS has id=old1: publish '{RECORD}' once this config's policy is served",
            id="nothing-served",
        ),
        pytest.param(
            Txt(NAME, (OLD,)),
            _authorities(RECORD, RECORD),
            BODY,
            Status.WARN,
            f"resolvers still see id=old1, but every authoritative server answers id={ID} "
            "already: wait for the cached record's TTL to pass",
            id="cached",
        ),
        pytest.param(
            Txt(NAME, (RECORD,)),
            _authorities(RECORD, OLD),
            BODY,
            Status.WARN,
            f"the authoritative servers of {NAME} disagree: ns2.example.net (192.0.2.2) answers "
            f"old1, not id={ID}: resolvers get one or the other; make every name server serve "
            "the current zone (check zone transfers and SOA serials)",
            id="authorities-disagree",
        ),
        pytest.param(
            Txt(NAME, (RECORD,)),
            _authorities(RECORD, None),
            BODY,
            Status.WARN,
            f"the authoritative servers of {NAME} disagree: ns2.example.net (192.0.2.2) answers "
            f"nothing (timeout), not id={ID}: resolvers get one or the other; make every name "
            "server serve the current zone (check zone transfers and SOA serials)",
            id="authority-silent",
        ),
        pytest.param(
            Txt(NAME, (RECORD,)),
            _authorities(None, None),
            BODY,
            Status.OK,
            f"id={ID}, as this config gives",
            id="no-authority-answers-from-here",
        ),
    ],
)
def test_dns_id(
    txt: Txt, authorities: list[Authority], served: bytes | None, status: Status, message: str
) -> None:
    finding = dns_id(D, txt, ID, authorities, served, BODY)
    assert finding == Finding(D, Check.DNS_ID, status, message)


WAITING = (
    f"the automatic publisher publishes '{RECORD}' once the new policy has been served for "
    "cache_wait seconds (RFC 8461 section 8.1); nothing to do"
)


@pytest.mark.parametrize(
    ("txt", "authorities", "publishing", "status", "message"),
    [
        pytest.param(
            Txt(NAME, (OLD,)),
            (),
            Publishing(),
            Status.WARN,
            f"DNS has id=old1; {WAITING}",
            id="old-id-while-the-publisher-waits",
        ),
        pytest.param(
            Txt(NAME, ()),
            (),
            Publishing(),
            Status.WARN,
            f"no valid v=STSv1 record at {NAME} yet; {WAITING}",
            id="no-record-while-the-publisher-waits",
        ),
        pytest.param(
            Txt(NAME, (OLD,)),
            (),
            Publishing(failed_runs=1),
            Status.FAIL,
            f"DNS has id=old1; the automatic publisher has not published '{RECORD}': its last "
            "run failed, and it tries again; see its 'publish:' log lines",
            id="its-run-failed",
        ),
        pytest.param(
            Txt(NAME, ()),
            (),
            Publishing(failed_runs=3),
            Status.FAIL,
            f"no valid v=STSv1 record at {NAME} yet; the automatic publisher has not published "
            f"'{RECORD}': its last 3 runs failed, and it tries again; see its 'publish:' log "
            "lines",
            id="its-runs-failed",
        ),
        pytest.param(
            Txt(NAME, (OLD,)),
            _authorities(RECORD, RECORD),
            Publishing(),
            Status.WARN,
            f"resolvers still see id=old1, but every authoritative server answers id={ID} "
            "already: wait for the cached record's TTL to pass",
            id="published-and-cached",
        ),
        pytest.param(
            Txt(NAME, (RECORD,)),
            (),
            Publishing(),
            Status.OK,
            f"id={ID}, as this config gives",
            id="published",
        ),
    ],
)
def test_dns_id_while_the_automatic_publisher_has_the_record_pending(
    txt: Txt,
    authorities: list[Authority],
    publishing: Publishing,
    status: Status,
    message: str,
) -> None:
    finding = dns_id(D, txt, ID, authorities, BODY, BODY, publishing)
    assert finding == Finding(D, Check.DNS_ID, status, message)


@pytest.mark.parametrize(
    ("txt", "publishing", "status", "message"),
    [
        pytest.param(
            Txt(NAME, ()),
            Publishing(),
            Status.WARN,
            f"no v=STSv1 TXT record at {NAME} yet; the automatic publisher publishes "
            f"{EXPECTED} once the new policy has been served for cache_wait seconds (RFC 8461 "
            "section 8.1); nothing to do",
            id="none-while-the-publisher-waits",
        ),
        pytest.param(
            Txt(NAME, ()),
            Publishing(failed_runs=2),
            Status.FAIL,
            f"no v=STSv1 TXT record at {NAME} yet; the automatic publisher has not published "
            f"{EXPECTED}: its last 2 runs failed, and it tries again; see its 'publish:' log "
            "lines",
            id="none-and-its-runs-failed",
        ),
        pytest.param(
            Txt(NAME, (RECORD, OLD)),
            Publishing(),
            Status.FAIL,
            f"2 v=STSv1 TXT records at {NAME}: senders then ignore MTA-STS (RFC 8461 section "
            f"3.1); keep only {EXPECTED}",
            id="two-whatever-the-publisher-does",
        ),
    ],
)
def test_dns_txt_while_the_automatic_publisher_has_the_record_pending(
    txt: Txt, publishing: Publishing, status: Status, message: str
) -> None:
    finding = dns_txt(D, txt, EXPECTED, publishing)
    assert finding == Finding(D, Check.DNS_TXT, status, message)


def test_dns_id_reads_the_first_of_two_ids() -> None:
    # RFC 8461 section 3.2: of a duplicated field, all entries but the first are ignored.
    finding = dns_id(D, Txt(NAME, (f"{RECORD}; id=other1",)), ID, [], BODY, BODY)
    assert finding == Finding(D, Check.DNS_ID, Status.OK, f"id={ID}, as this config gives")


TLSRPT = "_smtp._tls.example.com"
RUA = ("mailto:tls@example.com", "https://reports.example.com/v1")
ON_POLICY_HOST = "https://mta-sts.example.com/tlsrpt"


@pytest.mark.parametrize(
    ("txt", "configured", "status", "message"),
    [
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={RUA[1]},{RUA[0]}",)),
            RUA,
            Status.OK,
            f"reports go to {RUA[1]},{RUA[0]}, as configured",
            id="equal-in-any-order",
        ),
        pytest.param(
            Txt(TLSRPT),
            (),
            Status.OK,
            f"no TLS-RPT record at {TLSRPT}, and none configured",
            id="neither",
        ),
        pytest.param(
            Txt(TLSRPT, ("v=spf1 -all",)),
            RUA,
            Status.WARN,
            f"no v=TLSRPTv1 record at {TLSRPT}: senders send no reports; publish "
            f"'v=TLSRPTv1; rua={RUA[0]},{RUA[1]}'",
            id="missing",
        ),
        pytest.param(
            Txt(TLSRPT, ("v=tlsrptv1; rua=mailto:tls@example.com",)),
            RUA,
            Status.WARN,
            f"no v=TLSRPTv1 record at {TLSRPT}: senders send no reports; publish "
            f"'v=TLSRPTv1; rua={RUA[0]},{RUA[1]}'; senders ignore 'v=tlsrptv1; "
            "rua=mailto:tls@example.com' there: v=TLSRPTv1 must begin a record exactly (in this "
            "case, with nothing before it)",
            id="look-alike",
        ),
        pytest.param(
            Txt(TLSRPT, ("\ufeffv=TLSRPTv1; rua=mailto:tls@example.com",)),
            (),
            Status.WARN,
            f"no TLS-RPT record at {TLSRPT}, and none configured; senders ignore "
            "'\\ufeffv=TLSRPTv1; rua=mailto:tls@example.com' there: v=TLSRPTv1 must begin a "
            "record exactly (in this case, with nothing before it)",
            id="look-alike-not-configured",
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={RUA[0]}",)),
            RUA,
            Status.WARN,
            f"{TLSRPT} sends reports to {RUA[0]}, the config to {RUA[0]},{RUA[1]}: publish "
            f"'v=TLSRPTv1; rua={RUA[0]},{RUA[1]}'",
            id="different",
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={RUA[0]}",)),
            (),
            Status.WARN,
            f"{TLSRPT} sends reports to {RUA[0]}, but the config sets no tlsrpt_rua: add it "
            "there, or remove the record",
            id="not-configured",
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={RUA[0]}", f"v=TLSRPTv1; rua={RUA[1]}")),
            RUA,
            Status.FAIL,
            f"2 v=TLSRPTv1 records at {TLSRPT}: senders then send no reports (RFC 8460 section "
            f"3); keep only 'v=TLSRPTv1; rua={RUA[0]},{RUA[1]}'",
            id="two",
        ),
        pytest.param(
            Txt(TLSRPT, ("v=TLSRPTv1; rua=ftp://x",)),
            RUA,
            Status.FAIL,
            f"the record 'v=TLSRPTv1; rua=ftp://x' at {TLSRPT} is invalid: rua 'ftp://x' is not "
            "a 'mailto:' address or an 'https://' URL; senders then send no reports",
            id="invalid",
        ),
        pytest.param(
            # RFC 8460 takes its URIs from RFC 3986, whose schemes are case-insensitive: the
            # record is the configured one, but Postfix's reporter knows no "MAILTO:".
            Txt(TLSRPT, ("v=TLSRPTv1; rua=MAILTO:tls@example.com,HTTPS://reports.example.com/v1",)),
            RUA,
            Status.WARN,
            f"{TLSRPT} holds 'v=TLSRPTv1; rua=MAILTO:tls@example.com,HTTPS://reports.example.com"
            "/v1', which RFC 8460 allows, but Postfix's reporter (tlsrpt-reporter) sends no "
            "reports for it: it wants the scheme in lower case, mailto: or https:; publish "
            f"'v=TLSRPTv1; rua={RUA[0]},{RUA[1]}'",
            id="schemes-in-upper-case",
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={RUA[0]},{ON_POLICY_HOST}",)),
            (),
            Status.WARN,
            f"{TLSRPT} sends reports to {ON_POLICY_HOST}: a policy host serves the policy "
            "alone, and mtasts-host answers 404 to reports there; post them to a host name of "
            "their own, like https://tlsrpt.example.com/tlsrpt, and set it in tlsrpt_rua",
            id="on-a-policy-host",
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={RUA[0]},HTTPS://MTA-STS.example.com/tlsrpt",)),
            RUA,
            Status.WARN,
            f"{TLSRPT} sends reports to https://MTA-STS.example.com/tlsrpt: a policy host serves "
            "the policy alone, and mtasts-host answers 404 to reports there; publish "
            f"'v=TLSRPTv1; rua={RUA[0]},{RUA[1]}'",
            id="on-a-policy-host-configured-elsewhere",
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={ON_POLICY_HOST}",)),
            (ON_POLICY_HOST,),
            Status.WARN,
            f"{TLSRPT} sends reports to {ON_POLICY_HOST}: a policy host serves the policy "
            "alone, and mtasts-host answers 404 to reports there; post them to a host name of "
            "their own, like https://tlsrpt.example.com/tlsrpt, and set it in tlsrpt_rua",
            id="on-a-policy-host-as-configured",
        ),
        pytest.param(
            Txt(TLSRPT),
            (ON_POLICY_HOST,),
            Status.WARN,
            f"no v=TLSRPTv1 record at {TLSRPT}: senders send no reports; move {ON_POLICY_HOST} "
            "in tlsrpt_rua to a host name of their own, like https://tlsrpt.example.com/tlsrpt "
            "(a policy host serves the policy alone), then publish the record `mtasts-host dns` "
            "prints",
            id="missing-configured-on-a-policy-host",  # never advise publishing it
        ),
        pytest.param(
            Txt(TLSRPT, ("v=TLSRPTv1; rua=https://tlsrpt.example.com/tlsrpt",)),
            (ON_POLICY_HOST,),
            Status.WARN,
            f"{TLSRPT} sends reports to https://tlsrpt.example.com/tlsrpt, the config to "
            f"{ON_POLICY_HOST}: move {ON_POLICY_HOST} in tlsrpt_rua to a host name of their "
            "own, like https://tlsrpt.example.com/tlsrpt (a policy host serves the policy "
            "alone), then publish the record `mtasts-host dns` prints",
            id="moved-but-configured-on-a-policy-host",  # never advise moving back
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; rua={RUA[0]}, {RUA[1]}",)),
            RUA,
            Status.WARN,
            f"{TLSRPT} holds 'v=TLSRPTv1; rua={RUA[0]}, {RUA[1]}', which RFC 8460 allows, but "
            "Postfix's reporter (tlsrpt-reporter) sends no reports for it: it wants no space "
            f"after the commas between the URIs; publish 'v=TLSRPTv1; rua={RUA[0]},{RUA[1]}'",
            id="spaces-postfix-drops",
        ),
        pytest.param(
            Txt(TLSRPT, (f"v=TLSRPTv1; ext=1; rua={RUA[0]}",)),
            RUA[:1],
            Status.WARN,
            f"{TLSRPT} holds 'v=TLSRPTv1; ext=1; rua={RUA[0]}', which RFC 8460 allows, but "
            "Postfix's reporter (tlsrpt-reporter) sends no reports for it: it wants the rua "
            f"field first; publish 'v=TLSRPTv1; rua={RUA[0]}'",
            id="rua-after-an-extension-postfix-drops",
        ),
        pytest.param(
            Txt(TLSRPT, error="no answer within 10 s"),
            RUA,
            Status.WARN,
            f"could not look up {TLSRPT}: no answer within 10 s",
            id="lookup-failed",
        ),
    ],
)
def test_tlsrpt(txt: Txt, configured: tuple[str, ...], status: Status, message: str) -> None:
    assert tlsrpt(D, txt, configured) == Finding(D, Check.TLSRPT, status, message)
