"""Staff who leave, or change jobs: ``smki staff deactivate`` / ``reactivate`` / ``set-roles``
(console administrator actions, audited). Before these, a departed RA approver kept approver rights
on the console for good: only their Portal credential could be revoked."""

from __future__ import annotations

import json

from tests.cli.conftest import Run
from tests.cli.test_ra_console import fails, ok


def _trail(run: Run, n: int) -> list[tuple[str, str, dict[str, object]]]:
    return [(r["action"], r["subject"], r["details"]) for r in json.loads(ok(run, "audit", "tail", "-n", str(n),
                                                                            "--json"))]


def test_a_deactivated_staff_member_can_do_nothing_until_reactivated(run: Run) -> None:
    ok(run, "staff", "add", "op1", "--name", "Olive", "--role", "ra-operator")
    ok(run, "party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1")
    assert "staff op1 (Olive) deactivated" in ok(run, "staff", "deactivate", "op1")
    fails(run, "staff.unknown", "party", "add", "P2", "--name", "Beta", "--category", "large-supplier", "--as", "op1")
    fails(run, "staff.unchanged", "staff", "deactivate", "op1")
    assert json.loads(ok(run, "staff", "list", "--json"))[0]["active"] is False
    assert "reactivated: ra-operator" in ok(run, "staff", "reactivate", "op1")
    ok(run, "party", "add", "P2", "--name", "Beta", "--category", "large-supplier", "--as", "op1")
    actions = [(action, subject) for action, subject, _details in _trail(run, 3)]
    assert actions == [("staff.deactivated", "op1"), ("staff.reactivated", "op1"), ("party.added", "P2")]
    fails(run, "staff.unknown", "staff", "deactivate", "nobody")
    assert ok(run, "audit", "verify").startswith("audit log OK")


def test_set_roles_replaces_the_roles_and_records_both(run: Run) -> None:
    ok(run, "staff", "add", "op1", "--name", "Olive", "--role", "ra-operator")
    assert "staff op1 (Olive): auditor" in ok(run, "staff", "set-roles", "op1", "--role", "auditor")
    fails(run, "ra.staff-role", "party", "add", "P1", "--name", "Acme", "--category", "large-supplier",
          "--as", "op1")
    fails(run, "staff.unchanged", "staff", "set-roles", "op1", "--role", "auditor")
    ok(run, "staff", "set-roles", "op1", "--role", "ra-operator", "--role", "ra-approver")
    ok(run, "party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1")
    changes = [details for action, _subject, details in _trail(run, 10) if action == "staff.roles-changed"]
    assert changes == [{"before": ["ra-operator"], "after": ["auditor"]},
                       {"before": ["auditor"], "after": ["ra-approver", "ra-operator"]}]
    assert run("staff", "set-roles", "op1", "--role", "wizard").code == 2  # not a role: a usage error
