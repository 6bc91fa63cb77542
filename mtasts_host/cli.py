"""The ``mtasts-host`` command: serve, check and dns."""

from __future__ import annotations

import argparse
import logging
import logging.config
import os
import signal
import sys
import threading
from collections.abc import Sequence

import uvicorn

from . import __version__, dns, logs
from .app import PolicyApp, create_app
from .config import Config, ConfigError, load_config
from .store import build_snapshot

_ENV = "MTASTS_HOST_"
logger = logging.getLogger("mtasts_host")


def _parser() -> argparse.ArgumentParser:
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="mtasts-host",
        description="Serve RFC 8461 MTA-STS policies for many domains from one YAML file.",
        epilog=f"Every option can also be set as an environment variable {_ENV}<OPTION>.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    config = env.get(_ENV + "CONFIG")

    serve = commands.add_parser("serve", help="serve the policies over HTTP (behind a TLS proxy)")
    serve.add_argument(
        "--config", default=config, metavar="PATH", help="the YAML file [MTASTS_HOST_CONFIG]"
    )
    serve.add_argument(
        "--host",
        default=env.get(_ENV + "HOST", "127.0.0.1"),
        help="address to bind (default: %(default)s) [MTASTS_HOST_HOST]",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=int(env.get(_ENV + "PORT", "8080")),
        help="port to bind (default: %(default)s) [MTASTS_HOST_PORT]",
    )
    serve.add_argument(
        "--uds",
        default=env.get(_ENV + "UDS"),
        help="bind to this Unix socket instead [MTASTS_HOST_UDS]",
    )
    serve.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=env.get(_ENV + "LOG_FORMAT", "text"),
        help="text lines or one JSON object per line (default: %(default)s) "
        "[MTASTS_HOST_LOG_FORMAT]",
    )
    for flag, what in (
        (
            "proxy-headers",
            "trust X-Forwarded-For/-Proto from --forwarded-allow-ips, as uvicorn does",
        ),
        (
            "access-log",
            "log every request with its policy domain, status, size, duration and User-Agent",
        ),
        ("metrics", "serve Prometheus metrics at /metrics on non-policy hosts"),
        ("watch", "reload the file whenever it changes; SIGHUP reloads it in any case"),
    ):
        variable = _ENV + flag.upper().replace("-", "_")
        serve.add_argument(
            f"--{flag}",
            action=argparse.BooleanOptionalAction,
            default=env.get(variable, "1").lower() not in ("0", "false", "no", "off"),
            help=f"{what} (default: on) [{variable}]",
        )
    serve.add_argument(
        "--timeout-keep-alive",
        type=int,
        default=int(env.get(_ENV + "TIMEOUT_KEEP_ALIVE", "5")),
        metavar="SECONDS",
        help="close idle keep-alive connections after this long (default: %(default)s) "
        "[MTASTS_HOST_TIMEOUT_KEEP_ALIVE]",
    )
    serve.add_argument(
        "--limit-concurrency",
        type=int,
        default=int(env.get(_ENV + "LIMIT_CONCURRENCY", "0")) or None,
        metavar="N",
        help="answer 503 beyond this many connections and tasks at once (default: no "
        "limit) [MTASTS_HOST_LIMIT_CONCURRENCY]",
    )
    serve.add_argument(
        "--forwarded-allow-ips",
        default=env.get(_ENV + "FORWARDED_ALLOW_IPS"),
        help="comma-separated proxy addresses to trust, or '*' (default: "
        "127.0.0.1) [MTASTS_HOST_FORWARDED_ALLOW_IPS]",
    )

    check = commands.add_parser("check", help="validate the file and list every domain")
    check.add_argument("config", nargs="?", default=config, metavar="PATH")

    records = commands.add_parser("dns", help="print the DNS records to publish")
    records.add_argument("config", nargs="?", default=config, metavar="PATH")
    records.add_argument(
        "--format",
        choices=("zone", "json", "hosts"),
        default="zone",
        help="zone-file lines, a JSON list, or just the policy host names, one a line, for "
        "certificate and ingress lists (default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.config is None:
        parser.error("no configuration file: give PATH or set MTASTS_HOST_CONFIG")
    if args.command == "serve":
        logging.config.dictConfig(logs.config(args.log_format))
    try:
        app = (
            create_app(
                args.config, watch=args.watch, metrics=args.metrics, access_log=args.access_log
            )
            if args.command == "serve"
            else None
        )
        config = app.store.config if app else load_config(args.config)
    except ConfigError as exc:
        problems = exc.problems if args.command == "check" else exc.problems[:1]
        for problem in problems:
            print(problem, file=sys.stderr)
        if len(exc.problems) > len(problems):
            more = len(exc.problems) - len(problems)
            print(f"... and {more} more; run 'mtasts-host check' to see them", file=sys.stderr)
        return 1
    for warning in config.warnings:
        if app is not None:
            logger.warning("%s", warning)
        else:
            print(warning, file=sys.stderr)
    if app is not None:
        _serve(app, args)
    elif args.command == "check":
        _check(config)
    else:
        print(
            {"json": dns.to_json, "zone": dns.to_zone, "hosts": dns.to_hosts}[args.format](config)
        )
    return 0


def _check(config: Config) -> None:
    for domain, served in build_snapshot(config).served.items():
        policy = served.policy
        print(
            f"{domain}: mode={policy.mode.value} mx={len(policy.mx)} "
            f"max_age={policy.max_age} id={served.id}"
        )


def _serve(app: PolicyApp, args: argparse.Namespace) -> None:
    reloader = app.reloader

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
