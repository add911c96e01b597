"""What every route of one listener shares: the opened home, the listener's route, the limits.

One :class:`ListenerContext` per FastAPI app (``app.state.ctx``); the route is fixed when the app
is built for its listener, and no route handler reads it from anywhere else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import Request

from smki.domain import Route
from smki.errors import SmkiError
from smki.interfaces.api.settings import ApiSettings
from smki.services.batch_jobs import BatchRunner
from smki.services.capacity import CapacitySettings
from smki.services.context import Home
from smki.services.credentials import ApiIdentity
from smki.services.requests import Requester


@dataclass
class ListenerContext:
    home_factory: Callable[[], Home]
    route: Route
    api: ApiSettings
    capacity: CapacitySettings
    runner: BatchRunner | None = None
    #: Set when the server stops: requests that wait (a batch's status, ``?wait=``) answer at once
    #: rather than hold up the shutdown.
    stopping: bool = False

    @property
    def home(self) -> Home:
        return self.home_factory()

    def wake_runner(self) -> None:
        if self.runner is not None:
            self.runner.wake()

    def head_start(self, items: Sequence[tuple[int, str, bytes]]) -> None:
        """An admitted batch's items, as ``submit_batch`` stores them: this process's runner starts
        checking them meanwhile (``BatchRunner.head_start``)."""
        if self.runner is not None:
            self.runner.head_start(items)


def ctx_of(request: Request) -> ListenerContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, ListenerContext)
    return ctx


def identity_of(request: Request) -> ApiIdentity:
    """The caller, as the listener middleware established it from the client certificate."""
    identity = getattr(request.state, "api_identity", None)
    if not isinstance(identity, ApiIdentity):
        raise SmkiError("credential.missing", "a client certificate (SMKI credential) is required")
    return identity


def requester_of(request: Request) -> Requester:
    """The subscriber a request acts for, on this listener's route (staff credentials are refused)."""
    return identity_of(request).requester(ctx_of(request).route)
