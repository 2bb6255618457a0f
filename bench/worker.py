"""One benchmark worker process: one telemetry configuration, one app, driven over a pipe.

    python -m bench.worker '<json spec>'

The worker seeds its database, configures telemetry for its configuration (or
``sentry_sdk.init`` for ``sentry_native``), builds the app against the Bolna simulator
(``bench.simulator``, its own process), enters the app's lifespan and
serves it with uvicorn on 127.0.0.1. It then answers one JSON command per line on stdin
with one JSON line on its original stdout (its own prints and logs go to stderr):

    {"cmd": "run", "case": "webhook" | "webhook_mixed" | "calls", "pool": "p", "start": k, "n": n}
        -> {"lat_ns": [...], "cpu_ns": c, "gc_ns": g, "failed": f}   n in-process requests
    {"cmd": "cpu"}     -> {"cpu_ns": c, "gc_ns": g}   process CPU and GC time so far
    {"cmd": "profile", <as run>} -> cProfile of the batch, by package (bench.profiling)
    {"cmd": "stats"}   -> {"rss_kb", "maxrss_kb", "telemetry": {...}}
        ("trim": true adds RSS after a full collection and after glibc's malloc_trim)
    {"cmd": "storm", "rate": 10000, "seconds": 5} -> {"started": true}
    {"cmd": "storm_result"} -> {"emitted", "seconds", "decisions"}   (waits for the end)
    {"cmd": "scrub_trace", "repeat": 200} -> per-span scrubbing cost on a real trace
    {"cmd": "campaign", ...}                   (see bench.campaigns)
    {"cmd": "tracemalloc", "path": "/x.snap"} -> {"traced_kb", "peak_kb", "rss_kb"}
        dumps a tracemalloc snapshot (the spec's ``"tracemalloc": frames`` starts tracing
        before telemetry is configured; see ``bench.outage_memory``)
    {"cmd": "quit"}

In-process requests go through ``httpx.ASGITransport.handle_async_request`` directly:
the same transport a test client uses, minus ``AsyncClient.send``, which sentry-sdk's
httpx integration patches process-wide and would otherwise bill to the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx
from sqlalchemy import insert

from bench import workload
from bench.configs import (
    Endpoints,
    extra_span_exporters,
    telemetry_settings,
    uses_sentry_native,
    uses_stock_instrumentation,
)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
API_BASE = "http://api.bench"


class _GcClock:
    """Total time spent in the cyclic garbage collector, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total_ns = 0
        self._began = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter_ns()
        elif self._began:
            self.total_ns += time.perf_counter_ns() - self._began
            self._began = 0


GC_CLOCK = _GcClock()


def rss_kb() -> int:
    """Current resident set size, from /proc (0 where unavailable)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def maxrss_kb() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


@dataclass
class Seeded:
    user_id: int
    agent_id: int
    contact_id: int
    token: str


@dataclass
class Worker:
    spec: dict[str, Any]
    app: Any = None
    settings: Any = None
    telemetry: Any = None
    seeded: Seeded | None = None
    transport: httpx.ASGITransport | None = None
    port: int = 0
    stack: AsyncExitStack = field(default_factory=AsyncExitStack)
    storm_task: asyncio.Task[dict[str, Any]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # --- setup ----------------------------------------------------------------------

    async def start(self) -> dict[str, Any]:
        from app.config import Settings

        spec = self.spec
        name = spec["config"]
        if spec.get("tracemalloc"):
            import tracemalloc

            tracemalloc.start(int(spec["tracemalloc"]))
        endpoints = Endpoints(spec["sink_port"], spec["closed_port"])
        self.settings = Settings(
            _env_file=None,
            app_env="production",
            database_url=spec["database_url"],
            jwt_secret=workload.JWT_SECRET,
            bolna_api_url=spec["bolna_url"],
            bolna_api_key=workload.BOLNA_API_KEY,
            bolna_webhook_token=workload.WEBHOOK_TOKEN,
            public_base_url=API_BASE,
            bolna_backoff_base_seconds=0.0,
            bolna_backoff_max_seconds=0.0,
            db_pool_size=spec.get("db_pool_size", 10),
            **spec.get("settings", {}),
        )
        self.seeded = await seed(self.settings, spec["tag"], spec.get("pools", {}))
        # Telemetry settings a diagnostic variant changes (e.g. sql_spans="spans").
        tel_settings = telemetry_settings(name, endpoints).model_copy(
            update=spec.get("telemetry", {})
        )
        patches: list[str] = spec.get("patches", [])
        if patches:
            from bench import variants

            variants.apply(patches)
        if uses_sentry_native(name):
            init_sentry_native(endpoints.dsn(down=False))
        budget_store = self.extra.get("budget_store")
        self.telemetry = configure_telemetry(
            tel_settings,
            stock=uses_stock_instrumentation(name),
            budget_store=budget_store,
            span_exporters=extra_span_exporters(name),
        )

        from app.main import create_app

        self.app = create_app(
            self.settings,
            telemetry_settings=tel_settings,
            start_workers=spec.get("start_workers", True),
        )
        await self.stack.enter_async_context(self.app.router.lifespan_context(self.app))
        if budget_store is not None:
            budget_store.bind(self.app.state.sessionmaker)
        self.transport = httpx.ASGITransport(app=self.app)
        if "gc_freeze" in patches:
            gc.collect()
            gc.freeze()
        if spec.get("serve", True):
            self.port = await self._serve()
        return {
            "ready": True,
            "pid": os.getpid(),
            "port": self.port,
            "token": self.seeded.token,
            "agent_id": self.seeded.agent_id,
            "contact_id": self.seeded.contact_id,
            "rss_kb": rss_kb(),
        }

    async def _serve(self) -> int:
        import uvicorn

        # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listener says TCP; with proto 0, Nagle + delayed ACK add 40 ms per response.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, lifespan="off", log_level="warning", access_log=False, timeout_keep_alive=60
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline and not task.done():  # noqa: ASYNC110 - no event
            await asyncio.sleep(0.01)

        async def stop() -> None:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 5)
            sock.close()

        self.stack.push_async_callback(stop)
        return port

    # --- commands -------------------------------------------------------------------

    async def run(self, command: dict[str, Any]) -> dict[str, Any]:
        case, pool, start, n = command["case"], command["pool"], command["start"], command["n"]
        assert self.transport is not None and self.seeded is not None
        ok: tuple[int, ...]
        if case in ("webhook", "webhook_mixed"):
            body_of = workload.mixed_body if case == "webhook_mixed" else workload.webhook_body
            requests = [
                (
                    workload.webhook_path(),
                    body_of(pool, start + i),
                    {"content-type": "application/json"},
                )
                for i in range(n)
            ]
            ok = (200, 202, 400) if case == "webhook_mixed" else (200, 202)
        elif case == "calls":
            body = json.dumps(
                {"agent_id": self.seeded.agent_id, "contact_id": self.seeded.contact_id}
            ).encode()
            headers = {
                "content-type": "application/json",
                "authorization": f"Bearer {self.seeded.token}",
            }
            requests = [("/calls", body, headers)] * n
            ok = (201,)
        else:
            raise ValueError(f"unknown case {case!r}")
        latencies: list[int] = []
        failed = 0
        statuses: dict[int, int] = {}
        transport = self.transport
        clock = time.perf_counter_ns
        cpu_began = time.process_time_ns()
        gc_began = GC_CLOCK.total_ns
        for path, body_bytes, headers in requests:
            request = httpx.Request("POST", API_BASE + path, content=body_bytes, headers=headers)
            began = clock()
            response = await transport.handle_async_request(request)
            await response.aread()
            latencies.append(clock() - began)
            statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            if response.status_code not in ok:
                failed += 1
        cpu_ns = time.process_time_ns() - cpu_began
        return {
            "lat_ns": latencies,
            "cpu_ns": cpu_ns,
            "gc_ns": GC_CLOCK.total_ns - gc_began,
            "failed": failed,
            "statuses": statuses,
        }

    async def profile(self, command: dict[str, Any]) -> dict[str, Any]:
        """``run`` under cProfile; returns where the event-loop thread spent its time."""
        import cProfile

        from bench.profiling import summarise

        profiler = cProfile.Profile()
        profiler.enable()
        try:
            result = await self.run(command)
        finally:
            profiler.disable()
        report = summarise(profiler, len(result["lat_ns"]), top=command.get("top", 15))
        report["failed"] = result["failed"]
        return report

    async def cpu(self, command: dict[str, Any]) -> dict[str, Any]:
        """This process's CPU time so far (all threads), for loopback batches."""
        return {"cpu_ns": time.process_time_ns(), "gc_ns": GC_CLOCK.total_ns}

    async def stats(self, command: dict[str, Any]) -> dict[str, Any]:
        if command.get("gc"):
            gc.collect()
        report: dict[str, Any] = {"rss_kb": rss_kb(), "maxrss_kb": maxrss_kb()}
        if command.get("trim"):
            # Diagnostic: how much of RSS is memory freed but kept by the C allocator.
            import ctypes

            gc.collect()
            report["rss_after_gc_kb"] = rss_kb()
            report["pymalloc_blocks"] = sys.getallocatedblocks()
            with contextlib.suppress(OSError, AttributeError):
                ctypes.CDLL("libc.so.6").malloc_trim(0)
                report["rss_after_trim_kb"] = rss_kb()
        import telemetry

        with contextlib.suppress(Exception):
            report["telemetry"] = telemetry.status()
        return report

    async def storm(self, command: dict[str, Any]) -> dict[str, Any]:
        from bench.errors import run_storm

        self.storm_task = asyncio.create_task(
            run_storm(command["rate"], command["seconds"], command.get("fingerprints", 10_000))
        )
        await asyncio.sleep(0)
        return {"started": True}

    async def storm_result(self, command: dict[str, Any]) -> dict[str, Any]:
        if self.storm_task is None:
            return {"error": "no storm"}
        result = await self.storm_task
        self.storm_task = None
        return result

    async def scrub_trace(self, command: dict[str, Any]) -> dict[str, Any]:
        from bench.scrubbing import measure_trace

        return await measure_trace(self, command.get("repeat", 200))

    async def campaign(self, command: dict[str, Any]) -> dict[str, Any]:
        from bench.campaigns import run_campaign

        return await run_campaign(self, command)

    async def tracemalloc(self, command: dict[str, Any]) -> dict[str, Any]:
        """Dump a tracemalloc snapshot to ``command["path"]`` (after a full collection)."""
        import tracemalloc

        if not tracemalloc.is_tracing():
            return {"error": "tracemalloc is off: start the worker with spec['tracemalloc']"}
        gc.collect()
        tracemalloc.take_snapshot().dump(command["path"])
        traced, peak = tracemalloc.get_traced_memory()
        return {"traced_kb": traced // 1024, "peak_kb": peak // 1024, "rss_kb": rss_kb()}

    async def close(self) -> None:
        await self.stack.aclose()


def configure_telemetry(
    tel_settings: Any, *, stock: bool, budget_store: Any = None, span_exporters: Any = ()
) -> Any:
    """Configure telemetry before create_app (whose configure() then returns this one)."""
    import functools

    import telemetry

    tel = telemetry.configure(
        tel_settings, budget_store=budget_store, span_exporters=list(span_exporters) or None
    )
    if stock:
        # The contrib instrumentors instead of our light hooks (bench-only, on this object).
        tel.instrument_app = functools.partial(type(tel).instrument_app, tel, stock=True)  # type: ignore[method-assign]
        tel.instrument_engine = functools.partial(type(tel).instrument_engine, tel, stock=True)  # type: ignore[method-assign]
        tel.instrument_httpx = functools.partial(type(tel).instrument_httpx, tel, stock=True)  # type: ignore[method-assign]
    return tel


def init_sentry_native(dsn: str) -> None:
    """What a user would write: sentry-sdk's own tracing, default integrations, 100%."""
    import sentry_sdk

    sentry_sdk.init(dsn=dsn, traces_sample_rate=1.0, environment="production")


async def seed(settings: Any, tag: str, pools: dict[str, int]) -> Seeded:
    """A user with plenty of credits, an agent, a contact, and calls awaiting webhooks."""
    from app.auth.service import create_token
    from app.credits.service import grant
    from app.db import create_engine, create_sessionmaker
    from app.models import Agent, Call, Contact, User

    engine = create_engine(settings)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker() as session, session.begin():
            # Not through create_user: its argon2 hash takes 64 MiB for a moment, which
            # would dominate every worker's peak RSS. Nobody logs in with a password here.
            user = User(email=f"bench-{tag}@example.com", password_hash="!", credits_balance=0)
            session.add(user)
            await session.flush()
            await grant(
                session, user.id, 10**12, reason="grant", idempotency_key=f"signup:{user.id}"
            )
            agent = Agent(user_id=user.id, name="Sales", bolna_agent_id=workload.AGENT_UUID)
            contact = Contact(user_id=user.id, name="Asha", phone_number=workload.CONTACT_PHONE)
            session.add_all([agent, contact])
            await session.flush()
            seeded = Seeded(user.id, agent.id, contact.id, create_token(user.id, settings))
        for pool, count in pools.items():
            rows = [
                {
                    "user_id": seeded.user_id,
                    "agent_id": seeded.agent_id,
                    "contact_id": seeded.contact_id,
                    "phone_number": workload.CONTACT_PHONE,
                    "status": "queued",
                    "call_source": "direct",
                    "execution_id": workload.execution_id(pool, i),
                    "traceparent": workload.SEEDED_TRACEPARENT,
                    "credits_charged": 0,
                }
                for i in range(count)
            ]
            for chunk in range(0, len(rows), 1000):
                async with sessionmaker() as session, session.begin():
                    await session.execute(insert(Call), rows[chunk : chunk + 1000])
        return seeded
    finally:
        await engine.dispose()


async def _serve_commands(worker: Worker, out: Any) -> None:
    handlers: dict[str, Handler] = {
        "run": worker.run,
        "stats": worker.stats,
        "cpu": worker.cpu,
        "profile": worker.profile,
        "storm": worker.storm,
        "storm_result": worker.storm_result,
        "scrub_trace": worker.scrub_trace,
        "campaign": worker.campaign,
        "tracemalloc": worker.tracemalloc,
    }
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 24)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        if command["cmd"] == "quit":
            return
        try:
            reply = await handlers[command["cmd"]](command)
        except Exception as exc:
            import traceback

            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        out.write(json.dumps(reply) + "\n")
        out.flush()


async def _main(spec: dict[str, Any], out: Any) -> None:
    from app.budget_store import DatabaseBudgetStore

    worker = Worker(spec)
    # As create_app would: the error budget shared through the database.
    worker.extra["budget_store"] = DatabaseBudgetStore()
    try:
        try:
            ready = await worker.start()
        except Exception as exc:
            import traceback

            traceback.print_exc()
            out.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
            out.flush()
            return
        out.write(json.dumps(ready) + "\n")
        out.flush()
        await _serve_commands(worker, out)
    finally:
        await worker.close()


def main() -> None:
    spec = json.loads(sys.argv[1])
    for name in ("SENTRY_DSN", "OTEL_TRACES_EXPORTER", "TELEMETRY_ERROR_BACKEND"):
        os.environ.pop(name, None)
    # The protocol owns the original stdout; anything else printed goes to stderr.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    asyncio.run(_main(spec, out))


if __name__ == "__main__":
    main()
