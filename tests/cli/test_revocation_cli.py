"""Revocation, CRL/ARL, staff, status and populate commands end to end, as an operator runs them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from smki.ca.devcsr import make_organisation_csr
from smki.domain import RemotePartyRole, Usage
from tests.cli.helpers import PASSPHRASE, Result, smki
from tests.revocation.openssl_tools import openssl_crl_verify, openssl_verify_with_arl, openssl_verify_with_crl


def _ok(result: Result) -> Result:
    assert result.code == 0, result.err + result.out
    return result


def _refused(result: Result, code: str, rule: str | None = None) -> None:
    """One error line; under a refusal by an RA rule, then the rule, its reason and its reference."""
    assert result.code == 1, result.out
    lines = result.err.strip().splitlines()
    assert lines and lines[0].startswith(f"error: {code}:"), result.err
    if rule is None:
        assert len(lines) == 1, result.err
    else:
        from smki.ra.rules import APPROVAL_RULES, RESERVED_ROLE_RULES, Rule

        rules: dict[str, Rule[Any]] = {**APPROVAL_RULES, **RESERVED_ROLE_RULES}
        reference = rules[rule].reference
        assert len(lines) == 3 and lines[1].startswith(f"  FAIL {rule}: "), result.err
        assert lines[2].strip() == f"ref: {reference}", result.err
    assert "Traceback" not in result.err


def _staff(home: Path, env: dict[str, str]) -> None:
    """RA staff op, ap, both and aud, added in-process (``smki staff add`` is run in its own test)."""
    from smki.config import load_settings
    from smki.services.context import Home
    from smki.services.staff import add_staff
    from smki.store import Store

    opened = Home(settings=load_settings(home), store=Store.open(env["SMKI_DATABASE_URL"]))
    try:
        for staff_id, roles in (("op", ["ra-operator"]), ("ap", ["ra-approver"]),
                                ("both", ["ra-operator", "ra-approver"]), ("aud", ["auditor"])):
            add_staff(opened, staff_id, staff_id.upper(), roles, actor="test")
    finally:
        opened.close()


def _issue_org(home: Path, env: dict[str, str], tmp_path: Path, name: str, usage: Usage) -> Path:
    """An Organisation Certificate issued in-process (``smki issue org`` has its own tests)."""
    from smki.config import load_settings
    from smki.services.context import Home
    from smki.services.org_issuance import issue_organisation
    from smki.store import Store

    der = make_organisation_csr(bytes.fromhex("90B3D51F30010000"), RemotePartyRole.SUPPLIER, usage, name)
    opened = Home(settings=load_settings(home), store=Store.open(env["SMKI_DATABASE_URL"]),
                  secret=PASSPHRASE.encode())
    try:
        issued = issue_organisation(opened, der, actor="test")
    finally:
        opened.close()
    out = tmp_path / f"{name}.pem"
    out.write_bytes(issued.certificate.public_bytes(Encoding.PEM))
    return out


def _serial(pem: Path) -> str:
    return f"{x509.load_pem_x509_certificate(pem.read_bytes()).serial_number:x}"


def test_operator_revokes_and_openssl_honours_the_crl(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    _staff(ca_home, env)
    revoked = _issue_org(ca_home, env, tmp_path, "one", Usage.DS)
    kept = _issue_org(ca_home, env, tmp_path, "two", Usage.KA)
    h = ["--home", str(ca_home)]

    _refused(smki(["cert", "revoke", _serial(revoked), "--reason", "keyCompromise", *h], env), "staff.required")
    on_hold = smki(["cert", "revoke", _serial(revoked), "--reason", "onHold", "--as", "op", *h], env)
    assert on_hold.code == 2 and "Invalid value for '--reason'" in on_hold.err  # a usage error, choices listed
    done = _ok(smki(["cert", "revoke", _serial(revoked), "--reason", "keyCompromise", *h], {**env, "SMKI_STAFF": "op"}))
    assert "published CRL #2 (1 entries)" in done.out  # #1 is the key ceremony's, empty

    crl2 = tmp_path / "crl2.pem"
    _ok(smki(["crl", "export", "--kind", "CRL", "--number", "2", "--format", "pem", "--out", str(crl2), *h], env))
    root, oca = ca_home / "root.pem", ca_home / "organisation-ca.pem"
    assert openssl_crl_verify(crl2, oca).returncode == 0
    rejected = openssl_verify_with_crl(root, oca, crl2, revoked)
    assert rejected.returncode != 0 and "certificate revoked" in rejected.stdout + rejected.stderr
    accepted = openssl_verify_with_crl(root, oca, crl2, kept)
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr

    _ok(smki(["cert", "revoke", _serial(kept), "--reason", "superseded", "--as", "op", *h], env))
    shown = _ok(smki(["crl", "show", "--kind", "crl", *h], env)).out
    assert re.search(r"number\s+│\s+3\b", shown) and "1, 2, 3" in shown
    older = _ok(smki(["crl", "show", "--number", "2", *h], env)).out
    assert re.search(r"entries\s+│\s+1\b", older)
    again = tmp_path / "crl2-again.der"
    _ok(smki(["crl", "export", "--number", "2", "--out", str(again), *h], env))
    assert x509.load_der_x509_crl(again.read_bytes()).public_bytes(Encoding.PEM) == crl2.read_bytes()
    status = _ok(smki(["cert", "search", "--status", "R", *h], env)).out
    assert _serial(revoked).rjust(32, "0") in status and _serial(kept).rjust(32, "0") in status
    _ok(smki(["audit", "verify", *h], env))


def test_ca_revocation_under_dual_control(ca_home: Path, env: dict[str, str], tmp_path: Path) -> None:
    _staff(ca_home, env)
    h = ["--home", str(ca_home)]
    dca = _serial(ca_home / "device-ca.pem")
    _refused(smki(["cert", "revoke", dca, "--reason", "cACompromise", "--as", "op", *h], env),
             "revocation.ca-needs-dual-control")
    proposed = _ok(smki(["ca", "revoke", "propose", dca, "--reason", "cACompromise", "--as", "both", *h], env))
    item = re.search(r"proposal (\d+)", proposed.out)
    assert item is not None
    _refused(smki(["ca", "revoke", "approve", item.group(1), "--as", "both", *h], env), "ra.dual-control",
             "ra.dual-control")
    _refused(smki(["ca", "revoke", "refuse", item.group(1), "--as", "op", *h], env), "staff.role-required",
             "ra.staff-holds-role")
    listed = _ok(smki(["ca", "revoke", "list", *h], env)).out
    assert "pending" in listed and "both" in listed
    approved = _ok(smki(["ca", "revoke", "approve", item.group(1), "--as", "ap", *h], env))
    assert "published ARL #2 (1 entries)" in approved.out  # #1 is the key ceremony's
    _refused(smki(["ca", "revoke", "approve", item.group(1), "--as", "ap", *h], env), "ra.already-decided")
    arl = tmp_path / "arl.pem"
    _ok(smki(["crl", "export", "--kind", "ARL", "--format", "pem", "--out", str(arl), *h], env))
    root = ca_home / "root.pem"
    assert openssl_crl_verify(arl, root).returncode == 0
    assert openssl_verify_with_arl(root, arl, ca_home / "device-ca.pem").returncode != 0
    assert openssl_verify_with_arl(root, arl, ca_home / "organisation-ca.pem").returncode == 0
    assert "approved" in _ok(smki(["ca", "revoke", "list", "--all", *h], env)).out
    # a refusal may give the approver's reason, which the audit record keeps
    oca = _serial(ca_home / "organisation-ca.pem")
    other = re.search(r"proposal (\d+)", _ok(smki(["ca", "revoke", "propose", oca, "--reason", "superseded",
                                                   "--as", "op", *h], env)).out)
    assert other is not None
    _ok(smki(["ca", "revoke", "refuse", other.group(1), "--as", "ap", "--reason", "not superseded yet", *h], env))
    assert _refusal_reason(ca_home, env) == "not superseded yet"
    _ok(smki(["audit", "verify", *h], env))


def _refusal_reason(home: Path, env: dict[str, str]) -> object:
    from smki.store import Store

    store = Store.open(env["SMKI_DATABASE_URL"])
    try:
        [record] = [r for r in store.audit_tail(100) if r.action == "ca.revocation-refused"]
        return record.details_dict.get("refusal")
    finally:
        store.close()


def _add_staff_as_an_earlier_version_could(env: dict[str, str], staff_id: str, name: str, roles: list[str]) -> None:
    """Straight into the register: ``staff add`` now refuses an id that differs from another only in
    case, but a home from before it may hold both, and dual control must still take them for one."""
    from smki.audit import AuditEvent
    from smki.store import Store

    store = Store.open(env["SMKI_DATABASE_URL"])
    try:
        with store.transaction() as tx:
            tx.registry.add_staff(staff_id, name, roles)
            tx.append_audit([AuditEvent("admin", "staff.added", staff_id, {"name": name, "roles": roles})])
    finally:
        store.close()


def test_ca_revocation_dual_control_is_the_ra_rule_and_is_audited(
        ca_home: Path, env: dict[str, str]) -> None:
    """The CA revocation's four eyes are rule ``ra.dual-control``, as for applications: the proposer
    under another spelling of their id (``Both`` for ``both``) is the same person, and a refusal is
    audited with the rule and its reference."""
    _staff(ca_home, env)
    h = ["--home", str(ca_home)]
    refused = smki(["staff", "add", "Both", "--name", "BOTH again", "--role", "ra-approver", *h], env)
    assert refused.code == 1 and "staff.exists: staff member 'both' already exists" in refused.err
    _add_staff_as_an_earlier_version_could(env, "Both", "BOTH again", ["ra-approver"])
    dca = _serial(ca_home / "device-ca.pem")
    proposed = _ok(smki(["ca", "revoke", "propose", dca, "--reason", "cACompromise", "--as", "both", *h], env))
    item = re.search(r"proposal (\d+)", proposed.out)
    assert item is not None
    _refused(smki(["ca", "revoke", "approve", item.group(1), "--as", "Both", *h], env), "ra.dual-control",
             "ra.dual-control")
    _refused(smki(["ca", "revoke", "refuse", item.group(1), "--as", "both", *h], env), "ra.dual-control",
             "ra.dual-control")
    assert "pending" in _ok(smki(["ca", "revoke", "list", *h], env)).out
    tail = _ok(smki(["audit", "tail", "-n", "2", "--json", *h], env)).out
    assert tail.count('"ca.dual-control-refused"') == 2 and '"rule": "ra.dual-control"' in tail
    _ok(smki(["audit", "verify", *h], env))


def test_publish_status_and_populate_commands(ca_home: Path, env: dict[str, str]) -> None:
    h = ["--home", str(ca_home)]
    _ok(smki(["staff", "add", "op", "--name", "Op", "--role", "ra-operator", "--role", "ra-approver", *h], env))
    populated = _ok(smki(["dev", "populate", "--devices", "6", "--workers", "0", *h], env))
    assert "added 6 Device Certificate records" in populated.out
    found = _ok(smki(["cert", "search", "--device", "00DB000000000001", "--usage", "KA", *h], env)).out
    serial = re.search(r"\b([0-9a-f]{32})\b", found)
    assert serial is not None
    _refused(smki(["cert", "revoke", serial.group(1), "--reason", "1", "--as", "op", *h], env),
             "revocation.device-certificate")
    _ok(smki(["cert", "set-status", serial.group(1), "N", *h], {**env, "SMKI_STAFF": "op"}))
    _refused(smki(["cert", "set-status", serial.group(1), "R", "--as", "op", *h], env), "status.not-settable")
    assert "│ N " in _ok(smki(["cert", "show", serial.group(1), *h], env)).out
    published = _ok(smki(["crl", "publish", *h], env)).out
    assert "published CRL #2 (0 entries)" in published and "published ARL #2 (0 entries)" in published
    assert "published CRL #3" in _ok(smki(["crl", "publish", "--kind", "crl", *h], env)).out
    assert (ca_home / "crl" / "organisation-ca-3.crl").exists() and (ca_home / "crl" / "root.arl").exists()
    assert "0 certificate(s) expired" in _ok(smki(["cert", "expire-due", *h], env)).out
    listed = _ok(smki(["staff", "list", *h], env)).out
    assert "ra-approver, ra-operator" in listed
    assert smki(["staff", "add", "x", "--name", "X", "--role", "root", *h], env).code == 2
    _ok(smki(["audit", "verify", *h], env))
