"""The intake itself: what one report may cost before it is parsed, and one parse at a time."""

from __future__ import annotations

import json
import logging
import threading
import time
import tracemalloc

import pytest

from mtasts_host.reports import Intake, Outcome, open_store
from mtasts_host.reports.body import MAX_REPORT_SIZE, MAX_REPORT_VALUES, TooLarge
from mtasts_host.reports.parse import parse_report
from mtasts_host.reports.report import BadReport, Report

from .conftest import NOW, TODAY, encode, flood, report


@pytest.mark.parametrize("shape", ["{}", "[]", '"ab"', "0", "1.5", "policies", "details"])
def test_twenty_mebibytes_of_tiny_values_are_refused_unparsed(sqlite_url: str, shape: str) -> None:
    data = flood(shape)
    intake = Intake(open_store(sqlite_url), 400, clock=lambda: NOW)
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge) as caught:
            intake.accept(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value) == (
        "the report has more than 500,000 JSON values (commas, braces, brackets)"
    )
    assert intake.outcomes == {"rejected": 1}
    # The text, inflated, and a copy: never the half gigabyte of objects.
    assert peak < 3 * MAX_REPORT_SIZE


def padded(zeros: int) -> bytes:
    """A report with an unknown field of ``zeros`` zeros."""
    text = json.dumps(report(report_id=f"padded-{zeros}")).encode()
    return text[:-1] + b', "x": [' + b"0," * (zeros - 1) + b"0]}"


def test_a_report_at_the_limit_of_values_is_stored(sqlite_url: str) -> None:
    text = json.dumps(report(report_id="padded-0")).encode()
    counted = text.count(b",") + text.count(b"{") + text.count(b"[")
    zeros = MAX_REPORT_VALUES - counted - 1  # the "x" member, its [ and the zeros' commas
    intake = Intake(open_store(sqlite_url), 400, clock=lambda: NOW)
    assert intake.accept(padded(zeros))[0] is Outcome.STORED
    with pytest.raises(TooLarge, match=r"^the report has more than 500,000 JSON values"):
        intake.accept(padded(zeros + 1))


def test_one_report_is_parsed_at_a_time(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    inside, most, lock = 0, 0, threading.Lock()

    def slow_parse(text: bytes) -> Report:
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        time.sleep(0.05)  # long enough for the other threads to arrive
        with lock:
            inside -= 1
        return parse_report(text)

    monkeypatch.setattr("mtasts_host.reports.intake.parse_report", slow_parse)
    intake = Intake(open_store(sqlite_url), 400, clock=lambda: NOW)
    start = threading.Barrier(4)

    def send(n: int) -> None:
        start.wait()
        intake.accept(encode(report(report_id=f"r{n}")))

    threads = [threading.Thread(target=send, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert intake.outcomes == {"stored": 4}
    assert most == 1


def test_the_intake_line_names_the_policy_domains(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A report id and an organisation do not say whose report it is: its domains do."""
    caplog.set_level(logging.INFO, logger="mtasts_host.reports.intake")
    intake = Intake(open_store(sqlite_url), 400, clock=lambda: NOW)
    extra = [report(domain=f"d{n}.example")["policies"][0] for n in range(11)]
    # Twelve domains, one of them reported twice: ten named, two counted.
    document = report(report_id="r1", extra_policies=[*extra, extra[0]])
    intake.accept(encode(document))
    intake.accept(encode(document))
    listed = ", ".join(repr(f"d{n}.example") for n in range(9))
    assert [r.getMessage() for r in caplog.records] == [
        f"stored report 'r1' from 'Google Inc.' for 'example.com', {listed} and 2 more",
        f"duplicate report 'r1' from 'Google Inc.' for 'example.com', {listed} and 2 more",
    ]


def test_a_report_refused_for_its_dates_is_named_in_the_log(
    sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Parsed whole, it can say whose report it was; the sender gets the reason alone."""
    intake = Intake(open_store(sqlite_url), 400, clock=lambda: NOW)
    with pytest.raises(BadReport) as caught:
        intake.accept(encode(report(report_id="old", day=TODAY - 500)))
    assert str(caught.value) == "the report ended more than 400 days ago"
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            "rejected a report: report 'old' from 'Google Inc.': the report ended more than "
            "400 days ago",
        )
    ]
