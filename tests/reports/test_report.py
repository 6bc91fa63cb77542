"""Parsing real reports: lenient where senders deviate, strict where counts matter."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import idna
import pytest

from mtasts_host.reports.parse import MAX_INTERNATIONAL, parse_report
from mtasts_host.reports.report import BadReport, PolicyType, ResultType

from .conftest import fixture, report


def test_the_rfc_example() -> None:
    parsed = parse_report(fixture("rfc8460-appendix-b.json"))
    assert parsed.organization_name == "Company-X"
    assert parsed.report_id == "5065427c-23d3-47ca-b6e0-946ea0e8c4be"
    assert parsed.contact_info == "sts-reporting@company-x.example"
    assert parsed.start == datetime(2016, 4, 1, tzinfo=UTC)
    (policy,) = parsed.policies
    assert policy.policy_type is PolicyType.STS
    assert policy.domain == "company-y.example"
    assert policy.mx_hosts == ("*.mail.company-y.example",)  # a string, as Appendix B has it
    assert (policy.successful, policy.failed) == (5326, 303)
    assert [(f.result_type, f.sessions) for f in policy.failures] == [
        (ResultType.CERTIFICATE_EXPIRED, 100),
        (ResultType.STARTTLS_NOT_SUPPORTED, 200),
        (ResultType.VALIDATION_FAILURE, 3),
    ]
    assert policy.failures[1].additional_information.startswith("https://reports.")  # type: ignore[union-attr]
    assert policy.failures[2].failure_reason_code == "X509_V_ERR_PROXY_PATH_LENGTH_EXCEEDED"


def test_mx_host_as_a_list() -> None:
    (policy,) = parse_report(fixture("google.json")).policies
    assert policy.mx_hosts == ("mail.example.com",)
    assert policy.failures == ()  # no failure-details at all


def test_microsoft_times_without_a_zone_are_utc_and_fields_may_be_missing() -> None:
    parsed = parse_report(fixture("microsoft.json"))
    assert parsed.start == datetime(2024, 5, 1, tzinfo=UTC)
    assert parsed.end == datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC)
    (policy,) = parsed.policies
    assert policy.policy_strings == ()
    assert policy.mx_hosts == ()
    (failure,) = policy.failures
    assert failure.result_type is ResultType.CERTIFICATE_HOST_MISMATCH
    assert failure.receiving_mx_hostname is None
    assert failure.sending_mta_ip is None


def test_tlsa_policy_string_packed_in_one_string_beside_sts() -> None:
    tlsa, sts = parse_report(fixture("tlsa-packed-and-sts.json")).policies
    assert tlsa.policy_type is PolicyType.TLSA
    assert tlsa.policy_strings == (
        "3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    )
    assert tlsa.mx_hosts == ("mail.example.com",)
    assert sts.policy_type is PolicyType.STS
    assert sts.domain == "example.com"  # "Example.COM." normalised


def test_odd_fields() -> None:
    parsed = parse_report(fixture("odd-fields.json"))
    assert parsed.contact_info is None  # contact-info: null
    assert parsed.start == datetime(2024, 5, 1, tzinfo=UTC)  # +02:00 converted
    sts, none_found, other = parsed.policies
    webpki, future = sts.failures
    assert webpki.sending_mta_ip is None  # ""
    assert webpki.receiving_ip is None
    assert webpki.receiving_mx_hostname == "mail.example.com"  # "MAIL.example.com."
    assert webpki.additional_information == "https://small-sender.example/why"  # -info-uri
    assert future.result_type is ResultType.OTHER
    assert future.reported_type == "a-type-from-the-future"
    assert future.additional_information == "https://small-sender.example/new"
    assert none_found.policy_type is PolicyType.NO_POLICY_FOUND
    assert other.domain == "not-configured.example"


def test_unknown_policy_type_is_kept_apart() -> None:
    document = report(policy_type="dane-with-a-twist")
    (policy,) = parse_report(json.dumps(document).encode()).policies
    assert policy.policy_type is PolicyType.OTHER


def test_text_that_no_database_takes_is_cleaned() -> None:
    document = report(organization="Evil\u0000 Org \ud800")
    parsed = parse_report(json.dumps(document).encode())
    assert parsed.organization_name == "Evil\ufffd Org ?"


def test_a_utf8_bom_is_skipped() -> None:
    assert parse_report(b"\xef\xbb\xbf" + fixture("google.json")).organization_name == "Google Inc."


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing-organization-name.json", "organization-name: missing"),
        ("missing-report-id.json", "report-id: missing"),
        ("missing-date-range.json", "date-range: missing"),
        ("missing-policies.json", "policies: missing"),
        ("missing-summary.json", "policies[0].summary: missing"),
        (
            "negative-count.json",
            "policies[0].summary.total-failure-session-count: "
            "expected a non-negative integer, got -1",
        ),
        (
            "fractional-count.json",
            "policies[0].summary.total-successful-session-count: "
            "expected a non-negative integer, got 1.5",
        ),
        (
            "string-count.json",
            "policies[0].summary.total-successful-session-count: "
            'expected a non-negative integer, got "1200"',
        ),
        (
            "negative-failed-session-count.json",
            "policies[0].failure-details[0].failed-session-count: "
            "expected a non-negative integer, got -3",
        ),
        ("not-json.json", "not JSON: Expecting property name enclosed in double quotes:"),
    ],
)
def test_bad_reports_are_rejected_with_the_reason(name: str, message: str) -> None:
    with pytest.raises(BadReport) as caught:
        parse_report(fixture(f"bad/{name}"))
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[]", "the report: expected an object, got an array"),
        (b"NaN", "not JSON: NaN is not JSON"),
        (b'{"organization-name": ""}', "organization-name: empty"),
        (b"\xff\xfe", "not JSON:"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON:"),  # deep nesting: no RecursionError
    ],
    ids=["array", "nan", "empty-name", "binary", "deep"],
)
def test_what_is_not_a_report(text: bytes, message: str) -> None:
    with pytest.raises(BadReport, match="^" + message.replace("(", r"\(")):
        parse_report(text)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"organization-name": " "}, "organization-name: empty"),
        ({"policies": {}}, "policies: expected an array, got an object"),
        (
            {"date-range": {"start-datetime": "yesterday", "end-datetime": "today"}},
            "date-range.start-datetime: expected an RFC 3339 date-time, got 'YESTERDAY'",
        ),
        (
            {
                "date-range": {
                    "start-datetime": "2024-05-02T00:00:00Z",
                    "end-datetime": "2024-05-01T00:00:00Z",
                }
            },
            "date-range: end-datetime is before start-datetime",
        ),
        (
            {
                "date-range": {
                    "start-datetime": "0001-01-01T00:00:00+01:00",
                    "end-datetime": "2024-05-01T00:00:00Z",
                }
            },
            "date-range.start-datetime: expected a date-time in the years 1 to 9999 in UTC, "
            "got '0001-01-01T00:00:00+01:00'",
        ),
        (
            {
                "date-range": {
                    "start-datetime": "9999-12-31T00:00:00Z",
                    "end-datetime": "9999-12-31T23:59:59-01:00",
                }
            },
            "date-range.end-datetime: expected a date-time in the years 1 to 9999 in UTC, "
            "got '9999-12-31T23:59:59-01:00'",
        ),
    ],
    ids=["empty-name", "policies-object", "not-a-date", "end-before-start", "year-0", "year-10000"],
)
def test_required_fields_must_make_sense(change: dict[str, object], message: str) -> None:
    document = {**report(), **change}
    with pytest.raises(BadReport) as caught:
        parse_report(json.dumps(document).encode())
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("end", "expected"),
    [
        ("2016-12-31T23:59:60Z", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2016-12-31T15:59:60.5-08:00", datetime(2016, 12, 31, 23, 59, 59, 500000, tzinfo=UTC)),
        ("2016-12-31 23:59:60", datetime(2016, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
    ids=["utc", "offset-and-fraction", "space-no-zone"],
)
def test_a_leap_second_is_the_second_before_it(end: str, expected: datetime) -> None:
    document = report()
    document["date-range"] = {"start-datetime": "2016-12-31T00:00:00Z", "end-datetime": end}
    assert parse_report(json.dumps(document).encode()).end == expected


def test_only_a_leap_second_is_taken() -> None:
    document = report()
    document["date-range"]["end-datetime"] = "2016-12-31T23:59:61Z"
    with pytest.raises(BadReport) as caught:
        parse_report(json.dumps(document).encode())
    assert str(caught.value) == (
        "date-range.end-datetime: expected an RFC 3339 date-time, got '2016-12-31T23:59:61Z'"
    )


def test_counts_beyond_what_json_keeps_exactly_are_refused() -> None:
    document = report(successful=2**53)
    with pytest.raises(BadReport, match="expected a non-negative integer, got 9007199254740992"):
        parse_report(json.dumps(document).encode())


def test_booleans_are_not_counts() -> None:
    document = report()
    document["policies"][0]["summary"]["total-failure-session-count"] = False
    with pytest.raises(BadReport, match="got false"):
        parse_report(json.dumps(document).encode())


def test_what_cannot_be_a_host_is_cut_and_its_sessions_count() -> None:
    # A sender posted receiving-mx-hostnames of 18 KB: the store kept them, and every summary
    # read them back. No DNS name is longer than 253 characters; the sessions still count.
    long = "mx." + "a" * 18_000
    document = report(
        failures=[
            {
                "result-type": "certificate-expired" + " " * 2000,
                "receiving-mx-hostname": long,
                "receiving-mx-helo": long,
                "sending-mta-ip": "192.0.2." + "1" * 300,
                "receiving-ip": "2001:db8::" + "1" * 300,
                "failed-session-count": 7,
            }
        ],
    )
    document["policies"][0]["policy"]["mx-host"] = [long, "mail.example.com"]
    document["contact-info"] = "x" * 5000
    parsed = parse_report(json.dumps(document).encode())
    (policy,) = parsed.policies
    (failure,) = policy.failures
    assert (failure.result_type, failure.sessions) == (ResultType.CERTIFICATE_EXPIRED, 7)
    assert failure.receiving_mx_hostname == "mx." + "a" * 249 + "\u2026"
    assert failure.receiving_mx_helo == "mx." + "a" * 249 + "\u2026"
    assert policy.mx_hosts == ("mx." + "a" * 249 + "\u2026", "mail.example.com")
    assert failure.sending_mta_ip == ("192.0.2." + "1" * 300)[:252] + "\u2026"
    assert failure.receiving_ip == ("2001:db8::" + "1" * 300)[:252] + "\u2026"
    assert failure.reported_type == ("certificate-expired" + " " * 2000)[:999] + "\u2026"
    assert parsed.contact_info == "x" * 999 + "\u2026"


def test_the_longest_names_are_kept_whole() -> None:
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters
    international = ".".join(["ü" * 57] * 3) + ".de"  # 176 characters, 194 as A-labels
    document = report(
        domain=longest,
        failures=[
            {"result-type": "a", "receiving-mx-hostname": f"{longest}.", "failed-session-count": 1},
            {"result-type": "a", "receiving-mx-hostname": international, "failed-session-count": 1},
        ],
    )
    (policy,) = parse_report(json.dumps(document).encode()).policies
    assert policy.domain == longest
    assert [f.receiving_mx_hostname for f in policy.failures] == [
        longest,
        idna.encode(international, uts46=True).decode(),
    ]


def test_a_receiving_mx_is_one_name_however_written() -> None:
    # Decomposed, it was a second mx.bücher.example, shown exactly like the first.
    written = [
        "mx.bücher.example",
        "mx.bu\u0308cher.example",
        "MX.XN--BCHER-KVA.EXAMPLE.",
        "\uff4d\uff58.bücher.example",  # fullwidth "mx"
        " Mx.Bücher.Example ",
    ]
    failures = [
        {"result-type": "a", "receiving-mx-hostname": host, "failed-session-count": 1}
        for host in [*written, "192.0.2.1", "Localhost", "(Other Hosts)"]
    ]
    (policy,) = parse_report(json.dumps(report(failures=failures)).encode()).policies
    assert [f.receiving_mx_hostname for f in policy.failures] == [
        *["mx.xn--bcher-kva.example"] * len(written),
        "192.0.2.1",
        "localhost",
        "(other hosts)",  # not a host name: as written, in lower case
    ]


def test_a_report_makes_at_most_a_thousand_international_names_a_labels() -> None:
    # The idna package takes half a millisecond a name: a report of 240 KB naming 80,000
    # such hosts took 46 s to parse, the GIL mostly held.
    written = [f"mx{n}.bücher.example" for n in range(MAX_INTERNATIONAL + 1)]
    failures = [
        {"result-type": "a", "receiving-mx-hostname": host, "failed-session-count": 1}
        for host in [*written, "MX0.Bücher.example", "MX.Example.NET."]
    ]
    document = report(
        failures=failures, extra_policies=[report(domain="bücher.example")["policies"][0]]
    )
    first, second = parse_report(json.dumps(document).encode()).policies
    assert [f.receiving_mx_hostname for f in first.failures] == [
        *[f"mx{n}.xn--bcher-kva.example" for n in range(MAX_INTERNATIONAL)],
        f"mx{MAX_INTERNATIONAL}.bücher.example",  # as written, in lower case
        "mx0.xn--bcher-kva.example",  # one made A-labels already
        "mx.example.net",  # no IDNA needed
    ]
    # The domains have an allowance of their own: the next policy's is still counted.
    assert second.domain == "xn--bcher-kva.example"
