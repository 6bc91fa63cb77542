"""
Command-line options and their ``MTASTS_HOST_*`` environment variables, parsed and checked by
the same code: a bad value from either place is one usage error naming where it came from.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

from ._digits import decimal, fraction

ENV_PREFIX = "MTASTS_HOST_"
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

_FROM_ENVIRONMENT = "_from_environment"
"""The attribute of the parsed arguments naming the variables ``resolve_all`` used."""
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_MAX_DURATION = 365 * 86400
_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?)([smhd]?)")


def port(text: str) -> int:
    """A TCP port, 1..65535."""
    return _bounded(text, 1, 65535, "a port 1..65535")


def positive_int(text: str) -> int:
    return _bounded(text, 1, sys.maxsize, "a positive integer")


def seconds(text: str) -> float:
    """A positive number of seconds, up to 365 days (see ``duration``)."""
    value = fraction(text)
    if value is None or not 0 < value <= _MAX_DURATION:
        raise ValueError(f"expected a positive number of seconds, at most {_MAX_DURATION}")
    return value


def duration(text: str) -> float:
    """
    Seconds, or a number with a unit (``30s``, ``15m``, ``1h``, ``1d``); 1 s to 365 days,
    as a thread cannot wait much longer than that (``Event.wait(1e12)`` raises).
    """
    match = _DURATION.fullmatch(text.strip())
    value = float(match[1]) * _UNITS[match[2] or "s"] if match else 0.0
    if not 1 <= value <= _MAX_DURATION:
        raise ValueError("expected a duration from 1 s to 365 d, like 30s, 15m or 1h")
    return value


def boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE or lowered in _FALSE:
        return lowered in _TRUE
    raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")


def choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    return parse


def several(parse: Callable[[str], T]) -> Callable[[str], tuple[T, ...]]:
    """Values separated by commas or spaces, each parsed by ``parse``."""

    def parse_all(text: str) -> tuple[T, ...]:
        values = tuple(parse(item) for item in re.split(r"[\s,]+", text.strip()) if item)
        if not values:
            raise ValueError("expected at least one value")
        return values

    parse_all.__name__ = parse.__name__
    return parse_all


def text(value: str) -> str:
    if not value:
        raise ValueError("expected a value")
    return value


def _bounded(text: str, low: int, high: int, expected: str) -> int:
    value = decimal(text, low, high)
    if value is None:
        raise ValueError(f"expected {expected}")
    return value


@dataclass(frozen=True, slots=True)
class Option(Generic[T_co]):
    """
    One option of a command: ``--<name>`` on the command line, ``MTASTS_HOST_<NAME>`` in
    the environment, ``default`` otherwise. ``parse`` raises ValueError saying what it
    expected. A ``flag`` also has ``--no-<name>``. A ``repeat`` option parses to a tuple
    (see ``several``) and may be given several times, the values joined.
    """

    name: str
    parse: Callable[[str], T_co]
    default: T_co | None
    help: str
    metavar: str | None = None
    flag: bool = False
    repeat: bool = False
    unset: str | None = None
    """What ``--help`` says happens when the option is not given, if its default is None."""

    @property
    def variable(self) -> str:
        return variable(self.name)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser, *, inherited: bool = False) -> None:
        """
        Add it to ``parser``; ``inherited``: a subcommand's option that its command has too,
        whose value given before the subcommand's name stands unless given again after it.
        """
        shown = "on" if self.default is True else "off" if self.default is False else self.default
        shown = self.unset if shown is None else shown
        if isinstance(shown, float):
            shown = f"{shown:g}"  # 10, as the README gives it, not 10.0
        elif isinstance(shown, tuple):
            shown = ",".join(map(str, shown))
        default = "" if shown is None else f"default: {shown}; "
        help = f"{self.help} ({default}{self.variable})"
        # argparse sets a subcommand's defaults over what its command's parser has read.
        unset = argparse.SUPPRESS if inherited else None
        if self.flag:
            action = argparse.BooleanOptionalAction
            parser.add_argument(f"--{self.name}", action=action, default=unset, help=help)
        else:
            parser.add_argument(
                f"--{self.name}",
                type=_argument(self.parse),
                action="append" if self.repeat else "store",
                default=unset,
                metavar=self.metavar,
                help=help,
            )

    def from_environment(self, environ: Mapping[str, str]) -> T_co | None:
        """
        The value of the environment variable, or the default if it is not set.

        Raises:
            UsageError: the variable's value is invalid.
        """
        raw = environ.get(self.variable)
        if raw is None:
            return self.default
        try:
            return self.parse(raw)
        except ValueError as exc:
            raise UsageError(f"{self.variable}: {exc}, got {raw!r}") from None


class UsageError(Exception):
    """A command line or environment that cannot be used; the message is one line."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status
        """The exit status, for an error found while the command is not yet known."""


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None

    convert.__name__ = parse.__name__
    return convert


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line, raised rather than printed."""

    choice_hint: str | None = None
    """Added to the error for a file given where a subcommand goes: what to type instead."""
    usage_error = 2
    """The exit status of its errors."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message, self.usage_error)

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        # Subcommands are the only choices: every option value is parsed by a function.
        try:
            super()._check_value(action, value)
        except argparse.ArgumentError as exc:
            # A mistyped subcommand ('ingset') gets argparse's error alone: the choices.
            if self.choice_hint is None or not _path_like(value):
                raise
            raise UsageError(f"{exc}; {self.choice_hint}", self.usage_error) from None


def _path_like(word: str) -> bool:
    """Whether ``word`` looks like a file's path: it has a slash or a dot, or is a file."""
    return "/" in word or "." in word or os.path.exists(word)


def resolve_all(
    args: argparse.Namespace, options: Sequence[Option[object]], environ: Mapping[str, str]
) -> None:
    """Fill in each option that the command line left out, from the environment or default."""
    from_environment = set()
    for option in options:
        value = getattr(args, option.dest)
        if value is None:
            setattr(args, option.dest, option.from_environment(environ))
            if option.variable in environ:
                from_environment.add(option.variable)
        elif option.repeat:
            setattr(args, option.dest, tuple(item for given in value for item in given))
    setattr(args, _FROM_ENVIRONMENT, frozenset(from_environment))


def given_as(args: argparse.Namespace, name: str) -> str:
    """
    How option ``name`` was given, for an error about its value found later (a domain not
    configured): ``--<name>``, or its variable if ``resolve_all`` took it from there.
    """
    named = variable(name)
    return named if named in getattr(args, _FROM_ENVIRONMENT, ()) else f"--{name}"


def variable(name: str) -> str:
    """The environment variable of option ``name``: ``MTASTS_HOST_CA_FILE`` of ``ca-file``."""
    return ENV_PREFIX + name.upper().replace("-", "_")
