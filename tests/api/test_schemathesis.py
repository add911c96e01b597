"""schemathesis against the running JSON API: no 5xx, and every answer keeps to the OpenAPI document.

The listener is the real one (``live``: uvicorn over mutual TLS on an ephemeral port) and the client
is an approved ARO's credential, so generated requests get past authentication and reach the
handlers. The document is loaded from the listener itself (``/api/v1/openapi.json``), so the test
checks what is served, not the checked-in copy (``test_openapi.py`` checks they are the same).

Bounded on purpose (issue 4: "a few minutes at most"): every operation gets MAX_EXAMPLES positive
(schema-valid) and MAX_EXAMPLES negative (schema-invalid) cases, no coverage or stateful phase, no
deadline. Each operation runs as its own hypothesis test so every failing operation is reported,
with schemathesis's curl line to reproduce it. (schemathesis's lazy ``from_fixture`` pytest
integration does not work with pytest 9.2 -- it sets ``Function._nodeid`` -- hence the loop.)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.generation import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance
from schemathesis.specs.openapi.schemas import OpenApiSchema

from smki.domain import Route
from tests.api.conftest import ClientFiles, LiveListeners

MAX_EXAMPLES = 12
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
]
# An explicit configuration, so a stray schemathesis.toml cannot change what CI runs.
CONFIG = SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}, "stateful": {"enabled": False}}})


@pytest.fixture
def session(live: LiveListeners, aro: ClientFiles) -> Iterator[requests.Session]:
    """A requests session with the ARO's client certificate that trusts the listener's server CA."""
    with requests.Session() as opened:
        opened.cert = (str(aro.cert), str(aro.key))
        opened.verify = str(live.ca)
        opened.trust_env = False  # else REQUESTS_CA_BUNDLE / proxy variables override the above
        yield opened


@pytest.fixture
def api_schema(live: LiveListeners, session: requests.Session) -> OpenApiSchema:
    """The document the listener serves, pointed at that listener."""
    base = live.url(Route.GATEWAY)
    served = session.get(f"{base}/api/v1/openapi.json", timeout=30)
    served.raise_for_status()
    schema = schemathesis.openapi.from_dict(served.json(), config=CONFIG)
    schema.config.update(base_url=base)
    return schema


def _exercise(operation: APIOperation, mode: GenerationMode, session: requests.Session,
              statuses: Counter[tuple[str, int]]) -> list[str]:
    """Run one operation's generated cases; return the failures (schemathesis's own report text)."""
    failures: list[str] = []

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        try:
            # schemathesis passes its own ``verify`` (default True) per request: give it the listener's CA.
            response = case.call_and_validate(session=session, checks=CHECKS, timeout=30, verify=session.verify)
            statuses[operation.label, response.status_code] += 1
        except (Failure, FailureGroup) as failure:  # keep going: report every operation that fails
            if len(failures) < 3:
                failures.append(f"{operation.label} [{mode.value}]: {failure}")

    try:
        run()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without parameters or body (whoami, arl).
        assert mode is GenerationMode.NEGATIVE, operation.label
    return failures


def test_every_operation_answers_within_its_schema(api_schema: OpenApiSchema, session: requests.Session) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15, "the served document lost operations"
    statuses: Counter[tuple[str, int]] = Counter()
    failures = [failure for operation in operations for mode in GenerationMode
                for failure in _exercise(operation, mode, session, statuses)]
    assert not failures, "\n\n".join(failures)
    # The run reached the handlers: authenticated as the ARO, not refused at the door every time.
    assert statuses["GET /api/v1/whoami", 200] > 0
    # (The XML /services operations answer 401 to anything not WS-Security signed, as documented.)
    refused = {label for (label, status) in statuses if status == 401 and " /api/v1/" in label}
    assert not refused, sorted(statuses.items())
    answered = {label for (label, status) in statuses if 200 <= status < 300}
    assert len(answered) >= 8, sorted(statuses.items())
