"""The README's package map names every folder of the ``smki`` package, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _map_folders() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Package map", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(smki/[^`]*)` \|", section, flags=re.MULTILINE)


def test_the_readme_map_matches_the_tree() -> None:
    tree = {
        str(path.relative_to(ROOT)) + "/"
        for path in [ROOT / "smki", *(ROOT / "smki").rglob("*")]
        if path.is_dir() and "__pycache__" not in path.parts
    }
    listed = _map_folders()
    assert len(listed) == len(set(listed)), "a folder is listed twice"
    assert set(listed) == tree
