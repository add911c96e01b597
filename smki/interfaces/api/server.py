"""``smki serve``: the Gateway and SPOTI listeners in one asyncio loop, in one or several processes.

Each listener is its own uvicorn server on its own socket, with its own FastAPI app (so its own
route), sharing the process's opened home and batch runner. Both use the same TLS context: the
server certificate from the credentials CA and ``CERT_REQUIRED`` against that CA.

Several processes (``--workers N``): the parent binds the sockets once and forks N children; each
child opens its own home (database connections are never shared across a fork), runs both
listeners on the inherited sockets — the kernel spreads connections between them — and its own
batch runner. Jobs are claimed through the database, so a batch runs in exactly one process, and
audit appends serialise on the audit head row. Use PostgreSQL for this; SQLite works but
serialises every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

import uvicorn

from smki.domain import Route
from smki.errors import SmkiError
from smki.interfaces.api.app import create_app
from smki.interfaces.api.connlog import ConnectionLog
from smki.interfaces.api.context import ListenerContext
from smki.interfaces.api.settings import ApiSettings, Listen
from smki.interfaces.api.supervisor import Supervisor
from smki.interfaces.api.tls import peer_protocol, server_ssl_context
from smki.services import batch_watch
from smki.services.batch_jobs import BatchRunner
from smki.services.capacity import capacity_settings
from smki.services.context import Home, open_home
from smki.services.credentials import ServerFiles, ensure_server_credential
from smki.services.preflight import check_listener_context, preflight_home
from smki.services.procguard import die_with_parent, start_guarded_forkserver
from smki.services.revocation import RevocationListScheduler

log = logging.getLogger("smki.serve")
SERVE_ACTOR = "system:smki-serve"


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signals to :class:`Listeners` (two servers share one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(listen: Listen) -> socket.socket:
    """The listening socket, made here so that several processes can share it.

    Created as ``IPPROTO_TCP`` explicitly: asyncio switches Nagle's algorithm off (``TCP_NODELAY``)
    only on sockets whose ``proto`` says TCP, and a socket made with the default ``proto`` 0 —
    and every connection it accepts — kept it on. uvicorn writes a response's head and body
    separately, so each body then waited for the client's delayed ACK: about 40 ms per request.
    """
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((listen.host, listen.port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@dataclass
class Listeners:
    """The listeners of one process: a FastAPI app and a uvicorn server per route."""

    home: Home
    api: ApiSettings
    files: ServerFiles
    sockets: dict[Route, socket.socket]
    runner: BatchRunner | None = None
    servers: dict[Route, _Server] = field(default_factory=dict)
    contexts: list[ListenerContext] = field(default_factory=list)
    #: Failed handshakes and stalled sends of both listeners, repeats summed up.
    events: ConnectionLog = field(default_factory=lambda: ConnectionLog(logging.getLogger("smki.api")))

    def __post_init__(self) -> None:
        capacity = capacity_settings(self.home)
        home = self.home
        context = server_ssl_context(self.files)
        for route in self.sockets:
            ctx = ListenerContext(lambda: home, route, self.api, capacity, self.runner)
            self.contexts.append(ctx)
            # log_config=None: uvicorn sets up no log handlers of its own, so what it logs itself (a
            # request too malformed to reach the app: "Invalid HTTP request received.") is a line of
            # smki's log, as JSON like every other, not plain text beside it on stderr. No SSL context
            # for uvicorn: the protocol runs each connection's handshake (smki.interfaces.api.handshake).
            config = uvicorn.Config(
                create_app(ctx), http=peer_protocol(route.value, self.api, context, self.events), lifespan="off",
                log_level="warning", timeout_keep_alive=30, access_log=False, server_header=False, log_config=None,
            )
            self.servers[route] = _Server(config)

    async def serve(self) -> None:
        import anyio.to_thread

        from smki.store.engine import request_threads

        # Every request's store work runs in this loop's thread pool (sync routes, run_in_threadpool,
        # the credential check): sized so the connection pool can never run dry under it.
        anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads()
        try:
            await asyncio.gather(*(server.serve(sockets=[self.sockets[route]])
                                   for route, server in self.servers.items()))
        finally:
            self.events.flush()  # repeats counted in the last window are logged, not lost

    @property
    def started(self) -> bool:
        return all(server.started for server in self.servers.values())

    def stop(self) -> None:
        for server in self.servers.values():
            server.should_exit = True
        for ctx in self.contexts:
            ctx.stopping = True
        batch_watch.changed()  # waiting status requests look at ``stopping`` and answer

    def url(self, route: Route) -> str:
        host, port = self.sockets[route].getsockname()[:2]
        return f"https://{host if ':' not in host else f'[{host}]'}:{port}"


def listen_sockets(api: ApiSettings) -> dict[Route, socket.socket]:
    """Both listeners' sockets, or ``listen.unavailable`` (and none left open) if one cannot be bound."""
    sockets: dict[Route, socket.socket] = {}
    wanted = [(Route.GATEWAY, api.gateway)] + ([(Route.SPOTI, api.spoti)] if api.spoti is not None else [])
    for route, listen in wanted:
        try:
            sockets[route] = bind(listen)
        except OSError as exc:
            for sock in sockets.values():
                sock.close()
            raise SmkiError("listen.unavailable",
                            f"cannot listen on {listen} ({route.value}): {exc.strerror or exc}") from exc
    return sockets


def prepare(home: Home, api: ApiSettings) -> ServerFiles:
    """The server certificate (issued by the credentials CA on first use or when hosts change)."""
    return ensure_server_credential(home, list(api.server_names), actor=SERVE_ACTOR)


def run_process(home_path: Path, secret: bytes, api: ApiSettings, files: ServerFiles,
                sockets: dict[Route, socket.socket]) -> None:
    """One server process: open the home, start the batch runner, serve until SIGTERM/SIGINT."""
    home = open_home(home_path, secret)
    runner = BatchRunner(home, workers=api.batch_workers, poll=api.batch_poll,
                         lease=timedelta(seconds=api.batch_lease))
    listeners = Listeners(home, api, files, sockets, runner)
    crl_scheduler = RevocationListScheduler(
        home, interval=api.crl_check_seconds,
        on_error=lambda exc: print(f"crl scheduler: {exc}", file=sys.stderr, flush=True),
    )

    def stop(_sig: int, _frame: Any) -> None:
        listeners.stop()  # stop accepting, finish open requests; the runner hands its batch back below

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if api.batch_workers is None or api.batch_workers > 0:
        start_guarded_forkserver()  # from this (main) thread, so it and its signing workers die with us
    # Everything made so far (modules, apps, the engine) lives as long as the process. Frozen, the
    # garbage collector stops re-scanning it on every collection a batch's hundreds of thousands of
    # short-lived objects trigger in the single writer.
    gc.freeze()
    runner.start()
    crl_scheduler.start()
    try:
        asyncio.run(listeners.serve())
    finally:
        crl_scheduler.stop()
        runner.stop()
        home.close()


def _child(home_path: Path, secret: bytes, api: ApiSettings, files: ServerFiles,
           sockets: dict[Route, socket.socket], parent: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):  # not the supervisor's handlers, copied by the fork
        signal.signal(sig, signal.SIG_DFL)
    die_with_parent(signal.SIGTERM, parent=parent)  # the supervisor gone (even kill -9): drain and exit
    run_process(home_path, secret, api, files, sockets)


def serve(home_path: Path, secret: bytes, api: ApiSettings, *, announce: Callable[[str], None] = print,
          listening: Callable[[], None] | None = None) -> None:
    """Check everything (:mod:`smki.services.preflight`), bind, and serve with ``api.workers`` processes.
    ``listening`` runs once the listeners are bound and announced (a start-up warning there never
    comes before a refusal to start, which stays one line).

    Nothing is bound until the database, every CA key and the listener credential have been opened:
    a failure is a ``SmkiError`` (one line from the CLI, non-zero exit) with no port ever open.
    With ``api.admin`` the admin listener (issue 12) is a supervised process of its own beside the
    workers (:mod:`smki.interfaces.admin.server`), and even one worker runs under the supervisor.
    """
    if api.admin is not None:  # before anything counts a metric, in this process or a fork of it
        from smki.observability.metrics import enable_multiprocess

        enable_multiprocess(home_path / "run" / "metrics")
    with preflight_home(home_path, secret) as home:
        files = prepare(home, api)
        check_listener_context(lambda: server_ssl_context(files))
    sockets = listen_sockets(api)
    admin = _bind_admin(api, sockets)
    urls = " ".join(f"{route.value}=https://{s.getsockname()[0]}:{s.getsockname()[1]}" for route, s in sockets.items())
    announce(f"smki: listening {urls} workers={api.workers} pid={os.getpid()}")
    if admin is not None:
        host, port = admin.getsockname()[:2]
        announce(f"smki: admin http://{host}:{port}")
    if hasattr(sys.stdout, "flush"):
        sys.stdout.flush()
    if listening is not None:
        listening()
    if api.workers <= 1 and admin is None:
        run_process(home_path, secret, api, files, sockets)
        return
    context = multiprocessing.get_context("fork")
    parent = os.getpid()
    companions: list[tuple[str, Callable[[], BaseProcess]]] = []
    if admin is not None:
        from smki.interfaces.admin.server import run_admin

        admin_args = {"max_beat_age": max(30.0, 20 * api.batch_poll), "runners": api.workers, "parent": parent}
        companions.append(("admin listener", lambda: context.Process(
            target=run_admin, args=(admin, home_path, secret), kwargs=admin_args, daemon=False)))
    supervisor = Supervisor(
        lambda: context.Process(target=_child, args=(home_path, secret, api, files, sockets, parent), daemon=False),
        api.workers, report=lambda text: print(f"smki: {text}", file=sys.stderr, flush=True),
        companions=companions, on_exit=_forget_metrics if admin is not None else None)
    signal.signal(signal.SIGTERM, supervisor.stop)
    signal.signal(signal.SIGINT, supervisor.stop)
    supervisor.run()


def _bind_admin(api: ApiSettings, sockets: dict[Route, socket.socket]) -> socket.socket | None:
    if api.admin is None:
        return None
    from smki.interfaces.admin.server import bind_admin

    try:
        return bind_admin(api.admin)
    except SmkiError:
        for sock in sockets.values():
            sock.close()
        raise


def _forget_metrics(pid: int) -> None:
    """A process ended: drop its live gauges (its counters stay in the sums, as counters must)."""
    from smki.observability.metrics import process_ended

    process_ended(pid)
