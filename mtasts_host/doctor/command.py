"""
The doctor's options, for ``mtasts-host doctor`` and for ``serve --doctor-interval``, and the
command itself, for the CLI to call once it has parsed them.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Mapping

import anyio
import anyio.to_thread

from .._gc import collector_paused
from ..app import PolicyApp
from ..config import Config
from ..options import (
    Option,
    UsageError,
    choice,
    duration,
    given_as,
    port,
    seconds,
    several,
    text,
)
from ..store import build_snapshot
from .background import Background
from .dnsprobe import resolver_address
from .ehlo import ehlo_name
from .options import DoctorError, DoctorOptions
from .runner import run

logger = logging.getLogger(__name__)


def _network(timeout: str) -> tuple[Option[object], ...]:
    return (
        Option(
            "resolver",
            resolver_address,
            None,
            "send every DNS query to this server",
            "HOST[:PORT]",
            unset="the system's",
        ),
        Option("ca-file", text, None, "more trust anchors for HTTPS and SMTP", "PEM"),
        Option("https-port", port, 443, "the port of the policy hosts", "PORT"),
        Option("smtp-port", port, 25, "the port of the MX hosts", "PORT"),
        Option(
            "ehlo",
            ehlo_name,
            None,
            "the name the doctor gives the MX hosts in EHLO",
            "NAME",
            unset="this machine's fully qualified name, or else its address as a literal like "
            "[192.0.2.1]",
        ),
        Option(timeout, seconds, 10.0, "the bound of each network step, in seconds", "S"),
    )


OPTIONS = (
    Option(
        "domain",
        several(text),
        None,
        "only this configured domain; may be given several times",
        "D",
        repeat=True,
    ),
    Option("format", choice("text", "json"), "text", "one line a problem, or JSON", "{text,json}"),
    *_network("timeout"),
)
_INTERVAL = Option(
    "doctor-interval",
    duration,
    None,
    "run the doctor's checks this often in the background: seconds, or 30s, 15m, 1h",
    "DURATION",
    unset="never",
)
_SERVE_NETWORK = _network("doctor-timeout")
SERVE_OPTIONS = (_INTERVAL, *_SERVE_NETWORK)


def check_serve_options(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """
    Refuse the doctor's options on the command line of ``serve`` without an interval, which
    alone starts the doctor: they would do nothing. Called before the environment fills in
    the options; their variables alone are no error, as ``mtasts-host doctor`` reads them too.

    Raises:
        UsageError: such an option is given; the message names it.
    """
    if args.doctor_interval is not None or _INTERVAL.variable in environ:
        return
    given = [
        f"--{option.name}" for option in _SERVE_NETWORK if getattr(args, option.dest) is not None
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)}: only the background doctor uses "
            f"{'it' if len(given) == 1 else 'them'}: give --doctor-interval too"
        )


def _options(args: argparse.Namespace, timeout: float, domains: tuple[str, ...]) -> DoctorOptions:
    return DoctorOptions(
        resolver=args.resolver,
        ca_file=args.ca_file,
        https_port=args.https_port,
        smtp_port=args.smtp_port,
        timeout=timeout,
        helo=args.ehlo,
        domains=domains,
    )


def doctor(config: Config, args: argparse.Namespace) -> int:
    """
    ``mtasts-host doctor``: check every configured domain (or ``--domain``) and print what
    to fix.

    Returns:
        0 when nothing fails, 1 when a check fails, 2 when the options cannot work.
    """
    try:
        report = run(build_snapshot(config), _options(args, args.timeout, args.domain or ()))
    except DoctorError as exc:
        print(f"mtasts-host: error: {_said(exc, args)}", file=sys.stderr)
        return 2
    print(report.to_json() if args.format == "json" else report.to_text())
    return report.exit_code()


def _said(exc: DoctorError, args: argparse.Namespace) -> str:
    """The error, naming the option at fault as it was given: ``--ca-file`` or its variable."""
    return str(exc) if exc.option is None else f"{given_as(args, exc.option)} {exc.detail}"


def _detail(background: Background, problems: bool) -> dict[str, object]:
    with collector_paused():  # as for a scrape (see ``ops``)
        return background.detail(problems=problems)


def background_for(app: PolicyApp, args: argparse.Namespace) -> Background | None:
    """
    The doctor in the background of ``serve``, if ``--doctor-interval`` asks for it, its
    findings going to the metrics and to ``/readyz``; not started yet (``Background.start``).

    Raises:
        DoctorError: the options cannot work.
    """
    if args.doctor_interval is None:
        return None
    try:
        background = Background(
            app.store, _options(args, args.doctor_timeout, ()), args.doctor_interval
        )
    except DoctorError as exc:
        raise DoctorError(_said(exc, args)) from None
    if app.registry is not None:
        app.rendered_metrics.append(background.exposition)

    probes = anyio.CapacityLimiter(1)

    async def detail(as_json: bool) -> dict[str, object]:
        # Off the loop, as /readyz renders it: every problem of every domain, a second's work
        # when 100,000 domains fail; with a thread of its own, so that a probe never waits
        # for requests holding the worker threads. Listed in JSON only: the text is what
        # probes read, and 400,000 problems made it 83 MB, 2.3 s, where the kubelet waits 1 s.
        return {
            "doctor": await anyio.to_thread.run_sync(_detail, background, as_json, limiter=probes)
        }

    app.details.append(detail)
    logger.info("doctor: checking every %s s", args.doctor_interval)
    return background
