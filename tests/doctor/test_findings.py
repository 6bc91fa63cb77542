"""The report: exit code, text and JSON output, and the summary for /readyz."""

from __future__ import annotations

import json

from mtasts_host.doctor import Check, Finding, Report, Status

A, B = "a.example", "b.example"
REPORT = Report(
    {
        A: (
            Finding(A, Check.DNS_TXT, Status.OK, "fine"),
            Finding(A, Check.MX_TLS, Status.WARN, "expires soon"),
        ),
        B: (
            Finding(B, Check.DNS_TXT, Status.FAIL, "no record"),
            Finding(B, Check.DNS_ID, Status.FAIL, "no id"),
            Finding(B, Check.POLICY, Status.OK, "fine"),
        ),
    },
    {"mta-sts.a.example": 1_800_000_000.0},
    started_at=1_700_000_000.0,
    finished_at=1_700_000_002.5,
)


def test_exit_code_is_1_only_when_something_fails() -> None:
    assert REPORT.exit_code() == 1
    assert Report({A: REPORT.domains[A]}).exit_code() == 0
    assert Report({}).exit_code() == 0


def test_text_lists_problems_then_a_summary_per_domain() -> None:
    assert REPORT.to_text() == (
        "a.example: warn: mx-tls: expires soon\n"
        "a.example: 1 ok, 1 warn\n"
        "b.example: fail: dns-txt: no record\n"
        "b.example: fail: dns-id: no id\n"
        "b.example: 1 ok, 2 fail"
    )


def test_json_lists_every_check_that_ran() -> None:
    assert json.loads(REPORT.to_json()) == {
        "domains": {
            A: [
                {"check": "dns-txt", "status": "ok", "message": "fine"},
                {"check": "mx-tls", "status": "warn", "message": "expires soon"},
            ],
            B: [
                {"check": "dns-txt", "status": "fail", "message": "no record"},
                {"check": "dns-id", "status": "fail", "message": "no id"},
                {"check": "policy", "status": "ok", "message": "fine"},
            ],
        }
    }


def test_summary_holds_only_problems() -> None:
    assert REPORT.summary() == {
        "finished_at": "2023-11-14T22:13:22Z",
        "duration_seconds": 2.5,
        "domains": 2,
        "status": "fail",
        "warnings": 1,
        "failures": 2,
        "problems": [
            {"domain": A, "check": "mx-tls", "status": "warn", "message": "expires soon"},
            {"domain": B, "check": "dns-txt", "status": "fail", "message": "no record"},
            {"domain": B, "check": "dns-id", "status": "fail", "message": "no id"},
        ],
    }


def test_levels_are_the_metric_values() -> None:
    assert [status.level for status in Status] == [0, 1, 2]
