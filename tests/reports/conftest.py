"""Reports, stores and a real PostgreSQL server for the reports tests."""

from __future__ import annotations

import contextlib
import copy
import functools
import gzip
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psycopg
import pytest
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from mtasts_host.app import PolicyApp
from mtasts_host.config import parse_config
from mtasts_host.policy import Mode, Policy
from mtasts_host.reports import MAX_REPORT_SIZE, Reports, ReportsSettings, postgres
from mtasts_host.reports.rows import DAY, FailureTotals, Totals
from mtasts_host.reports.store import ReportStore, StoreUnavailable, open_store
from mtasts_host.store import PolicyStore

from ..processes import missing

T = TypeVar("T")
FIXTURES = Path(__file__).parent / "fixtures"
NOW = 1_717_243_200.0
"""2024-06-01T12:00:00Z: the tests' clock, where one is injected."""
TODAY = int(NOW // DAY)

MakeReport = Callable[..., dict[str, Any]]


def recent() -> int:
    """Yesterday by the real clock, for what runs without the tests' clock."""
    return int(time.time() // DAY) - 1


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def day_iso(day: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(day * DAY))


def report(
    *,
    organization: str = "Google Inc.",
    report_id: str | None = None,
    day: int = TODAY - 1,
    domain: str = "example.com",
    successful: int = 1000,
    failed: int = 0,
    failures: list[dict[str, Any]] | None = None,
    policy_type: str = "sts",
    extra_policies: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A well-formed report for one day and one policy, in the shape real senders send."""
    details = failures
    if details is None and failed:
        details = [
            {
                "result-type": "certificate-expired",
                "receiving-mx-hostname": f"mail.{domain}",
                "failed-session-count": failed,
            }
        ]
    return {
        "organization-name": organization,
        "date-range": {"start-datetime": day_iso(day), "end-datetime": day_iso(day + 1)},
        "contact-info": "smtp-tls-reporting@sender.example",
        "report-id": report_id or f"{organization}-{domain}-{day}-{uuid.uuid4().hex[:8]}",
        "policies": [
            {
                "policy": {
                    "policy-type": policy_type,
                    "policy-string": ["version: STSv1", "mode: testing", f"mx: mail.{domain}"],
                    "policy-domain": domain,
                    "mx-host": [f"mail.{domain}"],
                },
                "summary": {
                    "total-successful-session-count": successful,
                    "total-failure-session-count": failed,
                },
                "failure-details": details or [],
            },
            *copy.deepcopy(extra_policies or []),
        ],
    }


def serving(modes: Mapping[str, Mode]) -> dict[str, Policy]:
    """The policies of these domains, each with the one ``mx`` that ``report`` reports."""
    return {domain: Policy(mode, (f"mail.{domain}",)) for domain, mode in modes.items()}


def sts(organization: str, day: int = TODAY - 1, ok: int = 1000, failed: int = 0) -> Totals:
    """One report's STS sessions of example.com from ``organization``, as the store sums them."""
    return Totals("example.com", "sts", organization, day, 1, ok, failed)


def failure(kind: str, sessions: int, day: int = TODAY - 1) -> FailureTotals:
    """Failed STS sessions of example.com of one result type on one day."""
    return FailureTotals("example.com", "sts", day, kind, sessions)


OLDER_POLICY = ["version: STSv1", "mode: testing", "mx: mail.example.com", "mx: backup.example.com"]
"""The policy of example.com before backup.example.com was dropped from its mx."""


def against(document: dict[str, Any], policy_string: list[str] | None) -> dict[str, Any]:
    """``document`` reported against the policy of these lines (None: no policy-string)."""
    policy = document["policies"][0]["policy"]
    if policy_string is None:
        del policy["policy-string"]
    else:
        policy["policy-string"] = policy_string
    return document


def at_backup(sessions: int) -> list[dict[str, Any]]:
    """Failure details of certificate failures at the host the older policy still named."""
    return [
        {
            "result-type": "certificate-host-mismatch",
            "receiving-mx-hostname": "backup.example.com",
            "failed-session-count": sessions,
        }
    ]


def encode(document: dict[str, Any], *, compress: bool = True) -> bytes:
    text = json.dumps(document).encode()
    return gzip.compress(text, mtime=0) if compress else text


@functools.cache
def bomb() -> bytes:
    """A gzip bomb: 512 MiB of zeros in about 520 KiB, under the 1 MiB allowed on the wire."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = bytes(1 << 20)
    return b"".join(compressor.compress(block) for _ in range(512)) + compressor.flush()


POLICY = (
    b'{"policy":{"policy-type":"sts","policy-domain":"example.com"},'
    b'"summary":{"total-successful-session-count":1,"total-failure-session-count":0}}'
)
DETAIL = b'{"result-type":"a","failed-session-count":1}'


@functools.cache
def flood(shape: str) -> bytes:
    """
    A report of nearly 20 MiB, in a few dozen KiB of gzip, of tiny values: ``policies``,
    failure ``details``, or else the JSON value ``shape`` in an array in an unknown field.
    """
    item = {"policies": POLICY, "details": DETAIL}.get(shape, shape.encode())
    text = json.dumps(report()).encode()
    count = (MAX_REPORT_SIZE - len(text)) // (len(item) + 1) - 10
    items = (item + b",") * count  # not b",".join: it takes a buffer per item
    if shape == "policies":
        text = text.replace(b'"policies": [', b'"policies": [' + items, 1)
    elif shape == "details":
        text = text.replace(b'"failure-details": [', b'"failure-details": [' + items[:-1], 1)
    else:
        text = text[:-1] + b', "x": [' + items[:-1] + b"]}"
    return gzip.compress(text, mtime=0)


# -- stores --------------------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """
    A real PostgreSQL server for the session, on a Unix socket only (no port to collide
    on), trusting local connections; stopped at the end. Returns the URL of its ``postgres``
    database. It runs as the ``postgres`` user when we are root, since initdb refuses root.
    """
    binaries = _postgres_bin()
    if binaries is None:
        missing("PostgreSQL", "postgresql")
    base = Path(tempfile.mkdtemp(prefix="mtasts-reports-pg-"))
    data, sockets = base / "data", base / "sockets"
    sockets.mkdir()
    as_user: dict[str, Any] = {}
    if os.geteuid() == 0:
        for path in (base, sockets):
            shutil.chown(path, "postgres", "postgres")
        # The server itself as our child, not under runuser: it gets our signals directly.
        as_user = {"user": "postgres", "group": "postgres", "extra_groups": []}
    subprocess.run(
        [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
        timeout=120,
        **as_user,
    )
    log = (base / "postgres.log").open("wb")
    server = subprocess.Popen(
        [
            str(binaries / "postgres"),
            "-D",
            str(data),
            "-k",
            str(sockets),
            "-c",
            "listen_addresses=",
            "-c",
            "fsync=off",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        **as_user,
    )
    url = f"postgresql://postgres@/postgres?host={sockets}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((base / "postgres.log").read_text()) from None
                time.sleep(0.1)
        yield url
    finally:
        server.send_signal(signal.SIGINT)  # "fast" shutdown: do not wait for clients
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def another_replica_pruning(url: str) -> Iterator[None]:
    """Another replica sharing the PostgreSQL store at ``url`` is in the middle of a prune
    (of a large backlog, say): it holds the prune lock until the block ends."""
    with psycopg.connect(url) as connection:
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (postgres._PRUNE_LOCK,))
        yield


@contextlib.contextmanager
def another_replica_upgrading(url: str) -> Iterator[None]:
    """Another replica sharing the PostgreSQL store at ``url`` is in the middle of a schema
    upgrade (of a large store, say): it holds the schema lock until the block ends."""
    with psycopg.connect(url) as connection:
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (postgres._SCHEMA_LOCK,))
        yield


@contextlib.contextmanager
def table_locked(url: str, table: str) -> Iterator[None]:
    """A table of the PostgreSQL store at ``url`` locked against everyone else, reading
    included (as ``ALTER TABLE`` or ``VACUUM FULL`` lock it), until the block ends."""
    with psycopg.connect(url) as connection:
        connection.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")  # a name of ours
        yield


def unavailable(call: Callable[[], object]) -> str:
    """Why ``call`` found the store unavailable (it must)."""
    try:
        call()
    except StoreUnavailable as exc:
        return str(exc)
    raise AssertionError("the store was available")


def within(seconds: float, call: Callable[[], T]) -> list[T]:
    """``[call()]`` if it returns within ``seconds``; ``[]`` if it is still waiting then."""
    results: list[T] = []
    thread = threading.Thread(target=lambda: results.append(call()), daemon=True)
    thread.start()
    thread.join(seconds)
    return results


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")  # a name of ours, not input
    return postgres_server.replace("/postgres?", f"/{name}?")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'reports.db'}"


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest) -> str:
    """Each store test runs against SQLite and a real PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def store(store_url: str) -> ReportStore:
    return open_store(store_url)


# -- the capability in an app ----------------------------------------------------------------

CONFIG = """\
domains:
  example.com: {mode: testing, mx: [mail.example.com]}
  example.net: {mode: enforce, mx: [mail.example.net]}
"""


def policies(text: str = CONFIG) -> PolicyStore:
    return PolicyStore(parse_config(text.encode()))


def reports_app(reports: Reports) -> ASGIApp:
    """The real app serving the configured policies with ``reports`` wired in."""
    return PolicyApp(reports.policies, reports=reports, access_log=False)


@pytest.fixture
def make_reports(sqlite_url: str) -> Callable[..., Reports]:
    def make(url: str = sqlite_url, **kwargs: Any) -> Reports:
        kwargs.setdefault("clock", lambda: NOW)
        return Reports(ReportsSettings(url), policies(), **kwargs)

    return make


@pytest.fixture
def reports(make_reports: Callable[..., Reports]) -> Reports:
    return make_reports()


REPORTS_HOST = "tlsrpt.example.com"
"""The intake's own host name: a policy host serves the policy and nothing else."""


@pytest.fixture
def client(reports: Reports) -> TestClient:
    """A client of the intake and the page, sending ``Host: tlsrpt.example.com``."""
    return TestClient(reports_app(reports), base_url=f"https://{REPORTS_HOST}")
