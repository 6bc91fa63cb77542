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
        parts = [where, "warning" if self.warning else "", self.key, self.message]
        # One line, whatever a key holds: a line break in it must not forge a second error.
        return printable(": ".join(part for part in parts if part))


class ConfigError(Exception):
    """
    The configuration cannot be used. ``problems`` holds every error found, in file order;
    the message is one line per problem.
    """

    def __init__(self, path: str, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.path = path
        self.problems = tuple(problems)


class Problems:
    """The errors and warnings found in one file so far."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []

    def error(self, line: int | None, key: str, message: str, column: int | None = None) -> None:
        self.errors.append(Problem(self.path, line, key, message, column))

    def warn(self, line: int, key: str, message: str) -> None:
        self.warnings.append(Problem(self.path, line, key, message, warning=True))

    def raise_errors(self) -> None:
        """Raise every error found, in file order, if there is any."""
        if self.errors:
            raise ConfigError(self.path, sorted(self.errors, key=lambda p: p.line or 0))
