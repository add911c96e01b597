"""The Repository serves the CRL and ARL with headers a relying party's fetcher can cache by
(ETag, Last-Modified, Expires, Cache-Control) and revalidate cheaply (304), on both listeners."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

from cryptography import x509

from smki.domain import Route
from smki.services.context import Home
from smki.services.revocation import CRL, publish
from tests.api.conftest import ClientFiles, LiveListeners


def test_latest_lists_are_revalidated_by_etag_and_date_on_both_listeners(
        live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    # the key ceremony's CRL and ARL (#1 each), served as any later list is
    for route in (Route.GATEWAY, Route.SPOTI):
        client = live.client(aro, route)
        for kind in ("crl", "arl"):
            first = client.get(f"/api/v1/{kind}")
            assert first.status_code == 200 and first.headers["content-type"] == "application/pkix-crl"
            parsed = x509.load_der_x509_crl(first.content)
            assert parsedate_to_datetime(first.headers["last-modified"]) == parsed.last_update_utc
            assert parsedate_to_datetime(first.headers["expires"]) == parsed.next_update_utc
            # the newest list may be replaced by the next revocation at any moment: revalidate each time
            assert "no-cache" in first.headers["cache-control"]
            etag = first.headers["etag"]
            assert etag.startswith('"') and etag.endswith('"')

            same = client.get(f"/api/v1/{kind}", headers={"if-none-match": etag})
            assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
            since = client.get(f"/api/v1/{kind}", headers={"if-modified-since": first.headers["last-modified"]})
            assert since.status_code == 304
            pem = client.get(f"/api/v1/{kind}", params={"format": "pem"}, headers={"if-none-match": etag})
            assert pem.status_code == 200 and pem.headers["etag"] != etag  # another representation



def test_a_new_list_changes_the_etag_and_a_numbered_list_is_immutable(
        live: LiveListeners, home: Home, aro: ClientFiles) -> None:
    client = live.client(aro, Route.GATEWAY)
    old = datetime.now(UTC).replace(microsecond=0)
    publish(home, CRL, actor="t", now=old)
    etag = client.get("/api/v1/crl").headers["etag"]
    stamp = format_datetime(old, usegmt=True)
    publish(home, CRL, actor="t", now=old + timedelta(minutes=1))
    newer = client.get("/api/v1/crl", headers={"if-none-match": etag, "if-modified-since": stamp})
    assert newer.status_code == 200 and newer.headers["etag"] != etag
    assert x509.load_der_x509_crl(newer.content).extensions.get_extension_for_class(
        x509.CRLNumber).value.crl_number == 3  # #1 is the ceremony's

    numbered = client.get("/api/v1/crl/2")
    assert numbered.status_code == 200 and numbered.headers["etag"] == etag
    assert "immutable" in numbered.headers["cache-control"] and "max-age=" in numbered.headers["cache-control"]
    assert client.get("/api/v1/crl/2", headers={"if-none-match": etag}).status_code == 304
    assert client.get("/api/v1/crl/2", headers={"if-none-match": "*"}).status_code == 304
    assert client.get("/api/v1/crl/2", headers={"if-none-match": '"other", ' + etag}).status_code == 304
    assert client.get("/api/v1/crl/2", headers={"if-modified-since": "not a date"}).status_code == 200
