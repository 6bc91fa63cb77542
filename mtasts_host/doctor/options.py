"""How the doctor reaches the world: its options, and what is checked of them before a run."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from .._files import NotAFile
from .._resolver import NoSystemResolver, system_resolver
from ..config import Config
from ..tls import sender_context
from .dnsprobe import Lookup
from .ehlo import ehlo_name


class DoctorError(ValueError):
    """The options cannot work: a domain not configured, a bad EHLO name, an unreadable CA
    file, no resolver."""

    def __init__(self, message: str, option: str | None = None) -> None:
        super().__init__(message if option is None else f"--{option} {message}")
        self.option = option
        """The option whose value is at fault, if the message begins with it."""
        self.detail = message
        """The message without the option's name."""


@dataclass(frozen=True, slots=True)
class DoctorOptions:
    """How the doctor reaches the world."""

    resolver: tuple[str, int] | None = None
    """The one DNS server for every query (see ``resolver_address``); None: the system's."""
    ca_file: str | None = None
    """More trust anchors (PEM) for HTTPS and SMTP, beside the system's store."""
    https_port: int = 443
    smtp_port: int = 25
    timeout: float = 10.0
    """The bound of each network step: one lookup (this machine's name too), one HTTPS
    fetch, one SMTP dialogue."""
    domains: tuple[str, ...] = ()
    """Only these configured domains; all of them if empty."""
    concurrency: int = 64
    """Domains checked at once. A domain's own probes run at once too, so a host that never
    answers costs one timeout, and so do as many domains as this."""
    helo: str | None = None
    """The name given in EHLO (``--ehlo``): a fully qualified host name or an address literal.
    None: this machine's fully qualified name if it has one (and the resolver gives it within
    ``timeout``), else the address literal of the doctor's end of each connection. RFC 5321
    section 4.1.1.1 allows either, and some MX hosts refuse the bare name (a container's id)
    that is often all a machine has."""


def select(config: Config, domains: Sequence[str]) -> list[str]:
    """
    The domains to check (see ``Config.select``).

    Raises:
        DoctorError: one of ``domains`` is not configured.
    """
    try:
        return config.select(domains)
    except ValueError as exc:  # "--domain 'x': ...": the option named as it was given
        raise DoctorError(str(exc).removeprefix("--domain "), "domain") from None


def prepare(options: DoctorOptions) -> tuple[ssl.SSLContext, Lookup]:
    """What a run needs of ``options``: the TLS context and the lookups (see ``validate``)."""
    if options.helo is not None:
        try:
            ehlo_name(options.helo)
        except ValueError as exc:
            raise DoctorError(f"--ehlo: {exc}, got {options.helo!r}") from None
    try:
        context = sender_context(options.ca_file)
    except ssl.SSLError as exc:  # read, but not certificates ("[X509: ...] ... (_ssl.c:...)")
        why = f"expected PEM certificates ({exc.reason or exc})"
        raise DoctorError(f"{options.ca_file}: {why}", "ca-file") from None
    except OSError as exc:  # not read ("[Errno 2] ..."): the reason alone
        raise DoctorError(f"{options.ca_file}: {exc.strerror or exc}", "ca-file") from None
    except NotAFile as exc:
        why = f"{exc}; expected a file of PEM certificates"
        raise DoctorError(f"{options.ca_file}: {why}", "ca-file") from None
    try:
        lookup = system_resolver(partial(Lookup, options.resolver, options.timeout))
    except NoSystemResolver as exc:
        fix = "; give --resolver" if exc.in_file else ""  # which only bypasses the file
        raise DoctorError(f"{exc}{fix}") from None
    return context, lookup


def validate(options: DoctorOptions) -> None:
    """
    Check what can be checked before any run: the EHLO name, the CA file, and that there is
    a resolver.

    Raises:
        DoctorError: the options cannot work; the message names the option.
    """
    prepare(options)
