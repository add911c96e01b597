"""A throw-away CA hierarchy (file key backend, temporary directory) for the component benchmarks."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from smki.ca.hierarchy import Hierarchy, create_hierarchy
from smki.config import Settings
from smki.keys.file import FileKeyBackend


@dataclass(frozen=True)
class BenchCA:
    settings: Settings
    now: datetime
    backend: FileKeyBackend
    hierarchy: Hierarchy


@contextmanager
def throwaway_ca() -> Iterator[BenchCA]:
    """Root, Organisation CA and Device CA with the test-environment defaults, gone afterwards."""
    settings = Settings()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as home:
        backend = FileKeyBackend(Path(home) / "keys", b"benchmark-passphrase")
        yield BenchCA(settings, now, backend, create_hierarchy(backend, settings, now))
