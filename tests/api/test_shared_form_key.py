"""The Portal's form-token key is shared by every process and node (issue 11, point 3).

Before, each server process made its own key, so with ``--workers 2`` a form rendered by one
process and posted (on a fresh connection) to the other was refused ``portal.form-expired``.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from smki.domain import Route
from smki.interfaces.cli.main import app as cli
from smki.services import shared_secrets
from smki.services.context import Home
from smki.store import Store
from tests.api.conftest import SECRET, ClientFiles
from tests.api.serve_process import ServeProcess, write_api_config
from tests.portal.conftest import make_app

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
ARO_HEADER = {"X-Test-Identity": "aro:SUPP1:aro1"}


def _token(text: str) -> str:
    match = CSRF.search(text)
    assert match
    return match.group(1)


def _post_apply(client: TestClient, token: str) -> int:
    """An ARO form post whose outcome is a refusal by the RA, not by the form check (so 400, not 403)."""
    response = client.post("/portal/aro/apply", data={"csrf": token, "policy": "no-such-policy"}, headers=ARO_HEADER)
    if response.status_code == 403:
        assert "portal.form-expired" in response.text
    return response.status_code


def test_a_form_from_one_node_posts_to_another(home: Home, tmp_path: Path) -> None:
    # A second node: its own home directory, the same database.
    other = Home(replace(home.settings, home=tmp_path / "node-b"), Store.open(str(home.store.engine.url)), SECRET)
    shared_secrets._cache.clear()
    try:
        with TestClient(make_app(home, Route.GATEWAY)) as node_a, TestClient(make_app(other, Route.GATEWAY)) as node_b:
            token = _token(node_a.get("/portal/aro", headers=ARO_HEADER).text)
            assert _post_apply(node_b, token) == 400
            assert _post_apply(node_a, token) == 400
            assert _post_apply(node_b, "0" * 64) == 403  # a made-up token is still refused
            assert _post_apply(node_b, "é" * 64) == 403  # and one that is not even ASCII (no 500)
    finally:
        other.close()


def test_rotation_keeps_open_forms_for_one_rotation(home: Home) -> None:
    shared_secrets._cache.clear()
    with TestClient(make_app(home, Route.GATEWAY)) as client:
        first = _token(client.get("/portal/aro", headers=ARO_HEADER).text)
        shared_secrets.rotate_form_key(home, actor="operator:test")
        second = _token(client.get("/portal/aro", headers=ARO_HEADER).text)
        assert second != first
        assert _post_apply(client, first) == 400  # the previous key is still accepted
        assert _post_apply(client, second) == 400
        shared_secrets.rotate_form_key(home, actor="operator:test")
        assert _post_apply(client, first) == 403  # two rotations: the old forms have expired
        assert _post_apply(client, second) == 400
    rows = home.store.audit_rows_for(shared_secrets.FORM_KEY, "secret.rotated")
    assert [r.actor for r in rows] == ["operator:test", "operator:test"]
    assert all(r.details_dict["name"] == shared_secrets.FORM_KEY for r in rows)
    assert home.store.verify_audit().ok


def test_the_cli_rotates_the_key(home: Home) -> None:
    from typer.testing import CliRunner

    before = shared_secrets.form_token_keys(home)
    result = CliRunner().invoke(cli, ["portal", "rotate-form-key", "--home", str(home.settings.home)])
    assert result.exit_code == 0, result.output
    assert "rotated" in result.output
    shared_secrets._cache.clear()
    after = shared_secrets.form_token_keys(home)
    assert after[1] == before[0] and after[0] != before[0]


def test_every_post_is_accepted_with_two_workers(home: Home, aro: ClientFiles) -> None:
    """The reported case: ``--workers 2``, every post on a fresh connection (so either process)."""
    write_api_config(home.settings.home)
    server = ServeProcess(home.settings.home, SECRET, "--workers", "2", "--batch-workers", "0")
    try:
        statuses = []
        for _ in range(24):
            with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=30) as first:
                token = _token(first.get("/portal/aro").text)
            with httpx.Client(base_url=server.url(Route.GATEWAY), verify=aro.context(), timeout=30) as second:
                response = second.post("/portal/aro/apply", data={"csrf": token, "policy": "no-such-policy"})
            statuses.append(response.status_code)
            assert "form-expired" not in response.text
    finally:
        server.stop()
    assert set(statuses) == {400}
