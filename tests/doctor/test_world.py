"""The doctor against a real world on loopback: each broken domain yields exactly its checks."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import dns.message
import pytest
import uvloop

from mtasts_host.config import load_config
from mtasts_host.doctor import (
    DoctorError,
    DoctorOptions,
    Report,
    Status,
    check,
    dnsprobe,
    run,
    runner,
    tlsprobe,
)
from mtasts_host.doctor.facts import Authority, Fetch, Names, Session, Txt
from mtasts_host.store import Snapshot, build_snapshot

from ..processes import free_port
from .conftest import World, cyclic_garbage
from .world import DOMAINS, GOOD, SILENT_DNS, SLOW, Domain, config_text


@pytest.fixture(scope="module")
def report(world: World) -> Report:
    return run(world.snapshot, world.options)


@pytest.mark.parametrize("domain", DOMAINS, ids=[domain.name for domain in DOMAINS])
def test_each_world_yields_exactly_its_findings(report: Report, domain: Domain) -> None:
    findings = report.domains[domain.name]
    problems = {f.check.value: f.status.value for f in findings if f.status is not Status.OK}
    assert problems == domain.expect, "\n".join(map(str, findings))


@pytest.mark.parametrize(
    ("domain", "check", "says"),
    [
        ("notxt.test", "dns-txt", "no v=STSv1 TXT record at _mta-sts.notxt.test"),
        ("beside.test", "dns-txt", "beside 'google-site-verification=x1': RFC 8461 section"),
        ("badid.test", "dns-txt", "its id '2024-01-01' is not 1 to 32 letters and digits"),
        ("bom.test", "dns-txt", "senders ignore '\\ufeffv=STSv1; id="),
        ("quoted.test", "dns-txt", "senders ignore '\"v=STSv1; id="),
        ("quoted.test", "dns-txt", "the quotes are part of the value: enter it without them"),
        ("oldid.test", "dns-id", "DNS has id=20240101T000000, but the policy changed since"),
        ("disagree.test", "dns-id", "ns2.test (127.60.0.2) answers 20240101000000, not id="),
        ("nohost.test", "https", "mta-sts.nohost.test has no address"),
        ("expired.test", "https", "(127.60.1.1): the certificate expired 20"),
        ("wrongname.test", "https", "the certificate is not valid for mta-sts.wrongname.test"),
        ("soon.test", "https", "in 5 days: renew it"),
        (
            "middlesoon.test",
            "https",
            "(127.60.1.1): the intermediate certificate 'CN=middle' that it sends expires ",
        ),
        ("redirect.test", "policy", "127.60.1.2: answers 301, a redirect to https://www."),
        ("altered.test", "policy", "line 2 is b'mode: testing\\r\\n', expected b'mode: enf"),
        ("uncovered.test", "mx-coverage", "MX backup.uncovered.test matches no mx pattern"),
        ("unused.test", "mx-coverage", "mx old.unused.test matches no MX of unused.test"),
        (
            "mxexpired.test",
            "mx-tls",
            "mx.mxexpired.test (127.60.2.2): the certificate expired 20",
        ),
        ("mxwrongname.test", "mx-tls", "the certificate is not valid for mx.mxwrongname.test"),
        ("nostarttls.test", "mx-tls", "mx.nostarttls.test (127.60.2.4): does not offer STARTTLS"),
        ("mxsilent.test", "mx-tls", "mx.mxsilent.test (127.60.2.5): no greeting within 3 s"),
        ("notlsrpt.test", "tlsrpt", "publish 'v=TLSRPTv1; rua=mailto:tlsrpt@notlsrpt.test'"),
        ("twotlsrpt.test", "tlsrpt", "2 v=TLSRPTv1 records at _smtp._tls.twotlsrpt.test"),
        ("spacedtlsrpt.test", "tlsrpt", "Postfix's reporter (tlsrpt-reporter) sends no reports"),
    ],
)
def test_messages_say_what_is_wrong(report: Report, domain: str, check: str, says: str) -> None:
    (finding,) = [f for f in report.domains[domain] if f.check.value == check]
    assert says in finding.message


def test_uvloop_gives_the_same_findings(world: World, report: Report) -> None:
    """``serve`` runs on uvloop, which has its own start_tls; the doctor's thread may too."""
    quick = tuple(d.name for d in DOMAINS if d.name != "mxsilent.test")
    options = dataclasses.replace(world.options, domains=quick)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        findings = runner.run(check(world.snapshot, options)).domains
    assert {d: [(f.check, f.status) for f in findings[d]] for d in quick} == {
        d: [(f.check, f.status) for f in report.domains[d]] for d in quick
    }


def test_a_good_world_exits_0(world: World) -> None:
    report = run(world.snapshot, dataclasses.replace(world.options, domains=tuple(GOOD)))
    assert list(report.domains) == GOOD
    assert report.exit_code() == 0


def test_a_broken_world_exits_1(report: Report) -> None:
    assert report.exit_code() == 1


def test_every_check_that_ran_is_listed(report: Report) -> None:
    domains = json.loads(report.to_json())["domains"]
    assert list(domains) == [domain.name for domain in DOMAINS]
    assert [entry["check"] for entry in domains["none.test"]] == ["dns-txt", "dns-id", "policy"]
    assert [entry["status"] for entry in domains["good.test"]] == ["ok"] * 7


def test_certificate_expiries_of_policy_hosts_and_named_mx_hosts(report: Report) -> None:
    certificates = report.certificates
    assert {"mta-sts.good.test", "mx.good.test", "eu.mx.good.test"} <= certificates.keys()
    assert certificates["mta-sts.soon.test"] - time.time() < 5 * 86400
    # The intermediate it sends expires before it: the chain ends with it.
    assert certificates["mta-sts.middlesoon.test"] - time.time() < 5 * 86400
    # Certificates that do not verify have their expiry too, read again without verifying
    # (an expired one had none, and its alert rested on the last value seen, for a week);
    # MX hosts no policy names get no series.
    assert certificates["mta-sts.expired.test"] < time.time()
    assert certificates["mx.mxexpired.test"] < time.time()
    assert certificates["mta-sts.wrongname.test"] > time.time()
    assert "backup.uncovered.test" not in certificates


def test_hosts_that_never_answer_cost_one_timeout(world: World) -> None:
    # One after the other, 50 domains of three silent probes would take 300 s.
    options = dataclasses.replace(world.options, timeout=2.0)
    started = time.monotonic()
    report = run(world.slow, options)
    elapsed = time.monotonic() - started
    assert list(report.domains) == SLOW
    for domain in SLOW:
        problems = {f.check.value for f in report.domains[domain] if f.status is Status.FAIL}
        assert problems == {"https", "policy", "mx-tls"}
    assert elapsed < 4 * options.timeout


def _many(tmp_path: Path, count: int) -> Snapshot:
    """``count`` domains in mode testing."""
    lines = ["defaults:", "  mode: testing", "  mx: [mx.many.test]", "domains:"]
    lines += [f"  d{i}.many.test: {{}}" for i in range(count)]
    (tmp_path / "many.yaml").write_text("\n".join(lines) + "\n")
    return build_snapshot(load_config(tmp_path / "many.yaml"))


def test_a_run_against_a_refusing_resolver_leaves_no_reference_cycles(
    refusing: tuple[str, int], tmp_path: Path
) -> None:
    # Each task of the run, with its result, was in a cycle through the run (10 objects a
    # domain), which the collector freed at once, in a full collection: a stall of serve.
    snapshot = _many(tmp_path, 2000)
    options = DoctorOptions(resolver=refusing, helo="doctor.test", timeout=2.0)
    reports: list[Report] = []
    assert cyclic_garbage(lambda: reports.append(run(snapshot, options))) < 2000
    finding = reports[0].domains["d0.many.test"][0]
    assert finding.message.startswith(
        "could not look up _mta-sts.d0.many.test: the resolver refuses"
    )


def test_a_run_against_a_silent_resolver_leaves_no_reference_cycles(tmp_path: Path) -> None:
    # dnspython's timeouts left about 370 objects a domain in cycles (see test_dnsprobe).
    snapshot = _many(tmp_path, 100)
    options = DoctorOptions(
        resolver=(SILENT_DNS, free_port(SILENT_DNS)), helo="doctor.test", timeout=0.3
    )
    reports: list[Report] = []
    assert cyclic_garbage(lambda: reports.append(run(snapshot, options))) < 100
    finding = reports[0].domains["d0.many.test"][0]
    assert finding.message.endswith("no answer within 0.3 s; check the domain's DNS")


def test_the_policy_url_names_the_port_fetched(report: Report, world: World) -> None:
    # The world's policy hosts listen on a free port, not 443 (--https-port).
    (finding,) = [f for f in report.domains["good.test"] if f.check.value == "policy"]
    assert finding.message.startswith(
        f"https://mta-sts.good.test:{world.options.https_port}/.well-known/mta-sts.txt serves "
    )


def test_a_domain_not_configured_is_an_error(world: World) -> None:
    options = dataclasses.replace(world.options, domains=("unknown.test",))
    with pytest.raises(DoctorError, match=r"^--domain 'unknown\.test': not configured in "):
        run(world.snapshot, options)


def test_domains_are_named_in_any_case(world: World) -> None:
    options = dataclasses.replace(world.options, domains=("GOOD.test.", "split.test"))
    assert list(run(world.snapshot, options).domains) == ["good.test", "split.test"]


# A txt_cname group whose policies differ (hosted1.test and hosted2.test share
# _mta-sts.provider.example). The config changes hosted1.test's policy; the server has not
# loaded it yet, DNS still has the group's old id. Publishing the group's new id now makes
# senders cache hosted1.test's OLD body under it (RFC 8461 section 8.1).
def test_a_group_id_waits_until_every_member_serves_the_config(
    world: World, tmp_path: Path
) -> None:
    changed = config_text(DOMAINS).replace(
        "hosted1.test: {mode: testing,", "hosted1.test: {mode: enforce,"
    )
    path = tmp_path / "config.yaml"
    path.write_text(changed)
    snapshot = build_snapshot(load_config(path))
    options = dataclasses.replace(world.options, domains=("hosted1.test", "hosted2.test"))
    report = run(snapshot, options)
    findings = [
        f
        for d in ("hosted1.test", "hosted2.test")
        for f in report.domains[d]
        if f.check.value == "dns-id"
    ]
    assert len(findings) == 2
    for finding in findings:
        assert finding.status is Status.FAIL
        assert "the new body is served already" not in finding.message, finding
        assert "the TXT changed but the body did not" not in finding.message, finding
        assert "does not serve this config yet" in finding.message, finding


# The same group, its two policies swapped in the config: the set of policies behind the
# shared record is unchanged, but each domain's is not. Senders that cached either one's
# policy must see a new id; until the server serves the config, it must not be published.
def test_a_group_id_changes_when_its_members_swap_policies(world: World, tmp_path: Path) -> None:
    hosted = "{mode: testing, mx: [mx.hosted.test],"
    changed = (
        config_text(DOMAINS)
        .replace(f"hosted2.test: {hosted} max_age: 1209600,", f"hosted2.test: {hosted}")
        .replace(f"hosted1.test: {hosted}", f"hosted1.test: {hosted} max_age: 1209600,")
    )
    path = tmp_path / "config.yaml"
    path.write_text(changed)
    snapshot = build_snapshot(load_config(path))
    assert snapshot.served["hosted1.test"] == world.snapshot.served["hosted2.test"]
    assert snapshot.served["hosted2.test"] == world.snapshot.served["hosted1.test"]
    options = dataclasses.replace(world.options, domains=("hosted1.test", "hosted2.test"))
    report = run(snapshot, options)
    for domain in ("hosted1.test", "hosted2.test"):
        (finding,) = [f for f in report.domains[domain] if f.check.value == "dns-id"]
        assert finding.status is Status.FAIL, finding
        assert "does not serve this config yet" in finding.message, finding


def _held_at_the_end(
    snapshot: Snapshot, options: DoctorOptions, monkeypatch: pytest.MonkeyPatch
) -> Counter[str]:
    """What a run holds once every domain is checked, as its report is made: its probes'
    tasks, what they observed, and the DNS messages its resolver keeps; beyond what the
    process held before it (other tests' fixtures and reports)."""
    kinds = (asyncio.Task, dns.message.Message, Names, Fetch, Session, Txt, Authority)

    def alive() -> Counter[str]:
        gc.collect()
        counted: Counter[str] = Counter()
        for thing in gc.get_objects():
            counted.update(kind.__name__ for kind in kinds if isinstance(thing, kind))
        return counted

    before = alive()
    held: Counter[str] = Counter()

    def report(*args: Any, **kwargs: Any) -> Report:
        held.update(alive() - before)
        return Report(*args, **kwargs)

    monkeypatch.setattr(runner, "Report", report)
    run(snapshot, options)
    return held


@pytest.mark.parametrize("count", [300, 900])
def test_what_a_run_holds_is_bounded_by_what_domains_share(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> None:
    # Every probe's task, its result and every DNS answer (a whole message) were kept for
    # the run: 25 KB a domain, 340 MB at 10,000 domains, 2.6 GB at 100,000.
    options = dataclasses.replace(world.options, helo="doctor.test")
    held = _held_at_the_end(_many(tmp_path, count), options, monkeypatch)
    # The workers, one for each domain checked at once, and the run's own task.
    assert held["Task"] <= options.concurrency + 8, held
    assert held["Names"] + held["Fetch"] + held["Session"] + held["Txt"] < 10, held
    assert held["Message"] <= 1024, held  # the resolver's cache, dnsprobe._CACHED


def test_a_group_shares_its_probes_when_checked_one_domain_at_a_time(
    world: World, report: Report, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each member of a txt_cname group fetches every member's policy and asks the shared
    # record's name servers: done once a run, kept until the last member is checked.
    fetched: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    authorities = dnsprobe.Lookup.authorities

    async def fetch_policy(address: str, host: str, *args: Any) -> Fetch:
        fetched[host] += 1
        return await tlsprobe.fetch_policy(address, host, *args)

    async def ask(self: dnsprobe.Lookup, name: str) -> tuple[Authority, ...]:
        asked[name] += 1
        return await authorities(self, name)

    monkeypatch.setattr(runner, "fetch_policy", fetch_policy)
    monkeypatch.setattr(dnsprobe.Lookup, "authorities", ask)
    group = ("hosted1.test", "hosted2.test", "anchor.test", "joined.test", "good.test")
    options = dataclasses.replace(world.options, domains=group, concurrency=1)
    alone = run(world.snapshot, options)
    assert fetched == {f"mta-sts.{domain}": 1 for domain in group}
    assert asked == {
        "_mta-sts.provider.example": 1,
        "_mta-sts.anchor.test": 1,
        "_mta-sts.good.test": 1,
    }
    assert alone.domains == {domain: report.domains[domain] for domain in group}
