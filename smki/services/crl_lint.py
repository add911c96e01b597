"""Linting a CRL or ARL before it is published, in bounded time however long it grows.

pkilint decodes every entry with pyasn1 and runs its validators on each node: about 0.18 ms per
entry, so a 100,000-entry CRL takes ~20 s to lint while it takes ~0.5 s to build and sign. That
would make every revocation wait 20 s (target: < 5 s for 100,000 entries).

Every entry is built by the same code (``smki.ca.crl._entry``) and differs from its neighbours
only in its serial, its time and its reason. So a list longer than ``FULL_LINT_LIMIT`` is linted
as the *real signed bytes* with its ``revokedCertificates`` cut down to one entry of each distinct
shape (serial length, time encoding, entry extensions) plus the first and last: pkilint then sees
the real header, issuer, dates, extensions and signature fields and every kind of entry the list
holds. Duplicates, which pkilint would not see in a sample, are refused by ``build_crl`` itself.
Shorter lists are linted whole.
"""

from __future__ import annotations

from smki.ca.der import der_tlv
from smki.ca.device_template import split_tlvs, tlv_content
from smki.ca.lint import Finding, crl_findings

#: Lists with at most this many entries are linted whole (~0.3 s).
FULL_LINT_LIMIT = 2_000


def _entry_shape(entry: bytes) -> tuple[int, int, bytes]:
    """What distinguishes entries structurally: serial length, time tag, and the extensions' bytes."""
    fields = split_tlvs(tlv_content(entry))
    serial, when = fields[0], fields[1]
    return len(serial), when[0], b"".join(fields[2:])


def sample_crl(der: bytes) -> tuple[bytes, int]:
    """The CRL's DER with its entries reduced to one per shape (plus first and last); and how many
    entries were kept. A list with no entries, or few, is returned unchanged."""
    outer = split_tlvs(tlv_content(der))
    tbs, algorithm, signature = outer
    tbs_fields = split_tlvs(tlv_content(tbs))
    # version, signature, issuer, thisUpdate, [nextUpdate], [revokedCertificates], [0] extensions
    index = next((i for i, f in enumerate(tbs_fields) if i >= 4 and f[0] == 0x30), None)
    if index is None:
        return der, 0
    entries = split_tlvs(tlv_content(tbs_fields[index]))
    if len(entries) <= FULL_LINT_LIMIT:
        return der, len(entries)
    kept: dict[tuple[int, int, bytes], int] = {}
    for position, entry in enumerate(entries):
        kept.setdefault(_entry_shape(entry), position)
    positions = sorted({0, len(entries) - 1, *kept.values()})
    sample = der_tlv(0x30, b"".join(entries[p] for p in positions))
    new_tbs = der_tlv(0x30, b"".join(tbs_fields[:index]) + sample + b"".join(tbs_fields[index + 1 :]))
    return der_tlv(0x30, new_tbs + algorithm + signature), len(positions)


def publication_findings(der: bytes, kind: str) -> list[Finding]:
    """pkilint's findings for a CRL/ARL about to be published (sampled when it is long)."""
    linted, _kept = sample_crl(der)
    return crl_findings(linted, kind)
