"""Hostile input never makes the listener answer 5xx (issue 11, point 6).

Against the live listener (real TLS, real client credentials): every Portal route that takes an id
in its path, fed ids of any size and shape and forms of any content with a valid form token, and
batch ZIPs whose entries are corrupt; plus the ZIP reader on its own. And when smki does fail (a
fault of its own, simulated), the 500 says ``Connection: close`` rather than dropping a kept-alive
connection without warning.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.domain import Route, Usage
from smki.services.portal_batches import PortalZipError, read_portal_zip
from tests.api.conftest import OPERATOR, ClientFiles, LiveListeners, credential

CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')
HUGE = ["99999999999999999999", "99999999999999999999999", str(2**63), str(2**64), "-1", "0", "1e3", "\uff11\uff12",
        "9" * 5000, "%00", "a/b", " 7", "0x10"]

#: Every Portal POST that names a record in its path, with the identity that may use it.
STAFF_POSTS = ["/portal/staff/applications/{}/propose", "/portal/staff/applications/{}/approve",
               "/portal/staff/applications/{}/refuse", "/portal/staff/applications/{}/evidence",
               "/portal/staff/aros/{}/verify", "/portal/staff/aros/{}/screen", "/portal/staff/aros/{}/suspend",
               "/portal/staff/publish/{}", "/portal/staff/aros/{}/reinstate", "/portal/staff/parties/{}/reinstate",
               "/portal/staff/reinstatements/{}/approve", "/portal/staff/reinstatements/{}/refuse",
               "/portal/staff/parties/{}/suspend", "/portal/staff/parties/{}/withdraw",
               "/portal/staff/ca-certificates/{}/propose", "/portal/staff/revocations/{}/approve",
               "/portal/staff/revocations/{}/refuse", "/portal/staff/certificates/revoke",
               "/portal/staff/batches/{}/approve", "/portal/staff/batches/{}/reject", "/portal/staff/aros"]
ARO_POSTS = ["/portal/aro/applications/{}/evidence", "/portal/aro/certificates/{}/revoke"]
ARO_GETS = ["/portal/aro/certificates/{}", "/portal/aro/certificates/{}.pem", "/portal/aro/batches/{}",
            "/portal/aro/batches/{}/status", "/portal/aro/batches/{}/response.zip"]

path_ids = st.one_of(st.sampled_from(HUGE), st.integers().map(str),
                     st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/?#"),
                             min_size=1, max_size=40))
forms = st.dictionaries(st.sampled_from(["kind", "reference", "reason", "check", "standard", "screened_on",
                                         "description", "policy", "serial", "confirm"]),
                        st.one_of(st.text(max_size=60), st.just("yes")), max_size=4)


@pytest.fixture
def staff(home: object, tmp_path: Path) -> ClientFiles:
    return credential(home, tmp_path, "staff", OPERATOR)  # type: ignore[arg-type]


def _client(live: LiveListeners, who: ClientFiles) -> httpx.Client:
    return live.client(who, Route.GATEWAY, follow_redirects=False)


def _token(client: httpx.Client, page: str) -> str:
    response = client.get(page)
    assert response.status_code == 200, response.text[:300]
    match = CSRF.search(response.text)
    assert match, "the page carries a form token"
    return match.group(1)


@pytest.fixture
def staff_client(live: LiveListeners, staff: ClientFiles) -> Iterator[tuple[httpx.Client, str]]:
    client = _client(live, staff)
    yield client, _token(client, "/portal/staff/revocations")


@pytest.fixture
def aro_client(live: LiveListeners, aro: ClientFiles) -> Iterator[tuple[httpx.Client, str]]:
    client = _client(live, aro)
    yield client, _token(client, "/portal/aro")


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def test_the_reported_overflowing_ids_are_404_not_500(staff_client: tuple[httpx.Client, str],
                                                      aro_client: tuple[httpx.Client, str]) -> None:
    client, token = staff_client
    response = client.post("/portal/staff/applications/99999999999999999999/propose", data={"csrf": token})
    assert response.status_code == 404, response.text[:300]
    assert "ra.application-not-found" in response.text
    client, token = aro_client
    response = client.post("/portal/aro/applications/99999999999999999999999/evidence", data={"csrf": token},
                           files={"document": ("e.pdf", b"%PDF-1.4 evidence")})
    assert response.status_code == 404, response.text[:300]
    assert "ra.application-not-found" in response.text


@settings(max_examples=90, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(STAFF_POSTS), ident=path_ids, form=forms)
def test_staff_posts_never_5xx(staff_client: tuple[httpx.Client, str], path: str, ident: str,
                               form: dict[str, str]) -> None:
    client, token = staff_client
    response = client.post(path.format(_quote(ident)), data={**form, "csrf": token})
    assert response.status_code < 500, (path, ident, response.text[:300])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(ARO_POSTS + ARO_GETS), ident=path_ids, form=forms)
def test_aro_routes_never_5xx(aro_client: tuple[httpx.Client, str], path: str, ident: str,
                              form: dict[str, str]) -> None:
    client, token = aro_client
    url = path.format(_quote(ident))
    if path in ARO_GETS:
        response = client.get(url)
    else:
        response = client.post(url, data={**form, "csrf": token}, files={"document": ("e.txt", b"evidence")})
    assert response.status_code < 500, (path, ident, response.text[:300])


# -- batch ZIPs ----------------------------------------------------------------------------------


def _csr_zip(compression: int) -> bytes:
    from smki.ca.devcsr import make_device_csr

    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as archive:
        for i in range(3):
            archive.writestr(f"d{i}.csr", make_device_csr(bytes.fromhex(f"00db12345678900{i}"), Usage.DS) * 4)
    return buffer.getvalue()


def _corrupt_first_entry(data: bytes, at: int, value: int) -> bytes:
    """Change one byte of the first entry's compressed data (headers and CRC kept, so only the
    decoder can notice)."""
    with zipfile.ZipFile(BytesIO(data)) as archive:
        info = archive.infolist()[0]
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    position = start + at % max(1, info.compress_size)
    return data[:position] + bytes([value if data[position] != value else value ^ 0xFF]) + data[position + 1:]


COMPRESSIONS = [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA, zipfile.ZIP_BZIP2]


@pytest.mark.parametrize("compression", COMPRESSIONS, ids=["deflate", "lzma", "bzip2"])
def test_corrupt_compressed_entries_are_a_coded_refusal(compression: int) -> None:
    good = _csr_zip(compression)
    assert len(read_portal_zip(good)) == 3
    refused = 0
    for at in range(0, 40, 3):
        try:
            read_portal_zip(_corrupt_first_entry(good, at, 0xFF))
        except PortalZipError as exc:
            assert exc.code == "portal.zip-invalid"
            refused += 1
    assert refused, "some corruption is detected (by the decoder or the CRC)"


@settings(max_examples=300, deadline=None)
@given(compression=st.sampled_from(COMPRESSIONS), at=st.integers(0, 10_000), value=st.integers(0, 255),
       cut=st.none() | st.integers(0, 4000))
def test_zip_reader_raises_only_coded_refusals(compression: int, at: int, value: int, cut: int | None) -> None:
    data = _corrupt_first_entry(_csr_zip(compression), at, value)
    if cut is not None:
        data = data[:cut]
    try:
        read_portal_zip(data)
    except PortalZipError as exc:
        assert exc.code.startswith("portal.zip-")


@settings(max_examples=100, deadline=None)
@given(data=st.binary(max_size=600))
def test_zip_reader_on_arbitrary_bytes(data: bytes) -> None:
    try:
        read_portal_zip(b"PK\x03\x04" + data)
    except PortalZipError as exc:
        assert exc.code.startswith("portal.zip-")


def _refused(data: bytes) -> bool:
    try:
        read_portal_zip(data)
    except PortalZipError:
        return True
    return False


@pytest.mark.parametrize("compression", [zipfile.ZIP_DEFLATED, zipfile.ZIP_LZMA], ids=["deflate", "lzma"])
def test_corrupt_portal_upload_is_4xx_on_the_listener(aro_client: tuple[httpx.Client, str], compression: int) -> None:
    client, token = aro_client
    good = _csr_zip(compression)
    bad = next(data for data in (_corrupt_first_entry(good, at, 0xFF) for at in range(10, 60))
               if _refused(data))
    response = client.post("/portal/aro/batches", data={"csrf": token},
                           files={"batch": ("bad.zip", bad, "application/zip")})
    assert 400 <= response.status_code < 500, response.text[:300]
    assert "portal.zip-invalid" in response.text


# -- a fault of smki's own -------------------------------------------------------------------------


def test_a_500_closes_the_kept_alive_connection(staff_client: tuple[httpx.Client, str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from smki.services import applications

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("simulated fault")

    monkeypatch.setattr(applications, "propose", broken)
    client, token = staff_client
    response = client.post("/portal/staff/applications/1/propose", data={"csrf": token})
    assert response.status_code == 500
    assert response.headers.get("connection") == "close"
    # on the Portal, a browser's page (with its security headers), not the JSON error object
    assert response.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "internal.error" in response.text and "simulated" not in response.text
    # The client opens a new connection for the next request, and it is answered.
    assert client.get("/portal/staff/applications").status_code == 200


def test_a_500_carries_its_request_id_into_the_answer_and_both_log_lines(
        staff_client: tuple[httpx.Client, str], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A 500 was answered outside the access log's middleware: no X-Request-ID, an empty
    ``error.request_id``, an access line of 0 bytes and an error line without the id (QA)."""
    import logging

    from smki.services import applications

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("simulated fault")

    monkeypatch.setattr(applications, "propose", broken)
    client, token = staff_client
    with caplog.at_level(logging.INFO):
        response = client.post("/portal/staff/applications/1/propose", data={"csrf": token})
    assert response.status_code == 500 and response.headers.get("connection") == "close"
    rid = response.headers.get("x-request-id")
    assert rid and f"(request id {rid})" in response.text  # the Portal's page names it for the operator
    assert "internal.error" in response.text and "simulated" not in response.text
    errors = [r for r in caplog.records if r.name == "smki.api" and r.levelno == logging.ERROR]
    assert [getattr(r, "request_id", None) for r in errors] == [rid]
    access = [r for r in caplog.records if r.name == "smki.access" and getattr(r, "request_id", None) == rid]
    assert len(access) == 1 and access[0].status == 500 and access[0].bytes == len(response.content)  # type: ignore[attr-defined]
    assert client.get("/portal/staff/applications").status_code == 200


def test_the_database_going_away_under_a_request_is_a_503_and_one_line(
        live: LiveListeners, aro: ClientFiles, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A connection the database terminated under a request (a restart, a failover) was a 500
    ``internal.error`` with a traceback; it passes when the database is back: 503, retry."""
    import logging

    from sqlalchemy.exc import OperationalError

    from smki.services import batch_jobs

    def away(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT", {}, Exception("terminating connection due to administrator command"))

    from smki.interfaces.api import security

    monkeypatch.setattr(batch_jobs, "job_for_party", away)
    with caplog.at_level(logging.INFO):
        client = live.client(aro)
        response = client.get("/api/v1/device-batches/1")
        monkeypatch.setattr(security, "resolve_identity", away)  # the credential check cannot read it either
        refused = client.get("/api/v1/whoami")
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "store.unavailable" and error["request_id"] == response.headers["x-request-id"]
    assert refused.status_code == 503 and refused.json()["error"]["code"] == "store.unavailable"
    assert not [r for r in caplog.records if r.exc_info], "no traceback for the database being away"
    assert any("the database is unavailable" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records)


def test_a_portal_fault_is_the_portals_page_and_json_when_even_that_fails(
        staff_client: tuple[httpx.Client, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The database going away under a Portal page is the Portal's 503 page (a browser cannot read
    the JSON object); if the Portal cannot make its own error page, the JSON object still goes out,
    never a connection dropped without an answer."""
    from sqlalchemy.exc import OperationalError

    from smki.interfaces.portal.web import PortalContext
    from smki.services import applications

    def away(*_args: object, **_kwargs: object) -> None:
        raise OperationalError("SELECT", {}, Exception("terminating connection due to administrator command"))

    monkeypatch.setattr(applications, "propose", away)
    client, token = staff_client
    response = client.post("/portal/staff/applications/1/propose", data={"csrf": token})
    assert response.status_code == 503 and response.headers["content-type"].startswith("text/html")
    assert "store.unavailable" in response.text and response.headers.get("connection") != "close"

    def no_page(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("template gone")

    monkeypatch.setattr(PortalContext, "error_page", no_page)
    response = client.post("/portal/staff/applications/1/propose", data={"csrf": token})
    assert response.status_code == 503 and response.json()["error"]["code"] == "store.unavailable"


def test_every_staff_post_route_is_fuzzed() -> None:
    """A staff POST added to the Portal without being added here would go unfuzzed."""
    import re

    from smki.interfaces.portal.staff_pages import _PATHS

    assert {"/portal" + re.sub(r"\{[a-z_]+\}", "{}", path) for path in _PATHS.values()} == set(STAFF_POSTS)
