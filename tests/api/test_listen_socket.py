"""The listening sockets ``smki serve`` binds: connections they accept have Nagle's algorithm off.

uvicorn writes a response's head and its body separately; with Nagle on, the body waited for the
client's delayed ACK (about 40 ms per request, measured on every JSON and XML answer). asyncio
switches it off itself, but only for sockets whose ``proto`` is TCP — so the socket must say so.
"""

from __future__ import annotations

import asyncio
import socket

from smki.interfaces.api.server import bind
from smki.interfaces.api.settings import Listen


def test_accepted_connections_have_tcp_nodelay() -> None:
    listening = bind(Listen("127.0.0.1", 0))
    seen: list[int] = []

    async def main() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(handle, sock=listening)
        host, port = listening.getsockname()[:2]
        _reader, writer = await asyncio.open_connection(host, port)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        writer.close()
        server.close()
        await server.wait_closed()

    try:
        assert listening.proto == socket.IPPROTO_TCP
        asyncio.run(main())
    finally:
        listening.close()
    assert seen and seen[0] != 0
