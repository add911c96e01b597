"""``smki bench cli``: how long the ``smki`` command takes to answer (issue 14: --help under 0.3 s,
simple commands such as ``party show`` under 0.5 s).

Each command runs as an operator runs it, a fresh ``python -m smki.interfaces.cli.main`` process,
``--runs`` times; the table gives the median and the fastest wall time. The machine is shared, so
the same table also times a bare interpreter start and ``import typer, rich`` in the same run: the
ratio to those is what compares across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PASSPHRASE = "bench-cli-passphrase"
TARGETS = {"--help": 0.3, "group --help": 0.3, "simple command": 0.5}


def _time(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = subprocess.run(argv, env=env, capture_output=True, stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return times


def _smki(*args: str) -> list[str]:
    return [sys.executable, "-m", "smki.interfaces.cli.main", *args]


def _prepare(home: Path, env: dict[str, str]) -> None:
    """A home with a CA, RA staff, a Party and an application, as the simple commands need."""
    for args in (("ca", "init"), ("staff", "add", "op1", "--name", "Olive", "--role", "ra-operator"),
                 ("party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1"),
                 ("apply", "device", "--party", "P1", "--as", "op1")):
        subprocess.run(_smki(*args, "--home", str(home)), env=env, check=True, capture_output=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="smki bench cli", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="Runs of each command (default 10).")
    args = parser.parse_args(argv)
    env = {**os.environ, "SMKI_KEY_PASSPHRASE": PASSPHRASE, "SMKI_ACTOR": "operator:bench", "COLUMNS": "120"}
    env.pop("SMKI_DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="smki-bench-cli-") as work:
        home = str(Path(work) / "home")
        _prepare(Path(home), env)
        cases = [
            ("python -c pass", "baseline", [sys.executable, "-c", "pass"]),
            ("python -c 'import typer, rich.table'", "baseline", [sys.executable, "-c", "import typer, rich.table"]),
            ("smki --help", "--help", _smki("--help")),
            ("smki party --help", "group --help", _smki("party", "--help")),
            ("smki cert search --help", "group --help", _smki("cert", "search", "--help")),
            ("smki party show P1", "simple command", _smki("party", "show", "P1", "--home", home)),
            ("smki party list --json", "simple command", _smki("party", "list", "--json", "--home", home)),
            ("smki ra queue", "simple command", _smki("ra", "queue", "--home", home)),
            ("smki ca show", "simple command", _smki("ca", "show", "--home", home)),
        ]
        print(f"{'command':<40} {'median s':>9} {'min s':>7} {'target s':>9}  {'vs python':>9}")
        base = None
        for label, kind, argv_ in cases:
            times = _time(argv_, env, args.runs)
            median = statistics.median(times)
            base = base or median
            target = TARGETS.get(kind)
            mark = "" if target is None else ("ok" if median < target else "SLOW")
            print(f"{label:<40} {median:>9.3f} {min(times):>7.3f} {target or '-':>9}  {median / base:>8.1f}x {mark}")


if __name__ == "__main__":
    main()
