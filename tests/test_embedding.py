"""The README's embedding recipes, run as they are under a real uvicorn process."""

from __future__ import annotations

import contextlib
import os
import re
import signal
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.middleware.gzip import GZipMiddleware
from starlette.middleware.httpsredirect import HTTPSRedirectMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient
from starlette.types import ASGIApp

from mtasts_host import create_app

from .conftest import BODY_D, CONFIG_D, WriteConfig, wait_until
from .processes import PYTHON, free_port, running
from .rawhttp import POLICY_PATH, serves

README = Path(__file__).parent.parent / "README.md"
RECIPES = [
    block
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
    if 'create_app("policies.yaml")' in block
]


def test_the_readme_has_both_recipes() -> None:
    assert [("FastAPI" in block) for block in RECIPES] == [False, True]


@pytest.mark.parametrize("recipe", RECIPES, ids=["starlette", "fastapi"])
def test_recipe_serves_and_reloads_when_mounted(recipe: str, tmp_path: Path) -> None:
    (tmp_path / "recipe.py").write_text(recipe)
    policies = tmp_path / "policies.yaml"
    policies.write_text(CONFIG_D)
    port = free_port()
    argv = [PYTHON, "-m", "uvicorn", "recipe:app", "--port", str(port), "--app-dir", str(tmp_path)]
    with running(argv, tmp_path / "uvicorn.log", "127.0.0.1", port, cwd=tmp_path) as server:
        assert serves(port, BODY_D)
        new = tmp_path / "new.yaml"
        new.write_text(CONFIG_D.replace("mode: enforce", "mode: testing"))
        os.replace(new, policies)
        expected = BODY_D.replace(b"mode: enforce", b"mode: testing")
        wait_until(partial(serves, port, expected))
        # Shutting the parent down leaves nothing behind that keeps the process alive.
        # uvicorn shuts down gracefully, then re-raises SIGTERM to exit by it.
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.output()
    assert "Traceback" not in server.output()


def _stamped(app: ASGIApp) -> ASGIApp:
    """A host app's BaseHTTPMiddleware that sets a header on every response, as many do."""

    async def stamp(request: Request, call_next: RequestResponseEndpoint) -> Response:
        response = await call_next(request)
        response.headers["X-Frame-Options"] = "DENY"
        return response

    return BaseHTTPMiddleware(app, dispatch=stamp)


def _gzipped(app: ASGIApp) -> ASGIApp:
    return GZipMiddleware(app)


@pytest.mark.parametrize("middleware", [_stamped, _gzipped], ids=["base-http", "gzip"])
def test_a_host_apps_middleware_may_change_the_headers(
    middleware: Callable[[ASGIApp], ASGIApp], write_config: WriteConfig
) -> None:
    # A policy over GZipMiddleware's 500 bytes: it compresses, and so adds a Vary header.
    mx = ", ".join(f"mx{i}.mail-exchangers.example.net" for i in range(20))
    config = write_config(f"domains:\n  example.com: {{mode: enforce, mx: [{mx}]}}\n")
    policies = create_app(config, watch=False)
    host_app = FastAPI()
    host_app.mount("/", policies)
    headers = {"Host": "mta-sts.example.com", "Accept-Encoding": "gzip"}
    with TestClient(middleware(host_app), raise_server_exceptions=False) as client:
        for _ in range(2):  # the remembered answer too
            response = client.get(POLICY_PATH, headers=headers)
            assert response.status_code == 200
            assert response.text.startswith("version: STSv1\r\n")
    # What the middleware changed stays with its own answer, not with the remembered one.
    with TestClient(policies) as client:
        response = client.get(POLICY_PATH, headers=headers)
        assert "x-frame-options" not in response.headers
        assert "vary" not in response.headers


def _redirecting(app: ASGIApp) -> ASGIApp:
    return HTTPSRedirectMiddleware(app)


def _trusting(app: ASGIApp) -> ASGIApp:
    return TrustedHostMiddleware(app, allowed_hosts=["*.example.com"])


@pytest.mark.parametrize(
    ("middleware", "url", "status"),
    [
        # The README's account of the host app's middleware, row by row. "http" is what the
        # app sees behind a proxy that terminates TLS, unless the server trusts its
        # X-Forwarded-Proto (then "https").
        (_redirecting, "http://mta-sts.example.com", 307),
        (_redirecting, "https://mta-sts.example.com", 200),
        (_trusting, "http://mta-sts.example.com", 200),
        (_trusting, "http://mta-sts.example.org", 400),
        (_trusting, "http://mta-sts.example.com.", 400),
    ],
    ids=["redirect-http", "redirect-https", "trusted", "not-listed", "trailing-dot"],
)
def test_what_a_host_apps_middleware_does_to_the_policy(
    middleware: Callable[[ASGIApp], ASGIApp], url: str, status: int, write_config: WriteConfig
) -> None:
    host_app = FastAPI()
    host_app.mount("/", create_app(write_config(), watch=False))
    client = TestClient(middleware(host_app), base_url=url, follow_redirects=False)
    response = client.get(POLICY_PATH)
    assert response.status_code == status
    if status == 200:
        assert response.content == BODY_D


def _answers(client: TestClient, line: str) -> bool:
    response = client.get(POLICY_PATH, headers={"Host": "mta-sts.example.com"})
    return line in response.text


def test_watching_starts_again_after_the_host_apps_lifespan_stopped_it(
    write_config: WriteConfig,
) -> None:
    # The README's recipe: the host app's lifespan stops the watcher. A second lifespan in
    # the same process (a test client per test, say) must see reloads again.
    config = write_config()
    policies = create_app(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        policies.stop()

    host_app = FastAPI(lifespan=lifespan)
    host_app.mount("/", policies)
    headers = {"Host": "mta-sts.example.com"}
    for mode in ("testing", "none"):
        with TestClient(host_app) as client:
            assert client.get(POLICY_PATH, headers=headers).status_code == 200
            config.write_text(CONFIG_D.replace("enforce", mode))
            wait_until(partial(_answers, client, f"mode: {mode}\r\n"))
