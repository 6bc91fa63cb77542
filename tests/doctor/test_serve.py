"""``serve --doctor-interval``: the doctor in the background of a real server."""

from __future__ import annotations

import asyncio
import gc
import http.client
import json
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from mtasts_host import create_app
from mtasts_host.cli import _SERVE, _parser
from mtasts_host.doctor import Background, command
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

    def watched(self: Background) -> dict[str, object]:
        on_loop.append(gc.isenabled())  # and without the cyclic collector, as for a scrape
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return detail(self)

    monkeypatch.setattr(Background, "detail", watched)
    with TestClient(app, base_url=f"http://{OPS}") as client:
        ready = client.get("/readyz?format=json").json()
    assert ready["doctor"] == {"interval_seconds": 3600.0, "finished_at": None}
    assert on_loop == [False, False]
