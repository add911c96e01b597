"""Request-time enforcement: the rules run on fresh register state before any key is touched."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import date

import pytest
from cryptography import x509
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from smki.audit import AuditEvent
from smki.ca.devcsr import make_device_csr, make_organisation_csr
from smki.domain import CertificatePolicy, CertKind, RemotePartyRole, Route, Usage
from smki.errors import SmkiError
from smki.ra import AroStatus, CertificateRequestFacts, PolicyRefusal, SubscriberStanding
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services import reinstatement as reinstate
from smki.services.batch_sources import BatchItem
from smki.services.context import Home
from smki.services.requests import (
    Requester,
    _passed,
    authorise,
    request_device,
    request_device_batch,
    request_organisation,
)
from smki.store.store import CertificateQuery
from tests.ra_services.conftest import ENTITY, OTHER_ENTITY, audit_after, head, qualified_party, verified_aro

DEVICE_ID = bytes.fromhex("00DB123456789001")
GATEWAY = Requester("P1", "A1", Route.GATEWAY)
SPOTI = Requester("P1", "A1", Route.SPOTI)
DEVICE_FACTS = CertificateRequestFacts(CertificatePolicy.DEVICE, Route.GATEWAY)


def _approve(home: Home, policy: str) -> None:
    app = apps.apply(home, "P1", policy, staff_id="op1")
    if policy == "device":
        apps.add_evidence(home, app.application_id, "installation-need", "RA-EV-1", staff_id="op1")
    apps.propose(home, app.application_id, staff_id="op1")
    apps.approve(home, app.application_id, staff_id="ap1")


@pytest.fixture
def subscriber(staffed: Home) -> Home:
    """P1 (entity 90B3D51F30010000, supplier) approved for both policies; ARO A1 verified and screened."""
    qualified_party(staffed)
    verified_aro(staffed)
    _approve(staffed, "device")
    _approve(staffed, "organisation")
    return staffed


def _keyless(home: Home) -> Home:
    """The same home with no CA key secret: any attempt to sign fails with key.secret-missing."""
    return replace(home, secret=None, _backend=None)


def _refusal(call: object) -> PolicyRefusal:
    with pytest.raises(PolicyRefusal) as info:
        call()  # type: ignore[operator]
    assert info.value.code == "ra.refused"
    return info.value


def test_a_device_request_over_the_gateway_is_issued_and_audited_with_who_and_how(subscriber: Home) -> None:
    home = subscriber
    seq = head(home)
    outcome = request_device(home, GATEWAY, make_device_csr(DEVICE_ID, Usage.KA), batch_ref="adhoc-1")
    assert outcome.ok and outcome.device_id == DEVICE_ID and outcome.usage is Usage.KA
    assert outcome.der is not None
    cert = x509.load_der_x509_certificate(outcome.der)
    device_ca = home.ca_certificate(CertKind.DEVICE_CA)
    cert.verify_directly_issued_by(device_ca)
    events = audit_after(home, seq)
    assert [(actor, action) for actor, action, _ in events] == [
        ("aro:A1@P1", "request.authorised"), ("aro:A1@P1", "batch.started"),
        ("aro:A1@P1", "device-certificates.issued"), ("aro:A1@P1", "batch.completed")]
    authorised = events[0][2]
    assert authorised["party"] == "P1" and authorised["aro"] == "A1" and authorised["route"] == "gateway"
    assert authorised["ruleset"] == "MP127" and "channel.device-via-gateway" in authorised["rules"]  # type: ignore[operator]
    bad = request_device(home, GATEWAY, b"not a csr")
    assert not bad.ok and bad.error_code is not None and bad.error_code.startswith("csr.")


def test_device_over_spoti_is_refused_before_any_key_is_touched(subscriber: Home) -> None:
    home = _keyless(subscriber)
    seq = head(home)
    items = (BatchItem(i, f"i{i}", make_device_csr(DEVICE_ID, Usage.DS)) for i in range(3))
    refusal = _refusal(lambda: request_device_batch(home, SPOTI, items, batch_ref="b-spoti"))
    assert refusal.decision.failed_ids == ("channel.device-via-gateway", "channel.spoti-organisation-only")
    [(actor, action, details)] = audit_after(home, seq)
    assert (actor, action, details["rules"], details["route"]) == (
        "aro:A1@P1", "request.refused", ["channel.device-via-gateway", "channel.spoti-organisation-only"], "spoti")
    assert details["decision"]["outcome"] == "refuse"  # type: ignore[index]
    assert home.store.certificates_for_device(DEVICE_ID) == []
    with pytest.raises(SmkiError) as info:  # the same request over the Gateway gets as far as the key
        request_device_batch(home, GATEWAY, [], batch_ref="b-gw")
    assert info.value.code == "key.secret-missing"


def test_suspensions_take_effect_on_the_very_next_request(subscriber: Home) -> None:
    home = subscriber
    assert authorise(home, GATEWAY, DEVICE_FACTS).approved
    reg.set_subscriber_standing(home, "P1", "device", "suspended", staff_id="op1")
    assert _refusal(lambda: authorise(home, GATEWAY, DEVICE_FACTS)).decision.failed_ids == (
        "subscriber.authorised-for-policy",)
    reinstate.decide_reinstatement(home, reinstate.propose_subscriber_reinstatement(
        home, "P1", "device", staff_id="op1").item, staff_id="ap1", approve=True)
    assert authorise(home, GATEWAY, DEVICE_FACTS).approved
    reg.set_aro_status(home, "A1", "suspended", staff_id="op1")
    assert _refusal(lambda: authorise(home, GATEWAY, DEVICE_FACTS)).decision.failed_ids == ("aro.active",)
    reinstate.decide_reinstatement(home, reinstate.propose_aro_reinstatement(home, "A1", staff_id="op1").item,
                                   staff_id="ap1", approve=True)
    reg.set_party_status(home, "P1", reg.StatusChange(drop_gateways=("GW-1",)), staff_id="op1")
    assert _refusal(lambda: authorise(home, GATEWAY, DEVICE_FACTS)).decision.failed_ids == (
        "device.gateway-channel",)


def test_organisation_csrs_name_only_the_partys_own_entities_and_roles(subscriber: Home) -> None:
    home = subscriber
    reg.add_party(home, "P2", "Other Co", "small-supplier", staff_id="op1")
    reg.set_party_entity(home, "P2", OTHER_ENTITY, ["2"], staff_id="op1")
    keyless = _keyless(home)
    other = make_organisation_csr(bytes.fromhex(OTHER_ENTITY), RemotePartyRole.SUPPLIER, Usage.DS, "P2")
    refusal = _refusal(lambda: request_organisation(keyless, SPOTI, other))
    assert refusal.decision.failed_ids == ("org.entity-belongs-to-party", "org.role-permitted")
    wrong_role = make_organisation_csr(bytes.fromhex(ENTITY), RemotePartyRole.NETWORK_OPERATOR, Usage.DS, "P1")
    assert _refusal(lambda: request_organisation(keyless, GATEWAY, wrong_role)).decision.failed_ids == (
        "org.role-permitted",)
    seq = head(home)
    with pytest.raises(SmkiError) as info:  # a bad CSR is a csr.* error, before the rules run
        request_organisation(keyless, SPOTI, b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n")
    assert info.value.code.startswith("csr.")
    assert head(home) == seq
    issued = request_organisation(home, SPOTI, make_organisation_csr(
        bytes.fromhex(ENTITY), RemotePartyRole.SUPPLIER, Usage.KA, "ACME"))
    issued.certificate.verify_directly_issued_by(home.ca_certificate(CertKind.ORGANISATION_CA))
    [(actor, action, details)] = audit_after(home, seq)
    assert (actor, action) == ("aro:A1@P1", "certificate.issued")
    assert (details["party"], details["aro"], details["route"], details["entity_id"], details["role"]) == (
        "P1", "A1", "spoti", ENTITY.lower(), 2)
    assert "org.entity-belongs-to-party" in details["rules"]  # type: ignore[operator]


def test_unknown_and_foreign_requesters_are_refused_and_audited(subscriber: Home) -> None:
    home = subscriber
    reg.add_party(home, "P2", "Other Co", "small-supplier", staff_id="op1")
    reg.nominate_aro(home, "B1", "P2", "Bob", "SRO Two", staff_id="op1")
    seq = head(home)
    for requester, code in ((Requester("NOPE", "A1", Route.GATEWAY), "ra.party-not-found"),
                            (Requester("P1", "NOPE", Route.GATEWAY), "ra.aro-not-found")):
        with pytest.raises(SmkiError) as info:
            authorise(home, requester, DEVICE_FACTS)
        assert info.value.code == code
    foreign = _refusal(lambda: authorise(home, Requester("P1", "B1", Route.GATEWAY), DEVICE_FACTS))
    assert set(foreign.decision.failed_ids) == {"aro.identity-verified", "aro.screened", "aro.belongs-to-party"}
    events = audit_after(home, seq)
    assert [action for _, action, _ in events] == ["request.refused"] * 3
    assert [d.get("code") for _, _, d in events[:2]] == ["ra.party-not-found", "ra.aro-not-found"]
    with pytest.raises(SmkiError) as info:
        authorise(home, SPOTI, DEVICE_FACTS)
    assert info.value.code == "request.route-mismatch"


def test_aro_screening_is_required_from_mp127_only(staffed: Home) -> None:
    home = staffed
    qualified_party(home)
    reg.nominate_aro(home, "A1", "P1", "Ann", "Sam", staff_id="op1")
    reg.verify_aro(home, "A1", "passport", staff_id="op1", on=date(2019, 1, 2))
    _approve(home, "device")
    assert authorise(home, GATEWAY, DEVICE_FACTS, on=date(2020, 11, 28)).approved
    decision = _refusal(lambda: authorise(home, GATEWAY, DEVICE_FACTS, on=date(2020, 11, 29))).decision
    assert (decision.ruleset, decision.failed_ids) == ("MP127", ("aro.screened",))


def test_a_batch_is_authorised_once_and_issues_every_good_csr(subscriber: Home) -> None:
    home = subscriber
    items = [BatchItem(i, f"csr-{i}", make_device_csr((0x00DB000000000000 + i // 2).to_bytes(8, "big"),
                                                     (Usage.DS, Usage.KA)[i % 2])) for i in range(6)]
    items.append(BatchItem(6, "junk", b"junk"))
    seen: list[str] = []
    summary = request_device_batch(home, GATEWAY, items, batch_ref="b-1", workers=0,
                                   on_chunk=lambda chunk: seen.extend(o.item_id for o in chunk))
    assert (summary.issued, summary.rejected) == (6, 1) and len(seen) == 7
    actions = [action for _, action, _ in audit_after(home, head(home) - 4)]
    assert actions == ["request.authorised", "batch.started", "device-certificates.issued", "batch.completed"]


# --- the MP074 invariant, through the register ------------------------------------------------

_counter = itertools.count()
_mostly = st.sampled_from([True, True, True, False])  # most facts hold, so approvals are generated too


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    srept=_mostly, uept=_mostly, gateway=_mostly,
    standing=st.sampled_from([SubscriberStanding.APPROVED] * 4 + list(SubscriberStanding)),
    aro_status=st.sampled_from([AroStatus.ACTIVE] * 4 + list(AroStatus)), verified=_mostly, screened=_mostly,
    route=st.sampled_from([Route.GATEWAY, Route.GATEWAY, Route.SPOTI]),
)
@example(srept=True, uept=True, gateway=True, standing=SubscriberStanding.APPROVED, aro_status=AroStatus.ACTIVE,
         verified=True, screened=True, route=Route.GATEWAY)
def test_no_device_request_is_authorised_unless_mp074_holds(
    staffed: Home, srept: bool, uept: bool, gateway: bool, standing: SubscriberStanding, aro_status: AroStatus,
    verified: bool, screened: bool, route: Route,
) -> None:
    """After 2019-11-07 a Device request passes only for an approved Device subscriber with UEPT, SREPT
    and a Gateway Connection, asking over the Gateway through an active, verified (and screened) ARO."""
    home = staffed
    n = next(_counter)
    party, aro = f"H{n}", f"HA{n}"
    with home.store.transaction() as tx:
        tx.registry.add_party(party, "Hypo", "other-sec-party")
        tx.registry.update_party(party, srept_passed=date(2019, 1, 1) if srept else None,
                                 uept_completed=date(2019, 1, 1) if uept else None)
        if gateway:
            tx.registry.start_period(party, "gateway-connection", "GW", on=date(2019, 1, 1), by="test")
        if standing is not SubscriberStanding.NONE:
            tx.registry.set_subscription(party, "device", standing.value)
        tx.registry.add_aro(aro, party, "Hypo ARO", "SRO")
        tx.registry.update_aro(aro, status=aro_status.value,
                               identity_verified=date(2019, 1, 1) if verified else None,
                               screened=date(2019, 1, 1) if screened else None)
        tx.append_audit([AuditEvent("test", "test.setup", party)])
    requester = Requester(party, aro, route)
    try:
        decision = authorise(home, requester, CertificateRequestFacts(CertificatePolicy.DEVICE, route))
    except PolicyRefusal as refusal:
        assert refusal.decision.failed_ids
        return
    assert decision.approved
    assert standing is SubscriberStanding.APPROVED and srept and uept and gateway and route is Route.GATEWAY
    assert aro_status is AroStatus.ACTIVE and verified and screened


# --- the in-process path (one write transaction per chunk) against the signing pool ------------

_runs = itertools.count()
_PATH_BASE = {"in-process": 0x00DB_5100_0000_0000, "pool": 0x00DB_5200_0000_0000}


def _normalised(home: Home, since: int, ref: str, base: int) -> list[tuple[str, object]]:
    """The audit records one batch left, with what must differ between two runs made neutral:
    serials, the batch reference, the Device IDs (each run has its own range) and how many chunks
    each commit's ``device-certificates.issued`` record covers (the pool commits several at once)."""
    out: list[tuple[str, object]] = []
    for _seq, action, details in audit_after(home, since):
        details = {k: v for k, v in details.items() if k != "batch"}
        if action == "device-certificates.issued":
            details["issued"] = [[int(device, 16) - base, usage, index]
                                 for _serial, device, usage, index in details["issued"]]  # type: ignore[union-attr]
            if out and out[-1][0] == action:
                merged = out.pop()[1]
                assert isinstance(merged, dict)
                details = {key: merged[key] + details[key] for key in ("issued", "rejected")}  # type: ignore[operator]
        out.append((action, details))
    assert all(row[1] != ref for row in out)
    return out


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.one_of(st.tuples(st.integers(0, 3), st.sampled_from(list(Usage))), st.just(None)),
                     min_size=0, max_size=5),
       chunk=st.integers(1, 3))
def test_the_in_process_path_records_what_the_signing_pool_records(subscriber: Home, signing_pool: object,
                                                                    plan: list[tuple[int, Usage] | None],
                                                                    chunk: int) -> None:
    """Issuing in this process commits the request's opening records with its first chunk and
    ``batch.completed`` with its last; through the pool they are transactions of their own. The
    records, their order and the certificates (Device, usage, status) must be the same."""
    from smki.services.device_issuance import SigningPool, issue_device_batch

    assert isinstance(signing_pool, SigningPool)
    home = subscriber
    run = next(_runs)
    seen: dict[str, tuple[list[tuple[str, object]], list[tuple[int, str, str]]]] = {}
    for path, base in _PATH_BASE.items():
        base += run * 16
        items = [BatchItem(i, f"c{i}", b"junk" if step is None else
                           make_device_csr((base + step[0]).to_bytes(8, "big"), step[1]))
                 for i, step in enumerate(plan)]
        since, ref = head(home), f"{path}-{run}"
        decision = authorise(home, GATEWAY, DEVICE_FACTS)
        opening = [AuditEvent(GATEWAY.actor, "request.authorised", ref, {
            **GATEWAY.audit_details(), "policy": "device", "batch": ref, **_passed(decision)})]
        issue_device_batch(home, items, actor=GATEWAY.actor, batch_ref=ref, chunk_size=chunk, opening=opening,
                           **({"workers": 0} if path == "in-process" else {"pool": signing_pool}))
        certificates = sorted((int.from_bytes(c.device_id or b"", "big") - base, str(c.usage), str(c.status))
                              for c in home.store.find_certificates(CertificateQuery(batch_id=ref, limit=100)))
        seen[path] = (_normalised(home, since, ref, base), certificates)
    assert seen["in-process"] == seen["pool"]
    for path in seen:  # every certificate is in the issued records, DER and all
        assert len(seen[path][1]) == sum(step is not None for step in plan)


@pytest.fixture(scope="module")
def _pool_holder() -> Iterator[dict[str, object]]:
    holder: dict[str, object] = {}
    yield holder
    pool = holder.get("pool")
    if pool is not None:
        pool.close()  # type: ignore[attr-defined]


@pytest.fixture
def signing_pool(subscriber: Home, _pool_holder: dict[str, object]) -> object:
    """One worker process for the test (a fresh home each time, but the same CA key and passphrase
    only within a home: the pool is remade when the Device CA certificate differs)."""
    from smki.services.device_issuance import SigningPool

    pool = _pool_holder.get("pool")
    if not isinstance(pool, SigningPool) or not pool.usable_for(SigningPool.issuer_der_of(subscriber)):
        if isinstance(pool, SigningPool):
            pool.close()
        pool = _pool_holder["pool"] = SigningPool.for_home(subscriber, workers=1)
    return pool


@pytest.mark.parametrize("interface", ["adhoc", "json"])
def test_one_device_csr_reads_on_one_connection_and_writes_on_another(subscriber: Home, interface: str) -> None:
    """The web services' single CSR: its reads (Party, ARO, the Device's count, the Device CA, the
    key register, the eligibility screen) share one held connection; the write takes its own.
    The audit records are those of the general path, in the same order."""
    from sqlalchemy import event

    from smki.services.batch_jobs import request_single_device
    from smki.services.capacity import CapacitySettings

    home = subscriber
    device = bytes.fromhex("00DB123456789077")
    request_device(home, GATEWAY, make_device_csr(device, Usage.DS), batch_ref="known")  # a known Device
    seq = head(home)
    checkouts: list[object] = []
    event.listen(home.store.engine, "checkout", lambda *_args: checkouts.append(1))
    outcome = request_single_device(home, GATEWAY, make_device_csr(device, Usage.KA),
                                    capacity=CapacitySettings(enabled=False), limit_name="adhoc-service",
                                    interface=interface, require_known_device=interface == "adhoc")
    assert outcome.ok
    assert len(checkouts) == 2
    assert [(actor, action) for actor, action, _ in audit_after(home, seq)] == [
        ("aro:A1@P1", "request.authorised"), ("aro:A1@P1", "batch.started"),
        ("aro:A1@P1", "device-certificates.issued"), ("aro:A1@P1", "batch.completed")]


@contextmanager
def _statements(home: Home) -> Iterator[list[str]]:
    """Every statement sent to the store inside the block."""
    from sqlalchemy import event

    sent: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        sent.append(statement)

    event.listen(home.store.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(home.store.engine, "before_cursor_execute", record)


def test_the_aro_read_with_the_credential_is_the_one_the_rules_apply(subscriber: Home) -> None:
    """The API resolves the client's credential with the ARO's record and hands it on with the
    requester, so one request reads the ARO once; the rules apply to that record, and a record of
    some other ARO is ignored (read afresh)."""
    home = subscriber
    read_now = home.store.registry.aro("A1")
    assert read_now is not None and read_now.status == "active"
    with _statements(home) as statements:
        assert authorise(home, replace(GATEWAY, aro=read_now), DEVICE_FACTS).approved
        assert not [s for s in statements if "FROM aros" in s]
        suspended = replace(read_now, status="suspended")
        assert _refusal(lambda: authorise(home, replace(GATEWAY, aro=suspended), DEVICE_FACTS)
                        ).decision.failed_ids == ("aro.active",)
        someone_else = replace(suspended, aro_id="A9")
        assert authorise(home, replace(GATEWAY, aro=someone_else), DEVICE_FACTS).approved
        assert len([s for s in statements if "FROM aros" in s]) == 1


def test_the_party_read_with_the_credential_is_the_one_the_rules_apply(subscriber: Home) -> None:
    """The API reads the client's Party with its credential and hands the record on with the
    requester, so a Device request reads its Party once; the rules apply to that record (a Party
    whose Device subscription it shows withdrawn is refused), and a record of another Party is
    ignored (read afresh)."""
    home = subscriber
    read_now = home.store.registry.party("P1")
    assert read_now is not None
    with _statements(home) as statements:
        assert authorise(home, replace(GATEWAY, party=read_now), DEVICE_FACTS).approved
        assert not [s for s in statements if "FROM parties" in s]
        withdrawn = replace(read_now, subscriptions={**read_now.subscriptions, "device": "withdrawn"})
        refused = _refusal(lambda: authorise(home, replace(GATEWAY, party=withdrawn), DEVICE_FACTS))
        assert refused.decision.failed_ids
        someone_else = replace(withdrawn, party_id="P9")
        assert authorise(home, replace(GATEWAY, party=someone_else), DEVICE_FACTS).approved
        assert len([s for s in statements if "FROM parties" in s]) == 1
