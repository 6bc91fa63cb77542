"""What a successful reload tells the operator: the domains it changed, the ids to publish,
and the removals that senders may still cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from . import dns
from .answers import CACHE_MAX_AGE
from .store import PolicyStore, Served, Snapshot

logger = logging.getLogger("mtasts_host.reload")
"""The reload's own logger: these lines are part of its story."""

_LISTED = 10
"""Domains the reload line names for each kind of change; a count stands for the rest, so
that a reload of a large file logs one line of a readable size."""


def _listing(domains: list[str], ids: Mapping[str, Served] | None) -> str:
    """The first domains, each with its new id if ``ids`` are given, and how many more."""
    listed = [d if ids is None else f"{d} id={ids[d].id}" for d in domains[:_LISTED]]
    more = len(domains) - len(listed)
    return ", ".join(listed) + (f" and {more} more" if more else "")


def _records(old: Snapshot, store: PolicyStore) -> str:
    """
    What to add to a reload line when no policy changed: the DNS records that changed all
    the same (a ``tlsrpt_rua``, ``cname``, ``txt_cname`` or ``dns_ttl`` edited), which
    nothing else would tell an operator who publishes by hand to publish.
    """
    new = store.snapshot
    if old.config.domains == new.config.domains:
        return ""  # the records come from these alone: spare a large file computing them
    added, left = dns.compare(old, new)
    wanted = list(dict.fromkeys(f"{r.name} {r.type}" for r in added))
    gone = list(dict.fromkeys(f"{r.name} {r.type}" for r in left))  # left as they are
    text = ""
    if wanted:
        publish = new.config.publish
        who = (
            "the publisher updates them"
            if publish is not None and publish.auto and store.publishing
            else "publish them ('mtasts-host dns' prints them)"
        )
        text += f"; DNS records changed: {_listing(wanted, None)}; {who}"
    if gone:
        text += f"; DNS records no longer configured: {_listing(gone, None)}; delete them by hand"
    return text


def log_changes(old: Snapshot, store: PolicyStore) -> None:
    """Log what a successful reload changed, and what the operator has to do about it."""
    new = store.snapshot
    if old.config.reports != new.config.reports:
        # The report store is opened once, with the app: a new one needs a new process.
        logger.warning("%s: the reports block changed; restart to apply it", new.config.path)
    before, after = old.served, new.served
    added = [d for d in after if d not in before]
    changed = [d for d in after if d in before and after[d].id != before[d].id]
    removed = [d for d in before if d not in after]
    if not (added or changed or removed):
        logger.info("reloaded %s; no policy changed%s", new.describe(), _records(old, store))
        return
    parts = [
        f"{label} {len(items)}: {_listing(items, ids)}"
        for label, items, ids in (
            ("added", added, after),
            ("changed", changed, after),
            ("removed", removed, None),
        )
        if items
    ]
    publish = new.config.publish
    logger.info(
        "reloaded %s; %s; %s",
        new.describe(),
        "; ".join(parts),
        "the publisher updates the DNS records once the new policies are served"
        if publish is not None and publish.auto and store.publishing
        # Proxies may serve the old policies until their cache lets them go: the id must
        # not change before that (RFC 8461 section 8.1).
        else f"in {CACHE_MAX_AGE} s, once proxies' caches have let the old policies go, "
        "update the _mta-sts TXT id of each added or changed domain ('mtasts-host dns' prints "
        "the records, shared ones included): a new id seen before the new policy is served "
        "has senders cache the old policy under it (RFC 8461 section 8.1)",
    )
    now = time.time()
    for domain in removed:
        policy = before[domain].policy
        # Safe only once every policy the domain served (mode none aside) has expired from
        # senders' caches (RFC 8461 section 8.3); the store knows until when.
        until_at, cached = store.cached_until.get(domain, (0.0, policy))
        if until_at <= now:
            continue
        until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(until_at))
        if cached is not policy:
            logger.warning(
                "%s was removed while senders may still apply a policy it served before (mode "
                "%s, max_age %s) until %s. RFC 8461 section 8.3: serve mode none with a short "
                "max_age and a new TXT id, and remove the domain only after every policy it "
                "served has expired",
                domain,
                cached.mode.value,
                cached.max_age,
                until,
            )
            continue
        logger.warning(
            "%s was removed while in mode %s: senders that cached its policy keep applying it "
            "until %s (max_age %s). RFC 8461 section 8.3: serve mode none with a short max_age "
            "and a new TXT id, and remove the domain only after the old max_age has passed",
            domain,
            policy.mode.value,
            until,
            policy.max_age,
        )
