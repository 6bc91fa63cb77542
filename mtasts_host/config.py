"""The YAML configuration file: read, validate every value once, and turn it into policies."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from . import _yaml, names
from ._fields import POLICY_FIELDS, POLICY_KEYS, TOP_LEVEL, Invalid, got, string, unknown_key, uri
from ._gc import collector_paused
from .policy import DEFAULT_MAX_AGE, MAX_BODY_SIZE, Mode, Policy

DEFAULT_DNS_TTL = 3600
_WEEK = 604_800
_HOUR = 3600


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
        return ": ".join(part for part in parts if part)


class ConfigError(Exception):
    """
    The configuration cannot be used. ``problems`` holds every error found, in file order;
    the message is one line per problem.
    """

    def __init__(self, path: str, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.path = path
        self.problems = tuple(problems)


@dataclass(frozen=True, slots=True)
class DomainConfig:
    """Everything configured for one policy domain."""

    policy: Policy
    cname: str | None = None
    """Target of the ``mta-sts.<domain>`` CNAME record, if the operator names one."""
    tlsrpt_rua: tuple[str, ...] = ()
    """Report URIs for the ``_smtp._tls.<domain>`` TXT record (RFC 8460)."""
    dns_ttl: int = DEFAULT_DNS_TTL
    txt_cname: str | None = None
    """Where ``_mta-sts.<domain>`` points by CNAME, if its TXT record is shared (RFC 8461
    section 8.2): the domains pointing at one name form a group with one policy id."""


@dataclass(frozen=True, slots=True)
class Config:
    """A validated configuration: policy domain (A-labels) to its settings, and warnings."""

    path: str
    domains: Mapping[str, DomainConfig]
    warnings: tuple[Problem, ...] = ()


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
        # O_NONBLOCK: a FIFO in place of the file must give an error, not a hang.
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(name, [Problem(name, None, "", _os_reason(exc))]) from exc
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file"
        raise ConfigError(name, [Problem(name, None, "", f"{kind}; expected a YAML file")])
    with os.fdopen(fd, "rb") as file:
        data = file.read(_yaml.MAX_FILE_SIZE + 1)
    if len(data) > _yaml.MAX_FILE_SIZE:
        message = f"larger than {_yaml.MAX_FILE_SIZE // 2**20} MiB; refusing to parse it"
        raise ConfigError(name, [Problem(name, None, "", message)])
    return parse_config(data, name, previous)


def parse_config(data: bytes, path: str = "<config>", previous: Config | None = None) -> Config:
    """
    Validate configuration text; ``path`` only names it in messages.

    Raises:
        ConfigError: the text is not a valid configuration.
    """
    reader = _Reader(path, previous)
    try:
        with collector_paused():
            return reader.read(_yaml.Document(data))
    except _yaml.YAMLProblem as exc:
        problem = Problem(path, exc.line, "", exc.message, exc.column)
        raise ConfigError(path, [*reader.errors, problem]) from exc


def _os_reason(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    return (exc.strerror or str(exc)).lower()


_BROKEN = object()  # a value that failed validation and has been reported


class _Reader:
    def __init__(self, path: str, previous: Config | None = None) -> None:
        self.path = path
        self.errors: list[Problem] = []
        self.warnings: list[Problem] = []
        self._mx_cache: dict[str, str] = {}
        self._configs: dict[DomainConfig, DomainConfig] = (
            {settings: settings for settings in previous.domains.values()} if previous else {}
        )

    def error(self, line: int, key: str, message: str) -> None:
        self.errors.append(Problem(self.path, line, key, message))

    def warn(self, line: int, key: str, message: str) -> None:
        self.warnings.append(Problem(self.path, line, key, message, warning=True))

    def read(self, document: _yaml.Document) -> Config:
        domains: dict[str, DomainConfig] = {}
        if document.empty:
            self.error(1, "", "the file is empty; expected a mapping with a 'domains' key")
        elif not document.is_mapping():
            root = document.node()
            if isinstance(root, _yaml.Scalar) and root.is_null:
                self.error(1, "", "the file is empty; expected a mapping with a 'domains' key")
            else:
                message = f"expected a mapping with a 'domains' key, got {got(root)}"
                self.error(root.line, "", message)
        else:
            domains = self.top_level(document)
        if not document.empty:
            document.end()
        if not self.errors:
            return Config(self.path, domains, tuple(self.warnings))
        raise ConfigError(self.path, sorted(self.errors, key=lambda p: p.line or 0))

    def top_level(self, document: _yaml.Document) -> dict[str, DomainConfig]:
        seen: dict[str, int] = {}
        defaults: dict[str, Any] = {}
        domains: dict[str, DomainConfig] = {}
        deferred: _yaml.Node | None = None
        for key in document.entries():
            if not self.usable_key(key, "", TOP_LEVEL, seen):
                document.node()
            elif key.text == "defaults":
                defaults = self.fields(document.node(), "defaults")
            elif "defaults" in seen or not document.is_mapping():
                # With the defaults known, validate each domain as it is read: a large file
                # never exists as one tree.
                domains = self.domains(self.pairs(document), defaults, key.line)
            else:
                deferred = document.node()  # defaults may still follow
        if deferred is not None:
            domains = self.domains(self.pairs(deferred), defaults, seen["domains"])
        elif "domains" not in seen:
            self.error(1, "domains", "missing; expected a mapping of domain names")
        return domains

    def pairs(
        self, source: _yaml.Document | _yaml.Node
    ) -> Iterator[tuple[_yaml.Scalar, _yaml.Node]]:
        """The entries of the ``domains`` mapping, from the document or from a node."""
        if isinstance(source, _yaml.Document):
            if not source.is_mapping():
                yield from self.pairs(source.node())
                return
            for key in source.entries():
                yield key, source.node()
        elif isinstance(source, _yaml.Mapping):
            yield from source.items
        elif not (isinstance(source, _yaml.Scalar) and source.is_null):
            self.error(source.line, "domains", f"expected a mapping, got {got(source)}")

    def usable_key(
        self, key: _yaml.Scalar, where: str, valid: tuple[str, ...], seen: dict[str, int]
    ) -> bool:
        """Report an unknown or repeated key; else note where it was seen and say yes."""
        path = f"{where}.{key.text}" if where else key.text
        if key.text not in valid:
            self.error(key.line, path, unknown_key(key.text, valid))
        elif key.text in seen:
            self.error(key.line, path, f"duplicate key (first on line {seen[key.text]})")
        else:
            seen[key.text] = key.line
            return True
        return False

    def mapping(
        self, node: _yaml.Node, where: str, valid: tuple[str, ...]
    ) -> dict[str, tuple[_yaml.Scalar, _yaml.Node]]:
        """The entries of a mapping, reporting duplicate and unknown keys."""
        if isinstance(node, _yaml.Scalar) and node.is_null:
            return {}
        if not isinstance(node, _yaml.Mapping):
            self.error(node.line, where, f"expected a mapping, got {got(node)}")
            return {}
        seen: dict[str, int] = {}
        return {
            key.text: (key, value)
            for key, value in node.items
            if self.usable_key(key, where, valid, seen)
        }

    def fields(self, node: _yaml.Node, where: str) -> dict[str, Any]:
        """The validated values of one policy block; a failed value becomes _BROKEN."""
        values: dict[str, Any] = {}
        if not isinstance(node, _yaml.Mapping | _yaml.Scalar) or (
            isinstance(node, _yaml.Scalar) and not node.is_null
        ):
            self.error(node.line, where, f"expected a mapping, got {got(node)}")
            return {"": _BROKEN}
        for name, (key, value) in self.mapping(node, where, POLICY_KEYS).items():
            try:
                values[name] = POLICY_FIELDS[name](value)
            except Invalid as exc:
                self.error(value.line, f"{where}.{name}", str(exc))
                values[name] = _BROKEN
                continue
            if name == "mx":
                values[name] = self.mx(values[name], f"{where}.mx")
            elif name == "tlsrpt_rua":
                values[name] = self.rua(values[name], f"{where}.tlsrpt_rua")
            values[name + "@"] = key.line
        return values

    def mx(self, items: list[_yaml.Node], where: str) -> Any:
        patterns: dict[str, None] = {}
        ok = True
        for index, item in enumerate(items):
            text = item.text if isinstance(item, _yaml.Scalar) else None
            pattern = self._mx_cache.get(text) if text is not None else None
            if pattern is None:
                try:
                    raw = string(item, "an mx pattern")
                    pattern = names.mx_pattern(raw)
                except ValueError as exc:
                    shown = "" if isinstance(exc, Invalid) else f", got {got(item)}"
                    self.error(item.line, f"{where}[{index}]", f"{exc}{shown}")
                    ok = False
                    continue
                self._mx_cache[raw] = pattern
            if pattern in patterns:
                self.warn(item.line, f"{where}[{index}]", f"duplicate of {pattern!r}, removed")
            patterns[pattern] = None
        return tuple(patterns) if ok else _BROKEN

    def rua(self, items: list[_yaml.Node], where: str) -> Any:
        uris: list[str] = []
        for index, item in enumerate(items):
            try:
                uris.append(uri(string(item, "a report URI")))
            except Invalid as exc:
                self.error(item.line, f"{where}[{index}]", str(exc))
                return _BROKEN
        return tuple(uris)

    def domains(
        self,
        pairs: Iterable[tuple[_yaml.Scalar, _yaml.Node]],
        defaults: dict[str, Any],
        line: int,
    ) -> dict[str, DomainConfig]:
        domains: dict[str, DomainConfig] = {}
        lines: dict[str, int] = {}
        errors = len(self.errors)
        for key, value in pairs:
            where = f"domains.{key.text}"
            try:
                name = names.policy_domain(key.text)
            except ValueError as exc:
                self.error(key.line, where, f"{exc}, got {key.text!r}")
                continue
            if name in lines:
                self.error(key.line, where, f"same domain as {name!r} on line {lines[name]}")
                continue
            lines[name] = key.line
            values = {**defaults, **self.fields(value, where)}
            domain = self.domain(name, values, where, key.line)
            if domain is not None:
                domains[name] = self._configs.setdefault(domain, domain)
        if not lines and len(self.errors) == errors:
            self.error(line, "domains", "expected at least one domain, got none")
        self.check_groups(domains, lines)
        return domains

    def check_groups(self, domains: dict[str, DomainConfig], lines: dict[str, int]) -> None:
        """Warn where domains share one ``_mta-sts`` record but not one policy."""
        groups: dict[str, list[str]] = {}
        for name, settings in domains.items():
            if settings.txt_cname is not None:
                groups.setdefault(settings.txt_cname, []).append(name)
        for target, members in groups.items():
            if len({domains[name].policy for name in members}) > 1:
                self.warn(
                    lines[members[0]],
                    f"domains.{members[0]}.txt_cname",
                    f"{', '.join(members)} share the _mta-sts record at {target} but not one "
                    "policy: its id covers them all, so a change to any one makes senders "
                    "fetch every one again",
                )

    def domain(
        self, name: str, values: dict[str, Any], where: str, line: int
    ) -> DomainConfig | None:
        if _BROKEN in values.values():
            return None
        mode = values.get("mode")
        if mode is None:
            self.error(
                line,
                f"{where}.mode",
                "missing; expected one of enforce, testing, none (set it here or in 'defaults')",
            )
            return None
        mx: tuple[str, ...] = values.get("mx", ())
        max_age: int = values.get("max_age", DEFAULT_MAX_AGE)
        if mode is not Mode.NONE and not mx:
            self.error(
                values.get("mx@", line),
                f"{where}.mx",
                f"mode {mode.value} needs at least one mx pattern",
            )
            return None
        if not mx:
            self.warn(
                line,
                where,
                "mode none without mx: Stalwart rejects such a policy; "
                "keep the old mx patterns while withdrawing it",
            )
        if max_age < _HOUR:
            self.warn(
                values.get("max_age@", line),
                f"{where}.max_age",
                f"{max_age} is under an hour; Stalwart caches such a policy for a day instead",
            )
        if mode is Mode.ENFORCE and max_age < _WEEK:
            self.warn(
                values.get("max_age@", line),
                f"{where}.max_age",
                f"{max_age} is under a week; RFC 8461 expects weeks or greater in enforce",
            )
        cname = values.get("cname")
        if cname is not None and cname == names.POLICY_HOST_PREFIX + name:
            self.error(values["cname@"], f"{where}.cname", "the CNAME would point to itself")
            return None
        txt_cname = values.get("txt_cname")
        if txt_cname is not None and txt_cname == f"_mta-sts.{name}":
            message = "the CNAME would point to itself"
            self.error(values["txt_cname@"], f"{where}.txt_cname", message)
            return None
        policy = Policy(mode, mx, max_age)
        # Rendering is left to the store; only a policy that could be too large is measured.
        estimate = sum(len(pattern) + 6 for pattern in mx) + 64
        size = len(policy.render()) if estimate > MAX_BODY_SIZE else estimate
        if size > MAX_BODY_SIZE:
            self.error(
                line, where, f"the policy is {size} bytes; senders accept at most {MAX_BODY_SIZE}"
            )
            return None
        return DomainConfig(
            policy,
            cname,
            values.get("tlsrpt_rua", ()),
            values.get("dns_ttl", DEFAULT_DNS_TTL),
            txt_cname,
        )
