"""The ``[api]`` section of ``smki.toml``: listeners, limits and workers of ``smki serve``.

```toml
[api]
gateway = "127.0.0.1:8443"     # the DCC Gateway listener
spoti = "127.0.0.1:8444"       # the SPOTI listener; "" or spoti-enabled = false switches it off
spoti-enabled = true
server-names = ["127.0.0.1", "localhost"]   # SANs of the listeners' server certificate
workers = 1                    # server processes (each serves both listeners)
batch-workers = 2              # signing processes per running batch (0: in the server process)
max-body = 262144              # bytes, every endpoint but batch submission
max-batch-body = 67108864      # bytes, SubmitCSRBatch and the JSON batch endpoint
repository-apikey = ""         # if set, the XML Repository services also require ?apikey=<this>
batch-lease = 60               # seconds without a heartbeat after which another process (node) takes a batch over
```
Command-line flags of ``smki serve`` override these.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from smki.config import Settings
from smki.errors import ConfigError

DEFAULT_GATEWAY = "127.0.0.1:8443"
DEFAULT_SPOTI = "127.0.0.1:8444"
DEFAULT_MAX_BODY = 256 * 1024
DEFAULT_MAX_BATCH_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, what: str) -> Listen:
        host, sep, port = text.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ConfigError("config.invalid", f"{what} must be host:port, not {text!r}")
        return cls(host.strip("[]"), int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class ApiSettings:
    gateway: Listen = field(default_factory=lambda: Listen.parse(DEFAULT_GATEWAY, "gateway"))
    spoti: Listen | None = field(default_factory=lambda: Listen.parse(DEFAULT_SPOTI, "spoti"))
    server_names: tuple[str, ...] = ("127.0.0.1", "localhost")
    workers: int = 1
    batch_workers: int | None = None
    max_body: int = DEFAULT_MAX_BODY
    max_batch_body: int = DEFAULT_MAX_BATCH_BODY
    repository_apikey: str = ""
    batch_poll: float = 0.5
    batch_lease: float = 60.0
    admin: Listen | None = None  # the admin listener (/healthz, /readyz, /metrics); off when None

    def with_overrides(self, **values: Any) -> ApiSettings:
        return replace(self, **{k: v for k, v in values.items() if v is not None})


def _int(section: dict[str, Any], key: str, default: int | None, low: int = 0) -> int | None:
    value = section.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError("config.invalid", f"[api] {key} must be an integer of at least {low}")
    return value


_KNOWN = {"gateway", "spoti", "spoti-enabled", "server-names", "workers", "batch-workers", "max-body",
          "max-batch-body", "repository-apikey", "capacity", "batch-poll", "batch-lease", "admin",
          "crl-check-seconds"}


def api_settings(settings: Settings) -> ApiSettings:
    section = settings.extra.get("api", {})
    if not isinstance(section, dict):
        raise ConfigError("config.invalid", "[api] must be a table")
    unknown = set(section) - _KNOWN
    if unknown:
        raise ConfigError("config.unknown-key", f"[api]: unknown setting {sorted(unknown)[0]!r}")
    gateway = Listen.parse(str(section.get("gateway", DEFAULT_GATEWAY)), "[api] gateway")
    spoti_text = str(section.get("spoti", DEFAULT_SPOTI))
    spoti = Listen.parse(spoti_text, "[api] spoti") if spoti_text and section.get("spoti-enabled", True) else None
    names = section.get("server-names", ["127.0.0.1", "localhost"])
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise ConfigError("config.invalid", "[api] server-names must be a list of host names or addresses")
    poll = section.get("batch-poll", 0.5)
    if not isinstance(poll, int | float) or poll <= 0:
        raise ConfigError("config.invalid", "[api] batch-poll must be a positive number of seconds")
    lease = section.get("batch-lease", 60.0)
    if not isinstance(lease, int | float) or isinstance(lease, bool) or lease < 1:
        raise ConfigError("config.invalid", "[api] batch-lease must be at least 1 second")
    return ApiSettings(
        gateway=gateway,
        spoti=spoti,
        server_names=tuple(names),
        workers=_int(section, "workers", 1, 1) or 1,
        batch_workers=_int(section, "batch-workers", None),
        max_body=_int(section, "max-body", DEFAULT_MAX_BODY, 1024) or DEFAULT_MAX_BODY,
        max_batch_body=_int(section, "max-batch-body", DEFAULT_MAX_BATCH_BODY, 1024) or DEFAULT_MAX_BATCH_BODY,
        repository_apikey=str(section.get("repository-apikey", "")),
        batch_poll=float(poll),
        batch_lease=float(lease),
        admin=Listen.parse(str(section["admin"]), "[api] admin") if section.get("admin") else None,
    )
