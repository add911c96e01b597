"""The admin listener's own process, supervised beside the server processes of ``smki serve``.

Why a process, not a thread of the supervisor: the supervisor forks the server processes (and
re-forks them when one dies); a fork copies only the forking thread, so a thread serving the admin
listener could leave a lock (the logging module's, the allocator's, SQLAlchemy's pool's) held in
the copy, and the new worker would hang on it. The supervisor therefore runs no thread at all, and
the admin listener is a child like the workers: forked from the one-thread parent, restarted by it
if it dies, stopped with SIGTERM, killed by the kernel if the parent is (``PR_SET_PDEATHSIG``).

The parent binds the socket once (:func:`bind_admin`), so a bad address fails ``smki serve`` up
front and a restarted admin process serves the same port. The process opens its own home for the
readiness checks and serves the admin app with uvicorn in its main thread, so it answers while the
workers are busy or restarting.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
from pathlib import Path

from smki.services.context import Home, open_home
from smki.settings_model import Listen

log = logging.getLogger("smki.admin")
#: The admin process's name in ``ps`` / ``/proc/<pid>/comm`` (at most 15 bytes).
PROCESS_NAME = "smki-admin"


def bind_admin(listen: Listen) -> socket.socket:
    """The admin listener's socket (``listen.unavailable`` when it cannot be bound)."""
    from smki.errors import SmkiError
    from smki.interfaces.api.server import bind

    try:
        return bind(listen)
    except OSError as exc:
        raise SmkiError("listen.unavailable", f"cannot listen on {listen} (admin): {exc.strerror or exc}") from exc


def run_admin(sock: socket.socket, home_path: Path, secret: bytes, *, max_beat_age: float = 30.0,
              runners: int = 1, parent: int | None = None) -> None:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on ``sock`` until SIGTERM or SIGINT (a child
    of the supervisor ``parent``: it dies with it)."""
    import uvicorn

    from smki.interfaces.admin.app import create_admin_app
    from smki.services.procguard import die_with_parent, set_process_name

    for sig in (signal.SIGTERM, signal.SIGINT):  # not the supervisor's handlers, copied by the fork
        signal.signal(sig, signal.SIG_DFL)
    if parent is not None:
        die_with_parent(signal.SIGTERM, parent=parent)
    set_process_name(PROCESS_NAME)
    lock = threading.Lock()
    opened: list[Home] = []

    def home() -> Home:
        with lock:  # the readiness probe and the metrics run in worker threads
            if not opened:
                opened.append(open_home(home_path, secret))
            return opened[0]

    app = create_admin_app(home, max_beat_age=max_beat_age, runners=runners)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, server_header=False,
                            log_config=None)  # uvicorn's own lines in smki's log (as api.server's)
    host, port = sock.getsockname()[:2]
    log.info("admin listener on http://%s:%s", host, port, extra={"admin": f"{host}:{port}"})
    try:
        uvicorn.Server(config).run(sockets=[sock])  # handles SIGTERM / SIGINT itself: finishes, returns
    finally:
        for opened_home in opened:
            opened_home.close()
