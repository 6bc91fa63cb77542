"""The YAML configuration file: read, validate every value once, and turn it into policies."""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from . import _yaml, names
from ._block import duplicate_key, unknown_key
from ._fields import got
from ._files import NotAFile, read_file
from ._gc import collector_paused
from ._problems import ConfigError, Problem, Problems, TooManyErrors
from .blocks import (
    PublishSettings,
    ReportsSettings,
    read_publish_settings,
    read_reports_settings,
)
from .settings import (
    DEFAULT_DNS_TTL,
    DomainConfig,
    PolicySettings,
    domain_config,
    read_policy_settings,
    txt_cname_groups,
)

__all__ = [
    "DEFAULT_DNS_TTL",
    "Config",
    "ConfigError",
    "DomainConfig",
    "Problem",
    "load_config",
    "parse_config",
]

_TOP_LEVEL = ("defaults", "domains", "reports", "publish")

FileIdentity = tuple[int, int, int, int, int]
"""A file's device, inode, size, modification and change time: another whenever it is
rewritten or replaced, and whenever its mode, owner or links change (which matters only to a
file refused, maybe made readable again)."""


def file_identity(status: os.stat_result) -> FileIdentity:
    return (
        status.st_dev,
        status.st_ino,
        status.st_size,
        status.st_mtime_ns,
        status.st_ctime_ns,
    )


@dataclass(frozen=True, slots=True)
class Config:
    """A validated configuration: policy domain (A-labels) to its settings, and warnings."""

    path: str
    domains: Mapping[str, DomainConfig]
    warnings: tuple[Problem, ...] = ()
    reports: ReportsSettings | None = None
    """TLS reports, if the ``reports:`` block asks for them."""
    publish: PublishSettings | None = None
    """Where ``mtasts-host publish`` puts the DNS records, if the ``publish:`` block says."""
    read_from: FileIdentity | None = None
    """The identity of the file as it was read (None for text parsed alone): a change made
    since, even before anything watches the file, shows as another identity."""

    def select(self, given: Sequence[str], given_as: str = "--domain") -> list[str]:
        """
        The configured domains named in ``given`` (as ``--domain`` gives them: any case,
        U-labels too), in the file's order; every domain if ``given`` is empty. ``given_as``
        names where they came from in the error.

        Raises:
            ValueError: one of them is not a configured domain; the message names it.
        """
        if not given:
            return list(self.domains)
        wanted = set()
        for text in given:
            try:
                name = names.policy_domain(text)
            except ValueError as exc:
                raise ValueError(f"{given_as} {text!r}: {exc}") from None
            if name not in self.domains:
                raise ValueError(f"{given_as} {text!r}: not configured in {self.path}")
            wanted.add(name)
        return [domain for domain in self.domains if domain in wanted]


def load_config(path: str | os.PathLike[str], previous: Config | None = None) -> Config:
    """
    Read and validate a configuration file.

    Args:
        path: the file.
        previous: the configuration it replaces, if any: settings that did not change are
            shared with it, so that a reload of a large file leaves little memory behind.

    Raises:
        ConfigError: the file is missing, unreadable, too large, or invalid in any way.
    """
    name = os.fspath(path)
    try:
        data, status = read_file(name, _yaml.MAX_FILE_SIZE)
    except NotAFile as exc:
        raise ConfigError(name, [Problem(name, None, "", f"{exc}; expected a YAML file")]) from None
    except OSError as exc:  # unreadable, an I/O error, a stale NFS handle
        raise ConfigError(name, [Problem(name, None, "", _os_reason(exc))]) from exc
    if len(data) > _yaml.MAX_FILE_SIZE:
        message = f"larger than {_yaml.MAX_FILE_SIZE // 2**20} MiB; refusing to parse it"
        raise ConfigError(name, [Problem(name, None, "", message)])
    return parse_config(data, name, previous, read_from=file_identity(status))


def parse_config(
    data: bytes,
    path: str = "<config>",
    previous: Config | None = None,
    *,
    read_from: FileIdentity | None = None,
) -> Config:
    """
    Validate configuration text; ``path`` only names it in messages, and ``read_from`` is
    the identity of the file it was read from.

    Raises:
        ConfigError: the text is not a valid configuration.
    """
    problems = Problems(path)
    reader = _Reader(problems, previous)
    with contextlib.suppress(TooManyErrors):  # raise_errors says so
        try:
            with collector_paused():
                domains = reader.read(_yaml.Document(data))
        except _yaml.YAMLProblem as exc:
            if isinstance(exc, _yaml.NotYAML):
                problems.errors.clear()
            problems.error(exc.line, "", exc.message, exc.column)
    problems.raise_errors()
    return Config(
        path, domains, tuple(problems.warnings), reader.reports, reader.publish, read_from
    )


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return (exc.strerror or str(exc)).lower()


class _Entry(NamedTuple):
    """A domain as read, before ``defaults`` (which may come later) fill it in."""

    name: str
    key: str
    """The domain as written, which messages name."""
    settings: PolicySettings


_EMPTY_FILE = "the file is empty; expected a mapping with a 'domains' key"


class _Reader:
    """
    Reads the document front to back in one pass: each domain's block is validated into
    its settings as soon as it is read, so a large file never exists as one tree, and the
    domains are built once the whole file, ``defaults`` included, has been read.
    """

    def __init__(self, problems: Problems, previous: Config | None) -> None:
        self.problems = problems
        before = previous.domains.values() if previous else ()
        self._domains = {domain: domain for domain in before}
        self.reports: ReportsSettings | None = None
        self.publish: PublishSettings | None = None
        self.lines: dict[str, int] = {}
        """The line of each policy domain."""

    def read(self, document: _yaml.Document) -> dict[str, DomainConfig]:
        if document.empty:
            self.problems.error(1, "", _EMPTY_FILE)
            return {}
        if not document.is_mapping():
            root = document.node()
            if isinstance(root, _yaml.Scalar) and root.is_null:
                self.problems.error(1, "", _EMPTY_FILE)
            else:
                message = f"expected a mapping with a 'domains' key, got {got(root)}"
                self.problems.error(root.line, "", message)
            document.end()
            return {}
        seen: dict[str, int] = {}
        defaults = PolicySettings()
        entries: deque[_Entry] = deque()
        for key in document.entries():
            if key.text not in _TOP_LEVEL:
                self.problems.error(key.line, key.text, unknown_key(key.text, _TOP_LEVEL))
                document.node()
            elif duplicate_key(seen, key, "", self.problems):
                document.node()
            elif key.text == "defaults":
                defaults = read_policy_settings(document.node(), "defaults", self.problems)
            elif key.text == "reports":
                self.reports = read_reports_settings(document.node(), "reports", self.problems)
            elif key.text == "publish":
                self.publish = read_publish_settings(document.node(), "publish", self.problems)
            else:
                entries = self.entries(document, key.line)
        document.end()
        if "domains" not in seen:
            self.problems.error(1, "domains", "missing; expected a mapping of domain names")
        domains: dict[str, DomainConfig] = {}
        while entries:
            # Each entry is dropped as it is built, which leaves its memory to the next.
            entry = entries.popleft()
            name, line = entry.name, self.lines[entry.name]
            settings = entry.settings.over(defaults, name)
            domain = domain_config(name, settings, f"domains.{entry.key}", line, self.problems)
            if domain is not None:
                domains[name] = self.shared(domain)
        self.check_groups(domains)
        return domains

    def entries(self, document: _yaml.Document, line: int) -> deque[_Entry]:
        """The ``domains`` mapping, each entry validated as it is read."""
        entries: deque[_Entry] = deque()
        if not document.is_mapping():
            node = document.node()
            if not (isinstance(node, _yaml.Scalar) and node.is_null):
                self.problems.error(node.line, "domains", f"expected a mapping, got {got(node)}")
            else:
                self.problems.error(line, "domains", "expected at least one domain, got none")
            return entries
        lines = self.lines
        errors = len(self.problems.errors)
        for key in document.entries():
            where = f"domains.{key.text}"
            settings = read_policy_settings(document.node(), where, self.problems)
            try:
                name = names.policy_domain(key.text)
            except ValueError as exc:
                self.problems.error(key.line, where, f"{exc}, got {key.text!r}")
                continue
            if name in lines:
                message = f"same domain as {name!r} on line {lines[name]}"
                self.problems.error(key.line, where, message)
                continue
            lines[name] = key.line
            entries.append(_Entry(name, key.text, settings))
        if not lines and len(self.problems.errors) == errors:
            self.problems.error(line, "domains", "expected at least one domain, got none")
        return entries

    def shared(self, domain: DomainConfig) -> DomainConfig:
        """An equal configuration from the file this one replaces, or this one."""
        return self._domains.setdefault(domain, domain)

    def check_groups(self, domains: dict[str, DomainConfig]) -> None:
        """
        Refuse a shared ``_mta-sts`` record at a name that is itself a CNAME here; warn where
        domains share one record but not one policy, or not one ``dns_ttl``.
        """
        for target, members in txt_cname_groups(domains).items():
            owner = names.sts_owner(target)
            chained = domains[owner].txt_cname if owner is not None and owner in domains else None
            if chained is not None:
                self.problems.error(
                    self.lines[members[0]],
                    f"domains.{members[0]}.txt_cname",
                    f"{target} is itself a CNAME to {chained} (domains.{owner}.txt_cname), "
                    f"so it cannot hold the shared record; point at {chained} instead",
                )
            elif len({domains[name].policy for name in members}) > 1:
                self.problems.warn(
                    self.lines[members[0]],
                    f"domains.{members[0]}.txt_cname",
                    f"{', '.join(members)} share the _mta-sts record at {target} but not one "
                    "policy: its id covers them all, so a change to any one makes senders "
                    "fetch every one again",
                )
            ttls = {domains[name].dns_ttl for name in members}
            if chained is None and len(ttls) > 1:
                self.problems.warn(
                    self.lines[members[0]],
                    f"domains.{members[0]}.dns_ttl",
                    f"{', '.join(members)} share the _mta-sts record at {target} but not one "
                    f"dns_ttl: it gets the shortest, {min(ttls)}",
                )
