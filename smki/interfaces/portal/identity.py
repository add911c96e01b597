"""Who is using the Portal, as the HTTP layer established it from the verified client certificate.

The Portal never authenticates anyone itself: the listener (mutual TLS with SMKI credentials) sets
``request.state.identity`` to a :class:`PortalIdentity` before any page runs, exactly as it does
for the API. Reading it only from there means a page cannot be talked into another identity by
anything the browser sends (a header, a form field, a cookie).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from smki.errors import SmkiError


@dataclass(frozen=True)
class PortalIdentity:
    """An ARO acting for a Party, or an RA staff member."""

    kind: Literal["aro", "staff"]
    party_id: str | None = None
    aro_id: str | None = None
    staff_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind == "aro" and not (self.party_id and self.aro_id):
            raise SmkiError("portal.identity-invalid", "an ARO identity names its Party and ARO id")
        if self.kind == "staff" and not self.staff_id:
            raise SmkiError("portal.identity-invalid", "a staff identity names the staff id")
        if self.kind not in ("aro", "staff"):
            raise SmkiError("portal.identity-invalid", "an identity is an ARO or RA staff")

    @property
    def key(self) -> str:
        """A stable string naming this identity, and no other (form tokens are bound to it).

        A JSON list, not ``aro:<Party>:<ARO>``: register ids may hold ``:``, so ARO ``B:C`` of
        Party ``A`` and ARO ``C`` of Party ``A:B`` were one string, and each could post the other's forms.
        """
        if self.kind == "aro":
            return json.dumps(["aro", self.party_id, self.aro_id])
        return json.dumps(["staff", self.staff_id])


def identity_of(request: Request) -> PortalIdentity:
    """The caller's identity, or ``portal.unauthenticated`` if the listener set none."""
    identity = getattr(request.state, "identity", None)
    if not isinstance(identity, PortalIdentity):
        raise SmkiError("portal.unauthenticated", "no SMKI credential was presented for this connection")
    return identity
