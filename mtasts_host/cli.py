"""The ``mtasts-host`` command: each subcommand wires options to a capability."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence, Set
from dataclasses import dataclass, field, replace

from . import __version__, dns, streams
from .app import PolicyApp
from .config import Config, ConfigError, load_config
from .doctor import Background, Publishing
from .doctor import command as doctor
from .options import ENV_PREFIX, Option, Parser, UsageError, choice, resolve_all
from .publish import AutoPublisher
from .publish import command as publish
from .reports import command as reports
from .server import CONFIG, SERVE_OPTIONS, print_problems, serve
from .store import build_snapshot

_SERVE = (*SERVE_OPTIONS, *doctor.SERVE_OPTIONS)
# For the commands without a positional PATH (reports, reports ingest): --config alone.
_CONFIG_ONLY = replace(CONFIG, help="the YAML file")

EX_INTERRUPTED = 130
"""A command ended by Ctrl-C (SIGINT): 128 + 2, as a shell reports it."""

_DNS = (
    CONFIG,
    Option(
        "format",
        choice("zone", "json", "hosts"),
        "zone",
        "zone-file lines, a JSON list, or just the policy host names, one a line, for "
        "certificate and ingress lists",
        "{zone,json,hosts}",
    ),
)


@dataclass(frozen=True, slots=True)
class Command:
    """One subcommand: its options, and what it runs with the configuration loaded."""

    help: str
    options: tuple[Option[object], ...]
    run: Callable[[Config, argparse.Namespace], int]
    config_error: int = 1
    """The exit status when the configuration is invalid."""
    usage_error: int = 2
    """The exit status of a usage error: a bad option or variable, no configuration."""
    every_error: bool = False
    """Print every configuration error, not only the first."""
    path: bool = True
    """Whether the configuration may be given as a positional PATH."""
    arguments: Callable[[argparse.ArgumentParser], None] | None = None
    subcommands: Mapping[str, Command] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Beside:
    publisher: AutoPublisher
    doctor: Background | None

    def stop(self) -> None:
        # The publisher first: once the server has stopped, it starts no other record.
        self.publisher.stop()
        if self.doctor is not None:
            self.doctor.stop()


def _beside(app: PolicyApp, args: argparse.Namespace) -> _Beside:
    """
    What runs beside the server: the doctor if --doctor-interval asks, the publisher for
    ``auto: true``. The doctor asks the publisher which ``_mta-sts`` records it has pending,
    to say that the publisher is on them rather than to publish by hand, and runs again once
    the publisher has written records (or its runs began or stopped failing).
    """
    background = doctor.background_for(app, args)  # its options checked before any update
    publisher = publish.start_background(app, args)
    if background is not None:

        def pending() -> dict[str, Publishing]:
            return {domain: Publishing(n) for domain, n in publisher.pending().items()}

        background.publishing = pending
        publisher.listeners.append(background.run_soon)
        background.start()
    return _Beside(publisher, background)


def _check(config: Config, args: argparse.Namespace) -> int:
    for domain, served in build_snapshot(config).served.items():
        policy = served.policy
        print(
            f"{domain}: mode={policy.mode.value} mx={len(policy.mx)} "
            f"max_age={policy.max_age} id={served.id}"
        )
    return 0


def _dns(config: Config, args: argparse.Namespace) -> int:
    render = {"json": dns.to_json, "zone": dns.to_zone, "hosts": dns.to_hosts}[args.format]
    print(render(build_snapshot(config)))
    return 0


def _files(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="*", metavar="FILE", help="messages or report files")


COMMANDS: dict[str, Command] = {
    "check": Command(
        "validate the file and list every domain", (CONFIG,), _check, every_error=True
    ),
    "dns": Command("print the DNS records to publish", _DNS, _dns),
    "doctor": Command(
        "check the live world (DNS, HTTPS, MX hosts) against the file",
        (CONFIG, *doctor.OPTIONS),
        doctor.doctor,
        config_error=2,
    ),
    "publish": Command(
        "put the DNS records in place: the new policies served first (RFC 8461 section 8.1)",
        (CONFIG, *publish.OPTIONS),
        publish.publish,
        config_error=2,
    ),
    "reports": Command(
        "summarise the TLS reports of each domain, and say when enforce is safe",
        (_CONFIG_ONLY, *reports.OPTIONS),
        reports.summary,
        # 1 is a failing verdict: a bad configuration must not pass for one.
        config_error=2,
        path=False,
        subcommands={
            "ingest": Command(
                "store the TLS reports in mail messages, report files or a maildir",
                (_CONFIG_ONLY, *reports.INGEST_OPTIONS),
                reports.ingest,
                # A mail system keeps a message it could not deliver and tries again later:
                # a mistake in its pipe's command line must not bounce the reports.
                config_error=reports.EX_TEMPFAIL,
                usage_error=reports.EX_TEMPFAIL,
                path=False,
                arguments=_files,
            )
        },
    ),
}


def _parser() -> Parser:
    # No abbreviations: ``serve --timeout 10``, the doctor's option, set --timeout-keep-alive.
    parser = Parser(
        prog="mtasts-host",
        allow_abbrev=False,
        description="Serve RFC 8461 MTA-STS policies for many domains from one YAML file.",
        epilog=f"Every option can also be set as an environment variable {ENV_PREFIX}<OPTION>.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    server = commands.add_parser(
        "serve", help="serve the policies over HTTP (behind a TLS proxy)", allow_abbrev=False
    )
    _add(server, _SERVE, path=True)
    for name, command in COMMANDS.items():
        sub = commands.add_parser(
            name, help=command.help, description=command.help, allow_abbrev=False
        )
        _add(sub, command.options, command.path, command.arguments)
        if command.subcommands:
            if not command.path:
                # Its one positional is a subcommand: a file given there lands in it.
                sub.choice_hint = f"{name} takes the configuration file as --config PATH"
            nested = sub.add_subparsers(dest="subcommand", parser_class=Parser)
            for subname, subcommand in command.subcommands.items():
                subparser = nested.add_parser(
                    subname,
                    help=subcommand.help,
                    description=subcommand.help,
                    allow_abbrev=False,
                )
                subparser.usage_error = subcommand.usage_error
                _add(
                    subparser,
                    subcommand.options,
                    subcommand.path,
                    subcommand.arguments,
                    inherited={option.dest for option in command.options},
                )
    # Named by its choices, as the help lists them: "required: command" named none.
    commands.metavar = "{" + ",".join(commands.choices) + "}"
    return parser


def _add(
    parser: argparse.ArgumentParser,
    options: Sequence[Option[object]],
    path: bool,
    arguments: Callable[[argparse.ArgumentParser], None] | None = None,
    inherited: Set[str] = frozenset(),
) -> None:
    if path:
        parser.add_argument("path", nargs="?", metavar="PATH", help="the YAML file")
    for option in options:
        option.add_to(parser, inherited=option.dest in inherited)
    if arguments is not None:
        arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (2 for a usage error, but for a command
    whose ``usage_error`` says otherwise)."""
    streams.fill()
    command: Command | None = None
    try:
        # Known arguments first: an unknown one is then the usage error of its command.
        args, unknown = _parser().parse_known_args(argv)
        command = COMMANDS.get(args.command)
        if command is not None and getattr(args, "subcommand", None):
            parent, command = command, command.subcommands[args.subcommand]
            _check_before(parent, command, args)
        if unknown:
            raise UsageError(f"unrecognized arguments: {' '.join(unknown)}")
        given = getattr(args, "path", None)
        if given is not None and args.config is not None and given != args.config:
            raise UsageError("give the configuration once: PATH or --config")
        args.config = given or args.config
        if command is None:
            doctor.check_serve_options(args, os.environ)
        resolve_all(args, command.options if command else _SERVE, os.environ)
        if args.config is None:
            given_as = "PATH" if command is None or command.path else "--config PATH"
            raise UsageError(f"no configuration file: give {given_as} or set MTASTS_HOST_CONFIG")
    except UsageError as exc:
        print(f"mtasts-host: error: {exc}", file=sys.stderr)
        return exc.status if command is None else command.usage_error
    try:
        if command is None:
            # Once started, uvicorn handles Ctrl-C itself: this is while the file loads.
            return serve(args, (_beside,))
        status = _run(command, args)
        sys.stdout.flush()  # here, where a reader that went away is caught, not at exit
        return status
    except KeyboardInterrupt:
        # Ctrl-C: one line and the status a shell gives a command SIGINT ended, no traceback.
        print("mtasts-host: interrupted", file=sys.stderr)
        return EX_INTERRUPTED
    except BrokenPipeError:
        return streams.reader_gone()
    except OSError as exc:
        failed = streams.write_failed(exc)
        if failed is None:
            raise
        return failed


def _check_before(parent: Command, command: Command, args: argparse.Namespace) -> None:
    """
    Refuse the options of ``parent`` that ``command``, its subcommand, does not have, given
    before the subcommand's name (``reports --days 7 ingest``): they would do nothing.
    """
    own = {option.dest for option in command.options}
    given = [
        f"--{option.name}"
        for option in parent.options
        if option.dest not in own and getattr(args, option.dest) is not None
    ]
    if given:
        name = f"{args.command} {args.subcommand}"
        raise UsageError(f"{', '.join(given)}: not an option of {name}")


def _run(command: Command, args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print_problems(exc, every=command.every_error)
        return command.config_error
    for warning in config.warnings:
        print(warning, file=sys.stderr)
    return command.run(config, args)
