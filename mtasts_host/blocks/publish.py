"""The ``publish:`` block: where the DNS records go, and how their order is guarded."""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass
from urllib.parse import urlsplit

from .. import _block, _fields, _yaml, names, tsigkey
from .._digits import decimal
from .._problems import Problems

DEFAULT_VERIFY_URL = "https://mta-sts.{domain}/.well-known/mta-sts.txt"
DEFAULT_CACHE_WAIT = 60
"""Seconds: the proxies' cache lifetime, the ``max-age`` the app's answers carry."""
DEFAULT_VERIFY_TIMEOUT = 120
MAX_COMMAND = 131_072
"""The longest ``command``, in characters: as long as the longest one argument Linux runs
(``MAX_ARG_STRLEN``), an ``sh -c`` script too. ``shlex.split`` takes time quadratic in the
length: 256 KiB took 4 s, and 1 MiB four minutes, at every reload."""
_PUBLISH_KEYS = (
    "server",
    "tsig_key_file",
    "command",
    "verify_url",
    "verify_connect",
    "ca_file",
    "cache_wait",
    "verify_timeout",
    "auto",
)


@dataclass(frozen=True, slots=True)
class PublishSettings:
    """
    The ``publish:`` block: where the DNS records go, and how to make sure the new policy is
    served before its id is published (RFC 8461 section 8.1).

    Attributes:
        server: the primary authoritative server (host, port): RFC 2136 updates go there,
            and current values are read from it.
        tsig_key_file: the key that signs the updates; re-read at each use.
        command: instead of updates, this command (and arguments) runs once per record.
        verify_url: where the new body must be served first; ``{domain}`` is the domain.
        verify_connect: connect there (host, port) instead, keeping the URL's host name.
        ca_file: more trust anchors for ``verify_url``.
        cache_wait: seconds to wait once the new body is served, for proxy caches.
        verify_timeout: seconds to wait for the new body before giving up.
        auto: publish after each reload that changes a record, inside ``serve``.
    """

    server: tuple[str, int] | None = None
    tsig_key_file: str | None = None
    command: tuple[str, ...] | None = None
    verify_url: str = DEFAULT_VERIFY_URL
    verify_connect: tuple[str, int] | None = None
    ca_file: str | None = None
    cache_wait: int = DEFAULT_CACHE_WAIT
    verify_timeout: int = DEFAULT_VERIFY_TIMEOUT
    auto: bool = False


def host_and_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """
    ``host:port``, ``[v6]:port``, or a host alone when there is a default port; the host an
    IP address or a host name.

    Raises:
        ValueError: anything else.
    """
    expected = "expected a host and a port, like ns1.example.net:53"
    try:
        host, port = names.split_host_port(text)
    except ValueError:
        raise ValueError(expected) from None
    if not port and default_port is not None:
        port = str(default_port)
    number = decimal(port or "", 1, 65535)
    if number is None:
        raise ValueError(expected)
    if not names.is_address(host):
        if "." in host:
            host = names.host_name(host)
        elif not (host.isascii() and host.replace("-", "").isalnum()):
            raise ValueError(expected)
    return host, number


def _address(default_port: int | None) -> _fields.Parser[tuple[str, int]]:
    def parse(node: _yaml.Node, at: _fields.At) -> tuple[str, int]:
        text = _fields.string(node, "a host and a port")
        try:
            return host_and_port(text, default_port)
        except ValueError as exc:
            raise _fields.Invalid(f"{exc}, got {text!r}") from None

    return parse


def _key_file(node: _yaml.Node, at: _fields.At) -> str:
    path = _fields.string(node, "the path of a TSIG key file")
    try:
        tsigkey.read_key_file(path)
    except ValueError as exc:
        raise _fields.Invalid(f"{exc}, got {path!r}") from None
    return path


def _command(node: _yaml.Node, at: _fields.At) -> tuple[str, ...]:
    text = _fields.string(node, "a command")
    if len(text) > MAX_COMMAND:
        raise _fields.Invalid(
            f"expected a command line of at most {MAX_COMMAND:,} characters, got {len(text):,}"
        )
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise _fields.Invalid(f"not a command line ({exc}), got {text!r}") from None
    if not argv:
        raise _fields.Invalid("expected a command, got ''")
    if shutil.which(argv[0]) is None:
        raise _fields.Invalid(f"no such executable, got {argv[0]!r}")
    return argv


def _verify_url(node: _yaml.Node, at: _fields.At) -> str:
    url = _fields.string(node, "an http:// or https:// URL")
    try:
        parts = urlsplit(url.replace("{domain}", "example.com"))
    except ValueError:  # a stray "[" in the host
        parts = None
    scheme = url.startswith(("http://", "https://"))
    if parts is None or not parts.hostname or not scheme or "{domain}" not in url:
        raise _fields.Invalid(
            f"expected an http:// or https:// URL with {{domain}} in it, like "
            f"{DEFAULT_VERIFY_URL!r}, got {url!r}"
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise _fields.Invalid(f"expected a port 1..65535 after the host, got {url!r}")
    # Sent as it is in the request line, which is ASCII without blanks: http.client raised
    # UnicodeEncodeError there (a traceback) or refused the URL as a broken answer.
    if not url.isascii() or any(char <= " " or char == "\x7f" for char in url):
        raise _fields.Invalid(
            f"expected a URL of printable ASCII (percent-encode the rest), got {url!r}"
        )
    return url


def _readable_file(node: _yaml.Node, at: _fields.At) -> str:
    path = _fields.string(node, "the path of a file")
    if "\0" in path or not os.access(path, os.R_OK) or not os.path.isfile(path):
        raise _fields.Invalid(f"no readable file there, got {path!r}")
    return path


def _seconds(high: int, low: int = 0) -> _fields.Parser[int]:
    def parse(node: _yaml.Node, at: _fields.At) -> int:
        return _fields.integer(node, low, high)

    return parse


def read_publish_settings(
    node: _yaml.Node, where: str, problems: Problems
) -> PublishSettings | None:
    """The ``publish:`` block; None if it is invalid (and reported)."""
    block = _block.Block(node, where, _PUBLISH_KEYS, problems)
    server = block.get("server", _address(53))
    key_file = block.get("tsig_key_file", _key_file)
    command = block.get("command", _command)
    verify_url = block.get("verify_url", _verify_url)
    connect = block.get("verify_connect", _address(None))
    ca_file = block.get("ca_file", _readable_file)
    cache_wait = block.get("cache_wait", _seconds(86_400))
    verify_timeout = block.get("verify_timeout", _seconds(86_400, 1))
    auto = block.get("auto", _fields.boolean)
    block.close()
    if block.failed:
        return None
    line = node.line
    if (key_file is None) == (command is None):
        message = "expected either tsig_key_file (with server) or command, not both"
        if key_file is None:
            message = "missing; expected tsig_key_file (with server) or command"
        problems.error(line, f"{where}.tsig_key_file", message)
        return None
    if key_file is not None and server is None:
        problems.error(line, f"{where}.server", "missing; RFC 2136 updates need a server")
        return None
    return PublishSettings(
        server,
        key_file,
        command,
        verify_url or DEFAULT_VERIFY_URL,
        connect,
        ca_file,
        DEFAULT_CACHE_WAIT if cache_wait is None else cache_wait,
        DEFAULT_VERIFY_TIMEOUT if verify_timeout is None else verify_timeout,
        bool(auto),
    )
