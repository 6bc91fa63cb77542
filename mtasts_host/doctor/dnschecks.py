"""
The rules for what the DNS answers of the records: ``dns-txt``, ``dns-id`` and ``tlsrpt``
(the MX records' ``mx-coverage`` is in ``mxchecks``). Each takes what was observed and what
the config says, and returns one finding.
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import names
from ..dns import STS_VERSION, TLSRPT_VERSION
from ..policy import policy_id
from . import records
from .facts import Authority, Publishing, Txt
from .findings import Check, Finding, Status


def published_id(txt: Txt) -> str | None:
    """The id senders read from ``txt``: that of its only STS record, if that is valid."""
    candidates = records.selected(txt.records, STS_VERSION)
    if txt.error is not None or len(candidates) != 1:
        return None
    try:
        return records.sts_id(candidates[0])
    except ValueError:
        return None


def dns_txt(domain: str, txt: Txt, expected: str, publishing: Publishing | None = None) -> Finding:
    """
    ``_mta-sts.<domain>``, CNAMEs followed, holds exactly one valid ``v=STSv1`` record.

    Args:
        expected: what to publish, as ``mtasts-host dns`` prints it: the record in quotes,
            or for ``txt_cname`` the CNAME and the record at its target.
        publishing: the automatic publisher has the records pending, if it has: a missing
            one is then its to add.
    """

    def fail(message: str) -> Finding:
        return Finding(domain, Check.DNS_TXT, Status.FAIL, message)

    if txt.error is not None:
        return fail(f"could not look up {txt.name}: {txt.error}")
    candidates = records.selected(txt.records, STS_VERSION)
    where = txt.name if txt.target == txt.name else f"{txt.name} (CNAME to {txt.target})"
    if not candidates and publishing is not None:
        status, message = _publishing(expected, publishing)
        return Finding(
            domain, Check.DNS_TXT, status, f"no v=STSv1 TXT record at {where} yet; {message}"
        )
    if not candidates:
        return fail(
            f"no v=STSv1 TXT record at {where}: senders see no MTA-STS policy; "
            f"publish {expected} (mtasts-host dns prints it)" + _ignored(txt, STS_VERSION)
        )
    if len(candidates) > 1:
        return fail(
            f"{len(candidates)} v=STSv1 TXT records at {where}: senders then ignore MTA-STS "
            f"(RFC 8461 section 3.1); keep only {expected}"
        )
    try:
        sts_id = records.sts_id(candidates[0])
    except ValueError as exc:
        return fail(
            f"the record {candidates[0]!r} at {where} is invalid: {exc}; senders then ignore "
            f"MTA-STS; publish {expected} instead"
        )
    extra = records.sts_duplicates(candidates[0])
    if extra:
        return fail(
            f"the record {candidates[0]!r} at {where} has {extra + 1} id fields: RFC 8461 "
            f"section 3.2 has senders use the first, id={sts_id}, but some (mox) reject the "
            f"record and then ignore MTA-STS; publish {expected} alone"
        )
    others = [record for record in txt.records if record not in candidates]
    if others:
        # RFC 8461 section 3.1 has senders discard them; go-mtasts (maddy) counts every TXT
        # record at the name, and a client that joins them all reads no valid record.
        return Finding(
            domain,
            Check.DNS_TXT,
            Status.WARN,
            f"{where}: '{candidates[0]}', beside {', '.join(map(repr, others))}: RFC 8461 "
            "section 3.1 has senders discard other records, but some (maddy's go-mtasts) then "
            f"see no policy; keep only {expected} at this name",
        )
    return Finding(domain, Check.DNS_TXT, Status.OK, f"{where}: '{candidates[0]}'")


def _ignored(txt: Txt, version: str) -> str:
    """What to add to a message saying there is no ``version`` record at ``txt``: the records
    that look like one, but that senders ignore."""
    found = records.resembling(txt.records, version)
    if not found:
        return ""
    quoted = any(record.lstrip(" \t\ufeff")[:1] in ('"', "'") for record in found)
    return (
        f"; senders ignore {', '.join(map(repr, found))} there: {version} must begin a "
        "record exactly (in this case, with nothing before it)"
        + ("; the quotes are part of the value: enter it without them" if quoted else "")
    )


def dns_id(
    domain: str,
    txt: Txt,
    expected_id: str,
    authorities: Sequence[Authority] = (),
    served: bytes | None = None,
    body: bytes = b"",
    publishing: Publishing | None = None,
) -> Finding:
    """
    The published id is ``expected_id``, the one ``mtasts-host dns`` prints for the name.

    Args:
        authorities: what each authoritative server of the record's zone answers; a
            disagreement among them, or one that does not answer, is a warning.
        served: the policy body ``mta-sts.<domain>`` serves, if it could be fetched, and
        body: the one this config serves: they tell which is newer when the ids differ.
        publishing: the automatic publisher has the records pending, if it has: a wrong id
            is then its to replace, once the new policy is served, and no advice to publish.
    """
    published = published_id(txt)
    record = f"{STS_VERSION}; id={expected_id}"
    if published is None and publishing is not None:
        status, message = _publishing(f"'{record}'", publishing)
        message = f"no valid v=STSv1 record at {txt.name} yet; {message}"
        return Finding(domain, Check.DNS_ID, status, message)
    if published is None:
        message = f"no valid v=STSv1 record at {txt.name} to read an id from (see dns-txt)"
        return Finding(domain, Check.DNS_ID, Status.FAIL, message)
    if all(authority.error is not None for authority in authorities):
        # No name server answers from here while a resolver does: the network between them
        # and the doctor, more likely than a lame delegation; nothing to judge.
        authorities = ()
    answers = _authority_ids(authorities)
    if published != expected_id:
        if answers and set(answers.values()) == {expected_id}:
            message = (
                f"resolvers still see id={published}, but every authoritative server answers "
                f"id={expected_id} already: wait for the cached record's TTL to pass"
            )
            return Finding(domain, Check.DNS_ID, Status.WARN, message)
        if publishing is not None:
            status, message = _publishing(f"'{record}'", publishing)
            return Finding(domain, Check.DNS_ID, status, f"DNS has id={published}; {message}")
        return Finding(domain, Check.DNS_ID, Status.FAIL, _newer(published, record, served, body))
    disagreeing = {server: id_ for server, id_ in answers.items() if id_ != expected_id}
    if disagreeing:
        others = ", ".join(f"{server} answers {id_}" for server, id_ in disagreeing.items())
        message = (
            f"the authoritative servers of {txt.target} disagree: {others}, not "
            f"id={expected_id}: resolvers get one or the other; make every name server "
            "serve the current zone (check zone transfers and SOA serials)"
        )
        return Finding(domain, Check.DNS_ID, Status.WARN, message)
    return Finding(domain, Check.DNS_ID, Status.OK, f"id={published}, as this config gives")


def _publishing(record: str, publishing: Publishing) -> tuple[Status, str]:
    """What the automatic publisher does about ``record``: a warning while it waits, as RFC
    8461 section 8.1 has it, a failure once its runs fail (it retries, but may never make it)."""
    failed = publishing.failed_runs
    if failed:
        runs = "run" if failed == 1 else f"{failed} runs"
        return Status.FAIL, (
            f"the automatic publisher has not published {record}: its last {runs} failed, "
            "and it tries again; see its 'publish:' log lines"
        )
    return Status.WARN, (
        f"the automatic publisher publishes {record} once the new policy has been served "
        "for cache_wait seconds (RFC 8461 section 8.1); nothing to do"
    )


def _authority_ids(authorities: Sequence[Authority]) -> dict[str, str]:
    """Each authoritative server (``name (address)``) and what it gives as the id."""
    result = {}
    for authority in authorities:
        label = f"{authority.server} ({authority.address})"
        if authority.error is not None:
            result[label] = f"nothing ({authority.error})"
        else:
            answer = published_id(Txt(authority.server, authority.records))
            result[label] = answer or "no valid record"
    return result


def _newer(published: str, record: str, served: bytes | None, body: bytes) -> str:
    """What to do when the published id differs: which side changed last decides."""
    if served == body:
        return (
            f"DNS has id={published}, but the policy changed since: publish the new id, "
            f"'{record}' (the new body is served already)"
        )
    if served is not None and policy_id(served) == published:
        return (
            f"DNS has id={published}, the id of the body mta-sts serves now, not of this "
            f"config: the server does not serve this config yet; reload it, then publish "
            f"'{record}'"
        )
    if served is not None:
        return (
            f"DNS has id={published}, the id of neither this config nor the body served: the "
            "TXT changed but the body did not; senders may cache the served body under "
            f"that id (RFC 8461 section 8.1); serve this config, then publish '{record}'"
        )
    return f"DNS has id={published}: publish '{record}' once this config's policy is served"


def tlsrpt(domain: str, txt: Txt, configured: Sequence[str]) -> Finding:
    """One valid ``v=TLSRPTv1`` record, with the ``rua`` the config gives, if any."""
    expected = f"{TLSRPT_VERSION}; rua={','.join(configured)}"
    publish = f"publish '{expected}'"
    moved = _on_policy_hosts(configured)
    if moved:
        # The config's own record would send reports where mtasts-host answers 404.
        publish = (
            f"move {','.join(moved)} in tlsrpt_rua to a host name of their own, like "
            f"https://tlsrpt.{domain}/tlsrpt (a policy host serves the policy alone), then "
            "publish the record `mtasts-host dns` prints"
        )

    def finding(status: Status, message: str) -> Finding:
        return Finding(domain, Check.TLSRPT, status, message)

    if txt.error is not None:
        return finding(Status.WARN, f"could not look up {txt.name}: {txt.error}")
    candidates = records.selected(txt.records, TLSRPT_VERSION)
    if not candidates:
        ignored = _ignored(txt, TLSRPT_VERSION)
        if configured:
            message = f"no v=TLSRPTv1 record at {txt.name}: senders send no reports; "
            return finding(Status.WARN, message + publish + ignored)
        message = f"no TLS-RPT record at {txt.name}, and none configured"
        return finding(Status.WARN if ignored else Status.OK, message + ignored)
    if len(candidates) > 1:
        message = f"{len(candidates)} v=TLSRPTv1 records at {txt.name}: senders then send no "
        keep = f"keep only '{expected}'" if configured else "keep one"
        return finding(Status.FAIL, message + f"reports (RFC 8460 section 3); {keep}")
    try:
        rua = records.tlsrpt_rua(candidates[0])
    except ValueError as exc:
        message = f"the record {candidates[0]!r} at {txt.name} is invalid: {exc}"
        return finding(Status.FAIL, message + "; senders then send no reports")
    on_policy_hosts = _on_policy_hosts(rua)
    if on_policy_hosts:
        message = (
            f"{txt.name} sends reports to {','.join(on_policy_hosts)}: a policy host serves "
            "the policy alone, and mtasts-host answers 404 to reports there; "
        )
        if configured and not moved:
            return finding(Status.WARN, message + publish)
        fix = f"post them to a host name of their own, like https://tlsrpt.{domain}/tlsrpt"
        return finding(Status.WARN, message + fix + ", and set it in tlsrpt_rua")
    if not configured:
        message = f"{txt.name} sends reports to {','.join(rua)}, but the config sets no "
        return finding(Status.WARN, message + "tlsrpt_rua: add it there, or remove the record")
    if sorted(rua) != sorted(configured):
        message = f"{txt.name} sends reports to {','.join(rua)}, the config to "
        return finding(Status.WARN, message + f"{','.join(configured)}: {publish}")
    dropped = records.reporter_drops(candidates[0])
    if dropped is not None:
        # Valid, but the reporter Postfix sends its TLS reports with finds no URI in it.
        message = (
            f"{txt.name} holds {candidates[0]!r}, which RFC 8460 allows, but Postfix's "
            f"reporter (tlsrpt-reporter) sends no reports for it: {dropped}; "
        )
        return finding(Status.WARN, message + publish)
    return finding(Status.OK, f"reports go to {','.join(rua)}, as configured")


def _on_policy_hosts(uris: Sequence[str]) -> list[str]:
    """The ``https:`` URIs of a policy host (which the config only warns of)."""
    return [uri for uri in uris if names.policy_domain_of_url(uri) is not None]
