"""
The policy host's rules as a pure function of the request, without ASGI: only a GET or HEAD of
the well-known path of a configured domain gets the policy (RFC 8461 sections 3.2 and 3.3).
"""

from __future__ import annotations

import pytest

from mtasts_host import Mode, Policy, PolicyStore
from mtasts_host.answers import (
    BAD_HOST,
    CACHE_CONTROL,
    CACHE_MAX_AGE,
    NO_POLICY,
    NOT_ALLOWED,
    NOT_FOUND,
    answer,
    policy_domain,
)
from mtasts_host.blocks.publish import DEFAULT_CACHE_WAIT
from mtasts_host.config import Config, DomainConfig
from mtasts_host.policy import POLICY_PATH
from mtasts_host.store import Snapshot

POLICY = Policy(Mode.ENFORCE, ("mail.example.com",))


def snapshot() -> Snapshot:
    return PolicyStore(Config("c.yaml", {"example.com": DomainConfig(POLICY)})).snapshot


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_the_policy(method: str) -> None:
    body = POLICY.render()
    assert answer(snapshot(), "example.com", POLICY_PATH, method) == (
        200,
        (
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"max-age=60"),
            (b"x-content-type-options", b"nosniff"),
        ),
        body,
        "example.com",
    )


@pytest.mark.parametrize(
    ("domain", "path", "method", "expected"),
    [
        ("unknown.test", POLICY_PATH, "GET", NO_POLICY),
        # no fallback to the parent domain's policy (RFC 8461 section 3.4)
        ("sub.example.com", POLICY_PATH, "GET", NO_POLICY),
        ("unknown.test", "/", "GET", NOT_FOUND),
        ("unknown.test", POLICY_PATH, "POST", NOT_ALLOWED),
        # a trailing slash is another path, not a redirect (senders follow none, section 3.3)
        ("example.com", POLICY_PATH + "/", "GET", NOT_FOUND._replace(domain="example.com")),
        ("example.com", "/mta-sts.txt", "GET", NOT_FOUND._replace(domain="example.com")),
        ("example.com", POLICY_PATH, "PUT", NOT_ALLOWED._replace(domain="example.com")),
        ("example.com", POLICY_PATH, "DELETE", NOT_ALLOWED._replace(domain="example.com")),
    ],
)
def test_refusals(domain: str, path: str, method: str, expected: object) -> None:
    assert answer(snapshot(), domain, path, method) == expected


def test_refusals_are_plain_text_and_never_cached() -> None:
    for refusal in (NO_POLICY, NOT_FOUND, NOT_ALLOWED, BAD_HOST):
        headers = dict(refusal.headers)
        assert headers[b"content-type"] == b"text/plain; charset=utf-8"
        assert headers[b"cache-control"] == b"no-store"
        assert headers[b"content-length"] == str(len(refusal.body)).encode()
    assert dict(NOT_ALLOWED.headers)[b"allow"] == b"GET, HEAD"


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        (b"mta-sts.example.com", "example.com"),
        (b"MTA-STS.Example.COM:443", "example.com"),
        (b"mta-sts.example.com.", "example.com"),
        ("mta-sts.bücher.example".encode(), "xn--bcher-kva.example"),
        (b"example.com", None),
        (b"mta-sts.example.com \t", "example.com"),
        (b"mta-sts.example.com:https", ""),
        (b"mta-sts.\xff", ""),
        (b"MTA-STS.ex\xe4mple.com", ""),
        (b"\xff\xfe", None),
    ],
)
def test_policy_domain_of_a_host_header(host: bytes, domain: str | None) -> None:
    assert policy_domain(host) == domain


def test_publish_waits_as_long_as_proxies_may_cache() -> None:
    # Two modules, one figure: publish must not change an id while a proxy may still serve
    # the old policy under it (RFC 8461 section 8.1).
    assert DEFAULT_CACHE_WAIT == CACHE_MAX_AGE
    assert CACHE_CONTROL == b"max-age=%d" % CACHE_MAX_AGE
