"""Hot reload: watch the configuration's directory, validate the new file, swap or keep."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import watchfiles
from watchfiles._rust_notify import WatchfilesRustInternalError

from ._gc import release_free_memory
from .changes import log_changes
from .config import ConfigError, FileIdentity, file_identity, load_config
from .store import PolicyStore

Batch = set[tuple[watchfiles.Change, str]]
"""What watchfiles yields: the changes seen in the directory at once."""
logger = logging.getLogger(__name__)

# Editors and config tools write in bursts (temp file, rename, chmod): wait for 30 ms of quiet,
# at most 300 ms, so that a reload sees the finished file and still lands well within a second.
DEBOUNCE_MS = 300
STEP_MS = 30
RECHECK_MS = 500
_WATCH_FAILED = (OSError, UnicodeEncodeError, WatchfilesRustInternalError)
"""The directory cannot be watched: it is being replaced, or gone for now; its path is not
UTF-8, which watchfiles refuses; or a file whose name is not UTF-8 appears in it, which ends
the watch."""


class ConfigFilter:
    """
    Tell the changes that name the configuration: the file's own name, and Kubernetes
    ConfigMap bookkeeping (``..data`` and the ``..<timestamp>`` directories that the kubelet
    swaps in by symlink). Editor swap and backup files and anything else in the directory do
    not: a batch of those only has the file's identity checked, which they leave unchanged.
    """

    def __init__(self, path: Path) -> None:
        self.name = path.name

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        name = os.path.basename(path)
        return name == self.name or name.startswith("..")


def _signature(path: Path) -> FileIdentity | None:
    try:
        status = os.stat(path)  # follows symlinks, so a ConfigMap swap changes the inode
    except OSError:
        return None
    return file_identity(status)


class Reloader:
    """
    Keeps ``store`` in step with the file it was loaded from: one producer of snapshots.

    ``start()`` runs the watcher in a daemon thread, so it needs no event loop or lifespan and
    never keeps the process alive; ``stop()`` ends it. ``reload()`` may be called from any
    thread (SIGHUP does): reloads are serialised, and each one validates the whole file
    before it replaces every policy in one assignment.
    """

    def __init__(self, store: PolicyStore, *, debounce_ms: int = DEBOUNCE_MS) -> None:
        self.store = store
        self.path = Path(store.config.path)
        self.debounce_ms = debounce_ms
        # What the store served was read from this file, maybe well before: a change made
        # since is seen by the first check.
        self._signature = store.config.read_from
        self._lock = threading.Lock()
        # Not the reloads' lock: the first request starts watching, on the event loop, and
        # must not wait for a reload (one SIGHUP asked for during start-up) to read the file.
        self._starting = threading.Lock()
        self._wanted = False
        """A reload asked for by ``reload_soon`` has not started reading yet."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching; calls while it watches do nothing. After ``stop`` it starts
        again: a host app's lifespan may run more than once in a process (a test client
        per test, a server restarted in the same process)."""
        with self._starting:
            if self._thread is not None and not self._stop.is_set():
                return
            self._stop = stop = threading.Event()
            self._thread = threading.Thread(
                target=self._watch, args=(stop,), name="mtasts-host-reload", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and wait for the watcher thread to end."""
        # The thread before the event: a start() after the event is set watches anew, with
        # an event of its own, and is not waited for here.
        thread = self._thread
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _watch(self, stop: threading.Event) -> None:
        directory = self.path.parent
        logger.debug("watching %s for changes to %s", directory, self.path.name)
        self.reload_if_changed()
        failure: str | None = None

        def watched(changes: Iterable[Batch]) -> Iterator[Batch]:
            # A batch, even an empty one, means the directory is watched again: an outage
            # after that is a new one, and is logged as such.
            nonlocal failure
            for batch in changes:
                if failure is not None:
                    failure = None
                    logger.info("watching %s again", directory)
                yield batch

        while not stop.is_set():
            changes = watchfiles.watch(
                directory,
                watch_filter=None,  # run() sorts the batches: every one is a chance to check
                debounce=self.debounce_ms,
                step=STEP_MS,
                stop_event=stop,
                recursive=False,
                raise_interrupt=False,
                # An empty batch after half a second without any change in the directory.
                yield_on_timeout=True,
                rust_timeout=RECHECK_MS,
            )
            try:
                self.run(watched(changes))
            except _WATCH_FAILED as exc:
                # Check the file every half second, as on a quiet directory, and watch again
                # once the directory is there, rather than end the watcher.
                if str(exc) != failure:
                    failure = str(exc)
                    logger.warning(
                        "cannot watch %s (%s); checking the file instead", directory, exc
                    )
                while not stop.wait(RECHECK_MS / 1000):
                    self.reload_if_changed()
                    if directory.is_dir():
                        break

    def run(self, changes: Iterable[Batch]) -> None:
        """
        For each batch of changes until the stream ends: reload if the batch touches the
        configuration; otherwise (other files, or an empty batch on a quiet directory) reload
        only if the file is not the one last read. The watch starts with the first batch, so
        this also catches a change made while it was being set up.
        """
        relevant = ConfigFilter(self.path)
        for batch in changes:
            if any(relevant(change, path) for change, path in batch):
                self.reload()
            else:
                self.reload_if_changed()

    def reload_if_changed(self) -> bool:
        """
        Reload if the file is not the one last read (by inode, size and mtime); by its ctime
        too while the last reload refused it, for a chmod may have made it readable.
        """
        now, last = _signature(self.path), self._signature
        if now == last:
            return False
        refused = self.store.status.last_error is not None  # the last reload could not use it
        if not refused and now is not None and last is not None and now[:4] == last[:4]:
            # Only the change time moved (a hard link made or removed, an owner, a mode, an
            # access time put back by a backup): the text served is still the file's.
            return False
        return self.reload()

    def reload_soon(self) -> None:
        """
        Reload in a thread of its own, as SIGHUP asks: any number of calls before that reload
        starts reading the file make one reload, and a call during it one more after it, so
        a storm of signals costs at most two reloads and two threads, not one of each per
        signal.
        """
        if self._wanted:
            return
        self._wanted = True
        threading.Thread(target=self.reload, name="mtasts-host-sighup", daemon=True).start()

    def reload(self) -> bool:
        """
        Read and validate the file; serve it if valid, else keep the current policies.

        Returns:
            True if the new configuration is now served.
        """
        with self._lock:
            self._wanted = False  # whatever was asked for so far, this reload reads it
            self._signature = _signature(self.path)
            try:
                config = load_config(self.path, self.store.config)
                old = self.store.replace(config)
            except ConfigError as exc:
                self.store.reject(str(exc.problems[0]))
                more = exc.more(1)
                logger.error(
                    "reload of %s rejected, still serving the last good policies: %s%s",
                    self.path,
                    exc.problems[0],
                    f" (and {more})" if more else "",
                )
                return False
            except Exception:
                # A fault in reading, or in building the policies (out of memory), must not end
                # the watcher: keep serving, and say so.
                logger.exception(
                    "reload of %s failed, still serving the last good policies", self.path
                )
                self.store.reject("the file could not be read: an internal error (see the log)")
                return False
            # Told while no other reload can replace the snapshot again: each reload's lines
            # and listeners get the pair it made.
            new = self.store.snapshot
            for warning in config.warnings:
                logger.warning("%s", warning)
            try:
                log_changes(old, self.store)
            except Exception:
                logger.exception("could not log what the reload of %s changed", self.path)
        for listener in list(self.store.listeners):
            try:
                listener(old, new)
            except Exception:
                logger.exception("a listener failed after the reload of %s", self.path)
        del old, new
        release_free_memory()
        return True
