"""
HTTP behaviour of the app through Starlette's TestClient: the policy host and path, and a
plain 200 or nothing (RFC 8461 section 3.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Host, Mount, Route
from starlette.testclient import TestClient
from starlette.types import Message

from mtasts_host import PolicyApp, create_app
from mtasts_host.reload import Reloader

from .conftest import BODY_D, CONFIG_D, MakeClient, WriteConfig, wait_until

PATH = "/.well-known/mta-sts.txt"


def assert_policy(response: object, body: bytes = BODY_D) -> None:
    assert getattr(response, "status_code", None) == 200
    assert response.content == body  # type: ignore[attr-defined]
    headers = response.headers  # type: ignore[attr-defined]
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    assert headers["cache-control"] == "max-age=60"
    assert headers["x-content-type-options"] == "nosniff"
    for absent in ("set-cookie", "location", "content-encoding", "etag", "last-modified"):
        assert absent not in headers


@pytest.mark.parametrize(
    "host",
    [
        "mta-sts.example.com",
        "MTA-STS.Example.COM",  # DNS names are case-insensitive (RFC 4343)
        "mta-sts.example.com:443",  # Host may carry the port (RFC 9110 section 7.2)
        "mta-sts.example.com.",  # one trailing dot: the absolute name
        "mta-sts.example.com.:8443",  # dot and port together
    ],
)
def test_policy_served_for_host(client: TestClient, host: str) -> None:
    assert_policy(client.get(PATH, headers={"host": host}))


@pytest.mark.parametrize(
    "host",
    [
        "mta-sts.unknown.test",
        "example.com",  # the policy host is mta-sts.<domain> (RFC 8461 section 3.3)
        "mta-sts.sub.example.com",  # no parent fallback: each domain has its own policy
        "mta-sts.mta-sts.example.com",
        "mta-sts.",
        "mta-sts.example.com..",  # only one trailing dot is removed
        "mta-sts.example.com:https",  # a port must be a number
        "[::1]:8080",
        "mta-sts.example.com.evil.test",
        "xmta-sts.example.com",
    ],
)
def test_no_policy_for_other_hosts(client: TestClient, host: str) -> None:
    response = client.get(PATH, headers={"host": host})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert b"STSv1" not in response.content


@pytest.mark.parametrize("port", ["\u00b2", "\u0663", "\uff14\uff14\uff13"])
def test_a_port_of_other_digits_than_ascii_is_no_port(client: TestClient, port: str) -> None:
    response = client.get(PATH, headers={b"host": f"mta-sts.example.com:{port}".encode()})
    assert response.status_code == 404
    assert b"STSv1" not in response.content


def test_unknown_policy_host_says_so(client: TestClient) -> None:
    response = client.get(PATH, headers={"host": "mta-sts.unknown.test"})
    assert response.text == "No MTA-STS policy is served for this host.\n"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("host", [b"", b"\xff\xfe", b"mta-sts.\xc3"])
def test_missing_or_garbage_host_is_404(client: TestClient, host: bytes) -> None:
    # never a policy, never a 5xx
    response = client.get(PATH, headers={b"host": host})
    assert response.status_code == 404


def test_two_host_headers_are_refused(client: TestClient) -> None:
    headers = [("host", "mta-sts.example.com"), ("host", "mta-sts.other.test")]
    response = client.get(PATH, headers=headers)
    assert response.status_code == 400


def test_international_host_in_either_form(make_client: MakeClient) -> None:
    client = make_client("domains:\n  bücher.example: {mode: testing, mx: mx.example.net}\n")
    expected = b"version: STSv1\r\nmode: testing\r\nmx: mx.example.net\r\nmax_age: 604800\r\n"
    for host in (
        "mta-sts.xn--bcher-kva.example",
        "mta-sts.bücher.example",
        "MTA-STS.BÜCHER.example",
    ):
        response = client.get(PATH, headers={b"host": host.encode()})
        assert_policy(response, expected)


def test_head_has_get_headers_and_no_body(client: TestClient) -> None:
    response = client.head(PATH)
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["content-length"] == str(len(BODY_D))
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers.multi_items() == client.get(PATH).headers.multi_items()


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "FOO"])
def test_other_methods_are_405(client: TestClient, method: str) -> None:
    response = client.request(method, PATH)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert "location" not in response.headers


def test_query_string_is_ignored(client: TestClient) -> None:
    assert_policy(client.get(PATH + "?x=1"))


@pytest.mark.parametrize(
    "path",
    [
        PATH + "/",  # not a redirect: senders never follow one (RFC 8461 section 3.3)
        "/.well-known/MTA-STS.txt",  # the path is case-sensitive (RFC 3986 section 6.2.2.1)
        "/mta-sts.txt",
        "/",
        "/.well-known/",
        "/.well-known/mta-sts.txt.bak",
        "//.well-known/mta-sts.txt",
        "/healthz",  # operational paths are not answered on policy hosts
    ],
)
def test_other_paths_are_404_not_redirects(client: TestClient, path: str) -> None:
    response = client.get(path, follow_redirects=False)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")
    assert "location" not in response.headers


@pytest.mark.parametrize("host", ["mta-sts.", "MTA-STS.", "mta-sts.:443", "mta-sts.:"])
@pytest.mark.parametrize("path", ["/readyz", "/metrics", "/healthz"])
def test_bare_policy_prefix_never_reaches_the_operational_endpoints(
    client: TestClient, host: str, path: str
) -> None:
    # The shipped Caddyfile passes on every Host matching (?i)^mta-sts\. to the app.
    response = client.get(path, headers={"host": host})
    assert response.status_code == 404
    assert response.headers["cache-control"] == "no-store"


def test_other_path_of_unknown_host_is_404(client: TestClient) -> None:
    response = client.post("/x", headers={"host": "mta-sts.unknown.test"})
    assert response.status_code == 404


@pytest.mark.parametrize(
    "headers",
    [
        {"x-forwarded-proto": "http"},  # no redirect to HTTPS
        {"if-none-match": "*"},  # no 304: senders use no HTTP cache (RFC 8461 section 3.3)
        {"if-modified-since": "Fri, 01 Jan 2100 00:00:00 GMT"},
        {"range": "bytes=0-5"},  # no 206: a 200 is the only answer senders accept
        {"accept-encoding": "gzip, br"},  # bodies are never compressed
        {"cookie": "a=b"},
    ],
)
def test_request_headers_never_change_the_answer(
    client: TestClient, headers: dict[str, str]
) -> None:
    assert_policy(client.get(PATH, headers=headers))


def test_no_accept_encoding_no_content_encoding(client: TestClient) -> None:
    response = client.get(PATH, headers={"accept-encoding": ""})
    assert_policy(response)


@pytest.mark.parametrize(
    ("host", "forwarded"),
    [
        ("10.0.0.1:8080", "x-forwarded-host"),  # a pod address: the operational host
        ("mta-sts.unknown.test", "x-forwarded-host"),
        ("mta-sts.unknown.test", "forwarded"),
    ],
)
def test_forwarded_host_headers_are_not_trusted(
    client: TestClient, host: str, forwarded: str
) -> None:
    # The notes, section 9.1: the policy is chosen by the Host the proxy passes on; a
    # forwarded host comes from the client, and no proxy is trusted to set it.
    value = "mta-sts.example.com"
    headers = {"host": host, forwarded: value if forwarded != "forwarded" else f"host={value}"}
    response = client.get(PATH, headers=headers)
    assert response.status_code == 404
    assert b"STSv1" not in response.content
    other = {"host": "mta-sts.example.com", forwarded: "mta-sts.unknown.test"}
    assert_policy(client.get(PATH, headers=other))


def test_requests_read_no_file(write_config: WriteConfig) -> None:
    # The notes, section 9.2: bodies are rendered at load time; a request never reads the
    # configuration (here it is gone, and nothing watches it).
    path = write_config()
    client = TestClient(create_app(path, watch=False), base_url="http://mta-sts.example.com")
    path.unlink()
    path.parent.rmdir()
    assert_policy(client.get(PATH))
    assert client.get(PATH, headers={"host": "mta-sts.unknown.test"}).status_code == 404


def test_non_policy_host_gets_plain_404(client: TestClient) -> None:
    response = client.get("/", headers={"host": "10.0.0.1:8080"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/plain")


def test_several_domains_each_get_their_own_policy(make_client: MakeClient) -> None:
    client = make_client(
        """\
        defaults: {mode: testing, mx: [mx.example.net]}
        domains:
          a.example: {}
          b.example: {mode: enforce, max_age: 1209600}
          c.example: {mode: none}
        """
    )
    bodies = {
        "a.example": b"mode: testing\r\nmx: mx.example.net\r\nmax_age: 604800\r\n",
        "b.example": b"mode: enforce\r\nmx: mx.example.net\r\nmax_age: 1209600\r\n",
        "c.example": b"mode: none\r\nmx: mx.example.net\r\nmax_age: 604800\r\n",
    }
    for domain, tail in bodies.items():
        response = client.get(PATH, headers={"host": f"mta-sts.{domain}"})
        assert_policy(response, b"version: STSv1\r\n" + tail)


def test_app_state_exposes_the_store(write_config: WriteConfig) -> None:
    app = create_app(write_config())
    served = app.store.lookup("example.com")
    assert served is not None
    assert served.body == BODY_D


def stopping(
    policies: PolicyApp,
) -> Callable[[Starlette], contextlib.AbstractAsyncContextManager[None]]:
    """A host app's lifespan that stops the mounted app's watcher, as the README says."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        policies.stop()

    return lifespan


def home(request: object) -> PlainTextResponse:
    return PlainTextResponse("host app")


@pytest.mark.parametrize("prefix", ["", "/policies"])
def test_mounted_in_starlette(write_config: WriteConfig, prefix: str) -> None:
    policies = create_app(write_config())
    parent = Starlette(
        routes=[Route("/home", home), Mount(prefix or "/", app=policies)],
        lifespan=stopping(policies),
    )
    with TestClient(parent, base_url="http://mta-sts.example.com") as client:
        assert_policy(client.get(prefix + PATH))
        assert client.get(prefix + PATH + "/").status_code == 404
    assert policies.reloader is not None
    assert policies.reloader._thread is not None  # watching began without our lifespan...
    assert not policies.reloader._thread.is_alive()  # ...and the host's lifespan ended it


@pytest.mark.parametrize(
    ("root_path", "path"),
    [
        ("/", PATH),  # granian --url-path-prefix /: the path does not repeat the root
        ("/policies", PATH),  # hypercorn --root-path /policies: nor there
        ("/policies", "/policies" + PATH),  # uvicorn --root-path /policies: it does
    ],
)
def test_a_root_path_is_cut_at_a_slash(
    write_config: WriteConfig, root_path: str, path: str
) -> None:
    app = create_app(write_config(), watch=False)
    client = TestClient(app, base_url="http://mta-sts.example.com", root_path=root_path)
    assert_policy(client.get(path))
    response = client.post(path)
    assert (response.status_code, response.headers["allow"]) == (405, "GET, HEAD")


def test_mounted_under_host_route(write_config: WriteConfig) -> None:
    policies = create_app(write_config())
    parent = Starlette(
        routes=[Host("mta-sts.{domain}", app=policies), Route("/", home)],
        lifespan=stopping(policies),
    )
    with TestClient(parent, base_url="http://mta-sts.example.com") as client:
        assert_policy(client.get(PATH))
        assert client.get("/", headers={"host": "www.example.com"}).text == "host app"
    assert policies.reloader is not None
    assert policies.reloader._thread is not None
    assert not policies.reloader._thread.is_alive()


def test_remembered_answers_are_bounded_and_follow_reloads(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mtasts_host.app._MEMO_SIZE", 3)
    path = write_config()
    app = create_app(path, watch=False)
    client = TestClient(app, base_url="http://mta-sts.example.com")
    for number in range(10):  # made-up hosts are answered, never remembered
        assert client.get(PATH, headers={"host": f"mta-sts.n{number}.test"}).status_code == 404
    padded = "mta-sts.example.com:" + "0" * 300 + "443"  # a policy, but a padded header
    assert_policy(client.get(PATH, headers={"host": padded}))
    assert app._memo == {}
    for port in range(1, 11):  # a policy under many Host headers: as many as there is room
        assert_policy(client.get(PATH, headers={"host": f"mta-sts.example.com:{port}"}))
    assert len(app._memo) == 3
    path.write_text(CONFIG_D.replace("enforce", "testing"))
    Reloader(app.store).reload()
    assert_policy(client.get(PATH), BODY_D.replace(b"enforce", b"testing"))
    assert list(app._memo) == [b"mta-sts.example.com"]


def _sent(app: PolicyApp, method: str, host: bytes = b"mta-sts.example.com") -> list[Message]:
    """The messages ``app`` sends to answer one request, as a server gets them."""
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {"type": "http", "method": method, "path": PATH, "headers": [(b"host", host)]}
    asyncio.run(app(scope, receive, send))
    return sent


@pytest.mark.parametrize("host", [b"mta-sts.example.com", b"mta-sts.unknown.test"])
def test_reused_messages_answer_as_new_ones_do(write_config: WriteConfig, host: bytes) -> None:
    # serve's setting: the same message objects for every request a remembered answer
    # answers, with the same content as the new ones an embedded app sends.
    path = write_config()
    fresh, reusing = create_app(path, watch=False), create_app(path, watch=False)
    reusing.reuse_messages = True
    for method in ("GET", "HEAD", "GET", "POST", "HEAD"):
        new, reused = _sent(fresh, method, host), _sent(reusing, method, host)
        # The reused start carries the answer's tuple of headers, which uvicorn copies.
        assert [
            {**m, "headers": list(m["headers"])} if "headers" in m else m for m in reused
        ] == new
    first, again = _sent(reusing, "GET"), _sent(reusing, "GET")
    assert all(a is b for a, b in zip(first, again, strict=True))


def test_new_messages_are_the_answers_own(write_config: WriteConfig) -> None:
    # A host app's middleware changes what it is sent in place; the next answer is whole.
    app = create_app(write_config(), watch=False)
    start, body = _sent(app, "GET")
    start["headers"].append((b"vary", b"accept-encoding"))
    body["body"] = b"compressed"
    start, body = _sent(app, "GET")
    assert (b"vary", b"accept-encoding") not in start["headers"]
    assert body["body"] == BODY_D


def test_a_report_store_down_at_start_up_is_one_line(
    write_config: WriteConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Said by the intake, as a later outage is: not again by the app, at another level."""
    store = tmp_path / "later" / "reports.db"
    path = write_config(CONFIG_D + f"reports: {{store: 'sqlite:///{store}'}}\n")
    caplog.set_level(logging.INFO)

    def said() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records if "unavailable" in r.msg]

    app = create_app(path, watch=False)
    assert said() == []  # opened with the first event, in a thread of its own
    with TestClient(app) as client:
        client.get("/readyz", headers={"host": "localhost"})
        wait_until(said)
        readiness = client.get("/readyz?format=json", headers={"host": "localhost"}).json()
    assert said() == [
        (logging.ERROR, f"report store unavailable: {store}: unable to open database file")
    ]
    assert readiness["reports_store"] == f"{store}: unable to open database file"
