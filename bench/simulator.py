"""The Bolna simulator for benchmarks, on its own process and loopback port.

    python -m bench.simulator        # prints "PORT <n>"; stops when stdin closes

Zero added latency; its webhooks are scheduled an hour after each call, so they never
fire during a run (webhook load is measured separately, with exactly the same bodies
for every configuration). Out of process so that no configuration's instrumentation
(sentry-sdk patches every Starlette app in its process; FastAPI's built-in tracing
switches itself on for any app once a global provider exists) ever traces it.
``POST /_sim/reset`` between phases forgets the calls placed so far.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import httpx
import uvicorn

from app.simulator import create_simulator_app
from bench import workload

NEVER_MS = 3_600_000


async def _serve() -> None:
    app = create_simulator_app(
        public_base_url="http://127.0.0.1:9",
        webhook_token=workload.WEBHOOK_TOKEN,
        api_key=workload.BOLNA_API_KEY,
        step_delay_ms=NEVER_MS,
        http_client=httpx.AsyncClient(
            transport=httpx.MockTransport(lambda request: httpx.Response(200))
        ),
    )
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the
    # listener says TCP; with proto 0, Nagle + delayed ACK add 40 ms per response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=300)
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 30
    while not server.started and not task.done() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # the parent closes stdin: stop
    server.should_exit = True
    await asyncio.wait_for(task, 10)


if __name__ == "__main__":
    asyncio.run(_serve())
