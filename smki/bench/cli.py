"""``smki bench cli``: how long the ``smki`` command takes to answer (issue 14: --help under 0.3 s,
simple commands such as ``party show`` under 0.5 s).

Each command runs as an operator runs it, a fresh ``python -m smki.interfaces.cli.main`` process,
``--runs`` times after one untimed warm-up run (which also writes the byte-code caches an installed
package has); the table gives the median and the fastest wall time, and the median CPU time (user +
system of the process), which a busy machine stretches less than wall time. The machine is shared, so the
same table also times a bare interpreter start and ``import typer, rich`` in the same run: the
ratio to those is what compares across runs.

``--baseline DIR`` times a second source tree in the same run (``DIR/smki``, e.g. ``git archive
main smki | tar -x -C DIR``), each command alternately with this one, so that a before/after
comparison sees the same load; both read the same home, prepared by this tree.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PASSPHRASE = "bench-cli-passphrase"
TARGETS = {"--help": 0.3, "group --help": 0.3, "simple command": 0.5}


@dataclass(frozen=True)
class Tree:
    """A source tree of smki to time: ``None`` is the installed one (this checkout)."""

    label: str
    path: Path | None

    def env(self, base: dict[str, str]) -> dict[str, str]:
        if self.path is None:
            return base
        return {**base, "PYTHONPATH": os.pathsep.join(filter(None, [str(self.path), base.get("PYTHONPATH")]))}


def _cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def _run(argv: list[str], env: dict[str, str], cwd: str) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``argv`` as a child process."""
    cpu, start = _cpu(), time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed, cpu = time.perf_counter() - start, _cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-400:]}")
    return elapsed, cpu


def _smki(*args: str) -> list[str]:
    return [sys.executable, "-m", "smki.interfaces.cli.main", *args]


def _prepare(home: Path, env: dict[str, str], cwd: str) -> None:
    """A home with a CA, RA staff, a Party and an application, as the simple commands need."""
    for args in (("ca", "init"), ("staff", "add", "op1", "--name", "Olive", "--role", "ra-operator"),
                 ("party", "add", "P1", "--name", "Acme", "--category", "large-supplier", "--as", "op1"),
                 ("apply", "device", "--party", "P1", "--as", "op1")):
        subprocess.run(_smki(*args, "--home", str(home)), env=env, cwd=cwd, check=True, capture_output=True)


def _cases(home: str) -> list[tuple[str, str, list[str]]]:
    return [
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="smki bench cli", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="Runs of each command (default 10).")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="Also time the smki source tree in this directory, alternately with this one.")
    args = parser.parse_args(argv)
    if args.baseline is not None and not (args.baseline / "smki" / "__init__.py").is_file():
        raise SystemExit(f"--baseline {args.baseline}: no smki package there")
    env = {**os.environ, "SMKI_KEY_PASSPHRASE": PASSPHRASE, "SMKI_ACTOR": "operator:bench", "COLUMNS": "120"}
    for name in ("SMKI_DATABASE_URL", "PYTHONDONTWRITEBYTECODE"):  # an installed package has its .pyc files
        env.pop(name, None)
    trees = [Tree("this", None)]
    if args.baseline is not None:
        trees.insert(0, Tree("baseline", args.baseline.resolve()))
    with tempfile.TemporaryDirectory(prefix="smki-bench-cli-") as work:
        home = str(Path(work) / "home")
        _prepare(Path(home), env, work)  # cwd: the work directory, so no checkout shadows the trees timed
        print(f"load average at the start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
              f"{args.runs} runs of each command" + (", the trees alternately" if len(trees) > 1 else ""))
        tree_column = len(trees) > 1
        print(f"{'command':<40} {'tree' if tree_column else '':<9}{'median s':>9} {'min s':>7} {'cpu s':>7} "
              f"{'target s':>9}  {'vs python':>9}")
        base: dict[str, float] = {}
        for label, kind, argv_ in _cases(home):
            times: dict[str, list[float]] = {tree.label: [] for tree in trees}
            cpus: dict[str, list[float]] = {tree.label: [] for tree in trees}
            for tree in trees:
                _run(argv_, tree.env(env), work)  # warm-up: byte-code caches, the page cache
            for _ in range(args.runs):
                for tree in trees:
                    wall, cpu = _run(argv_, tree.env(env), work)
                    times[tree.label].append(wall)
                    cpus[tree.label].append(cpu)
            for tree in trees:
                median = statistics.median(times[tree.label])
                base.setdefault(tree.label, median)
                target = TARGETS.get(kind)
                mark = "" if target is None else ("ok" if median < target else "SLOW")
                print(f"{label:<40} {tree.label if tree_column else '':<9}{median:>9.3f} "
                      f"{min(times[tree.label]):>7.3f} {statistics.median(cpus[tree.label]):>7.3f} "
                      f"{target or '-':>9}  {median / base[tree.label]:>8.1f}x {mark}")
        print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
