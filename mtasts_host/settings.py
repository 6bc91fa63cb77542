"""
A policy block as written (``defaults``, or one domain's entry), and what one domain
resolves to once ``defaults`` fill it in.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

from . import _block, _fields, _yaml, names
from ._problems import Problems
from .policy import DEFAULT_MAX_AGE, MAX_BODY_SIZE, Mode, Policy


# A NamedTuple, not a frozen dataclass: two are built for every domain of every load, and a
# frozen dataclass takes three times as long to build (its __init__ sets each field through
# object.__setattr__), a tenth of the load of 100,000 domains.
class PolicySettings(NamedTuple):
    """
    The keys of a policy block, each typed and validated, or None where the block leaves it
    out. ``lines`` locates every key given; ``failed`` names those whose values were
    invalid and have been reported.
    """

    version: str | None = None
    mode: Mode | None = None
    mx: tuple[str, ...] | None = None
    max_age: int | None = None
    cname: str | None = None
    txt_cname: str | None = None
    tlsrpt_rua: tuple[str, ...] | None = None
    dns_ttl: int | None = None
    lines: Mapping[str, int] = MappingProxyType({})
    failed: frozenset[str] = frozenset()

    def over(self, defaults: PolicySettings, name: str) -> PolicySettings:
        """
        These settings of the domain ``name``, with ``defaults`` filling in what they leave
        out. A ``cname`` or ``txt_cname`` in the defaults that names this domain's own record
        does not apply to it: that domain is the one the others point at (RFC 8461 section
        8.2), which it could not otherwise say, as it cannot set the key to nothing.
        """
        failed = self.failed
        if defaults.failed:
            failed |= defaults.failed - self.lines.keys()
        cname, txt_cname = self.cname, self.txt_cname
        if cname is None and defaults.cname != names.POLICY_HOST_PREFIX + name:
            cname = defaults.cname
        if txt_cname is None and defaults.txt_cname != names.STS_PREFIX + name:
            txt_cname = defaults.txt_cname
        return PolicySettings(
            self.version if self.version is not None else defaults.version,
            self.mode if self.mode is not None else defaults.mode,
            self.mx if self.mx is not None else defaults.mx,
            self.max_age if self.max_age is not None else defaults.max_age,
            cname,
            txt_cname,
            self.tlsrpt_rua if self.tlsrpt_rua is not None else defaults.tlsrpt_rua,
            self.dns_ttl if self.dns_ttl is not None else defaults.dns_ttl,
            {**defaults.lines, **self.lines} if defaults.lines else self.lines,
            failed,
        )


POLICY_KEYS = PolicySettings._fields[:-2]


def read_policy_settings(node: _yaml.Node, where: str, problems: Problems) -> PolicySettings:
    """Validate one policy block, reporting every problem; invalid keys come back as None."""
    block = _block.Block(node, where, POLICY_KEYS, problems)
    get = block.get
    settings = PolicySettings(
        get("version", _fields.version),
        get("mode", _fields.mode),
        get("mx", _fields.mx_patterns),
        get("max_age", _fields.max_age),
        get("cname", _fields.host_name),
        get("txt_cname", _fields.dns_name),
        get("tlsrpt_rua", _fields.report_uris),
        get("dns_ttl", _fields.dns_ttl),
        block.lines,
        block.failed,
    )
    block.close()
    return settings


DEFAULT_DNS_TTL = 3600
_WEEK = 604_800
_HOUR = 3600


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


def txt_record(name: str, settings: DomainConfig) -> str:
    """Where the ``_mta-sts`` TXT record of domain ``name`` is: its ``txt_cname``, or its own."""
    return settings.txt_cname or names.STS_PREFIX + name


def txt_cname_groups(domains: Mapping[str, DomainConfig]) -> dict[str, list[str]]:
    """
    The domains that share each ``_mta-sts`` record, by the ``txt_cname`` they point at. A
    configured domain whose own ``_mta-sts`` name is that target, as the provider's in RFC
    8461 section 8.2, shares the record too: it comes last.
    """
    groups: dict[str, list[str]] = {}
    for name, settings in domains.items():
        if settings.txt_cname is not None:
            groups.setdefault(settings.txt_cname, []).append(name)
    for target, members in groups.items():
        owner = names.sts_owner(target)
        if owner is not None and owner in domains and domains[owner].txt_cname is None:
            members.append(owner)
    return groups


def domain_config(
    name: str, settings: PolicySettings, where: str, line: int, problems: Problems
) -> DomainConfig | None:
    """
    Check the rules that tie one domain's values together and build its configuration;
    None if they fail (and are reported) or a value failed before.
    """
    if settings.failed:
        return None  # reported where the value was read
    if settings.mode is None:
        message = "missing; expected one of enforce, testing, none (set it here or in 'defaults')"
        problems.error(line, f"{where}.mode", message)
        return None
    max_age = DEFAULT_MAX_AGE if settings.max_age is None else settings.max_age
    try:
        policy = Policy(settings.mode, settings.mx or (), max_age)
    except ValueError as exc:
        problems.error(settings.lines.get("mx", line), f"{where}.mx", str(exc))
        return None
    for key, target, prefix in (
        ("cname", settings.cname, names.POLICY_HOST_PREFIX),
        ("txt_cname", settings.txt_cname, names.STS_PREFIX),
    ):
        if target is not None and target == prefix + name:
            problems.error(settings.lines[key], f"{where}.{key}", "the CNAME would point to itself")
            return None
    record = names.TLSRPT_PREFIX + name
    if settings.tlsrpt_rua and len(record) > names.MAX_NAME:
        message = (
            f"{record} would be {len(record)} characters long, longer than a DNS name can be "
            f"({names.MAX_NAME}): the domain is too long for reports"
        )
        problems.error(settings.lines["tlsrpt_rua"], f"{where}.tlsrpt_rua", message)
        return None
    # Rendering is left to the store; only a policy that could be too large is measured.
    estimate = sum(len(pattern) + 6 for pattern in policy.mx) + 64
    size = len(policy.render()) if estimate > MAX_BODY_SIZE else estimate
    if size > MAX_BODY_SIZE:
        message = f"the policy is {size} bytes; senders accept at most {MAX_BODY_SIZE}"
        problems.error(line, where, message)
        return None
    _warn(policy, settings.lines.get("max_age", line), where, line, problems)
    return DomainConfig(
        policy,
        settings.cname,
        settings.tlsrpt_rua or (),
        DEFAULT_DNS_TTL if settings.dns_ttl is None else settings.dns_ttl,
        settings.txt_cname,
    )


def _warn(policy: Policy, max_age_line: int, where: str, line: int, problems: Problems) -> None:
    """Warn about what senders accept but handle badly."""
    if not policy.mx:
        message = (
            "mode none without mx: Stalwart rejects such a policy; "
            "keep the old mx patterns while withdrawing it"
        )
        problems.warn(line, where, message)
    max_age = policy.max_age
    if max_age < _HOUR:
        message = f"{max_age} is under an hour; Stalwart caches such a policy for a day instead"
        problems.warn(max_age_line, f"{where}.max_age", message)
    if policy.mode is Mode.ENFORCE and max_age < _WEEK:
        message = f"{max_age} is under a week; RFC 8461 expects weeks or greater in enforce"
        problems.warn(max_age_line, f"{where}.max_age", message)
