"""The package's layers, as DEVELOPERS.md draws them: data flows one way, and nothing imports upward.

Read from the source with :mod:`ast` (imports inside functions count too), so a lazy import cannot
hide a dependency that runs back up.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "smki"

#: What each layer may import of smki (besides itself). Shared vocabulary is open to all.
SHARED = {"smki", "smki.domain", "smki.errors", "smki.eui64", "smki.config", "smki.audit", "smki.settings_model"}
ALLOWED: dict[str, set[str]] = {
    "smki.ra": set(),
    "smki.keys": set(),
    "smki.ca": {"smki.keys"},
    "smki.store": set(),
    "smki.repository": {"smki.store"},
    "smki.observability": {"smki.store"},
    "smki.services": {"smki.ra", "smki.ca", "smki.keys", "smki.store", "smki.repository", "smki.observability"},
    "smki.interfaces": {"smki.services", "smki.interfaces", "smki.ra", "smki.ca", "smki.store",
                        "smki.repository", "smki.keys", "smki.observability"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name == "smki" or name.startswith("smki.")}


def _layer(module: str) -> str:
    return ".".join(module.split(".")[:2])


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_import_runs_back_up(path: Path) -> None:
    module = _module_name(path)
    layer = _layer(module)
    if layer not in ALLOWED:
        return  # shared vocabulary and the benchmarks (which drive the product from outside)
    for imported in _imports(path):
        target = _layer(imported)
        if target == layer or imported in SHARED:
            continue
        if module == "smki.interfaces.cli.bench_cmd" and target == "smki.bench":
            continue  # the benchmarks' one entry point
        assert target in ALLOWED[layer], f"{module} imports {imported}: {layer} may not depend on {target}"


def test_nothing_in_the_product_imports_a_benchmark() -> None:
    for path in SOURCES:
        module = _module_name(path)
        if module.startswith("smki.bench") or module == "smki.interfaces.cli.bench_cmd":
            continue
        assert not any(i.startswith("smki.bench") for i in _imports(path)), f"{module} imports a benchmark"
