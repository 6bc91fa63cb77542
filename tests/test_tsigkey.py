"""TSIG key files as BIND's tsig-keygen and knot's keymgr write them."""

from __future__ import annotations

import base64
import os
import re
import subprocess
from pathlib import Path

import pytest

from mtasts_host.tsigkey import TsigKey, parse_key, read_key_file

from .processes import need

SECRET = base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BIND = f'key "mtasts." {{\n\talgorithm hmac-sha512;\n\tsecret "{SECRET}";\n}};\n'
KNOT = (
    f"# hmac-sha256:mtasts:{SECRET}\n"
    f"key:\n  - id: mtasts\n    algorithm: hmac-sha256\n    secret: {SECRET}\n"
)
OLD = base64.b64encode(b"the secret before the rotation").decode()
SLASHES = base64.b64encode(b"\xff\xff\xff0123456789abcdef0123456789a").decode()
"""A secret with "//" in it, as base64 may have."""


@pytest.mark.parametrize(
    ("text", "algorithm"), [(BIND, "hmac-sha512"), (KNOT, "hmac-sha256")], ids=["bind", "knot"]
)
def test_both_formats(text: str, algorithm: str) -> None:
    key = parse_key(text)
    assert key == TsigKey("mtasts", algorithm, base64.b64decode(SECRET))
    assert SECRET not in repr(key)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(BIND.replace("};", f'\t// secret "{OLD}";\n}};'), id="bind //"),
        pytest.param(BIND.replace("};", f'\t/* secret "{OLD}";\n */ }};'), id="bind /* */"),
        pytest.param(BIND.replace(";\n}", f'; # secret "{OLD}";\n}}'), id="bind # after"),
        pytest.param(f'/* key "old." {{ secret "{OLD}"; }}; */\n{BIND}', id="bind key commented"),
        pytest.param(KNOT.replace(f"{SECRET}\n", f"{SECRET}  # was {OLD}\n"), id="knot # after"),
        pytest.param(KNOT.replace("id: mtasts", "id: mtasts # the updater"), id="knot # id"),
    ],
)
def test_comments_are_not_keys(text: str) -> None:
    """named.conf comments are #, // and /* */; YAML's are # (knot's keymgr writes YAML)."""
    assert parse_key(text).secret == base64.b64decode(SECRET)


@pytest.mark.parametrize(
    "text",
    [BIND.replace(SECRET, SLASHES), KNOT.replace(f"secret: {SECRET}", f"secret: {SLASHES}")],
    ids=["bind", "knot"],
)
def test_slashes_in_a_secret_are_no_comment(text: str) -> None:
    assert SLASHES.startswith("////")
    assert parse_key(text).secret == base64.b64decode(SLASHES)


def test_knot_values_may_be_quoted() -> None:
    quoted = KNOT.replace("id: mtasts", 'id: "mtasts"').replace(
        f"secret: {SECRET}", f"secret: '{SECRET}'"
    )
    assert parse_key(quoted) == parse_key(KNOT)


def test_what_keymgr_writes(tmp_path: Path) -> None:
    keymgr = need("keymgr", "knot")
    text = subprocess.run(
        [keymgr, "-t", "made", "hmac-sha384"], capture_output=True, text=True, check=True
    ).stdout
    path = tmp_path / "made.key"
    path.write_text(text)
    key = read_key_file(path)
    assert (key.name, key.algorithm, len(key.secret)) == ("made", "hmac-sha384", 48)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a TSIG key file: expected the output of tsig-keygen (BIND) or keymgr -t (knot)"),
        (BIND + BIND, "expected one key in the file, found 2"),
        (
            BIND.replace("hmac-sha512", "rsa"),
            "unsupported TSIG algorithm 'rsa'; expected one of hmac-sha256, hmac-sha384, "
            "hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5",
        ),
        (
            KNOT.replace("algorithm: hmac-sha256", f"algorithm: {SECRET}"),
            "unsupported TSIG algorithm; expected one of hmac-sha256, hmac-sha384, "
            "hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5",
        ),
        (KNOT.replace(f"secret: {SECRET}", "secret: !!!"), "the key's secret is not base64"),
        (
            BIND.replace("mtasts.", "a..b"),
            "the key's name is not a DNS name: a DNS label is empty",
        ),
        (
            BIND.replace("mtasts.", "k" * 64),
            "the key's name is not a DNS name: a DNS label is > 63 octets long",
        ),
        (KNOT.replace("id: mtasts", "id: ."), "the key's name is not a DNS name: it is the root"),
    ],
)
def test_bad_key_files_never_show_the_secret(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        parse_key(text)
    assert str(info.value) == message
    assert SECRET.lower() not in str(info.value).lower()


def test_unreadable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^cannot read the key file: no such file$"):
        read_key_file(tmp_path / "none.key")


@pytest.mark.timeout(5)
def test_not_a_regular_file(tmp_path: Path) -> None:
    # A FIFO without a writer would block the open, and every load of the config with it.
    os.mkfifo(tmp_path / "fifo.key")
    with pytest.raises(ValueError, match=r"^cannot read the key file: not a regular file$"):
        read_key_file(tmp_path / "fifo.key")
    with pytest.raises(ValueError, match=r"^cannot read the key file: a directory$"):
        read_key_file(tmp_path)


def test_a_directory_leaves_no_descriptor_open(tmp_path: Path) -> None:
    # Read at every load of the config and every update: a descriptor left open each time
    # would run the process out of them.
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pytest.raises(ValueError, match=r"^cannot read the key file: a directory$"):
            read_key_file(tmp_path)
    assert len(os.listdir("/proc/self/fd")) == before
