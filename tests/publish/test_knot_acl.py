"""
``mtasts-host publish`` against knot ACLs that grant the key less than whole zones: owner
names (``update-owner``) and record types (``update-type``), checked per record. The run's
first update names every record the run will write, so a record the key may not write
stops the run before any policy is fetched.
"""

from __future__ import annotations

import pytest

from mtasts_host import dns
from mtasts_host.config import load_config
from mtasts_host.store import build_snapshot

from .conftest import FIVE_RECORDS, Publish, Write, serve, untouched
from .servers import Dns, PolicyHost

OWNERS = ["_mta-sts.a", "mta-sts.a", "_smtp._tls.a", "_mta-sts.h1", "_mta-sts"]
"""Every owner FIVE_RECORDS writes, relative to its zone (knot appends the zone's name)."""


def _owners(names: list[str]) -> list[str]:
    return [
        "update-owner: name",
        "update-owner-match: equal",
        f"update-owner-name: [{', '.join(names)}]",
    ]


@pytest.mark.parametrize("server", [_owners(OWNERS)], indirect=True)
def test_a_key_granted_exactly_the_records_publishes_them(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(FIVE_RECORDS)
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[-1] == "changed 5 of 5 records"
    records = {r.name: r.value for r in dns.records(build_snapshot(load_config(path)))}
    assert server.values("_mta-sts.a.pub.test") == [records["_mta-sts.a.pub.test"]]
    assert server.values("_mta-sts.provider.test") == [records["_mta-sts.provider.test"]]
    assert server.values("_mta-sts.h1.pub.test", "CNAME") == ["_mta-sts.provider.test"]


@pytest.mark.parametrize(
    "server",
    [_owners([name for name in OWNERS if name != "_smtp._tls.a"]), ["update-type: [TXT]"]],
    ids=["an owner missing", "TXT only"],
    indirect=True,
)
def test_a_key_granted_less_fails_before_fetching(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    Without the TLSRPT record's owner, or without CNAMEs: knot refuses the first update of
    pub.test, which names those records too (NOTAUTH, with the TSIG error BADKEY, as knot
    answers any update its ACL denies), and nothing is fetched, waited for or written.
    """
    path = write(FIVE_RECORDS)
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: TSIG key refused by 127.80.0.1:{server.port} for zone pub.test: "
        "it does not know the key by this name and algorithm, or its ACL does not grant these "
        "records"
    ]
    assert host.served == []
    untouched(server)
