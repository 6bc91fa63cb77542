"""
Log lines written by a thread of their own, so that a reader of stderr that stalls (a log
driver, a ``| less``, a stopped journald) never holds up the event loop: written there, a
full pipe (64 KiB) stopped every policy answer until it was read again.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import weakref
from typing import TextIO

QUEUED = 10_000
"""Records waiting to be written, at most: half a second of access lines at full speed, some
10 MB (25 MB if every client value is at the 256 characters an access line keeps). Beyond it
a record is dropped and counted, rather than memory growing while nobody reads."""
BATCH = 256
"""Records written in one call: one system call for many lines, and the writer thread never
holds the interpreter long enough to delay the event loop's next answer."""
DRAIN = 5.0
"""Seconds the lines still waiting get to be written when the writer closes (at exit): a
reader that keeps up takes a fraction of that; a stalled one must not hold the exit."""

_Item = logging.LogRecord | threading.Event | None
"""A record to write, a flush to signal once those before are written, or the end."""
_dropped = [0]
_drop_lock = threading.Lock()
_writers: weakref.WeakSet[QueuedHandler] = weakref.WeakSet()
_forks: list[bool] = []


def dropped() -> int | None:
    """Log lines dropped so far in this process, or None if no ``QueuedHandler`` writes its
    log (an app embedded in a host's logging)."""
    return _dropped[0] if _writers or _dropped[0] else None


def flush_all() -> None:
    """Wait until every line logged so far is written (``DRAIN`` at most): before a line
    printed to stderr, which must come after them."""
    for writer in list(_writers):
        writer.flush()


def close_all() -> None:
    """Write what waits (``DRAIN`` at most) and stop every writer thread."""
    for writer in list(_writers):
        writer.close()


def _in_child() -> None:
    # A fork has no thread but the one that forked: a server that imports the app, then forks
    # its workers (gunicorn --preload) left each worker's lines in a queue nobody wrote.
    for writer in list(_writers):
        writer._start()


def _drop(lines: int) -> None:
    with _drop_lock:
        _dropped[0] += lines


class QueuedHandler(logging.Handler):
    """
    A handler that hands each record to a writer thread, which formats it and writes it to
    ``stream`` (stderr by default), in order. When ``QUEUED`` records wait, for a reader that
    does not keep up, the next ones are dropped and counted (``dropped``); once writing
    resumes, one WARNING line says how many. Closed (``logging.shutdown`` at exit), it writes
    what waits and, from then on, each record at once, as ``logging.StreamHandler`` does.
    """

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = sys.stderr if stream is None else stream
        self._reported = _dropped[0]
        self._closed = False
        self._stalled = False
        self._start()
        _writers.add(self)
        if not _forks:
            os.register_at_fork(after_in_child=_in_child)
            _forks.append(True)

    def _start(self) -> None:
        """A queue and a writer thread, fresh: the parent's lines are the parent's to write."""
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="mtasts-host log", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        # Without the handler's lock, which the queue makes needless: a request costs less.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        if self._closed:
            self._write([record])
        elif self._queue.qsize() >= QUEUED:
            _drop(1)
        else:
            self._queue.put(record)

    def flush(self) -> None:
        if self._closed or self._thread is threading.current_thread():
            return
        written = threading.Event()
        self._queue.put(written)
        self._stalled = not written.wait(DRAIN)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            if self._thread is not threading.current_thread():
                # Not twice DRAIN at exit, where logging.shutdown flushes, then closes.
                self._thread.join(0 if self._stalled else DRAIN)
            _writers.discard(self)
        super().close()

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write([item for item in batch if isinstance(item, logging.LogRecord)])
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()
            if None in batch:
                return

    def _write(self, records: list[logging.LogRecord]) -> None:
        lines = []
        for record in records:
            try:
                lines.append(self.format(record) + "\n")
            except Exception:
                self.handleError(record)
        if not lines:
            return
        if self._put("".join(lines)):
            self._report()
        else:
            _drop(len(lines))

    def _put(self, text: str) -> bool:
        """Write ``text``; False if it cannot be (stderr closed or broken)."""
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError, AttributeError):
            # EPIPE, a closed file, or no stderr at all (started with 2>&-): Python's own
            # report of the error would go to the same place.
            return False
        return True

    def _report(self) -> None:
        """One line for the lines dropped since the last, once one could be written."""
        count = _dropped[0]
        if count == self._reported:
            return
        record = logging.LogRecord(
            "mtasts_host.logs",
            logging.WARNING,
            __file__,
            0,
            "%d log lines dropped: stderr was not read fast enough, or not at all",
            (count - self._reported,),
            None,
        )
        if self._put(self.format(record) + "\n"):
            self._reported = count
