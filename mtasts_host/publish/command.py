"""
``mtasts-host publish``: its options and the command itself, and the automatic publisher
that ``serve`` starts beside the app.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from .. import _sigterm
from ..app import PolicyApp
from ..config import Config
from ..options import Option, boolean, given_as, several, text
from ..store import build_snapshot
from .auto import AutoPublisher
from .runner import publish as run

logger = logging.getLogger(__name__)

OPTIONS = (
    Option(
        "domain",
        several(text),
        None,
        "only this configured domain's records, its group's shared TXT record included; "
        "may be given several times",
        "D",
        repeat=True,
    ),
    Option("dry-run", boolean, False, "print the plan and change nothing", flag=True),
)


class _Terminal:
    """Steps on standard output, warnings and problems on standard error, one line each."""

    def info(self, line: str) -> None:
        print(line, flush=True)

    def unchanged(self, line: str) -> None:
        print(line, flush=True)

    def warning(self, line: str) -> None:
        print(f"warning: {line}", file=sys.stderr, flush=True)

    def problem(self, line: str) -> None:
        print(f"error: {line}", file=sys.stderr, flush=True)


def publish(config: Config, args: argparse.Namespace) -> int:
    """
    ``mtasts-host publish``: put the records in place in RFC 8461's order.

    Returns:
        0 when every record is published, 1 when any is not, 2 when the configuration has
        no ``publish`` block or ``--domain`` names a domain it does not have.
    """
    if config.publish is None:
        print(
            f"mtasts-host: error: {config.path} has no publish block, so nothing says where "
            "the records go; see 'Publishing a policy' in the README",
            file=sys.stderr,
        )
        return 2
    try:
        domains = config.select(args.domain or (), given_as(args, "domain"))
    except ValueError as exc:
        print(f"mtasts-host: error: {exc}", file=sys.stderr)
        return 2
    snapshot = build_snapshot(config)
    # SIGTERM unwinds, as Ctrl-C does: a command writing a record, in a session of its own,
    # gets its time to finish and is then ended, not left running behind.
    try:
        with _sigterm.unwinding():
            return run(snapshot, _Terminal(), domains=domains, dry_run=args.dry_run).exit_code
    except _sigterm.Terminated:
        pass
    _sigterm.end()
    return 128 + signal.SIGTERM  # the caller's own handler took it


def start_background(app: PolicyApp, args: argparse.Namespace) -> AutoPublisher:
    """
    The automatic publisher of ``serve``: it publishes at start-up and after each reload
    that changes a record, while the ``publish`` block says ``auto: true``; its metrics go
    to the app's registry. It takes no options of its own: the block says it all.
    """
    publisher = AutoPublisher(app.store)
    app.store.publishing = True
    app.store.listeners.append(publisher.reloaded)
    app.metric_sources.append(publisher.collect)
    settings = app.store.config.publish
    if settings is not None and settings.auto:
        logger.info("publish: publishing the DNS records automatically")
        publisher.start()
    return publisher
