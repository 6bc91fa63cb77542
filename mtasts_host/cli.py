"""The ``mtasts-host`` command: each subcommand wires options to a capability."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvicorn

from . import __version__, dns, logs
from .app import PolicyApp, create_app
from .config import Config, ConfigError, load_config
from .options import (
    ENV_PREFIX,
    Option,
    Parser,
    UsageError,
    boolean,
    choice,
    port,
    positive_int,
    resolve_all,
    text,
)
from .reload import Reloader
from .store import build_snapshot

logger = logging.getLogger("mtasts_host")

_CONFIG = Option("config", text, None, "the YAML file; or give it as PATH", "PATH")
APP_OPTIONS = (
    _CONFIG,
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

_SERVE = (
    _CONFIG,
    Option("host", text, "127.0.0.1", "address to bind"),
    Option("port", port, 8080, "port to bind"),
    Option("uds", text, None, "bind to this Unix socket instead", "PATH"),
    Option("log-format", choice("text", "json"), "text", "text lines or one JSON object a line"),
    Option(
        "proxy-headers",
        boolean,
        True,
        "trust X-Forwarded-For/-Proto from --forwarded-allow-ips, as uvicorn does",
        flag=True,
    ),
    *APP_OPTIONS[1:],
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
        "answer 503 beyond this many connections and tasks at once (default: no limit)",
        "N",
    ),
    Option(
        "forwarded-allow-ips",
        text,
        None,
        "comma-separated proxy addresses to trust, or '*' (default: 127.0.0.1)",
        "IPS",
    ),
)
_DNS = (
    _CONFIG,
    Option(
        "format",
        choice("zone", "json", "hosts"),
        "zone",
        "zone-file lines, a JSON list, or just the policy host names, one a line, for "
        "certificate and ingress lists",
    ),
)


@dataclass(frozen=True, slots=True)
class Command:
    help: str
    options: tuple[Option[object], ...]
    run: Callable[[argparse.Namespace], int]


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


def _serve(args: argparse.Namespace) -> int:
    logging.config.dictConfig(logs.config(args.log_format))
    app = build_app(args)
    if app is None:
        return 1
    _run(app, args)
    return 0


def _check(args: argparse.Namespace) -> int:
    config = _load(args.config, every=True)
    if config is None:
        return 1
    for domain, served in build_snapshot(config).served.items():
        policy = served.policy
        print(
            f"{domain}: mode={policy.mode.value} mx={len(policy.mx)} "
            f"max_age={policy.max_age} id={served.id}"
        )
    return 0


def _dns(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 1
    print({"json": dns.to_json, "zone": dns.to_zone, "hosts": dns.to_hosts}[args.format](config))
    return 0


COMMANDS = {
    "serve": Command("serve the policies over HTTP (behind a TLS proxy)", _SERVE, _serve),
    "check": Command("validate the file and list every domain", (_CONFIG,), _check),
    "dns": Command("print the DNS records to publish", _DNS, _dns),
}


def _parser() -> Parser:
    parser = Parser(
        prog="mtasts-host",
        description="Serve RFC 8461 MTA-STS policies for many domains from one YAML file.",
        epilog=f"Every option can also be set as an environment variable {ENV_PREFIX}<OPTION>.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.help, description=command.help)
        sub.add_argument("path", nargs="?", metavar="PATH", help="the YAML file")
        for option in command.options:
            option.add_to(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a usage error)."""
    try:
        args = _parser().parse_args(argv)
        command = COMMANDS[args.command]
        if args.path is not None and args.config is not None and args.path != args.config:
            raise UsageError("give the configuration once: PATH or --config")
        args.config = args.path or args.config
        resolve_all(args, command.options, os.environ)
        if args.config is None:
            raise UsageError("no configuration file: give PATH or set MTASTS_HOST_CONFIG")
    except UsageError as exc:
        print(f"mtasts-host: error: {exc}", file=sys.stderr)
        return 2
    return command.run(args)


def _load(path: str, *, every: bool = False) -> Config | None:
    """The configuration, its warnings printed; or None, its (first or every) errors printed."""
    try:
        config = load_config(path)
    except ConfigError as exc:
        print_problems(exc, every=every)
        return None
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    return config


def print_problems(exc: ConfigError, *, every: bool) -> None:
    """Print the first (or every) problem of ``exc`` to stderr, one line each."""
    problems = exc.problems if every else exc.problems[:1]
    for problem in problems:
        print(problem, file=sys.stderr)
    if len(exc.problems) > len(problems):
        more = len(exc.problems) - len(problems)
        print(f"... and {more} more; run 'mtasts-host check' to see them", file=sys.stderr)


def _run(app: PolicyApp, args: argparse.Namespace) -> None:
    reloader = app.reloader or Reloader(app.store)

    def reload_on_sighup(signum: int, frame: object) -> None:
        # A thread, not the handler itself: the handler interrupts the event loop's thread.
        threading.Thread(target=reloader.reload, name="mtasts-host-sighup", daemon=True).start()

    signal.signal(signal.SIGHUP, reload_on_sighup)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        uds=args.uds,
        proxy_headers=args.proxy_headers,
        forwarded_allow_ips=args.forwarded_allow_ips,
        workers=1,
        timeout_keep_alive=args.timeout_keep_alive,
        limit_concurrency=args.limit_concurrency,
        # In-flight requests finish; idle connections are closed; never longer than this.
        timeout_graceful_shutdown=5,
        log_config=logs.config(args.log_format),
        access_log=False,  # ours replaces uvicorn's: it names the policy domain
    )
