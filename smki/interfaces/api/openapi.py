"""The OpenAPI document of the listeners, as checked in at ``docs/openapi.json``.

``python -m smki.interfaces.api.openapi docs/openapi.json`` regenerates it; a test fails when the
checked-in copy differs from what the code serves at ``/api/v1/openapi.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from smki.domain import Route
from smki.errors import SmkiError
from smki.interfaces.api.app import openapi_document
from smki.interfaces.api.context import ListenerContext
from smki.interfaces.api.settings import ApiSettings
from smki.services.capacity import CapacitySettings
from smki.services.context import Home


def _no_home() -> Home:
    raise SmkiError("api.no-home", "the OpenAPI document is built without a home")


def document() -> dict[str, Any]:
    return openapi_document(ListenerContext(_no_home, Route.GATEWAY, ApiSettings(), CapacitySettings()))


def render() -> str:
    return json.dumps(document(), indent=2, sort_keys=True) + "\n"


def main(argv: list[str]) -> None:
    text = render()
    if argv:
        Path(argv[0]).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main(sys.argv[1:])
