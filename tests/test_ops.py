"""Operational endpoints: health, readiness, metrics and the TLS allow-list."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from mtasts_host import create_app, ops
from mtasts_host.metrics import collector
from mtasts_host.reload import Reloader

from .conftest import CONFIG_D, WriteConfig
from .reports.conftest import encode, recent, report

if TYPE_CHECKING:
    from _collections_abc import dict_items

OPS = "http://10.0.0.7:8080"  # a probe to the pod address
PATH = "/.well-known/mta-sts.txt"


@pytest.fixture
def app_client(write_config: WriteConfig) -> Iterator[TestClient]:
    app = create_app(write_config(), watch=False)
    with TestClient(app, base_url=OPS) as client:
        yield client


def metric(client: TestClient, name: str, **labels: str) -> float | None:
    text = client.get("/metrics").text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_healthz(app_client: TestClient) -> None:
    response = app_client.get("/healthz")
    assert (response.status_code, response.text) == (200, "ok\n")


def test_readyz_text(app_client: TestClient) -> None:
    response = app_client.get("/readyz")
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[0] == "status: ready"
    assert lines[1].startswith("config: ")
    assert lines[1].endswith("config.yaml")
    assert "domains: 1" in lines
    assert "last_error: -" in lines


def test_readyz_reports_a_rejected_reload(write_config: WriteConfig) -> None:
    path = write_config()
    app = create_app(path, watch=False)
    path.write_text(CONFIG_D.replace("mode: enforce", "mode: enforced"))
    assert Reloader(app.store).reload() is False
    with TestClient(app, base_url=OPS) as client:
        detail = client.get("/readyz?format=json").json()
        assert client.get("/readyz", headers={"accept": "application/json"}).json() == detail
        assert metric(client, "mtasts_reloads_total", outcome="failure") == 1
        assert metric(client, "mtasts_last_reload_failed") == 1
        # still serving the last good policy
        assert client.get(PATH, headers={"host": "mta-sts.example.com"}).status_code == 200
    assert detail["status"] == "ready"
    assert detail["domains"] == 1
    assert detail["reloads_failed"] == 1
    assert detail["last_error"] == (
        f"{path}:3: domains.example.com.mode: expected one of enforce, testing, none, "
        "got 'enforced'"
    )
    assert detail["last_error_at"].endswith("Z")


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/tls-allowed?domain=x"])
def test_ops_endpoints_are_not_on_policy_hosts(app_client: TestClient, path: str) -> None:
    # Nor on names under mta-sts. that cannot be read: not UTF-8, not IDNA, a bad port.
    for host in (
        b"mta-sts.example.com",
        b"mta-sts.unknown.test",
        b"mta-sts.\xff",
        b"mta-sts.ex\xe4mple.com",
        "mta-sts.a\u200db.com".encode(),
        b"mta-sts.example.com:x",
    ):
        response = app_client.get(path, headers={b"host": host})
        assert response.status_code == 404
        assert response.headers["cache-control"] == "no-store"


def test_metrics_count_requests_and_reloads(write_config: WriteConfig) -> None:
    path = write_config(CONFIG_D + "  example.org: {mode: none, mx: mx.example.net}\n")
    app = create_app(path, watch=False)
    with TestClient(app, base_url=OPS) as client:
        response = client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        # Each form of the host is remembered on its own; they count as one domain.
        for host in ["mta-sts.example.com"] * 3 + ["MTA-STS.Example.com:443"]:
            client.get(PATH, headers={"host": host})
        for host in ["mta-sts.a.test", "mta-sts.b.test"]:
            client.get(PATH, headers={"host": host})
        client.get("/nope", headers={"host": "mta-sts.example.com"})
        client.post(PATH, headers={"host": "mta-sts.example.org"})
        count = "mtasts_policy_requests_total"
        assert metric(client, count, domain="example.com", status="200") == 4
        assert metric(client, count, domain="example.com", status="404") == 1
        assert metric(client, count, domain="example.org", status="405") == 1
        assert metric(client, count, domain="_unknown_", status="404") == 2
        assert metric(client, "mtasts_domains") == 2
        served = app.store.lookup("example.com")
        assert served is not None
        ident = served.id
        assert metric(client, "mtasts_policy_info", domain="example.com", id=ident) == 1
        assert metric(client, "mtasts_policy_info", domain="example.org", mode="none") == 1
        assert metric(client, "mtasts_reloads_total", outcome="success") == 0

        loaded = metric(client, "mtasts_config_loaded_timestamp_seconds")
        assert loaded is not None
        path.write_text(CONFIG_D)
        assert Reloader(app.store).reload() is True
        assert metric(client, "mtasts_reloads_total", outcome="success") == 1
        assert metric(client, "mtasts_domains") == 1
        reloaded = metric(client, "mtasts_config_loaded_timestamp_seconds")
        assert reloaded is not None
        assert reloaded >= loaded
        assert metric(client, "mtasts_policy_info", domain="example.org") is None


def _window(start: int, size: int = 20) -> str:
    """A config of ``size`` domains of a rolling window, and one that stays throughout."""
    domains = "".join(f"  d{n}.example: {{}}\n" for n in range(start, start + size))
    head = "defaults: {mode: testing, mx: mx.example.net}\ndomains:\n  stays.example: {}\n"
    return head + domains


def _series(client: TestClient, name: str) -> dict[tuple[str, str], float]:
    text = client.get("/metrics").text
    return {
        (sample.labels["domain"], sample.labels["status"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


@pytest.mark.parametrize("method", ["GET", "POST"])  # the remembered answers, and the others
def test_request_counts_of_removed_domains_go(write_config: WriteConfig, method: str) -> None:
    # A config whose domains come and go, reloaded 30 times: 600 domains served in all, 21
    # at a time. The counters and series of those removed go; those served still
    # count on, never reset.
    path = write_config(_window(0))
    app = create_app(path, watch=False)
    reloader = Reloader(app.store)
    status, unknown = ("200", "404") if method == "GET" else ("405", "405")
    count = "mtasts_policy_requests_total"
    with TestClient(app, base_url=OPS) as client:
        for step in range(30):
            for n in range(step * 20, step * 20 + 20):
                client.request(method, PATH, headers={"host": f"mta-sts.d{n}.example"})
            client.request(method, PATH, headers={"host": "mta-sts.stays.example"})
            client.request(method, PATH, headers={"host": "mta-sts.gone.example"})
            path.write_text(_window(step * 20 + 20))
            assert reloader.reload() is True
            # At the next scrape, before any policy request made the app see the reload.
            series = _series(client, count)
            assert set(series) == {("stays.example", status), ("_unknown_", unknown)}
            assert series[("stays.example", status)] == step + 1
            assert series[("_unknown_", unknown)] == step + 1
        assert len(app.requests) <= 21 + 1
        client.request(method, PATH, headers={"host": "mta-sts.d600.example"})
        assert len(app.requests) == 3
        assert set(_series(client, count)) == {
            ("stays.example", status),
            ("d600.example", status),
            ("_unknown_", unknown),
        }


def test_a_scrape_is_rendered_without_the_cyclic_collector(write_config: WriteConfig) -> None:
    # A series per domain: at 100,000 domains the collector's full collections in the
    # scraping thread held the GIL, and so every policy answer, for 100 to 300 ms each.
    collecting: list[bool] = []

    def watched() -> Iterator[Metric]:
        collecting.append(gc.isenabled())
        yield GaugeMetricFamily("watched", "Whether the collector ran.", value=1)

    app = create_app(write_config(), watch=False)
    assert app.registry is not None
    app.registry.register(collector(watched))
    with TestClient(app, base_url=OPS) as client:
        assert gc.isenabled()
        assert metric(client, "watched") == 1
        assert metric(client, "mtasts_domains") == 1
    assert collecting == [False, False]
    assert gc.isenabled()


def test_readyz_is_rendered_off_the_event_loop(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The doctor's problems at 100,000 domains make it tens of MB: at 10,000 (70,000
    # problems, 11 MB) rendering it on the loop held every policy answer for 250 to 440 ms.
    on_loop: list[bool] = []
    render = ops._readyz_body

    def watched(detail: Mapping[str, object], as_json: bool) -> bytes:
        try:
            asyncio.get_running_loop()
            on_loop.append(True)
        except RuntimeError:
            on_loop.append(False)
        return render(detail, as_json)

    monkeypatch.setattr(ops, "_readyz_body", watched)
    app = create_app(write_config(), watch=False)
    with TestClient(app, base_url=OPS) as client:
        text = client.get("/readyz")
        assert text.headers["content-type"] == "text/plain; charset=utf-8"
        assert "domains: 1\n" in text.text
        answer = client.get("/readyz?format=json")
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["domains"] == 1
    assert on_loop == [False, False]


class _Watched(dict[str, object]):
    """A value in /readyz that notes whether the cyclic collector runs as it is written."""

    collecting: ClassVar[list[bool]] = []

    def items(self) -> dict_items[str, object]:
        self.collecting.append(gc.isenabled())
        return super().items()


def test_readyz_is_rendered_without_the_cyclic_collector(write_config: WriteConfig) -> None:
    app = create_app(write_config(), watch=False)

    async def detail(as_json: bool) -> dict[str, object]:
        return {"watched": _Watched(problems=[])}

    app.details.append(detail)
    _Watched.collecting.clear()
    with TestClient(app, base_url=OPS) as client:
        assert 'watched: {"problems": []}\n' in client.get("/readyz").text
        assert client.get("/readyz?format=json").json()["watched"] == {"problems": []}
    assert _Watched.collecting == [False, False]  # as for a scrape
    assert gc.isenabled()


_MANY = [{"domain": f"d{n}.example", "message": "caf\u00e9 \u202e", "n": n} for n in range(2_345)]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"status": "ready", "doctor": {"problems": _MANY}}, id="a long list"),
        pytest.param({"problems": _MANY[:1_000], "x": [_MANY[:2]]}, id="a list just short"),
        pytest.param({"problems": _MANY[:1_001]}, id="a list just long"),
        pytest.param({"nested": {"problems": [], "n": 1.5, "none": None}}, id="small values"),
        pytest.param({"by": {404: 1, 1.5: 2, True: 3, None: 4}}, id="keys not strings"),
    ],
)
def test_readyz_json_in_pieces_is_the_json_of_the_whole(value: dict[str, object]) -> None:
    compact = "".join(ops._json(value, compact=True))
    assert compact.encode() == JSONResponse(value).body
    assert "".join(ops._json(value, compact=False)) == json.dumps(value)


def test_metrics_can_be_turned_off(write_config: WriteConfig) -> None:
    app = create_app(write_config(), watch=False, metrics=False)
    with TestClient(app, base_url=OPS) as client:
        assert client.get("/metrics").status_code == 404
        assert client.get(PATH, headers={"host": "mta-sts.example.com"}).status_code == 200


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("domain=mta-sts.example.com", 200),
        ("domain=MTA-STS.Example.COM.", 200),  # normalised like the Host header
        # Names as TLS clients send them only (RFC 6066 section 3): Caddy gets its certificate
        # for the name as written, so each of these would have it get one more.
        ("domain=mta-sts.example.com:443", 404),  # a port
        ("domain=mta-sts.example.com:", 404),
        ("domain=mta-sts.ex%EF%BD%81mple.com", 404),  # a fullwidth a: mta-sts.xn--exmple-qx68a.com
        ("domain=mta-sts.example%E3%80%82com", 404),  # an ideographic full stop
        ("domain=example.com", 404),  # the bare domain
        ("domain=mta-sts.sub.example.com", 404),  # a deeper name
        ("domain=www.example.com", 404),
        ("domain=mta-sts.unknown.test", 404),
        ("domain=", 400),
        ("", 400),
    ],
)
def test_tls_allowed(app_client: TestClient, query: str, status: int) -> None:
    assert app_client.get(f"/tls-allowed?{query}").status_code == status


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("mta-sts.xn--bcher-kva.example", 200),  # as TLS clients send it
        ("mta-sts.b%C3%BCcher.example", 404),  # U-labels: no SNI has them (RFC 6066 section 3)
        ("mta-sts.bu%CC%88cher.example", 404),  # decomposed: mta-sts.xn--bucher-kva.example
    ],
)
def test_tls_allowed_for_international_names_in_a_labels_alone(
    write_config: WriteConfig, name: str, status: int
) -> None:
    app = create_app(write_config(CONFIG_D + "  b\u00fccher.example: {mode: none}\n"), watch=False)
    with TestClient(app, base_url=OPS) as client:
        assert client.get(f"/tls-allowed?domain={name}").status_code == status


@pytest.mark.parametrize("reports", [True, False], ids=["reports", "no-reports"])
def test_tls_allowed_for_the_hosts_reports_are_sent_to_if_they_come_here(
    write_config: WriteConfig, tmp_path: Path, reports: bool
) -> None:
    config = CONFIG_D.replace(
        "example.com:",
        "example.com:\n    tlsrpt_rua: ['https://TLSRPT.example.com:443/tlsrpt', "
        "'mailto:tlsrpt@reports.example.net', 'https://reports.example.org/v1/tlsrpt']",
    )
    if reports:
        config += f"reports: {{store: 'sqlite:///{tmp_path / 'reports.db'}'}}\n"
    app = create_app(write_config(config), watch=False)
    with TestClient(app, base_url=OPS) as client:
        for name in ("tlsrpt.example.com", "TLSRPT.example.com."):
            ok = client.get(f"/tls-allowed?domain={name}").status_code == 200
            assert ok is reports, name
        # A mailto: domain, a collector elsewhere (another path), names in no URI.
        for name in ("reports.example.net", "reports.example.org", "example.com", "x.test"):
            assert client.get(f"/tls-allowed?domain={name}").status_code == 404, name


@pytest.mark.parametrize(
    "uri",
    [
        pytest.param("https:///tlsrpt", id="no-host"),  # a slash too many
        pytest.param("https://*.example.com/tlsrpt", id="wildcard"),
    ],
)
def test_tls_allowed_for_no_name_a_report_uri_does_not_name(
    write_config: WriteConfig, tmp_path: Path, uri: str
) -> None:
    config = CONFIG_D.replace("example.com:", f"example.com:\n    tlsrpt_rua: ['{uri}']")
    config += f"reports: {{store: 'sqlite:///{tmp_path / 'reports.db'}'}}\n"
    app = create_app(write_config(config), watch=False)
    with TestClient(app, base_url=OPS) as client:
        for name in (".", "..", "*.example.com"):
            assert client.get(f"/tls-allowed?domain={name}").status_code == 404, name


def fresh_report() -> bytes:
    return encode(report(day=recent(), report_id=f"r{recent()}"))


def test_reports_wired_into_the_app(write_config: WriteConfig, tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'reports.db'}"
    app = create_app(write_config(CONFIG_D + f"reports: {{store: '{store}'}}\n"), watch=False)
    with TestClient(app, base_url=OPS) as client:
        assert client.get("/readyz?format=json").json()["reports_store"] == "ok"
        assert metric(client, "mtasts_tlsrpt_store_up") == 1
        # The intake answers on every host but the policy hosts: on a reports host of its own.
        host = {"host": "tlsrpt.example.com"}
        assert client.post("/tlsrpt", content=fresh_report(), headers=host).status_code == 201
        assert client.post("/tlsrpt", content=fresh_report(), headers=host).status_code == 200
        policy_host = {"host": "mta-sts.example.com"}
        refused = client.post("/tlsrpt", content=fresh_report(), headers=policy_host)
        assert refused.status_code == 404
        assert metric(client, "mtasts_tlsrpt_reports_total", outcome="stored") == 1
        assert client.get("/reports").status_code == 200
        assert client.get("/reports", headers={"host": "mta-sts.example.com"}).status_code == 404


def test_an_unreachable_report_store_leaves_the_policies_served(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'missing' / 'reports.db'}"
    app = create_app(write_config(CONFIG_D + f"reports: {{store: '{store}'}}\n"), watch=False)
    with TestClient(app, base_url=OPS) as client:
        ready = client.get("/readyz?format=json")
        assert ready.status_code == 200
        assert ready.json()["reports_store"].endswith("unable to open database file")
        policy = client.get(PATH, headers={"host": "mta-sts.example.com"})
        assert policy.status_code == 200
        host = {"host": "tlsrpt.example.com"}
        intake = client.post("/tlsrpt", content=fresh_report(), headers=host)
        assert intake.status_code == 503
