"""Capacity management (spec §3.3): per-Party limits per interface, refused by name when exceeded.

The SEC sets the DCC's service levels per Party: at most 150 ad hoc Portal Device CSRs in 24 hours;
on the Ad Hoc Device CSR web service one CSR per 0.8 s in core hours (07:00-20:00 UK time) and one
per 4 s otherwise; at most 50,000 batched Device CSRs in 24 hours without 7 days' notice. smki makes
each a configurable limit with those defaults (``[capacity]`` in ``smki.toml``, or ``[api.capacity]``),
which a deployment can raise or switch off — smki's own throughput is far above them.

Each limit is a token bucket per Party held in the database (``capacity_buckets``), so every server
process draws on the same counters: ``capacity`` tokens, refilled at ``capacity / period`` per
second. A request needing more tokens than are left is refused with ``capacity.<limit>`` (HTTP 429
with ``Retry-After``, or the DCC workflow status on the XML services) and audited; nothing is
queued.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from smki.audit import AuditEvent
from smki.errors import ConfigError, SmkiError
from smki.services.context import Home
from smki.store.capacity import capacity_ledger

_UK = ZoneInfo("Europe/London")
DAY = 86_400.0


@dataclass(frozen=True)
class Limit:
    """``capacity`` units per ``period`` seconds, outside core hours ``off_peak_period`` if set."""

    name: str
    capacity: float
    period: float
    off_peak_period: float | None = None
    reference: str = ""

    def rate(self, at: datetime) -> float:
        period = self.period
        if self.off_peak_period is not None and not is_core_hours(at):
            period = self.off_peak_period
        return self.capacity / period


#: The SEC defaults (spec §3.3). Names are the refusal codes' suffixes: ``capacity.<name>``.
DEFAULT_LIMITS: dict[str, Limit] = {
    "portal-adhoc": Limit(
        "portal-adhoc", 150, DAY,
        reference="SEC Appendix N §3.1: 150 ad hoc Portal Device CSRs per Party per 24 h"),
    "adhoc-service": Limit(
        "adhoc-service", 1, 0.8, 4.0,
        reference="SEC Appendix N §3.1: Ad Hoc Device CSR web service, 1 CSR per 0.8 s in core hours "
                  "(07:00-20:00), 1 per 4 s otherwise"),
    "batch-csrs": Limit(
        "batch-csrs", 50_000, DAY,
        reference="SEC Appendix N §3.1: more than 50,000 Device CSRs in 24 h needs 7 days' notice"),
    "organisation-csrs": Limit(
        "organisation-csrs", 150, DAY, reference="smki default, following the Portal's ad hoc limit"),
}


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
    local = at.astimezone(_UK)
    return 7 <= local.hour < 20


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ConfigError("config.invalid", f"capacity {what} must be a non-negative number")
    return float(value)


def capacity_settings(home: Home) -> CapacitySettings:
    """Limits from ``[capacity]`` (or ``[api.capacity]``): ``enabled = false`` switches all off; each
    limit is a table ``[capacity.<name>]`` with ``capacity``, ``period`` (s), ``off-peak-period`` and
    ``enabled``. ``capacity = 0`` or ``enabled = false`` switches that limit off."""
    extra = home.settings.extra
    section = extra.get("capacity")
    if section is None:
        section = extra.get("api", {}).get("capacity", {})
    if not isinstance(section, dict):
        raise ConfigError("config.invalid", "[capacity] must be a table")
    enabled = section.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError("config.invalid", "capacity enabled must be true or false")
    limits = dict(DEFAULT_LIMITS)
    for key, value in section.items():
        if key == "enabled":
            continue
        name = key.replace("_", "-")
        if not isinstance(value, dict):
            raise ConfigError("config.invalid", f"[capacity.{key}] must be a table")
        base = limits.get(name, Limit(name, 0, DAY))
        if value.get("enabled", True) is False or value.get("capacity") == 0:
            limits.pop(name, None)
            continue
        off_peak = value.get("off-peak-period", value.get("off_peak_period", base.off_peak_period))
        limits[name] = Limit(
            name,
            _number(value.get("capacity", base.capacity), f"{name} capacity"),
            _number(value.get("period", base.period), f"{name} period") or DAY,
            None if off_peak is None else _number(off_peak, f"{name} off-peak-period"),
            str(value.get("reference", base.reference)),
        )
    return CapacitySettings(enabled, limits)


def consume(home: Home, settings: CapacitySettings, party_id: str, limit_name: str, amount: int = 1, *,
            actor: str, interface: str, now: float | None = None) -> None:
    """Take ``amount`` units of ``limit_name`` for a Party, or raise :class:`CapacityExceeded` (audited)."""
    if not settings.enabled:
        return
    limit = settings.limits.get(limit_name)
    if limit is None:
        return
    moment = time.time() if now is None else now
    rate = limit.rate(datetime.fromtimestamp(moment, UTC))
    if amount > limit.capacity:
        raise _refuse(home, limit, party_id, amount, math.inf, actor, interface,
                      f"{amount} exceeds the limit of {limit.capacity:g} per {_period(limit)}")
    granted, wait = capacity_ledger(home.store).take_tokens(party_id, limit.name, amount=float(amount),
                                                         capacity=limit.capacity, rate=rate, now=moment)
    if not granted:
        raise _refuse(home, limit, party_id, amount, wait, actor, interface,
                      f"Party {party_id} has used its capacity of {limit.capacity:g} per {_period(limit)}")


def give_back(home: Home, settings: CapacitySettings, party_id: str, limit_name: str, amount: int, *,
              actor: str, interface: str, reason: str) -> None:
    """Return ``amount`` units a Party was charged for work smki then could not do (audited): e.g. the
    CSRs of a batch never attempted because the CA key became unusable. The bucket never rises above
    its capacity (it is capped when next read)."""
    if not settings.enabled or amount <= 0:
        return
    limit = settings.limits.get(limit_name)
    if limit is None:
        return
    moment = time.time()
    capacity_ledger(home.store).take_tokens(party_id, limit.name, amount=-float(amount), capacity=limit.capacity,
                                            rate=limit.rate(datetime.fromtimestamp(moment, UTC)), now=moment)
    with home.store.transaction() as tx:
        tx.append_audit([AuditEvent(actor, "capacity.returned", party_id, {
            "limit": limit.name, "returned": amount, "interface": interface, "reason": reason[:300],
        })])


def _period(limit: Limit) -> str:
    period = limit.period
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
