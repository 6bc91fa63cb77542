"""The HTTPS intake through Starlette's TestClient: one behaviour per test."""

from __future__ import annotations

import asyncio
import gc
import gzip
import json
import logging
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from starlette.testclient import TestClient
from starlette.types import Message, Scope

from mtasts_host.app import PolicyApp
from mtasts_host.reports import MAX_WIRE_SIZE, Reports, http, page, service
from mtasts_host.reports.report import MAX_COUNT
from mtasts_host.reports.rows import DAY

from .conftest import (
    NOW,
    REPORTS_HOST,
    TODAY,
    bomb,
    encode,
    fixture,
    flood,
    report,
    reports_app,
)

PATH = "/tlsrpt"


def post(
    client: TestClient, body: bytes, content_type: str = "application/tlsrpt+gzip"
) -> tuple[int, str]:
    response = client.post(PATH, content=body, headers={"content-type": content_type})
    return response.status_code, response.text


def test_stored_then_duplicate(client: TestClient, reports: Reports) -> None:
    body = encode(report(report_id="one"))
    assert post(client, body) == (201, "stored\n")
    assert post(client, body) == (200, "duplicate: this report is stored already\n")
    assert reports.intake.outcomes == {"stored": 1, "duplicate": 1}


@pytest.mark.parametrize(
    ("compress", "content_type"),
    [
        (True, "application/tlsrpt+json"),
        (False, "application/tlsrpt+gzip"),
        (True, "application/octet-stream"),
        (False, "text/plain"),
    ],
)
def test_gzip_or_json_whatever_the_content_type(
    client: TestClient, compress: bool, content_type: str
) -> None:
    assert post(client, encode(report(), compress=compress), content_type)[0] == 201


def test_content_encoding_gzip_over_a_gzip_report(client: TestClient, reports: Reports) -> None:
    # It was a 400, "not JSON: 'utf-8' codec can't decode byte 0x8b".
    body = gzip.compress(encode(report(report_id="twice")), mtime=0)
    headers = {"content-type": "application/tlsrpt+gzip", "content-encoding": "gzip"}
    response = client.post(PATH, content=body, headers=headers)
    assert (response.status_code, response.text) == (201, "stored\n")
    assert reports.store.raw("Google Inc.", "twice") == body


def test_on_every_host_but_the_policy_hosts(reports: Reports) -> None:
    for host in (REPORTS_HOST, "reports.example.org", "10.1.2.3:8080"):
        client = TestClient(reports_app(reports), base_url=f"http://{host}")
        assert post(client, encode(report()))[0] == 201


@pytest.mark.parametrize(
    "host",
    [
        "mta-sts.example.com",
        "MTA-STS.Example.COM.:443",  # the same policy host, as a Host header may name it
        "mta-sts.unknown.test",  # a policy host whose domain is not configured
        "mta-sts.",  # unreadable, but a policy host all the same
    ],
)
def test_a_policy_host_has_no_intake(reports: Reports, host: str) -> None:
    # A policy host serves the policy and nothing else: the intake's path gets what any
    # other path there gets, and nothing is stored.
    client = TestClient(reports_app(reports))
    headers = {"host": host}
    response = client.post(PATH, content=encode(report(report_id="lost")), headers=headers)
    elsewhere = client.post("/elsewhere", content=encode(report()), headers=headers)
    assert response.status_code == 404
    assert (response.headers, response.text) == (elsewhere.headers, elsewhere.text)
    assert client.get(PATH, headers=headers).status_code == 404  # not the intake's 405
    assert reports.intake.outcomes == {}
    assert reports.store.raw("Google Inc.", "lost") is None


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{", "bad report: not JSON: Expecting property name enclosed in double quotes"),
        (fixture("bad/missing-report-id.json"), "bad report: report-id: missing"),
        (fixture("bad/missing-policies.json"), "bad report: policies: missing"),
        (
            fixture("bad/negative-count.json"),
            "bad report: policies[0].summary.total-failure-session-count: expected a "
            "non-negative integer, got -1",
        ),
        (gzip.compress(b"{}")[:-4], "bad report: corrupt gzip: the data ends before the end"),
        (b"\x1f\x8b\x08\x00garbage", "bad report: corrupt gzip:"),
        (b"", "bad report: not JSON: Expecting value"),
    ],
    ids=["json", "report-id", "policies", "negative", "truncated-gzip", "corrupt-gzip", "empty"],
)
def test_bad_reports_get_400_and_one_line(
    client: TestClient, reports: Reports, body: bytes, reason: str
) -> None:
    status, text = post(client, body)
    assert status == 400
    assert text.startswith(reason)
    assert text.count("\n") == 1
    assert reports.intake.outcomes == {"rejected": 1}


def test_a_gzip_bomb_gets_413(client: TestClient, reports: Reports) -> None:
    assert post(client, bomb()) == (
        413,
        "too large: the report decompresses to more than 20 MiB\n",
    )
    assert reports.intake.outcomes == {"rejected": 1}


def test_millions_of_tiny_values_get_413(client: TestClient, reports: Reports) -> None:
    assert post(client, flood("{}")) == (
        413,
        "too large: the report has more than 500,000 JSON values (commas, braces, brackets)\n",
    )
    assert reports.intake.outcomes == {"rejected": 1}


def test_over_a_mebibyte_on_the_wire_gets_413_unread(client: TestClient, reports: Reports) -> None:
    body = encode(report(), compress=False) + b" " * MAX_WIRE_SIZE
    assert post(client, body) == (413, "too large: the report is larger than 1 MiB as sent\n")
    assert reports.intake.outcomes == {"rejected": 1}


def test_over_a_mebibyte_streamed_without_a_length_gets_413(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b" " * 65536

    response = client.post(PATH, content=chunks())
    assert response.status_code == 413


def test_exactly_a_mebibyte_is_read(client: TestClient) -> None:
    text = encode(report(), compress=False)
    body = text + b" " * (MAX_WIRE_SIZE - len(text))
    assert post(client, body)[0] == 201


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "DELETE", "OPTIONS"])
def test_other_methods_get_405(client: TestClient, method: str) -> None:
    response = client.request(method, PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_other_paths_are_not_the_intake(client: TestClient) -> None:
    assert client.post(PATH + "/", content=encode(report())).status_code == 404
    assert client.post("/tlsrpt2", content=encode(report())).status_code == 404


@pytest.mark.parametrize(
    ("root_path", "path"),
    [
        ("/", PATH),  # granian --url-path-prefix /: the path does not repeat the root
        ("/tls", PATH),  # hypercorn --root-path /tls: nor there, and PATH starts with it
        ("/tls", "/tls" + PATH),  # uvicorn --root-path /tls: it does
    ],
)
def test_a_root_path_is_cut_at_a_slash(reports: Reports, root_path: str, path: str) -> None:
    # It was a 404: the root path was cut off wherever the path began with it.
    app = reports_app(reports)
    client = TestClient(app, base_url=f"https://{REPORTS_HOST}", root_path=root_path)
    assert client.post(path, content=encode(report())).status_code == 201


def test_the_path_is_a_setting(make_reports: Callable[..., Reports], sqlite_url: str) -> None:
    reports = make_reports()
    reports.endpoint.path = "/v1/tls"
    client = TestClient(reports_app(reports))
    assert client.post("/v1/tls", content=encode(report())).status_code == 201


def test_store_unavailable_gets_503_then_recovers(
    make_reports: Callable[..., Reports], tmp_path: Path
) -> None:
    reports = make_reports(f"sqlite:///{tmp_path}/later/reports.db")
    assert reports.open() is not None
    client = TestClient(reports_app(reports))
    response = client.post(PATH, content=encode(report(report_id="r")))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "300"
    assert response.text == "the report store is unavailable; try again later\n"
    assert reports.intake.outcomes == {}  # neither stored nor rejected: to be sent again
    (tmp_path / "later").mkdir()
    assert client.post(PATH, content=encode(report(report_id="r"))).status_code == 201
    assert reports.intake.problem is None


def test_never_a_traceback(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    for body in (b"\x00" * 100, b"null", b'{"policies": [1]}', b"[[[[", "ü".encode("latin-1")):
        assert post(client, body)[0] == 400
    assert not [record for record in caplog.records if record.exc_info]


def test_dates_out_of_range_name_the_field_without_a_traceback(
    client: TestClient, reports: Reports, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    document = report()
    document["date-range"]["start-datetime"] = "0001-01-01T00:00:00+01:00"
    assert post(client, encode(document)) == (
        400,
        "bad report: date-range.start-datetime: expected a date-time in the years 1 to 9999 "
        "in UTC, got '0001-01-01T00:00:00+01:00'\n",
    )
    assert reports.intake.outcomes == {"rejected": 1}
    assert not [record for record in caplog.records if record.exc_info]


def test_reports_for_domains_not_configured_are_kept_but_not_counted(
    client: TestClient, reports: Reports
) -> None:
    text = (
        fixture("odd-fields.json")
        .replace(b"2024-05-01", b"2024-05-31")
        .replace(b"2024-05-02", b"2024-06-01")
    )
    assert post(client, text)[0] == 201
    raw = reports.store.raw("Small Sender GmbH", "small-sender-2024-05-31")
    assert raw is not None
    assert b"not-configured.example" in gzip.decompress(raw)
    summaries = reports.summaries()
    assert list(summaries) == ["example.com", "example.net"]
    assert summaries["example.com"].successful_sessions == 7


@pytest.mark.parametrize("field", ["organization-name", "report-id"])
def test_long_identifiers_get_400_from_either_store(
    make_reports: Callable[..., Reports], store_url: str, field: str
) -> None:
    # PostgreSQL indexes no row over 2704 bytes: its error was a 503, and the sender retried.
    client = TestClient(reports_app(make_reports(store_url)), base_url=f"https://{REPORTS_HOST}")
    longest = "".join(f"{n:04x}" for n in range(250))  # 1000 bytes that compress poorly
    assert post(client, encode({**report(), field: longest}))[0] == 201
    status, text = post(client, encode({**report(), field: longest + "x"}))
    assert status == 400
    assert text.endswith(f"{field}: longer than 1000 bytes\n")


def test_a_policy_domain_longer_than_a_dns_name_gets_400(client: TestClient) -> None:
    # No DNS name is longer than 253 characters, and a report is for one policy domain: its
    # counts could be filed under none of ours.
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])
    assert post(client, encode(report(domain=longest)))[0] == 201
    assert post(client, encode(report(domain=f"{longest}.")))[0] == 201  # the root's dot
    status, text = post(client, encode(report(domain=longest + "d")))
    assert status == 400
    assert text == (
        "bad report: policies[0].policy.policy-domain: longer than 253 characters, the most a "
        "DNS name has\n"
    )


def test_host_names_of_18_kb_are_stored_cut_and_counted(
    make_reports: Callable[..., Reports], store_url: str
) -> None:
    # Five reports of this shape, 60 KB of gzip each, took a server from 48 MB to a 387 MB
    # peak serving /reports: the store kept the names whole, and every summary read them.
    reports = make_reports(store_url)
    client = TestClient(reports_app(reports), base_url=f"https://{REPORTS_HOST}")
    for n in range(5):
        failures = [
            {
                "result-type": "certificate-expired",
                "receiving-mx-hostname": f"mx{n}-{i}." + "a" * 18_000,
                "failed-session-count": 1,
            }
            for i in range(100)
        ]
        assert post(client, encode(report(day=TODAY - 1 - n, failed=100, failures=failures))) == (
            201,
            "stored\n",
        )
    with reports.store.transaction() as connection:
        (stored,) = connection.execute("SELECT SUM(LENGTH(mx)) FROM tlsrpt_failures").fetchone()
    assert stored == 5 * 100 * 253
    summary = reports.summaries()["example.com"]
    assert summary.failures_by_type == {"certificate-expired": 500}
    assert max(len(host) for host in summary.failures_by_mx) == 253


OPS = {"host": "10.0.0.7:8080"}  # a probe to the pod address: an operational host


def test_counts_past_64_bits_break_no_page(client: TestClient, reports: Reports) -> None:
    # 1025 policies of the largest count, for a domain nobody configured: their sum passes
    # 2**63, and the store's sums must not fail on it.
    poison = report(organization="P", domain="not-configured.invalid", successful=MAX_COUNT)
    poison["policies"] *= 1025
    assert post(client, encode(poison))[0] == 201
    assert post(client, encode(report(organization="Q")))[0] == 201
    assert client.get("/reports", headers=OPS).status_code == 200
    assert reports.summaries()["example.com"].successful_sessions == 1000
    snapshot = reports.policies.snapshot
    up = [m for m in reports.metrics(snapshot) if m.name == "mtasts_tlsrpt_store_up"]
    assert [sample.value for sample in up[0].samples] == [1]
    assert reports.intake.problem is None


def test_the_page(client: TestClient) -> None:
    post(client, encode(report(organization="<b>Org</b>")))
    # Never on a policy host, where only the policy is served.
    assert client.get("/reports", headers={"host": "mta-sts.example.com"}).status_code == 404
    response = client.get("/reports", headers=OPS)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert (
        response.headers["content-security-policy"]
        == "default-src 'none'; style-src 'unsafe-inline'"
    )
    assert response.headers["x-content-type-options"] == "nosniff"  # as every other answer
    assert "<li>&lt;b&gt;Org&lt;/b&gt;</li>" in response.text
    assert client.post("/reports", headers=OPS).status_code == 405


def test_the_page_is_rendered_off_the_event_loop(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page of many domains takes a while to render: policies must not wait for it.
    on_loop: list[bool] = []
    render = page.page_parts

    def watched(*args: Any, **kwargs: Any) -> list[str]:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return render(*args, **kwargs)

    monkeypatch.setattr(page, "page_parts", watched)
    assert client.get("/reports", headers=OPS).status_code == 200
    assert on_loop == [False]


def test_the_page_is_rendered_without_the_cyclic_collector(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # At 100,000 domains, its full collections in the rendering thread held the GIL, and so
    # the event loop and every policy answer, for up to 280 ms each.
    collecting: list[bool] = []
    render = page.page_parts

    def watched(*args: Any, **kwargs: Any) -> list[str]:
        collecting.append(gc.isenabled())
        return render(*args, **kwargs)

    monkeypatch.setattr(page, "page_parts", watched)
    assert gc.isenabled()
    assert client.get("/reports", headers=OPS).status_code == 200
    assert collecting == [False]
    assert gc.isenabled()


def test_the_page_shows_the_days_of_its_own_date(
    make_reports: Callable[..., Reports],
) -> None:
    # The clock read for the page's date at 23:59:59.5, and again (by a summary read once a
    # worker thread was free) after midnight: the chart ended on a day after the page's date.
    midnight = (TODAY + 1) * DAY
    readings: list[float] = []
    reports = make_reports(clock=lambda: readings.pop(0) if readings else NOW)
    client = TestClient(reports_app(reports), base_url=f"https://{REPORTS_HOST}")
    assert post(client, encode(report()))[0] == 201
    readings += [midnight - 0.5, midnight + 0.5]
    html = client.get("/reports", headers=OPS).text
    assert "MTA-STS sessions as of 2024-06-01 23:59 UTC." in html
    assert "daily sessions of example.com, 2024-05-02 to 2024-06-01'" in html


def test_the_page_is_sent_in_chunks(
    client: TestClient, reports: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page of 20,000 domains with reports is over 100 MB: joined and encoded at once, then
    # written at once, it held the GIL, and so every policy answer, for up to 230 ms.
    post(client, encode(report()))
    post(client, encode(report(organization="Other")))
    monkeypatch.setattr(service, "PAGE_CHUNK", 100)
    generated = datetime.fromtimestamp(NOW, UTC)
    chunks = reports._render(generated)
    assert len(chunks) > 3
    assert all(len(chunk) < 20_000 for chunk in chunks)
    whole = page.render_page(reports.summaries(), generated=generated).encode()
    assert b"".join(chunks) == whole
    response = client.get("/reports", headers=OPS)
    assert response.content == whole
    assert response.headers["content-length"] == str(len(whole))
    assert response.headers["content-type"] == "text/html; charset=utf-8"


def test_the_page_names_a_store_problem(
    make_reports: Callable[..., Reports], tmp_path: Path
) -> None:
    reports = make_reports(f"sqlite:///{tmp_path}/missing/reports.db")
    response = TestClient(reports_app(reports)).get("/reports", headers=OPS)
    assert response.status_code == 503
    assert "Report store unavailable:" in response.text
    assert "unable to open database file" in response.text


def test_readiness(make_reports: Callable[..., Reports], tmp_path: Path) -> None:
    reports = make_reports(f"sqlite:///{tmp_path}/later/reports.db")
    problem = f"{tmp_path}/later/reports.db: unable to open database file"
    assert reports.open() == problem
    assert anyio.run(reports.readiness) == problem
    (tmp_path / "later").mkdir()
    assert anyio.run(reports.readiness) == problem  # the news is fresh: not asked again
    reports.intake.checked_at = 0  # the news is stale
    assert anyio.run(reports.readiness) is None


def test_a_json_report_is_stored_compressed(client: TestClient, reports: Reports) -> None:
    document = report(report_id="plain")
    post(client, json.dumps(document).encode(), "application/tlsrpt+json")
    raw = reports.store.raw("Google Inc.", "plain")
    assert raw is not None
    assert json.loads(gzip.decompress(raw)) == document


def test_a_report_past_the_retention_is_refused(client: TestClient, reports: Reports) -> None:
    status, text = post(client, encode(report(day=TODAY - 500)))
    assert (status, text) == (400, "bad report: the report ended more than 400 days ago\n")
    assert reports.intake.outcomes == {"rejected": 1}


@pytest.mark.parametrize(
    ("day", "status"),
    [(TODAY, 201), (TODAY + 1, 400), (TODAY + 356_000, 400)],
    ids=["ends-in-12-hours", "ends-in-36-hours", "year-2999"],
)
def test_a_report_from_the_future_is_refused_beyond_a_day(
    client: TestClient, reports: Reports, day: int, status: int
) -> None:
    document = report(day=day)
    end = document["date-range"]["end-datetime"]
    expected = f"bad report: the report ends more than a day from now, at {end}\n"
    assert post(client, encode(document)) == (status, "stored\n" if status == 201 else expected)


def test_old_reports_are_pruned_as_reports_come_in(
    make_reports: Callable[..., Reports], sqlite_url: str
) -> None:
    old = make_reports(clock=lambda: NOW - 300 * DAY)
    client = TestClient(reports_app(old))
    assert post(client, encode(report(report_id="old", day=TODAY - 450)))[0] == 201
    later = make_reports()
    assert post(TestClient(reports_app(later)), encode(report(report_id="new")))[0] == 201
    assert later.store.raw("Google Inc.", "old") is None
    assert later.store.raw("Google Inc.", "new") is not None


def _post(length: int) -> Scope:
    """The scope of a report POSTed to the reports host, ``length`` bytes long."""
    return {
        "type": "http",
        "method": "POST",
        "path": PATH,
        "query_string": b"",
        "headers": [(b"host", REPORTS_HOST.encode()), (b"content-length", str(length).encode())],
        "client": ("127.0.0.1", 5000),
    }


def test_a_client_gone_before_the_whole_body_is_no_500_in_the_log(
    reports: Reports, caplog: pytest.LogCaptureFixture
) -> None:
    app = PolicyApp(reports.policies, reports=reports)
    scope = _post(100)
    messages: Iterator[Message] = iter(
        [
            {"type": "http.request", "body": b'{"a":', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[Message] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    with caplog.at_level(logging.INFO, logger="mtasts_host.access"):
        anyio.run(app, scope, receive, send)
    assert sent == []
    (line,) = [r for r in caplog.records if r.name == "mtasts_host.access"]
    assert line.fields["status"] == 499  # type: ignore[attr-defined]


def _slow_request(reports: Reports, sent: list[Message]) -> Callable[[], Coroutine[Any, Any, None]]:
    """A POST of a report whose body never ends, through the real app."""
    scope = _post(1048576)
    first = True

    async def receive() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"x" * 65536, "more_body": True}
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    app = reports_app(reports)

    async def request() -> None:
        await app(scope, receive, send)

    return request


def test_a_body_that_never_ends_gets_408(reports: Reports, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http, "BODY_TIMEOUT", 0.2, raising=False)
    sent: list[Message] = []
    request = _slow_request(reports, sent)

    async def main() -> None:
        with anyio.fail_after(5):
            await request()

    anyio.run(main)
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]


def test_slow_bodies_hold_a_bounded_amount_of_memory(
    reports: Reports, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http, "BODY_TIMEOUT", 1.0, raising=False)
    slow: list[Message] = []
    late: list[Message] = []

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for _ in range(http.MAX_READING):
                tasks.start_soon(_slow_request(reports, slow))
            await anyio.sleep(0.1)
            await _slow_request(reports, late)()
            assert late[0]["status"] == 503  # at once, not after the timeout
            assert slow == []

    anyio.run(main)


def test_bodies_waiting_for_the_parser_hold_a_bounded_amount_of_memory(
    reports: Reports,
) -> None:
    # Read at once, bodies waited for the parser (one report at a time) without a bound: 300
    # of them behind one slow report held 470 MB.
    app = reports_app(reports)
    answers: list[Message] = []
    read = 0

    def request(body: bytes, sent: list[Message]) -> Callable[[], Coroutine[Any, Any, None]]:
        async def receive() -> Message:
            nonlocal read
            read += 1
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            sent.append(message)

        async def call() -> None:
            await app(_post(len(body)), receive, send)

        return call

    late: list[Message] = []

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for n in range(http.MAX_READING):
                tasks.start_soon(request(encode(report(report_id=f"wait{n}")), answers))
            while read < http.MAX_READING:
                await anyio.sleep(0.01)
            await anyio.sleep(0.1)  # each is in a thread, waiting for the parser
            tasks.start_soon(request(encode(report(report_id="late")), late))
            try:
                with anyio.move_on_after(10):  # before: the late one waited for the parser too
                    while not late:
                        await anyio.sleep(0.01)
            finally:
                reports.intake._parsing.release()

    reports.intake._parsing.acquire()  # the parser busy with a slow report
    anyio.run(main)
    assert late[0]["status"] == 503  # at once
    statuses = [m["status"] for m in answers if m["type"] == "http.response.start"]
    assert statuses == [201] * http.MAX_READING
