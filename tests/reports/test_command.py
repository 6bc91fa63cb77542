"""``mtasts-host reports`` and ``reports ingest`` as the CLI calls them."""

from __future__ import annotations

import io
import json
import random
import re
import tracemalloc
from collections.abc import Mapping
from pathlib import Path

import pytest

from mtasts_host.cli import main
from mtasts_host.policy import Mode, Policy
from mtasts_host.reports import ReportsSettings, ingest_command, open_store, schema, summary_command
from mtasts_host.reports.command import EX_UNAVAILABLE, MAX_DAYS
from mtasts_host.reports.rows import DAY

from .conftest import OLDER_POLICY, against, at_backup, encode, recent, report, serving
from .flood import flood, name

README = Path(__file__).parents[2] / "README.md"
POLICIES = serving({"example.com": Mode.TESTING, "example.net": Mode.ENFORCE})


def summary(
    url: str, policies: Mapping[str, Policy] = POLICIES, **options: object
) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = summary_command(ReportsSettings(url), policies, out=out, err=err, **options)  # type: ignore[arg-type]
    return status, out.getvalue(), err.getvalue()


def ingest(url: str, documents: list[dict[str, object]], tmp_path: Path) -> int:
    paths = []
    for n, document in enumerate(documents):
        path = tmp_path / f"{n}.json.gz"
        path.write_bytes(encode(document))
        paths.append(str(path))
    return ingest_command(ReportsSettings(url), files=paths, stdin=io.BytesIO(), log=io.StringIO())


def test_text_and_json(sqlite_url: str, tmp_path: Path) -> None:
    day = recent()
    documents = [
        report(organization="A", day=day, successful=5000, failed=1),
        report(organization="B\x1b[31m", day=day - 1, successful=5000),
        report(organization="A", day=day, domain="example.net", successful=10, failed=2),
    ]
    assert ingest(sqlite_url, documents, tmp_path) == 0
    status, out, _ = summary(sqlite_url)
    assert status == 1  # example.net is failing
    assert out == (
        "example.com (testing): ready\n"
        "  10001 sessions from 2 organizations in the last 14 days, 1 failed (0.010%)\n"
        "  last 30 days: 2 reports from 2 organizations (A, B\\x1b[31m)\n"
        "  sessions: 10000 successful, 1 failed\n"
        "  failures by type: certificate-expired 1\n"
        "  failures by MX: mail.example.com 1\n"
        "example.net (enforce): failing\n"
        "  2 failed sessions in the last 14 days, most often certificate-expired\n"
        "  last 30 days: 1 report from 1 organization (A)\n"
        "  sessions: 10 successful, 2 failed\n"
        "  failures by type: certificate-expired 2\n"
        "  failures by MX: mail.example.net 2\n"
    )
    status, out, _ = summary(sqlite_url, format="json", domain="Example.NET")
    assert json.loads(out) == {
        "domains": {
            "example.net": {
                "mode": "enforce",
                "reports": 1,
                "organizations": ["A"],
                "successful_sessions": 10,
                "failed_sessions": 2,
                "failures_by_type": {"certificate-expired": 2},
                "failures_by_mx": {"mail.example.net": 2},
                "verdict": "failing",
                "verdict_reason": (
                    "2 failed sessions in the last 14 days, most often certificate-expired"
                ),
                "older_policy": {"reports": 0, "successful_sessions": 0, "failed_sessions": 0},
                "other_policies": {},
            }
        }
    }


def test_what_senders_wrote_passes_for_nothing_else(sqlite_url: str, tmp_path: Path) -> None:
    # A host "mail.example.com 999, other.example.com" added a count of 999 to the line, and
    # a variation selector or a Hangul filler showed nothing.
    failures = [
        {
            "result-type": "certificate-expired",
            "receiving-mx-hostname": mx,
            "failed-session-count": 1,
        }
        for mx in ("mail.example.com 999, other.example.com", "mx\u3164")
    ]
    documents = [
        report(organization="Google Inc.\ufe0f", day=recent(), failed=2, failures=failures)
    ]
    assert ingest(sqlite_url, documents, tmp_path) == 0
    _, out, _ = summary(sqlite_url, domain="example.com")
    assert "1 report from 1 organization (Google Inc.\\ufe0f)\n" in out
    assert '  failures by MX: "mail.example.com 999, other.example.com" 1, mx\\u3164 1\n' in out


def test_an_organization_passes_for_one(sqlite_url: str, tmp_path: Path) -> None:
    # Listed after a comma each, "Google Inc., Microsoft Corporation" read as two.
    documents = [report(organization="Google Inc., Microsoft Corporation (MS)", day=recent())]
    assert ingest(sqlite_url, documents, tmp_path) == 0
    _, out, _ = summary(sqlite_url, domain="example.com")
    assert '1 organization ("Google Inc., Microsoft Corporation (MS)")\n' in out


def test_days(sqlite_url: str, tmp_path: Path) -> None:
    ingest(sqlite_url, [report(day=recent() - 10), report(day=recent() - 2)], tmp_path)
    _, out, _ = summary(sqlite_url, format="json", days=5)
    assert json.loads(out)["domains"]["example.com"]["reports"] == 1


def test_the_longest_period_holds_no_chart(sqlite_url: str, tmp_path: Path) -> None:
    # The text and JSON show no chart, yet a day of one was made for each domain with
    # reports: --days 36500 took 1.2 GB and 13 s for 300 such domains.
    modes = {f"d{n}.example": Mode.TESTING for n in range(20)}
    assert (
        ingest(sqlite_url, [report(domain=domain, day=recent()) for domain in modes], tmp_path) == 0
    )
    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    try:
        status = summary_command(
            ReportsSettings(sqlite_url),
            serving(modes),
            out=out,
            err=err,
            days=MAX_DAYS,
            format="json",
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (status, err.getvalue()) == (0, "")
    assert len(json.loads(out.getvalue())["domains"]) == 20
    assert peak < 10 * 2**20


def test_one_report_of_other_policies_is_one_report(sqlite_url: str, tmp_path: Path) -> None:
    ingest(sqlite_url, [report(day=recent(), policy_type="tlsa")], tmp_path)
    _, out, _ = summary(sqlite_url, domain="example.com")
    assert out.splitlines()[-1] == (
        "  tlsa policies (not counted): 1 report, 1000 successful, 0 failed"
    )


def test_the_status_says_whether_a_domain_is_failing(sqlite_url: str, tmp_path: Path) -> None:
    documents = [report(day=recent(), domain="example.net", successful=10, failed=1)]
    assert ingest(sqlite_url, documents, tmp_path) == 0
    assert summary(sqlite_url)[0] == 1
    assert summary(sqlite_url, domain="example.com")[0] == 0  # testing: not-ready is no failure
    assert summary(sqlite_url, domain="example.net", format="json")[0] == 1


def test_a_domain_that_is_not_configured(sqlite_url: str) -> None:
    assert summary(sqlite_url, domain="other.example") == (
        2,
        "",
        "mtasts-host: error: --domain 'other.example': not configured\n",
    )


def test_a_store_that_is_not_there_is_not_made_by_reading_it(tmp_path: Path) -> None:
    # A mistyped path made an empty store, and every enforce domain read "ok: no reports".
    path = tmp_path / "reprots.db"
    status, out, err = summary(f"sqlite:///{path}")
    assert (status, out, path.exists()) == (EX_UNAVAILABLE, "", False)
    assert err == (
        f"mtasts-host: report store unavailable: {path}: no such file "
        "(no report was ever stored there)\n"
    )


def test_store_unavailable(tmp_path: Path) -> None:
    status, out, err = summary(f"sqlite:///{tmp_path}/missing/reports.db")
    assert (status, out) == (EX_UNAVAILABLE, "")
    assert err.startswith("mtasts-host: report store unavailable: ")


def test_a_thousand_reports_in_one_run(sqlite_url: str, tmp_path: Path) -> None:
    rng = random.Random(8460)
    documents = []
    reports = successful = failed_sessions = 0
    by_type: dict[str, int] = {}
    organizations = set()
    today = recent() + 1
    for n in range(1000):
        organization = f"org{n % 7}"
        ok, failed = rng.randrange(0, 10_000), rng.randrange(0, 3)
        kind = rng.choice(["certificate-expired", "starttls-not-supported", "sts-policy-invalid"])
        day = today - rng.randrange(1, 40)
        documents.append(
            report(
                organization=organization,
                report_id=f"r{n}",
                day=day,
                successful=ok,
                failed=failed,
                failures=[{"result-type": kind, "failed-session-count": failed}],
                extra_policies=[  # the same sessions under DANE: never counted
                    {
                        "policy": {"policy-type": "tlsa", "policy-domain": "example.com"},
                        "summary": {
                            "total-successful-session-count": ok,
                            "total-failure-session-count": failed,
                        },
                    }
                ],
            )
        )
        if day >= today - 30:
            reports, successful, failed_sessions = (
                reports + 1,
                successful + ok,
                failed_sessions + failed,
            )
            organizations.add(organization)
            if failed:
                by_type[kind] = by_type.get(kind, 0) + failed
    documents += documents[:10]  # resent: duplicates
    assert ingest(sqlite_url, documents, tmp_path) == 0
    _, out, _ = summary(sqlite_url, format="json", now=today * DAY + 3600)
    result = json.loads(out)["domains"]["example.com"]
    assert result["reports"] == reports
    assert result["successful_sessions"] == successful
    assert result["failed_sessions"] == failed_sessions
    assert result["failures_by_type"] == dict(
        sorted(by_type.items(), key=lambda item: (-item[1], item[0]))
    )
    assert result["organizations"] == sorted(organizations)
    assert result["other_policies"]["tlsa"]["successful_sessions"] == successful


@pytest.mark.parametrize("url", ["mysql://nope"])
def test_a_url_for_no_store(url: str) -> None:
    log = io.StringIO()
    assert ingest_command(ReportsSettings(url), stdin=io.BytesIO(b""), log=log) == 75
    assert log.getvalue().startswith("mtasts-host: expected a sqlite:/// or postgresql:// URL")


def test_the_hosts_beyond_the_top_20_are_summed(sqlite_url: str, tmp_path: Path) -> None:
    # Five reports naming 1000 hosts each printed 5000 host names, 1.3 MB.
    assert ingest(sqlite_url, [flood(n, 1000, recent()) for n in range(5)], tmp_path) == 0
    status, out, _ = summary(sqlite_url, domain="example.com")
    assert status == 0
    assert len(out) < 10_000
    (line,) = [line for line in out.splitlines() if line.startswith("  failures by MX: ")]
    hosts = ", ".join(f"{name(f'mx0-{i}')} 1" for i in sorted(range(1000), key=str)[:20])
    assert line == f"  failures by MX: (other hosts) 4980, {hosts}"


@pytest.mark.parametrize("option", ["--days", "--window-days"])
def test_days_beyond_a_century_are_a_usage_error(
    option: str, sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # --days 999999999 built a chart of a billion days until memory ran out: a MemoryError.
    config = tmp_path / "config.yaml"
    config.write_text(
        "domains:\n  example.com: {mode: testing, mx: [mail.example.com]}\n"
        f"reports:\n  store: {sqlite_url}\n"
    )
    open_store(sqlite_url).upgrade()
    assert main(["reports", "--config", str(config), option, "36500"]) == 0
    capsys.readouterr()
    assert main(["reports", "--config", str(config), option, "36501"]) == 2
    assert capsys.readouterr() == (
        "",
        f"mtasts-host: error: argument {option}: expected a number of days from 1 to 36500, "
        "got '36501'\n",
    )


def test_the_command_the_readme_gives_the_owner_of_a_postgresql_store(
    postgres_url: str, tmp_path: Path
) -> None:
    # Once the owner has made the tables, a role that may only read and write them is enough,
    # the README says; the command it gave the owner, `reports summary`, was no command.
    given = re.search(r"have their owner run `(?:mtasts-host )?([^`]*)`", README.read_text())
    assert given is not None
    config = tmp_path / "config.yaml"
    config.write_text(
        "domains:\n  example.com: {mode: testing, mx: [mail.example.com]}\n"
        f"reports:\n  store: {json.dumps(postgres_url)}\n"
    )
    assert open_store(postgres_url).version() == 0
    assert main([*given[1].split(), "--config", str(config)]) == 0
    assert open_store(postgres_url).version() == schema.LATEST


def test_failures_at_a_host_dropped_from_the_mx_no_longer_hold_the_verdict(
    sqlite_url: str, tmp_path: Path
) -> None:
    day = recent()
    documents = [
        # Before backup.example.com was dropped: its certificate failed.
        against(
            report(
                organization="A", day=day - 3, successful=900, failed=100, failures=at_backup(100)
            ),
            OLDER_POLICY,
        ),
        # Since: the same mx, another mode and max_age (what enforce will change), counted.
        against(
            report(organization="A", day=day, successful=5000),
            ["version: STSv1", "mode: enforce", "mx: Mail.Example.com.", "max_age: 86400"],
        ),
        against(report(organization="B", day=day, successful=5000), None),  # no policy-string
    ]
    assert ingest(sqlite_url, documents, tmp_path) == 0
    status, out, _ = summary(sqlite_url, domain="example.com")
    assert (status, out) == (
        0,
        "example.com (testing): ready\n"
        "  10000 sessions from 2 organizations in the last 14 days, 0 failed (0.000%);"
        " not counted: 1000 sessions from 1 report against an older policy (other mx)\n"
        "  last 30 days: 2 reports from 2 organizations (A, B)\n"
        "  sessions: 10000 successful, 0 failed\n"
        "  older policy (other mx, not counted): 1 report, 900 successful, 100 failed\n",
    )
    _, out, _ = summary(sqlite_url, domain="example.com", format="json")
    domain = json.loads(out)["domains"]["example.com"]
    assert (domain["verdict"], domain["failures_by_type"], domain["failures_by_mx"]) == (
        "ready",
        {},
        {},
    )
    assert domain["older_policy"] == {
        "reports": 1,
        "successful_sessions": 900,
        "failed_sessions": 100,
    }
    # While the older policy is the one served, they count, and the newer A's do not.
    older = {"example.com": Policy(Mode.TESTING, ("mail.example.com", "backup.example.com"))}
    _, out, _ = summary(sqlite_url, older, domain="example.com")
    assert out.startswith("example.com (testing): not-ready\n  100 of 6000 sessions failed")
