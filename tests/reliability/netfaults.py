"""Network faults on loopback, for the reliability tests: a TCP relay the test can cut,
a port where nothing answers, and an ASGI app served on a real socket.

    async with TcpProxy("127.0.0.1", 5432) as proxy:    # 127.0.0.1:<proxy.port> -> 5432
        proxy.cut()                 # down: live connections reset, new ones refused
        proxy.cut(hang=True)        # unresponsive: connections accepted, no byte answered
        await proxy.restore()

    with black_hole() as port:      # connects fine, never answers (a hung collector)
        ...
    async with serve_on_loopback(sim_app) as url:   # uvicorn in this event loop
        ...

Every socket listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import uvicorn

LOOPBACK = "127.0.0.1"
_CHUNK = 64 * 1024
START_TIMEOUT_SECONDS = 10.0


class TcpProxy:
    """Relays 127.0.0.1:``port`` to ``target_host:target_port`` until told otherwise."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0

    async def __aenter__(self) -> TcpProxy:
        await self._listen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._flowing.set()
        await self._stop_listening()
        await self._drop_connections()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{LOOPBACK}:{self.port}"

    def cut(self, *, hang: bool = False) -> None:
        """Down (``hang=False``): every live connection is reset and new ones are refused,
        as when the server restarts. Unresponsive (``hang=True``): connections stay open and
        new ones are accepted, but nothing flows either way, as in a network partition."""
        self._flowing.clear()
        if not hang:
            if self._server is not None:
                self._server.close()
                self._server = None
            for writer in list(self._writers):
                writer.transport.abort()

    async def restore(self) -> None:
        """Relay again; connections held while unresponsive are dropped (their clients
        have given up on them)."""
        await self._drop_connections()
        self._flowing.set()
        if self._server is None:
            await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._relay, LOOPBACK, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop_listening(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def _drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        self._writers.add(client)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()  # unresponsive: hold the connection, answer nothing
            upstream_reader, upstream = await asyncio.open_connection(*self.target)
            self._writers.add(upstream)
            await asyncio.gather(
                self._pump(client_reader, upstream), self._pump(upstream_reader, client)
            )
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            for writer in (client, upstream):
                if writer is not None:
                    self._writers.discard(writer)
                    writer.transport.abort()
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(_CHUNK):
            await self._flowing.wait()
            writer.write(data)
            await writer.drain()
        writer.transport.abort()


@contextmanager
def black_hole() -> Iterator[int]:
    """A loopback port that completes TCP handshakes (the kernel's backlog) and never
    reads or answers: a collector or Sentry that hangs. Yields the port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.listen(128)
        yield int(sock.getsockname()[1])


@asynccontextmanager
async def serve_on_loopback(app: Any) -> AsyncIterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in this event loop; yields its URL.

    The app's lifespan is not run: the caller owns the app's state.
    """
    server = uvicorn.Server(
        uvicorn.Config(app, host=LOOPBACK, port=0, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            # uvicorn exposes a flag, not an event, for "started".
            while not server.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        async with asyncio.timeout(START_TIMEOUT_SECONDS):
            await serving
