"""Capacity management (spec §3.3): per-Party limits per interface, refused by name when exceeded.

The SEC sets the DCC's service levels per Party: at most 150 ad hoc Portal Device CSRs in 24 hours;
on the Ad Hoc Device CSR web service one CSR per 0.8 s in core hours (07:00-20:00 UK time) and one
per 4 s otherwise; at most 50,000 batched Device CSRs in 24 hours without 7 days' notice. smki makes
each a configurable limit with those defaults (``[capacity]`` in ``smki.toml``, or ``[api.capacity]``;
read by the settings model, :mod:`smki.settings_model`), which a deployment can raise or switch off
— smki's own throughput is far above them.

Each limit is a token bucket per Party held in the database (``capacity_buckets``), so every server
process draws on the same counters: ``capacity`` tokens, refilled at ``capacity / period`` per
second. A request needing more tokens than are left is refused with ``capacity.<limit>`` (HTTP 429
with ``Retry-After``, or the DCC workflow status on the XML services) and audited; nothing is
queued.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from smki.audit import AuditEvent
from smki.domain import UK_TIME
from smki.errors import SmkiError
from smki.services.context import Home
from smki.settings_model import limit_names, section_defaults
from smki.store.capacity import capacity_ledger

DAY = 86_400.0


@dataclass(frozen=True)
class Limit:
    """``capacity`` units per ``period`` seconds, outside core hours ``off_peak_period`` if set."""

    name: str
    capacity: float
    period: float
    off_peak_period: float | None = None
    reference: str = ""

    def period_at(self, at: datetime) -> float:
        """The period in force at ``at``: ``off_peak_period`` outside core hours, if set."""
        if self.off_peak_period is not None and not is_core_hours(at):
            return self.off_peak_period
        return self.period

    def rate(self, at: datetime) -> float:
        return self.capacity / self.period_at(at)


def _limits(values: Mapping[str, Any]) -> dict[str, Limit]:
    """The limits switched on in the settings model's ``capacity.<name>.*`` values."""
    limits = {}
    for name in limit_names(values):
        key = f"capacity.{name}."
        if values[key + "enabled"] and values[key + "capacity"]:
            limits[name] = Limit(name, values[key + "capacity"], values[key + "period"] or DAY,
                                 values[key + "off-peak-period"], values[key + "reference"])
    return limits


#: The SEC defaults (spec §3.3), from the settings model. Names are the refusal codes' suffixes:
#: ``capacity.<name>``.
DEFAULT_LIMITS: dict[str, Limit] = _limits(section_defaults())


@dataclass(frozen=True)
class CapacitySettings:
    enabled: bool = True
    limits: dict[str, Limit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))


class CapacityExceeded(SmkiError):
    """A Party went over one of its limits; ``retry_after`` is when enough capacity will be back."""

    def __init__(self, code: str, message: str, retry_after: float = 0.0, reference: str = "") -> None:
        super().__init__(code, message)
        self.retry_after = retry_after
        self.reference = reference

    def __reduce__(self) -> tuple[type[SmkiError], tuple[str, str]]:
        return (SmkiError, (self.code, self.message))


def is_core_hours(at: datetime) -> bool:
    local = at.astimezone(UK_TIME)
    return 7 <= local.hour < 20


def capacity_settings(home: Home) -> CapacitySettings:
    """The limits in force: ``[capacity]`` as the settings model resolved it. ``enabled = false``
    switches all off; ``capacity = 0`` or ``enabled = false`` in ``[capacity.<name>]`` that limit."""
    values = home.settings.sections
    return CapacitySettings(values["capacity.enabled"], _limits(values))


def consume(home: Home, settings: CapacitySettings, party_id: str, limit_name: str, amount: int = 1, *,
            actor: str, interface: str, now: float | None = None) -> None:
    """Take ``amount`` units of ``limit_name`` for a Party, or raise :class:`CapacityExceeded` (audited)."""
    if not settings.enabled:
        return
    limit = settings.limits.get(limit_name)
    if limit is None:
        return
    moment = time.time() if now is None else now
    at = datetime.fromtimestamp(moment, UTC)
    per = _period(limit.period_at(at))  # the refusal names the period in force (core hours or not)
    if amount > limit.capacity:
        raise _refuse(home, limit, party_id, amount, math.inf, actor, interface,
                      f"{amount} exceeds the limit of {limit.capacity:g} per {per}")
    granted, wait = capacity_ledger(home.store).take_tokens(party_id, limit.name, amount=float(amount),
                                                         capacity=limit.capacity, rate=limit.rate(at), now=moment)
    if not granted:
        raise _refuse(home, limit, party_id, amount, wait, actor, interface,
                      f"Party {party_id} has used its capacity of {limit.capacity:g} per {per}")


def _period(period: float) -> str:
    if period >= 3600 and period % 3600 == 0:
        return f"{period / 3600:g} h"
    return f"{period:g} s"


def _refuse(home: Home, limit: Limit, party_id: str, amount: int, wait: float, actor: str, interface: str,
            message: str) -> CapacityExceeded:
    code = f"capacity.{limit.name}"
    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(actor, "capacity.refused", party_id, {
            "limit": limit.name, "requested": amount, "capacity": limit.capacity, "period": limit.period,
            "interface": interface, "code": code,
        })])
    retry = wait if math.isfinite(wait) else 0.0
    return CapacityExceeded(code, message, retry_after=retry, reference=limit.reference)


def usage(home: Home, party_id: str | None = None) -> list[dict[str, Any]]:
    """Each Party's remaining capacity per limit (for the Portal's staff overview and ``smki``)."""
    settings = capacity_settings(home)
    now = time.time()
    rows = []
    for party, name, tokens, updated in capacity_ledger(home.store).bucket_levels(party_id):
        limit = settings.limits.get(name)
        if limit is None:
            continue
        level = min(limit.capacity, tokens + max(0.0, now - updated) * limit.rate(datetime.fromtimestamp(now, UTC)))
        rows.append({"party": party, "limit": name, "remaining": level, "capacity": limit.capacity,
                     "period_seconds": limit.period})
    return rows
