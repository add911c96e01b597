"""The key ceremony publishes the first CRL and ARL in its own unit of work (spec §4.3): when a list
cannot be published, the ceremony fails as a whole and leaves neither a home nor a record."""

from __future__ import annotations

from pathlib import Path

import pytest

from smki.ca.lint import Finding, Severity
from smki.config import Settings
from smki.domain import CertKind
from smki.errors import SmkiError
from smki.services import crl_lint
from smki.services.ca_admin import initialise_ca
from smki.services.revocation import ARL, CRL
from smki.store import Store
from tests.revocation.conftest import SECRET


def test_a_ceremony_whose_arl_is_refused_records_nothing_and_can_be_run_again(
        tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # a database named by URL lies outside the home's staging directory: only the transaction protects it
    settings = Settings(home=tmp_path / "home", database_url=database_url)
    real = crl_lint.publication_findings

    def refuse_the_arl(der: bytes, kind: str) -> list[Finding]:
        if kind == ARL:  # the CRL has been signed by now; the ARL is refused
            return [Finding(Severity.ERROR, "test.refused", "refused by the test", "certificateList")]
        return real(der, kind)

    with monkeypatch.context() as patched:
        patched.setattr(crl_lint, "publication_findings", refuse_the_arl)
        with pytest.raises(SmkiError) as failed:
            initialise_ca(settings, SECRET, actor="test")
    assert failed.value.code == "ca.lint-failed" and "ARL" in failed.value.message
    assert not settings.home.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".home.init-")] == []
    store = Store.open(database_url)
    try:
        assert store.ca_certificate(CertKind.ROOT) is None
        assert store.revocation_list(CRL) is None and store.revocation_list(ARL) is None
        assert list(store.audit_rows()) == []
    finally:
        store.close()

    initialise_ca(settings, SECRET, actor="test")  # a whole ceremony again, not 'ca.exists'
    store = Store.open(database_url)
    try:
        assert store.revocation_list_numbers(CRL) == [1] and store.revocation_list_numbers(ARL) == [1]
        assert [row.action for row in store.audit_rows()] == ["ca.created"] * 3 + ["crl.published"] * 2
        assert store.verify_audit().ok
    finally:
        store.close()
    assert sorted(p.name for p in (settings.home / "crl").iterdir()) == [
        "organisation-ca-1.crl", "organisation-ca.crl", "root-1.arl", "root.arl"]
