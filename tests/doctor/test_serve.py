"""``serve --doctor-interval``: the doctor in the background of a real server."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from mtasts_host import create_app
from mtasts_host.cli import _SERVE, _parser
from mtasts_host.doctor import Background, Check, Finding, Report, Status, command, families
from mtasts_host.doctor import background as background_module
from mtasts_host.options import resolve_all

from ..conftest import CONFIG_D, WriteConfig, wait_until
from ..processes import free_port, running, serve_argv
from ..rawhttp import http_get

OPS = "10.0.0.7"  # any host that is not mta-sts.*


def get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": OPS})
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


def checks(port: int) -> dict[tuple[str, str], float]:
    found = {}
    for family in text_string_to_metric_families(get(port, "/metrics")):
        for sample in family.samples:
            if sample.name == "mtasts_doctor_check":
                found[sample.labels["domain"], sample.labels["check"]] = sample.value
    return found


def test_findings_reach_metrics_and_readyz(write_config: WriteConfig, tmp_path: Path) -> None:
    config = write_config(CONFIG_D)
    port = free_port()
    # Nothing answers DNS there: every run fails its checks, quickly.
    argv = serve_argv(
        config,
        port,
        "--doctor-interval",
        "1s",
        "--resolver",
        "127.0.0.1:9",
        "--doctor-timeout",
        "0.2",
    )
    with running(argv, tmp_path / "serve.log", "127.0.0.1", port) as server:
        wait_until(lambda: checks(port).get(("example.com", "dns-txt")) == 2, timeout=20)
        ready = json.loads(get(port, "/readyz?format=json"))
        assert ready["status"] == "ready"  # a broken world is no reason to stop serving
        assert ready["doctor"]["interval_seconds"] == 1.0
        assert ready["doctor"]["finished_at"] is not None
        assert http_get(port)[0] == 200
        assert "mtasts_doctor_last_run_timestamp_seconds" in get(port, "/metrics")
    assert "Traceback" not in server.output()


def test_options_that_cannot_work_stop_serve(write_config: WriteConfig, tmp_path: Path) -> None:
    argv = serve_argv(
        write_config(CONFIG_D),
        free_port(),
        "--doctor-interval",
        "1m",
        "--ca-file",
        str(tmp_path / "absent.pem"),
    )
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("mtasts-host: error: ")
    assert "Traceback" not in result.stderr


def test_readyz_reads_the_findings_off_the_event_loop(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every problem of every domain: 70,000 at 10,000 domains that all fail, which held every
    # policy answer while /readyz listed them on the loop.
    args = _parser().parse_args(["serve", "--doctor-interval", "1h"])
    args.config = str(write_config(CONFIG_D))
    resolve_all(args, _SERVE, {"MTASTS_HOST_RESOLVER": "127.0.0.1:9"})
    app = create_app(args.config, watch=False)
    background = command.background_for(app, args)
    assert background is not None  # never started: no run, the detail alone
    on_loop: list[bool] = []
    detail = Background.detail

    def watched(self: Background, *, problems: bool = True) -> dict[str, object]:
        on_loop.append(gc.isenabled())  # and without the cyclic collector, as for a scrape
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return detail(self, problems=problems)

    monkeypatch.setattr(Background, "detail", watched)
    with TestClient(app, base_url=f"http://{OPS}") as client:
        ready = client.get("/readyz?format=json").json()
    assert ready["doctor"] == {"interval_seconds": 3600.0, "finished_at": None}
    assert on_loop == [False, False]


@contextlib.contextmanager
def _serving(
    report: Report, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> Iterator[TestClient]:
    """An app of ``serve --doctor-interval 1h`` whose doctor has made a run finding ``report``."""

    async def check(snapshot: object, options: object, pending: object) -> Report:
        return report

    monkeypatch.setattr(background_module, "check", check)
    args = _parser().parse_args(["serve", "--doctor-interval", "1h"])
    args.config = str(write_config(CONFIG_D))
    resolve_all(args, _SERVE, {"MTASTS_HOST_RESOLVER": "127.0.0.1:9"})
    app = create_app(args.config, watch=False)
    background = command.background_for(app, args)
    assert background is not None
    background.start()
    try:
        wait_until(lambda: background.latest is report, timeout=20)
        with TestClient(app, base_url=f"http://{OPS}") as client:
            yield client
    finally:
        background.stop()


def test_readyz_lists_the_problems_in_json_only(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The text is what probes read (the kubelet's, with its 1 s timeout): 400,000 problems
    # at 100,000 domains made it 83 MB, 2.3 s.
    problem = Finding("example.com", Check.DNS_TXT, Status.FAIL, "no v=STSv1 record")
    report = Report({"example.com": (problem,)}, started_at=1.0, finished_at=2.0)
    summaries: list[Report] = []
    summary = Report.summary

    def counted(self: Report) -> dict[str, object]:
        summaries.append(self)
        return summary(self)

    monkeypatch.setattr(Report, "summary", counted)
    with _serving(report, write_config, monkeypatch) as client:
        text = client.get("/readyz").text
        ready = client.get("/readyz?format=json").json()
        assert client.get("/readyz").text == text
    line = next(line for line in text.splitlines() if line.startswith("doctor: "))
    assert json.loads(line.removeprefix("doctor: ")) == {
        "interval_seconds": 3600.0,
        "finished_at": "1970-01-01T00:00:02Z",
        "duration_seconds": 1.0,
        "domains": 1,
        "status": "fail",
        "warnings": 0,
        "failures": 1,
    }
    assert ready["doctor"]["problems"] == [
        {
            "domain": "example.com",
            "check": "dns-txt",
            "status": "fail",
            "message": "no v=STSv1 record",
        }
    ]
    assert summaries == [report]  # once a run, not once a probe


def test_metrics_render_the_findings_once_a_run(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two series per domain and check: 1.4 million at 100,000 domains, which made every
    # scrape 12 s long, past Prometheus's 10 s timeout.
    problem = Finding("example.com", Check.DNS_TXT, Status.FAIL, "no v=STSv1 record")
    report = Report({"example.com": (problem,)}, started_at=1.0, finished_at=2.0)
    rendered: list[Report | None] = []

    def counted(report: Report | None, failed_runs: object = None) -> Iterator[Metric]:
        rendered.append(report)
        return families(report, {})

    monkeypatch.setattr(background_module, "families", counted)
    with _serving(report, write_config, monkeypatch) as client:
        scrapes = [client.get("/metrics").text for _ in range(3)]
    sample = 'mtasts_doctor_check{check="dns-txt",domain="example.com"} 2.0\n'
    assert all(sample in scrape and "mtasts_domains 1.0" in scrape for scrape in scrapes)
    assert rendered == [report]
