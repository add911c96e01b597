"""``HEAD`` wherever ``GET`` is (RFC 9110 §9.3.2), which FastAPI's routes do not give: a monitor or a
client checking a certificate's or a list's headers got 405 ``http.method-not-allowed``.

A ``HEAD`` request runs as the ``GET`` it stands for and gets its status and headers
(``Content-Length``, ``ETag``, ``Content-Type``…), with no body: the body's messages are dropped
on the way out. The access log, outside this, records the request as the ``HEAD`` it was.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGetMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
