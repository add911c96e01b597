"""The Portal batch ZIP codec (spec §3.2, App. F): reading uploads and writing responses."""

from __future__ import annotations

import base64
import zipfile
from io import BytesIO

import pytest
from cryptography import x509
from hypothesis import given, settings
from hypothesis import strategies as st

from smki.ca.devcsr import make_device_csr
from smki.domain import Usage
from smki.services.batch_sources import MAX_ITEM_BYTES
from smki.services.device_issuance import DeviceOutcome
from smki.services.portal_batches import (
    RECORD_HEADER,
    PortalZipError,
    ResponseWriter,
    read_portal_zip,
    read_response_zip,
    request_name,
    write_portal_zip,
)


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_reads_csr_files_in_name_order() -> None:
    csr = make_device_csr(bytes.fromhex("00db123456789001"), Usage.DS)
    items = read_portal_zip(write_portal_zip([("b.csr", base64.b64encode(csr)), ("a.csr", b"x")]))
    assert [(i.index, i.item_id) for i in items] == [(0, "a.csr"), (1, "b.csr")]
    assert items[1].data == base64.b64encode(csr)


@pytest.mark.parametrize(("entries", "code"), [
    ([], "portal.zip-empty"),
    ([("dir/a.csr", b"x")], "portal.zip-bad-entry"),
    ([("a.txt", b"x")], "portal.zip-bad-entry"),
    ([("../a.csr", b"x")], "portal.zip-bad-entry"),
    ([("a.csr", b"x"), ("A.CSR", b"y")], "portal.zip-duplicate"),
])
def test_bad_zips_are_refused_whole(entries: list[tuple[str, bytes]], code: str) -> None:
    with pytest.raises(PortalZipError) as info:
        read_portal_zip(_zip(entries))
    assert info.value.code == code


@pytest.mark.parametrize("name", ["a.csr\n", "a.csr\r\n"])
def test_a_name_ending_in_a_line_break_is_refused(name: str) -> None:
    """``$`` also matches before a final newline: "a.csr\\n" passed the name check, became an item
    id beside "a.csr" (no duplicate), and a certificate file "a.csr\\n.crt" in the response."""
    with pytest.raises(PortalZipError) as refused:
        read_portal_zip(_zip([(name, b"x"), ("a.csr", b"y")]))
    assert refused.value.code == "portal.zip-bad-entry"


def test_not_a_zip() -> None:
    with pytest.raises(PortalZipError) as info:
        read_portal_zip(b"PK\x03\x04 not really")
    assert info.value.code == "portal.zip-invalid"


def test_too_many_csrs_names_the_dcc_message() -> None:
    data = _zip([(f"{n}.csr", b"x") for n in range(4)])
    assert len(read_portal_zip(data, max_items=4)) == 4
    with pytest.raises(PortalZipError) as info:
        read_portal_zip(data, max_items=3)
    assert info.value.code == "portal.zip-too-many"
    assert "exceeds maximum volume" in info.value.message


def test_50000_entries_are_accepted() -> None:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        for n in range(50_000):
            archive.writestr(f"{n:05d}.csr", b"x")
    assert len(read_portal_zip(buffer.getvalue())) == 50_000


def _entries_zip(count: int, *, comment: bytes = b"", zip64: bool = False, prefix: bytes = b"") -> bytes:
    buffer = BytesIO(prefix)
    buffer.seek(len(prefix))
    with zipfile.ZipFile(buffer, "a" if prefix else "w", zipfile.ZIP_STORED) as archive:
        for n in range(count):
            with archive.open(f"{n:06d}.csr", "w", force_zip64=zip64) as handle:
                handle.write(b"x")
        archive.comment = comment
    return buffer.getvalue()


def test_a_zip_declaring_far_too_many_entries_is_refused_before_its_directory_is_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``zipfile`` builds an object per entry as it opens a ZIP: a 128 MB upload of empty entries
    would be over a million of them. The count the end record declares is read first; ZIP64's too
    (Python writes a ZIP64 end record past 65,535 entries)."""
    from smki.services import portal_batches
    from smki.services.portal_batches import MAX_OTHER_ENTRIES

    just_allowed = _entries_zip(3 + MAX_OTHER_ENTRIES)
    with pytest.raises(PortalZipError) as counted:  # zipfile reads it, and counts the CSRs
        read_portal_zip(just_allowed, max_items=3)
    assert counted.value.code == "portal.zip-too-many"
    over = _entries_zip(4 + MAX_OTHER_ENTRIES)
    large = _entries_zip(65_536 + 1)

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the ZIP's directory was read")

    monkeypatch.setattr(portal_batches.zipfile, "ZipFile", never)
    for data, max_items, declared in ((over, 3, 4 + MAX_OTHER_ENTRIES), (large, 50_000, 65_537)):
        with pytest.raises(PortalZipError) as refused:
            read_portal_zip(data, max_items=max_items)
        assert refused.value.code == "portal.zip-too-many"
        assert f"({declared} > {max_items})" in refused.value.message


def test_a_zip_whose_end_record_understates_its_entries_is_refused_by_its_directory_s_size(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """An end record can say 10 entries for a directory of 640,000: the count passed, and
    ``zipfile`` then made an object per real entry (485 MB and seconds per upload; found by an
    exploratory run). The directory's size, which ``zipfile`` reads whatever the count says, is
    checked too."""
    import struct

    from smki.services import portal_batches

    data = bytearray(_entries_zip(20_000))
    at = data.rfind(b"PK\x05\x06")
    struct.pack_into("<2H", data, at + 8, 3, 3)  # entries on this disk, entries in all: "3"

    def never(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the ZIP's directory was read")

    monkeypatch.setattr(portal_batches.zipfile, "ZipFile", never)
    with pytest.raises(PortalZipError) as refused:
        read_portal_zip(bytes(data), max_items=5)
    assert refused.value.code == "portal.zip-too-many" and "directory is too large" in refused.value.message


@given(count=st.integers(0, 40), comment=st.binary(max_size=300), zip64=st.booleans(),
       prefix=st.binary(max_size=40))
@settings(max_examples=200, deadline=None)
def test_the_declared_count_is_zipfiles_count_or_none(count: int, comment: bytes, zip64: bool,
                                                      prefix: bytes) -> None:
    """For any ZIP Python writes (a comment, ZIP64 records, data before the ZIP as in a
    self-extracting file), the end record's count is what ``zipfile`` finds, or unknown (None)."""
    from smki.services.portal_batches import declared_entries

    data = _entries_zip(count, comment=comment, zip64=zip64, prefix=prefix)
    source = BytesIO(data)
    source.seek(7)
    declared = declared_entries(source)
    assert source.tell() == 7
    try:
        archive = zipfile.ZipFile(BytesIO(data))
    except zipfile.BadZipFile:  # e.g. an end signature in the comment misleads zipfile too: refused as invalid
        return
    with archive:
        assert declared in (len(archive.infolist()), None)
    if not zip64 and b"PK\x05\x06" not in comment:
        assert declared == count


def test_a_zip_bomb_entry_is_read_only_up_to_the_cap() -> None:
    items = read_portal_zip(_zip([("big.csr", b"A" * (50 * MAX_ITEM_BYTES))]))
    assert len(items[0].data) == MAX_ITEM_BYTES + 1  # the CA then refuses it as csr.too-large


def test_a_zip_of_many_bomb_entries_is_refused_whole() -> None:
    """Capping each file is not enough: 1,100 entries of 64 KiB (a 170 KB ZIP) would unpack to 70 MB
    (50,000 of them to 3.2 GB, held in memory and stored): the unpacked total is capped too."""
    from smki.services.portal_batches import MAX_UNPACKED_BYTES

    count = MAX_UNPACKED_BYTES // MAX_ITEM_BYTES + 100
    data = _zip([(f"{n:05d}.csr", b"A" * (MAX_ITEM_BYTES + 1)) for n in range(count)])
    assert len(data) < 1024 * 1024
    with pytest.raises(PortalZipError) as refused:
        read_portal_zip(data)
    assert refused.value.code == "portal.zip-too-large"


@given(st.lists(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True), min_size=1, max_size=20,
                unique_by=str.lower))
@settings(max_examples=50, deadline=None)
def test_any_flat_set_of_names_round_trips(stems: list[str]) -> None:
    files = [(f"{s}.csr", s.encode()) for s in stems]
    items = read_portal_zip(write_portal_zip(files))
    assert sorted((i.item_id, i.data) for i in items) == sorted(files)


@given(st.text(max_size=60))
def test_request_names_are_always_safe(name: str) -> None:
    made = request_name(name)
    assert made and not made.startswith((".", "-"))
    assert all(c in "._-" or (c.isascii() and c.isalnum()) for c in made)


def test_response_layout(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    der = make_device_csr(bytes.fromhex("00db123456789001"), Usage.KA)  # any bytes stand in for a cert
    outcomes = [
        DeviceOutcome(0, "m1.csr", bytes.fromhex("00db123456789001"), Usage.DS, "ab" * 16, der),
        DeviceOutcome(1, "bad,name.csr", error_code="csr.bad-signature", error_message="no"),
        DeviceOutcome(2, "m3.csr", error_code="issuance.anomaly", error_message="hsm"),
    ]
    writer = ResponseWriter("req-7", lambda o: ("anomaly", "CA:IA1") if o.error_code == "issuance.anomaly"
                            else ("error", "CR:CC5"))
    writer.add(outcomes[:2])
    writer.add(outcomes[2:])
    path = writer.finish(tmp_path / "out.zip")
    with zipfile.ZipFile(path) as outer:
        assert sorted(outer.namelist()) == ["req-7-response.txt", "req-7-response.zip"]
        record = outer.read("req-7-response.txt").decode()
    assert record.split("\r\n")[0] == RECORD_HEADER
    assert record.split("\r\n")[1:4] == [
        "1,m1.csr,success,", '2,"bad,name.csr",error,CR:CC5', "3,m3.csr,anomaly,CA:IA1"]
    response = read_response_zip(path.read_bytes(), "req-7")
    assert response.certificates == {"m1.crt": der}
    assert [line.status for line in response.lines] == ["success", "error", "anomaly"]
    assert writer.counts == {"success": 1, "error": 1, "anomaly": 1, "ineligible": 0}


def test_certificate_files_are_base64_der_without_armour(tmp_path: object) -> None:
    from pathlib import Path

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    assert isinstance(tmp_path, Path)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([])
    import datetime as dt

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(x509.Name.from_rfc4514_string("CN=t"))
            .public_key(key.public_key()).serial_number(7)
            .not_valid_before(dt.datetime(2020, 1, 1)).not_valid_after(dt.datetime(2030, 1, 1))
            .sign(key, hashes.SHA256()))
    from cryptography.hazmat.primitives.serialization import Encoding

    der = cert.public_bytes(Encoding.DER)
    writer = ResponseWriter("r", lambda o: ("error", "X"))
    writer.add([DeviceOutcome(0, "dev.csr", b"\0" * 8, Usage.DS, "07", der)])
    path = writer.finish(tmp_path / "r.zip")
    with zipfile.ZipFile(path) as outer, zipfile.ZipFile(BytesIO(outer.read("r-response.zip"))) as inner:
        raw = inner.read("dev.crt")
    assert b"-----" not in raw and b"\n" not in raw
    assert x509.load_der_x509_certificate(base64.b64decode(raw, validate=True)).serial_number == 7
