"""The Portal's POST pages did their database work on the event loop (only the batch upload had been
moved to a worker thread), so one slow store call held up every other request of the process (found
by QA). A service call made slow here must not delay a concurrent request on the same listener."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from smki.domain import Route
from smki.services import applications as apps
from smki.services import registry as reg
from smki.services.context import Home
from tests.api.conftest import OPERATOR, ClientFiles, LiveListeners, credential

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
SLOW = 1.5


def slowed(monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str) -> threading.Event:
    """``module.<name>`` made to wait ``SLOW`` seconds first; the event is set when a call begins."""
    began = threading.Event()
    original: Callable[..., Any] = getattr(module, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        began.set()
        time.sleep(SLOW)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, slow)
    return began


@pytest.mark.parametrize(("who", "page", "path", "service", "form"), [
    ("aro", "/portal/aro", "/portal/aro/apply", (apps, "apply"), {"policy": "organisation"}),
    ("staff", "/portal/staff/parties", "/portal/staff/aros", (reg, "nominate_aro"),
     {"aro_id": "aro9", "party_id": "SUPP1", "name": "Nia New", "nominated_by": "SRO Sam"}),
])
def test_a_slow_store_call_in_a_portal_post_does_not_block_other_requests(
        live: LiveListeners, home: Home, aro: ClientFiles, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        who: str, page: str, path: str, service: tuple[ModuleType, str], form: dict[str, str]) -> None:
    caller = aro if who == "aro" else credential(home, tmp_path, "staff", OPERATOR)
    client = live.client(caller, Route.GATEWAY, follow_redirects=False)
    match = CSRF.search(client.get(page).text)
    assert match
    began = slowed(monkeypatch, *service)
    answers: list[httpx.Response] = []
    poster = threading.Thread(target=lambda: answers.append(client.post(path, data={"csrf": match.group(1), **form})))
    poster.start()
    try:
        assert began.wait(10), "the POST never reached the service"
        started = time.monotonic()
        other = live.client(aro).get("/api/v1/whoami")
        waited = time.monotonic() - started
    finally:
        poster.join(30)
    assert other.status_code == 200
    assert waited < SLOW / 2, f"a concurrent request waited {waited:.2f} s for the Portal's store call"
    assert answers and answers[0].status_code in (303, 400, 403), answers[0].text[:300]
