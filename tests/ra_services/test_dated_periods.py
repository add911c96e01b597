"""The facts the RA rules read for a date are a replay of the register's changes up to that date:
whatever Gateway Connections and Registered User roles were added and removed, on whichever dates,
``party_state(record, day)`` holds exactly what adding and removing them in order, up to ``day``,
leaves (migration 0013's periods)."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smki.errors import SmkiError
from smki.services import registry as reg
from smki.services.context import Home
from smki.services.ra_state import load_party, party_state

START = date(2020, 1, 1)
_parties = itertools.count()
#: (gateway?, value, added?, days after START)
_event = st.tuples(st.booleans(), st.sampled_from(["A", "B"]), st.booleans(), st.integers(0, 20))


def _change(gateway: bool, value: str, add: bool, on: date) -> reg.StatusChange:
    if gateway:
        name = f"GW-{value}"
        return reg.StatusChange(add_gateways=(name,) if add else (), drop_gateways=() if add else (name,),
                                effective=on)
    role = "import-supplier" if value == "A" else "gas-supplier"
    return reg.StatusChange(add_registered_roles=(role,) if add else (),
                            drop_registered_roles=() if add else (role,), effective=on)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events=st.lists(_event, max_size=7))
def test_the_facts_on_a_date_are_a_replay_of_the_changes_up_to_it(
        staffed: Home, events: list[tuple[bool, str, bool, int]]) -> None:
    home = staffed
    party_id = f"PH{next(_parties)}"
    reg.add_party(home, party_id, "Hypo Energy", "large-supplier", staff_id="op1")
    applied: list[tuple[str, str, bool, date]] = []
    held: set[tuple[bool, str]] = set()
    for gateway, value, add, days in sorted(events, key=lambda e: e[3]):  # the register's order: by date
        if add and (gateway, value) in held:
            continue  # adding one held, with a date, restates its start: a correction, not an event
        (held.add if add else held.discard)((gateway, value))
        change = _change(gateway, value, add, START + timedelta(days=days))
        try:
            reg.set_party_status(home, party_id, change, staff_id="op1")
        except SmkiError as refused:
            assert refused.code == "ra.no-change"  # removing one not held
            continue
        (name,) = change.add_gateways or change.drop_gateways or change.add_registered_roles \
            or change.drop_registered_roles
        applied.append(("gateway" if gateway else "role", name, add, START + timedelta(days=days)))

    record = load_party(home, party_id)
    for offset in range(-1, 23):
        day = START + timedelta(days=offset)
        replay: dict[str, set[str]] = {"gateway": set(), "role": set()}
        for kind, name, add, on in applied:
            if on <= day:
                (replay[kind].add if add else replay[kind].discard)(name)
        state = party_state(record, day)
        assert state.gateway_connections == tuple(sorted(replay["gateway"])), day
        assert state.registered_user_roles == frozenset(replay["role"]), day
