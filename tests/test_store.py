"""The snapshot of served policies."""

from __future__ import annotations

from mtasts_host import Mode, Policy, PolicyStore
from mtasts_host.config import Config, DomainConfig
from mtasts_host.policy import policy_id

TESTING = DomainConfig(Policy(Mode.TESTING, ("mx.example.net",)))
ENFORCE = DomainConfig(Policy(Mode.ENFORCE, ("mx.example.net",)))


def config(**domains: DomainConfig) -> Config:
    return Config("c.yaml", {name.replace("_", "."): d for name, d in domains.items()})


def test_lookup_is_exact() -> None:
    store = PolicyStore(config(a_example=TESTING))
    served = store.lookup("a.example")
    assert served is not None
    assert served.body == TESTING.policy.render()
    assert served.id == policy_id(served.body)
    assert store.lookup("b.example") is None
    assert store.lookup("x.a.example") is None


def test_equal_policies_share_one_response() -> None:
    store = PolicyStore(config(a_example=TESTING, b_example=TESTING, c_example=ENFORCE))
    assert store.lookup("a.example") is store.lookup("b.example")
    assert store.lookup("a.example") is not store.lookup("c.example")


def test_replace_swaps_everything_at_once() -> None:
    store = PolicyStore(config(a_example=TESTING))
    before = store.snapshot
    old = store.replace(config(b_example=ENFORCE))
    assert old is before
    assert store.lookup("a.example") is None
    assert store.lookup("b.example") is not None
    assert store.config.domains.keys() == {"b.example"}
    assert before.served.keys() == {"a.example"}  # the old snapshot itself is untouched


def test_digest_names_the_served_set() -> None:
    one = PolicyStore(config(a_example=TESTING, b_example=ENFORCE)).snapshot
    same = PolicyStore(config(b_example=ENFORCE, a_example=TESTING)).snapshot
    other = PolicyStore(config(a_example=ENFORCE, b_example=TESTING)).snapshot
    assert one.digest == same.digest != other.digest
    assert len(one.digest) == 32
    assert one.describe() == f"c.yaml: 2 domains, digest {one.digest}"


def test_status_follows_replace_and_reject() -> None:
    store = PolicyStore(config(a_example=TESTING))
    store.reject("c.yaml:1: broken")
    assert (store.status.failed, store.status.last_error) == (1, "c.yaml:1: broken")
    assert store.status.last_error_at is not None
    store.replace(config(a_example=ENFORCE))
    status = store.status
    assert (status.succeeded, status.failed) == (1, 1)
    assert status.last_error is None
    assert status.last_error_at is None


def test_only_policies_that_outlast_the_one_served_now_are_remembered() -> None:
    # What senders may still cache after a change (RFC 8461 section 8.3), for the warning
    # on removal; a reload of many changed policies must not keep every old one for a year.
    day = 86400
    store = PolicyStore(config(a_example=TESTING, b_example=TESTING, c_example=ENFORCE))
    other_mx = DomainConfig(Policy(Mode.TESTING, ("mx2.example.net",)))
    shorter = DomainConfig(Policy(Mode.TESTING, ("mx.example.net",), day))
    withdrawn = DomainConfig(Policy(Mode.NONE, ("mx.example.net",), day))
    store.replace(config(a_example=other_mx, b_example=shorter, c_example=withdrawn))
    assert store.cached_until.keys() == {"b.example", "c.example"}
    until, policy = store.cached_until["c.example"]
    assert policy is ENFORCE.policy
    assert until == store.snapshot.loaded_at + ENFORCE.policy.max_age
