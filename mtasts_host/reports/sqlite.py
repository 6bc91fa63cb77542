"""The SQLite store: one file, in WAL mode, so readers never wait for the writer."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator

from ..blocks import store_url
from .store import Connection, ReportStore, StoreUnavailable

BUSY_TIMEOUT = 10.0
"""Seconds a writer waits for another (another request, or ``reports ingest``)."""


def sqlite_path(url: str) -> str:
    """
    The file a ``sqlite:///`` URL names: ``sqlite:///reports.db`` is relative,
    ``sqlite:////var/lib/reports.db`` absolute (as SQLAlchemy writes them).

    Raises:
        ValueError: not such a URL, or an in-memory database, which every call would lose.
    """
    return store_url(url)[len("sqlite:///") :]


class SQLiteStore(ReportStore):
    id_type = "INTEGER PRIMARY KEY AUTOINCREMENT"
    blob_type = "BLOB"
    code_point_order = " COLLATE BINARY"
    table_exists = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.path = sqlite_path(url)

    def absent(self) -> str | None:
        return None if os.path.exists(self.path) else f"{self.path}: no such file"

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        # IMMEDIATE: two writers queue for the lock instead of failing on upgrade from a read.
        return self._transaction("BEGIN IMMEDIATE")

    def read_transaction(self) -> contextlib.AbstractContextManager[Connection]:
        # Deferred, it takes no lock: in WAL mode it reads while another transaction writes.
        return self._transaction("BEGIN")

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[Connection]:
        try:
            # isolation_level=None: the transaction is ours, begun as ``begin`` says.
            connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        try:
            try:
                connection.execute("PRAGMA journal_mode = WAL")
                connection.execute("PRAGMA synchronous = NORMAL")
                connection.execute(begin)
                yield connection
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{self.path}: {exc}") from exc
        finally:
            connection.close()
