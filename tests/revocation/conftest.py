"""Fixtures for the revocation tests: an initialised home (in-process), RA staff and a Party."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from smki.domain import RemotePartyRole, Usage
from smki.services.context import Home
from smki.services.org_issuance import IssuedOrganisation, issue_organisation
from smki.services.staff import add_staff
from tests.conftest import ca_home

SECRET = b"revocation-test-passphrase"
ENTITY_A = bytes.fromhex("90B3D51F30010000")
ENTITY_B = bytes.fromhex("90B3D51F30020000")


@pytest.fixture
def home(tmp_path: Path, database_url: str) -> Iterator[Home]:
    """A home with a CA hierarchy, staff (op, op2, approver, both, auditor) and Parties A and B."""
    with ca_home(tmp_path, database_url, SECRET) as opened:
        add_staff(opened, "op", "Operator", ["ra-operator"], actor="test")
        add_staff(opened, "op2", "Second Operator", ["ra-operator"], actor="test")
        add_staff(opened, "approver", "Approver", ["ra-approver"], actor="test")
        add_staff(opened, "both", "Both Roles", ["ra-operator", "ra-approver"], actor="test")
        add_staff(opened, "auditor", "Auditor", ["auditor"], actor="test")
        from smki.audit import AuditEvent

        with opened.store.transaction() as tx:
            tx.registry.add_party("party-a", "Supplier A", "Large Supplier")
            tx.registry.set_entity("party-a", ENTITY_A, [int(RemotePartyRole.SUPPLIER)])
            tx.registry.add_party("party-b", "Supplier B", "Small Supplier")
            tx.registry.set_entity("party-b", ENTITY_B, [int(RemotePartyRole.SUPPLIER)])
            tx.append_audit([AuditEvent("test", "test.parties", "party-a,party-b")])
        yield opened


def issue_org(home: Home, entity: bytes = ENTITY_A, usage: Usage = Usage.DS) -> IssuedOrganisation:
    """An Organisation Certificate for ``entity`` (PEM-free: the CSR is DER)."""
    from smki.ca.devcsr import make_organisation_csr

    return issue_organisation(home, make_organisation_csr(entity, RemotePartyRole.SUPPLIER, usage, "TEST"),
                              actor="test")
