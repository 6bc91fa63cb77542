"""The canonical policy text (RFC 8461 section 3.2) and its id (section 3.1)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mtasts_host import Mode, Policy
from mtasts_host.policy import policy_id

from .conftest import BODY_D
from .oracles import PARSERS

D = Policy(Mode.ENFORCE, ("mail.example.com", "*.mx.example.net"), 604800)

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_name = st.lists(_label, min_size=2, max_size=4).map(".".join)
_pattern = st.tuples(st.booleans(), _name).map(lambda p: ("*." if p[0] else "") + p[1])
policies = st.builds(
    Policy,
    st.sampled_from(Mode),
    st.lists(_pattern, min_size=1, max_size=8, unique=True).map(tuple),
    st.integers(0, 31557600),
) | st.builds(Policy, st.just(Mode.NONE), st.just(()), st.integers(0, 31557600))


def test_render_is_the_canonical_body() -> None:
    assert D.render() == BODY_D


def test_render_none_without_mx() -> None:
    assert (
        Policy(Mode.NONE, (), 86400).render()
        == b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"
    )


@given(policies)
def test_body_format(policy: Policy) -> None:
    body = policy.render()
    # ASCII without a BOM (which every real parser rejects), version first as in the RFC
    assert body.isascii()
    assert body.startswith(b"version: STSv1\r\n")
    # CRLF after every line (section 3.2), no bare LF or CR, no blank line
    assert body.endswith(b"\r\n")
    assert b"\r\n\r\n" not in body
    lines = body.split(b"\r\n")[:-1]
    assert all(b"\r" not in line and b"\n" not in line for line in lines)
    # no surrounding whitespace, one space after the colon, none before it
    for line in lines:
        assert re.fullmatch(rb"[a-z_]+: [^ \t]+", line), line
    # one version, mode and max_age line; one mx line per pattern; nothing else
    keys = [line.split(b":")[0] for line in lines]
    assert keys == [b"version", b"mode"] + [b"mx"] * len(policy.mx) + [b"max_age"]


@pytest.mark.parametrize("parser", PARSERS)
@given(policy=policies)
def test_every_real_parser_accepts_every_policy(parser: str, policy: Policy) -> None:
    assert PARSERS[parser](policy.render()) == (policy.mode.value, policy.mx, policy.max_age)


@pytest.mark.parametrize(
    ("body", "rejected_by"),
    [
        (
            b"version: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 86400\r\n\r\n",
            {"go-mtasts", "mox", "postfix-tlspol"},
        ),
        (
            b"\xef\xbb\xbfversion: STSv1\r\nmode: enforce\r\nmx: a.example\r\nmax_age: 86400\r\n",
            set(PARSERS),
        ),
        (b"version: STSv1\r\nmode: ENFORCE\r\nmx: a.example\r\nmax_age: 86400\r\n", set(PARSERS)),
        # CR alone ends no line but in Snawoot's (Python's splitlines)
        (
            b"version: STSv1\rmode: enforce\rmx: a.example\rmax_age: 86400\r",
            {"checkdmarc", "go-mtasts", "mox", "postfix-tlspol"},
        ),
        (b"version: STSv1\r\nmode: testing\r\nmax_age: 86400\r\n", set(PARSERS)),
        # An extension field, which section 3.2 has parsers ignore: go-mtasts splits the
        # line on every colon.
        (
            b"version: STSv1\r\nmode: none\r\nmx: a.example\r\nfoo: a:b\r\nmax_age: 86400\r\n",
            {"go-mtasts"},
        ),
    ],
)
def test_oracles_are_as_strict_as_the_clients(body: bytes, rejected_by: set[str]) -> None:
    # The oracles are only worth something if they are as strict as the clients.
    rejected = set()
    for name, parse in PARSERS.items():
        try:
            parse(body)
        except Exception:
            rejected.add(name)
    assert rejected == rejected_by


def test_policy_id_is_32_alphanumerics_of_the_body() -> None:
    # section 3.1: the TXT record's id is 1 to 32 alphanumerics, and changes with the policy
    ident = policy_id(D.render())
    assert re.fullmatch(r"[0-9a-f]{32}", ident)
    assert ident == policy_id(Policy(Mode.ENFORCE, D.mx, 604800).render())
    assert ident != policy_id(Policy(Mode.ENFORCE, D.mx, 604801).render())
    assert ident != policy_id(Policy(Mode.TESTING, D.mx, 604800).render())
    assert ident != policy_id(Policy(Mode.ENFORCE, D.mx[::-1], 604800).render())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "enforce", "mx": ("a.example",)}, "mode must be a Mode, not 'enforce'"),
        ({"mode": Mode.ENFORCE, "mx": ()}, "mode enforce needs at least one mx pattern"),
        ({"mode": Mode.NONE, "mx": (), "max_age": True}, "max_age must be an integer 0..31557600"),
        ({"mode": Mode.NONE, "mx": (), "max_age": -1}, "max_age must be an integer 0..31557600"),
        # rendered as is, "max_age: 1.5" is a policy no sender accepts
        ({"mode": Mode.NONE, "mx": (), "max_age": 1.5}, "max_age must be an integer 0..31557600"),
        ({"mode": Mode.NONE, "mx": (), "max_age": "1"}, "max_age must be an integer 0..31557600"),
        ({"mode": Mode.NONE, "mx": ("a.example",) * 2}, "mx patterns must be unique"),
    ],
)
def test_policy_invariants(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Policy(**kwargs)  # type: ignore[arg-type]
