"""No smki process outlives the process that started it, even after ``kill -9`` (issue 11, point 2).

Linux's ``PR_SET_PDEATHSIG`` makes the kernel signal a process when its parent dies; without it, a
server killed with ``kill -9`` left its forkserver and signing workers running, reparented to init,
for ever. The chain is: supervisor → server process (SIGTERM: it drains) → forkserver (SIGKILL,
set when this module is imported there as a forkserver preload) → signing workers (SIGKILL, set in
their initializer). The signal is tied to the parent *thread* that forked the child, so the
server starts its forkserver from its main thread (:func:`start_guarded_forkserver`).

Elsewhere than Linux these are no-ops: the parent-pid watch in :func:`exit_if_orphaned` is all.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
_PRELOAD = "smki.services.procguard_forkserver"


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library already loaded in this process (``dlopen(NULL)``: its global symbols).

    Not ``ctypes.util.find_library("c")``: on Linux that runs ``/sbin/ldconfig -p`` as a child
    process on every call, so every signing worker and forkserver started one more process just to
    name a library it already has.
    """
    return ctypes.CDLL(None, use_errno=True)


def die_with_parent(sig: int = signal.SIGKILL, *, parent: int | None = None) -> bool:
    """Ask the kernel for ``sig`` when this process's parent dies; True if that is in force.

    ``parent`` is the pid the caller expects as its parent (default: the parent as this call
    begins): if it is already gone (it died between the fork and this call), the process exits at
    once rather than run on orphaned.
    """
    parent = os.getppid() if parent is None else parent
    done = False
    if sys.platform.startswith("linux"):
        try:
            done = _libc().prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
        except OSError:
            done = False
    exit_if_orphaned(parent)
    return done


def exit_with(owner: int) -> None:
    """Exit this process (``os._exit``) as soon as process ``owner`` has ended, watched from a
    daemon thread.

    For pool workers, whose parent is the forkserver rather than the process that owns the pool.
    Every worker holds the forkserver's keep-alive pipe (multiprocessing passes it to each child),
    so when the owner is killed outright (``kill -9``, the OOM killer: a CLI batch with no guarded
    forkserver) the forkserver waits for its workers, and they wait for work on a queue whose
    other end they hold themselves: both ran on for ever, the workers with the CA key open. Linux
    ≥ 5.3 signals the owner's end through a pidfd; elsewhere the thread looks once a second.
    """
    import threading

    pidfd_open = getattr(os, "pidfd_open", None)
    try:
        handle = pidfd_open(owner) if pidfd_open is not None else None
    except ProcessLookupError:
        os._exit(1)  # it ended before this process began to watch it
    except OSError:
        handle = None

    def watch() -> None:
        if handle is not None:
            import select

            select.select([handle], [], [])  # readable once the process has ended
        else:
            while pid_alive(owner):
                time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="smki-owner-watch", daemon=True).start()


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user's counts: signalling it is refused)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def exit_if_orphaned(parent: int) -> None:
    """Exit now if ``parent`` is no longer this process's parent (it died: we were reparented)."""
    if os.getppid() != parent:
        os._exit(1)


def start_guarded_forkserver() -> None:
    """Start this process's multiprocessing forkserver now, from the calling (main) thread, with the
    guard preloaded in it, so it dies with this process (and its workers with it)."""
    import multiprocessing.forkserver as forkserver

    forkserver.set_forkserver_preload([_PRELOAD])
    start_forkserver()


def start_forkserver() -> None:
    """Start this process's multiprocessing forkserver (if not yet running) without the secrets in
    its environment: its signing workers get the passphrase or PIN as a pickled argument through a
    pipe, and an ``exec``'d process's initial environment stays readable in ``/proc/PID/environ`` for
    its whole life. The resource tracker it starts alongside is spared them too.

    Only the first start in a process touches the environment: a server starts its forkserver
    from its main thread, and a signing pool made later by its batch runner's thread must not take
    the secrets out of an environment other threads may be reading."""
    import multiprocessing.forkserver as forkserver

    global _started_in
    if _started_in == os.getpid():
        return
    with secrets_withheld():
        forkserver.ensure_running()
    _started_in = os.getpid()


#: The process that started its forkserver through :func:`start_forkserver` (a forked child has its own).
_started_in: int | None = None


@contextmanager
def secrets_withheld() -> Iterator[None]:
    """Remove the secret environment variables while a child process is ``exec``'d, then put them
    back (a CLI command may open its key again in this process). Call from the main thread, as
    ``start_forkserver`` is: another thread reading the environment meanwhile would miss them."""
    from smki.settings_model import file_env_names, secret_env_names

    # The secrets, and what may hold one (the database URL's password): every variable that may
    # also come from a file.
    names = dict.fromkeys((*secret_env_names(), *file_env_names()))
    held = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(held)


def set_process_name(name: str) -> None:
    """Name this process for ``ps`` and ``/proc/<pid>/comm`` (Linux ``PR_SET_NAME``; else a no-op),
    so an operator can tell the admin listener from the server processes it was forked beside."""
    if not sys.platform.startswith("linux"):
        return
    with suppress(OSError):
        _libc().prctl(PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)
