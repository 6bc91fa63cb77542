"""The capability in a real uvicorn: concurrent senders on SQLite, and the page in Chromium."""

from __future__ import annotations

import contextlib
import http.client
import json
import subprocess
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mtasts_host.policy import Mode
from mtasts_host.reports import ReportsSettings, open_store, read_summaries
from mtasts_host.reports.page import render_page
from mtasts_host.reports.rows import FailureTotals, MxTotals, Totals
from mtasts_host.reports.summary import summarize

from ..processes import Process, free_port, need, running, serve_argv
from ..rawhttp import http_get
from .conftest import (
    CONFIG,
    NOW,
    REPORTS_HOST,
    TODAY,
    another_replica_upgrading,
    encode,
    recent,
    report,
    serving,
)

ROOT = Path(__file__).parent.parent.parent
ADDRESS = "127.70.0.1"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextlib.contextmanager
def serving_reports(
    tmp_path: Path, address: str, url: str | None = None
) -> Iterator[tuple[Process, str]]:
    """
    ``mtasts-host serve`` on ``address`` with the tests' domains and a ``reports:`` block
    whose store is ``url``, by default an SQLite file in ``tmp_path``; yields the process
    and the store's URL.
    """
    url = url or f"sqlite:///{tmp_path / 'reports.db'}"
    config = tmp_path / "config.yaml"
    rua = f"defaults: {{tlsrpt_rua: ['https://{REPORTS_HOST}/tlsrpt']}}\n"
    config.write_text(rua + CONFIG + f"reports: {{store: '{url}'}}\n")
    port = free_port(address)
    argv = serve_argv(config, port, "--host", address, "--no-access-log", "--no-watch")
    with running(argv, tmp_path / "server.log", address, port, cwd=ROOT) as process:
        yield process, url
    assert "Traceback" not in process.output()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """``mtasts-host serve`` with the intake and the page, and a SQLite store."""
    with serving_reports(tmp_path, ADDRESS) as (process, url):
        yield process.port, url


def post(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection(ADDRESS, port, timeout=30)
    try:
        connection.request("POST", "/tlsrpt", body, {"Host": REPORTS_HOST, "Content-Type": "x/y"})
        return connection.getresponse().status
    finally:
        connection.close()


def get(port: int, path: str, host: str) -> tuple[int, bytes]:
    return http_get(port, host, path, ADDRESS)


def test_a_replica_starts_while_another_upgrades_the_schema(
    tmp_path: Path, postgres_url: str
) -> None:
    # It served nothing, not even /healthz, for as long as the other replica's upgrade took.
    with (
        another_replica_upgrading(postgres_url),
        serving_reports(tmp_path, ADDRESS, postgres_url) as (process, _),
    ):
        assert get(process.port, "/.well-known/mta-sts.txt", "mta-sts.example.com")[0] == 200
        assert get(process.port, "/healthz", "127.0.0.1") == (200, b"ok\n")
        for _ in range(300):  # until the opening gives up waiting for the lock
            _, body = get(process.port, "/readyz?format=json", "127.0.0.1")
            problem = json.loads(body)["reports_store"]
            if problem != "not checked yet: the store is being opened":
                break
            time.sleep(0.1)
        assert problem == "postgresql: canceling statement due to lock timeout"


def test_concurrent_posts_on_sqlite(server: tuple[int, str]) -> None:
    port, url = server
    day = recent()
    distinct = [
        encode(report(organization=f"org{n % 4}", report_id=f"r{n}", day=day, successful=10))
        for n in range(60)
    ]
    same = encode(report(organization="org0", report_id="resent", day=day, successful=1))
    bodies = distinct + [same] * 12
    statuses: list[int] = []
    lock = threading.Lock()

    def send(chunk: list[bytes]) -> None:
        for body in chunk:
            status = post(port, body)
            with lock:
                statuses.append(status)

    threads = [threading.Thread(target=send, args=(bodies[n::12],)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert Counter(statuses) == {201: 61, 200: 11}
    summary = read_summaries(open_store(url), serving({"example.com": Mode.TESTING}))["example.com"]
    assert summary.reports == 61
    assert summary.successful_sessions == 601


def test_the_page_in_chromium(server: tuple[int, str], tmp_path: Path) -> None:
    chromium = need("chromium", "chromium")
    port, _ = server
    for n in range(30):
        failed = 3 if n % 5 == 0 else 0
        body = report(
            organization=f"org{n % 3}", day=recent() - n, successful=900 + n, failed=failed
        )
        assert post(port, encode(body)) == 201
    evil = report(organization="<img src=x onerror=alert(1)>", day=recent(), domain="example.net")
    assert post(port, encode(evil)) == 201
    page = f"http://{ADDRESS}:{port}/reports"
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(
        [chromium, *flags, "--dump-dom", page],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert dom.count("<section") == 2
    assert dom.count("<svg") == 2
    assert dom.count('<rect class="fail"') == 62  # 31 days, 2 domains
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom
    assert "<img" not in dom
    assert "<h2>example.com</h2>" in dom
    assert "not-ready" in dom
    screenshot = tmp_path / "reports.png"
    subprocess.run(
        [chromium, *flags, f"--screenshot={screenshot}", "--window-size=1000,1600", page],
        capture_output=True,
        timeout=60,
        check=True,
    )
    assert screenshot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert screenshot.stat().st_size > 10_000


def test_a_value_draws_nothing_outside_its_cell(tmp_path: Path) -> None:
    # A letter under 255 combining marks drew a line up the page, across the chart and the
    # rows above: the page must look the same as with the letter alone down to the value.
    chromium = need("chromium", "chromium")
    flags = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    shots = []
    for n, value in enumerate(["a", "a\u0336" + "\u030d" * 254]):
        totals = [Totals("example.com", "sts", value, TODAY - 1, 1, 100, 3)]
        failures = [FailureTotals("example.com", "sts", TODAY - 1, "certificate-expired", 3)]
        summaries = summarize(
            serving({"example.com": Mode.TESTING}),
            totals,
            failures,
            [MxTotals("example.com", value, 3)],
            today=TODAY,
        )
        page = tmp_path / f"{n}.html"
        page.write_text(render_page(summaries, generated=datetime.fromtimestamp(NOW, UTC)))
        shot = tmp_path / f"{n}.png"
        subprocess.run(
            [chromium, *flags, f"--screenshot={shot}", "--window-size=800,1200", page.as_uri()],
            capture_output=True,
            timeout=60,
            check=True,
        )
        shots.append(_rows(shot.read_bytes()))
    first = next(n for n, (plain, marked) in enumerate(zip(*shots, strict=True)) if plain != marked)
    assert first > 600  # the MX host's row, below the chart (it was the first row of pixels)


def _rows(png: bytes) -> list[bytes]:
    """
    The rows of pixels of an 8-bit RGB or RGBA PNG, as filtered: two images from one encoder
    agree down to a row exactly when these do.
    """
    data, at, width, size = b"", 8, 0, 0
    while at < len(png):
        length, kind = int.from_bytes(png[at : at + 4]), png[at + 4 : at + 8]
        body = png[at + 8 : at + 8 + length]
        if kind == b"IHDR":
            width, size = int.from_bytes(body[:4]), {(8, 2): 3, (8, 6): 4}[body[8], body[9]]
        elif kind == b"IDAT":
            data += body
        at += 12 + length
    pixels = zlib.decompress(data)
    step = 1 + width * size
    return [pixels[n : n + step] for n in range(0, len(pixels), step)]


def test_settings_default_path() -> None:
    assert ReportsSettings("sqlite:///x.db").path == "/tlsrpt"
