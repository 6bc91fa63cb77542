"""The ``reports:`` block: where TLS reports are kept and posted, and for how long."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from .. import _block, _fields, _yaml
from .._problems import Problems
from ..policy import POLICY_PATH

DEFAULT_REPORTS_PATH = "/tlsrpt"
DEFAULT_RETENTION_DAYS = 400
"""A little over a year: enough to compare a domain with itself a year before."""
_OPERATIONAL_PATHS = ("/healthz", "/readyz", "/metrics", "/tls-allowed", "/reports")
_SQLITE = "sqlite:///"


@dataclass(frozen=True, slots=True)
class ReportsSettings:
    """
    The ``reports:`` block: where TLS reports are kept, where they are posted, for how long.

    Attributes:
        store: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` or a
            ``postgresql://`` URL (libpq syntax, ``?host=/socket/dir`` included).
        path: the path of the HTTPS intake, answered on every host but the policy hosts.
        retention_days: reports whose date range ended longer ago are deleted.
    """

    store: str
    path: str = DEFAULT_REPORTS_PATH
    retention_days: int = DEFAULT_RETENTION_DAYS


def store_url(text: str) -> str:
    """
    A report store URL: ``sqlite:///`` and a file, or ``postgresql://`` (psycopg installed).

    Raises:
        ValueError: anything else; the message says what was expected.
    """
    scheme = text.partition(":")[0].lower()
    if scheme == "sqlite":
        if not text.lower().startswith(_SQLITE) or len(text) == len(_SQLITE):
            raise ValueError("expected sqlite:///relative.db or sqlite:////absolute.db")
        if text[len(_SQLITE) :] == ":memory:":
            raise ValueError("an in-memory SQLite store would lose every report; give a file")
        return text
    if scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("psycopg") is None:
            raise ValueError(
                "a PostgreSQL store needs psycopg: pip install 'mtasts-host[postgresql]'"
            )
        return text
    raise ValueError("expected a sqlite:/// or postgresql:// URL")


def _store(node: _yaml.Node, at: _fields.At) -> str:
    return _fields.normalised(node, "a store URL", store_url)


def _intake_path(node: _yaml.Node, at: _fields.At) -> str:
    path = _fields.string(node, "a URL path")
    if not path.startswith("/") or not path.isascii() or not path.isprintable() or " " in path:
        raise _fields.Invalid(f"expected a URL path like '/tlsrpt', got {path!r}")
    if path in (POLICY_PATH, *_OPERATIONAL_PATHS):
        raise _fields.Invalid(f"{path!r} is taken; choose another path, like '/tlsrpt'")
    return path


def _days(node: _yaml.Node, at: _fields.At) -> int:
    return _fields.integer(node, 1, 36500)


def read_reports_settings(
    node: _yaml.Node, where: str, problems: Problems
) -> ReportsSettings | None:
    """The ``reports:`` block; None if it is invalid (and reported)."""
    block = _block.Block(node, where, ("store", "path", "retention_days"), problems)
    store = block.get("store", _store)
    path = block.get("path", _intake_path)
    days = block.get("retention_days", _days)
    block.close()
    if store is None and not block.failed:
        problems.error(node.line, f"{where}.store", "missing; expected a store URL")
    if store is None or block.failed:
        return None
    return ReportsSettings(
        store, path or DEFAULT_REPORTS_PATH, DEFAULT_RETENTION_DAYS if days is None else days
    )
