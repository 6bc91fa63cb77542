"""What is wrong with a configuration file: located problems, collected, and the one error."""

from __future__ import annotations

from dataclasses import dataclass

from ._text import printable


@dataclass(frozen=True, slots=True)
class Problem:
    """One error or warning, located as precisely as the file allows."""

    path: str
    line: int | None
    key: str
    message: str
    column: int | None = None
    warning: bool = False

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        parts = [where, "warning" if self.warning else "", _cut(self.key), _cut(self.message)]
        # One line, whatever a key holds: a line break in it must not forge a second error.
        return printable(": ".join(part for part in parts if part))


_SHOWN = 10_000
"""The characters of a key or a message shown: a value of 30 MiB must not become a log line
(and a /readyz answer) of 30 MiB."""


def _cut(text: str) -> str:
    if len(text) <= _SHOWN:
        return text
    return f"{text[:_SHOWN]}... ({len(text) - _SHOWN} more characters)"


class ConfigError(Exception):
    """
    The configuration cannot be used. ``problems`` holds every error found, in file order;
    the message is one line per problem.
    """

    def __init__(self, path: str, problems: list[Problem], *, stopped: bool = False) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.path = path
        self.problems = tuple(problems)
        self.stopped = stopped
        """More errors were found than kept: the last problem says so, and is none of them."""

    def more(self, shown: int) -> str | None:
        """How many errors there are beyond the first ``shown`` problems, in words (None for
        none): the notice that reading stopped is no error, and stands for some more."""
        errors = len(self.problems) - self.stopped
        more = errors - min(shown, errors)
        if self.stopped:
            return f"over {more} more"
        return f"{more} more" if more else None


MAX_PROBLEMS = 1000
"""The errors, and the warnings, kept of one file: a file of millions of bad or repeated items
(32 MiB of ``a,``) would otherwise take minutes and gigabytes to describe, at every reload."""


class TooManyErrors(Exception):
    """``MAX_PROBLEMS`` errors are reported already: stop reading the file."""


class Problems:
    """The errors and warnings found in one file so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self.stopped = False
        """Errors beyond ``MAX_PROBLEMS`` were found, and reading stopped there."""

    def error(self, line: int | None, key: str, message: str, column: int | None = None) -> None:
        """
        Raises:
            TooManyErrors: there are ``MAX_PROBLEMS`` errors already; this one is not kept.
        """
        if len(self.errors) == MAX_PROBLEMS:
            self.stopped = True
            raise TooManyErrors
        self.errors.append(Problem(self.path, line, key, message, column))

    def warn(self, line: int, key: str, message: str) -> None:
        if len(self.warnings) < MAX_PROBLEMS:
            self.warnings.append(Problem(self.path, line, key, message, warning=True))
        elif len(self.warnings) == MAX_PROBLEMS:
            message = f"more than {MAX_PROBLEMS} warnings; the rest are not shown"
            self.warnings.append(Problem(self.path, line, "", message, warning=True))

    def raise_errors(self) -> None:
        """Raise every error found, in file order, if there is any."""
        if self.errors:
            errors = sorted(self.errors, key=lambda p: p.line or 0)
            if self.stopped:
                message = f"more than {MAX_PROBLEMS} errors; stopped looking for more"
                errors.append(Problem(self.path, None, "", message))
            raise ConfigError(self.path, errors, stopped=self.stopped)
