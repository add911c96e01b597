"""Run the admin listener in a thread of the ``smki serve`` parent process.

The parent (after it has forked any ``--workers``) opens its own home for the readiness checks
and serves the admin app with uvicorn on its own event loop, so it answers even while the worker
processes are busy or restarting.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import uvicorn

from smki.interfaces.api.settings import Listen
from smki.services.context import Home, open_home

log = logging.getLogger("smki.admin")


class AdminListener:
    def __init__(self, listen: Listen, home_path: Path, secret: bytes, *, max_beat_age: float = 30.0,
                 runners: int = 1) -> None:
        self.listen = listen
        self.home_path = home_path
        self.secret = secret
        self.max_beat_age = max_beat_age
        self.runners = runners
        self._home: Home | None = None
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.address = str(listen)

    def home(self) -> Home:
        with self._lock:
            if self._home is None:
                self._home = open_home(self.home_path, self.secret)
            return self._home

    def start(self) -> None:
        from smki.interfaces.admin.app import create_admin_app
        from smki.interfaces.api.server import bind

        sock = bind(self.listen)
        app = create_admin_app(self.home, max_beat_age=self.max_beat_age, runners=self.runners)
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False, server_header=False)
        self._server = uvicorn.Server(config)
        server = self._server
        self._thread = threading.Thread(target=lambda: server.run(sockets=[sock]), name="smki-admin", daemon=True)
        self._thread.start()
        host, port = sock.getsockname()[:2]
        self.address = f"{host}:{port}"
        log.info("admin listener on http://%s:%s", host, port, extra={"admin": f"{host}:{port}"})

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
        if self._home is not None:
            self._home.close()
