"""``smki bench access-log``: what the access log and the request metrics cost per request.

Why it exists: every request on every listener passes through
:class:`smki.observability.access.AccessLogMiddleware`, which gives it an id, writes one JSON log
line and counts it in two Prometheus metrics (issue 12). This bench drives the same ASGI app
in-process (no sockets, no TLS: nothing else to drown the difference) with and without that layer,
in alternating rounds, and reports the added microseconds per request and the ratio within the one
run, so a loaded machine shifts both sides alike. Times are this process's CPU time, not the wall
clock, which on a shared machine also counts the time other processes held the CPU.

Variants:

* ``bare``: a FastAPI app with one ``async`` JSON route (as cheap as a route gets, so the
  middleware's share is the largest it can be); with ``--app asgi``, a plain ASGI callable that
  sends the same response, so what the middleware adds is most of what is measured and stands
  out of the noise of a loaded machine;
* ``+ access log + metrics``: the same app inside the middleware, logging at ``info`` through
  smki's JSON formatter and redacting filter to ``/dev/null``;
* ``+ metrics only``: the middleware with the log level at ``warning`` (the line is not formatted).

Metrics are in prometheus_client's multiprocess mode (memory-mapped files, as ``smki serve
--admin`` runs them) unless ``--in-process``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
App = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Awaitable[None]]
PATH = "/api/v1/whoami"


def _scope() -> dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "https",
            "path": PATH, "raw_path": PATH.encode(), "query_string": b"apikey=not-logged", "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8443"), (b"accept", b"application/json")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8443)}


def _bare_app(kind: str = "fastapi") -> App:
    if kind == "asgi":
        return _asgi_app
    from fastapi import FastAPI

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get(PATH)
    async def whoami() -> dict[str, str]:
        return {"actor": "aro:A1@P1", "route": "gateway"}

    return app


async def _asgi_app(scope: MutableMapping[str, Any], receive: Callable[[], Awaitable[Message]],
                    send: Callable[[Message], Awaitable[None]]) -> None:
    """The bare route's response without a framework."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"39")]})
    await send({"type": "http.response.body", "body": b'{"actor":"aro:A1@P1","route":"gateway"}'})


async def _drive(app: App, requests: int) -> float:
    """CPU seconds this process spent on ``requests`` requests through ``app``; each response must be a 200.

    CPU time, not wall time: on a shared machine the wall clock also counts the time other
    processes held the CPU, which swamped differences of tens of microseconds."""
    statuses: list[int] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    start = time.process_time()
    for _ in range(requests):
        await app(_scope(), receive, send)
    seconds = time.process_time() - start
    if set(statuses) != {200} or len(statuses) != requests:
        raise SystemExit(f"unexpected responses: {sorted(set(statuses))}")
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="smki bench access-log", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="Requests per round and variant (default 2000).")
    parser.add_argument("--rounds", type=int, default=7, help="Alternating rounds; the median counts (default 7).")
    parser.add_argument("--in-process", action="store_true", help="Count metrics in-process, not multiprocess.")
    parser.add_argument("--app", choices=("fastapi", "asgi"), default="fastapi",
                        help="The bare app: a FastAPI route (default) or a plain ASGI callable.")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smki-bench-metrics-") as directory:
        if not args.in_process:  # before prometheus_client is imported: it picks its value class then
            from pathlib import Path

            from smki.observability.metrics import enable_multiprocess

            enable_multiprocess(Path(directory) / "metrics")
        results = _run(args.requests, args.rounds, args.app)
    mode = "in-process" if args.in_process else "multiprocess"
    if args.json:
        print(json.dumps({"metrics": mode, "app": args.app, "requests": args.requests, "rounds": args.rounds,
                          **results}, indent=2))
        return
    bare = results["bare_us"]
    print(f"smki bench access-log: {args.requests} requests x {args.rounds} rounds, {args.app} app, metrics {mode}; "
          f"median CPU µs per request (load average {os.getloadavg()[0]:.1f})")
    print(f"{'variant':<26}{'µs/request':>12}{'added µs':>10}{'x bare':>8}")
    for label, key in (("bare", "bare_us"), ("+ access log + metrics", "logged_us"),
                       ("+ metrics only", "metrics_us")):
        value = results[key]
        print(f"{label:<26}{value:>12.1f}{value - bare:>10.1f}{value / bare:>8.2f}")


def _run(requests: int, rounds: int, kind: str = "fastapi") -> dict[str, float]:
    import logging

    from smki.observability.access import AccessLogMiddleware
    from smki.observability.logs import configure_logging

    bare = _bare_app(kind)
    wrapped = AccessLogMiddleware(bare, listener="gateway")
    sink = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115 - open for the whole run
    configure_logging("info", "json", stream=sink)
    root = logging.getLogger()
    times: dict[str, list[float]] = {"bare_us": [], "logged_us": [], "metrics_us": []}

    async def go() -> None:
        await _drive(bare, requests // 10)  # warm: imports, route compilation, the metric files
        await _drive(wrapped, requests // 10)
        for _ in range(rounds):
            times["bare_us"].append(await _drive(bare, requests))
            root.setLevel(logging.INFO)
            times["logged_us"].append(await _drive(wrapped, requests))
            root.setLevel(logging.WARNING)
            times["metrics_us"].append(await _drive(wrapped, requests))

    try:
        asyncio.run(go())
    finally:
        configure_logging("warning", "auto", stream=sys.stderr)
        sink.close()
    return {key: statistics.median(values) / requests * 1e6 for key, values in times.items()}


if __name__ == "__main__":
    main()
