"""The ``[api]`` section as ``smki serve`` uses it: listeners, limits and workers, typed.

Nothing is parsed here: :func:`smki.settings_model.resolve` reads ``[api]`` from ``smki.toml``,
the environment and ``smki serve``'s flags (every key, its default and its flag are in
docs/configuration.md); :func:`api_settings` only gathers the typed values of one process's
listeners. Tests and benches build :class:`ApiSettings` directly; its defaults are the model's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from smki.config import Settings
from smki.settings_model import Listen, default

__all__ = ["ApiSettings", "Listen", "api_settings"]


@dataclass(frozen=True)
class ApiSettings:
    gateway: Listen = field(default_factory=lambda: default("api.gateway"))
    spoti: Listen | None = field(default_factory=lambda: default("api.spoti"))
    server_names: tuple[str, ...] = default("api.server-names")
    workers: int = default("api.workers")
    batch_workers: int | None = default("api.batch-workers")
    max_body: int = default("api.max-body")
    max_batch_body: int = default("api.max-batch-body")
    #: Seconds a request body may make no progress (between chunks) before it is refused with 408.
    body_timeout: float = default("api.body-timeout")
    #: Seconds a connection may take to send a complete request head (from its start or previous response).
    head_timeout: float = default("api.head-timeout")
    #: Seconds a connection may take to complete its TLS handshake.
    handshake_timeout: float = default("api.handshake-timeout")
    #: Seconds a response may make no write progress (the client stopped reading) before the connection closes.
    send_timeout: float = default("api.send-timeout")
    repository_apikey: str = default("api.repository-apikey")
    batch_poll: float = default("api.batch-poll")
    batch_lease: float = default("api.batch-lease")
    crl_check_seconds: float = default("api.crl-check-seconds")
    #: The admin listener (/healthz, /readyz, /metrics); off when None.
    admin: Listen | None = field(default_factory=lambda: default("api.admin"))


def api_settings(settings: Settings) -> ApiSettings:
    """The ``[api]`` values in force (file < environment < flags, as :func:`smki.config.load_settings` resolved)."""
    values = settings.sections
    return ApiSettings(
        gateway=values["api.gateway"],
        spoti=values["api.spoti"] if values["api.spoti-enabled"] else None,
        server_names=values["api.server-names"],
        workers=values["api.workers"],
        batch_workers=values["api.batch-workers"],
        max_body=values["api.max-body"],
        max_batch_body=values["api.max-batch-body"],
        body_timeout=values["api.body-timeout"],
        head_timeout=values["api.head-timeout"],
        handshake_timeout=values["api.handshake-timeout"],
        send_timeout=values["api.send-timeout"],
        repository_apikey=values["api.repository-apikey"],
        batch_poll=values["api.batch-poll"],
        batch_lease=values["api.batch-lease"],
        crl_check_seconds=values["api.crl-check-seconds"],
        admin=values["api.admin"],
    )
