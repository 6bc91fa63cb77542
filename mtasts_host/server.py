"""``mtasts-host serve``: the app under uvicorn, with SIGHUP, and whatever runs beside it."""

from __future__ import annotations

import argparse
import contextlib
import logging
import logging.config
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from typing import Protocol

import uvicorn

from . import _sigterm, listen, logs
from ._problems import ConfigError
from .app import PolicyApp, create_app
from .options import Option, boolean, choice, port, positive_int, several, text
from .reload import Reloader

logger = logging.getLogger("mtasts_host")
_uvicorn_logger = logging.getLogger("uvicorn.error")

STARTUP_FAILURE = 3
"""The exit status when the server cannot listen where it is told to: uvicorn's own."""
GRACEFUL_SHUTDOWN = 5
"""Seconds in-flight requests get to finish on SIGTERM or SIGINT (README, Limits)."""

LOOPBACK: tuple[str, ...] = ("127.0.0.1",)
"""Where ``serve`` listens unless told: this machine alone."""

CONFIG = Option("config", text, None, "the YAML file; or give it as PATH", "PATH")
APP_OPTIONS = (
    CONFIG,
    Option(
        "access-log",
        boolean,
        True,
        "log every request with its policy domain, status, size, duration and User-Agent",
        flag=True,
    ),
    Option(
        "metrics",
        boolean,
        True,
        "serve Prometheus metrics at /metrics on non-policy hosts",
        flag=True,
    ),
    Option(
        "watch",
        boolean,
        True,
        "reload the file whenever it changes; SIGHUP reloads it in any case",
        flag=True,
    ),
)
"""The options that shape the app itself, wherever it runs (see ``mtasts_host.asgi``)."""
LOG_FORMAT = Option(
    "log-format",
    choice("text", "json"),
    "text",
    "text lines or one JSON object a line",
    "{text,json}",
)

SERVE_OPTIONS = (
    *APP_OPTIONS,
    Option(
        "host",
        several(listen.address),
        LOOPBACK,
        "address to bind; may be given several times, or as a list: 0.0.0.0,::",
        "ADDR",
        repeat=True,
    ),
    Option("port", port, 8080, "port to bind", "PORT"),
    Option("uds", text, None, "bind to this Unix socket instead", "PATH"),
    LOG_FORMAT,
    Option(
        "proxy-headers",
        boolean,
        True,
        "trust X-Forwarded-For/-Proto from --forwarded-allow-ips, as uvicorn does",
        flag=True,
    ),
    Option(
        "timeout-keep-alive",
        positive_int,
        5,
        "close idle keep-alive connections after this many seconds",
        "SECONDS",
    ),
    Option(
        "limit-concurrency",
        positive_int,
        None,
        "answer 503 beyond this many connections and requests handled at once",
        "N",
        unset="no limit",
    ),
    Option(
        "forwarded-allow-ips",
        text,
        None,
        "comma-separated proxy addresses to trust, or '*'",
        "IPS",
        unset="127.0.0.1,::1; with --uds, '*'",
    ),
)


class Stoppable(Protocol):
    def stop(self) -> None: ...


Companion = Callable[[PolicyApp, argparse.Namespace], Stoppable | None]
"""
Something that runs beside the server (the doctor, the publisher): started with the app and
the options, stopped when the server ends. It raises ValueError if the options cannot work.
"""


def build_app(args: argparse.Namespace) -> PolicyApp | None:
    """The app the ``APP_OPTIONS`` in ``args`` describe; None if the config is invalid, with
    its first error printed and its warnings logged."""
    try:
        app = create_app(
            args.config, watch=args.watch, metrics=args.metrics, access_log=args.access_log
        )
    except ConfigError as exc:
        print_problems(exc, every=False)
        return None
    for warning in app.store.config.warnings:
        logger.warning("%s", warning)
    return app


def serve(args: argparse.Namespace, companions: Sequence[Companion] = ()) -> int:
    """Serve until SIGTERM or SIGINT, with ``companions`` running beside; the exit status."""
    logging.config.dictConfig(logs.config(args.log_format))
    # Unhandled, SIGHUP ends the process, and a large file takes seconds to load: a signal
    # that comes before the server is up asks for a reload once it is.
    hangups: list[int] = []
    before = signal.signal(signal.SIGHUP, lambda signum, frame: hangups.append(signum))
    # SIGTERM unwinds, while the file loads as while serving: as PID 1 (in a container) a
    # process ignores a signal it has no handler for, and one that came during a long load
    # was lost. uvicorn stops on SIGTERM, then raises it again with the handler it found in
    # place: the default one would end the process there, before the companions are
    # stopped, and with it a command the publisher runs, cut off in its update.
    status: int | None = 1
    try:
        with _sigterm.unwinding():
            status = _serve(args, companions, hangups)
    except _sigterm.Terminated:
        status = None
    finally:
        logs.close_all()  # the last lines written, before SIGTERM ends the process
        if status != 0:
            # Nothing served, or ended: a caller of main() in-process (a test, a wrapper)
            # gets SIGHUP back as it was, not a handler that swallows it for good.
            signal.signal(signal.SIGHUP, signal.SIG_DFL if before is None else before)
    if status is None:
        _sigterm.end()  # the companions have stopped
        return 0
    return status


def _serve(args: argparse.Namespace, companions: Sequence[Companion], hangups: list[int]) -> int:
    # Listening before the file loads, which can take seconds: no "serving" line (nor the
    # report store opened) comes before the error, and nothing starts beside a server that
    # could not listen, as the publisher of one whose port another mtasts-host had taken
    # wrote the DNS records of a configuration it never served.
    try:
        sockets = listen.listening(args.host, args.port, args.uds)
    except listen.CannotListen as exc:
        _error(exc)
        return STARTUP_FAILURE
    try:
        return _start(args, companions, hangups, sockets)
    finally:
        listen.close(sockets, args.uds)


def _start(
    args: argparse.Namespace,
    companions: Sequence[Companion],
    hangups: list[int],
    sockets: list[socket.socket],
) -> int:
    app = build_app(args)
    if app is None:
        return 1
    started: list[Stoppable] = []
    # A SIGTERM while they start waits until each one started is known, to be stopped: one
    # raised in the middle of a start left a publisher running, unknown to the stops below.
    deferred: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: deferred.append(signum))
    try:
        for start in companions:
            companion = start(app, args)
            if companion is not None:
                started.append(companion)
    except ValueError as exc:
        _error(exc)
        for companion in reversed(started):
            companion.stop()
        return 2
    try:
        signal.signal(signal.SIGTERM, _sigterm.raise_terminated)
        if deferred:
            raise _sigterm.Terminated
        _run(app, args, hangups, sockets)
    finally:
        for companion in reversed(started):
            companion.stop()
    return 0


class _Server(uvicorn.Server):
    """uvicorn's server on the sockets of ``listen``, saying where it runs as it does alone."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if not self.started:
            return
        for sock in sockets or ():
            _uvicorn_logger.info("Uvicorn running on %s (Press CTRL+C to quit)", listen.named(sock))


def _run(
    app: PolicyApp, args: argparse.Namespace, hangups: list[int], sockets: list[socket.socket]
) -> None:
    reloader = app.reloader or Reloader(app.store)

    def reload_on_sighup(signum: int, frame: object) -> None:
        # A thread, not the handler itself: the handler interrupts the event loop's thread.
        reloader.reload_soon()

    signal.signal(signal.SIGHUP, reload_on_sighup)
    if hangups:  # checked once the handler is in place, so that none is missed
        reloader.reload_soon()
    # uvicorn only reads the messages it is sent, and nothing stands between it and the app.
    app.reuse_messages = True
    config = uvicorn.Config(
        # The bound method, not the app: a call to it skips the lookup of __call__ on the
        # instance, a tenth of what the app itself costs a request.
        app.__call__,
        interface="asgi3",
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=_forwarded_allow_ips(args),
        workers=1,
        timeout_keep_alive=args.timeout_keep_alive,
        # uvicorn counts the connection a request came on: at its limit N, it serves N - 1,
        # and at 1 it answers every request 503.
        limit_concurrency=None if args.limit_concurrency is None else args.limit_concurrency + 1,
        # In-flight requests finish; idle connections are closed; never longer than this.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
        log_config=None,  # serve's own, in place: configured again, its writer would restart
        access_log=False,  # ours replaces uvicorn's: it names the policy domain
        # No "server: uvicorn": it names the software to anyone asking, and a proxy that
        # names itself and passes it on (Caddy) sends two lines of a field that is no list.
        # It was also 4% of what a policy request costs (bench.instructions).
        server_header=False,
    )
    server = _Server(config)
    # What uvicorn.run does with a server of one worker, but for sockets already listening.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=sockets)
    if not server.started:
        sys.exit(STARTUP_FAILURE)


def _forwarded_allow_ips(args: argparse.Namespace) -> str:
    # Given always: left to uvicorn, its own FORWARDED_ALLOW_IPS variable would widen the
    # trust, unnamed by any option or the README. A Unix socket's peer has no address that
    # uvicorn could trust: unless told '*', it never reads the proxy's X-Forwarded-For there,
    # and every access line names no client at all. Only what can open the socket reaches
    # the server, as only the host's own users reach 127.0.0.1, trusted on TCP.
    allowed: str | None = args.forwarded_allow_ips
    if allowed is None:
        return "*" if args.uds is not None else "127.0.0.1,::1"
    return allowed


def _error(exc: Exception) -> None:
    logs.flush_all()  # the lines logged before come first
    print(f"mtasts-host: error: {exc}", file=sys.stderr)


def print_problems(exc: ConfigError, *, every: bool) -> None:
    """Print the first (or every) problem of ``exc`` to stderr, one line each."""
    problems = exc.problems if every else exc.problems[:1]
    logs.flush_all()
    for problem in problems:
        print(problem, file=sys.stderr)
    more = exc.more(len(problems))
    if more is not None:
        print(f"... and {more}; run 'mtasts-host check' to see them", file=sys.stderr)
