"""Processes the benchmark parent starts and always stops: workers and the telemetry sink.

async with Processes(run_dir) as procs:
    sink_port = await procs.start_sink()
    worker = await procs.start_worker("off", spec)
    reply = await worker.call({"cmd": "run", ...})
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import httpx

COMMAND_TIMEOUT_S = 600.0
START_TIMEOUT_S = 180.0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _log_file(path: Path) -> BinaryIO:
    """A child's stderr: opened here, inherited by the child, closed with the parent."""
    return open(path, "wb")


class WorkerError(RuntimeError):
    pass


class Worker:
    """The parent's handle on one ``bench.worker`` process."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.process = process
        self.log = log
        self.info: dict[str, Any] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.info['port']}"

    async def _read(self, limit_s: float) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), limit_s)
        if not line:
            raise WorkerError(f"worker {self.name} exited; see {self.log}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise WorkerError(f"worker {self.name}: {reply['error']} (see {self.log})")
        return reply

    async def call(
        self, command: dict[str, Any], limit_s: float = COMMAND_TIMEOUT_S
    ) -> dict[str, Any]:
        """Send one command, wait at most ``limit_s`` for its reply."""
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        return await self._read(limit_s)

    async def stop(self) -> None:
        process = self.process
        if process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            process.stdin.write(b'{"cmd": "quit"}\n')
            await process.stdin.drain()
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 20)
        except TimeoutError:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()


class Processes:
    """Starts workers and the sink; stops every one of them on exit, whatever happened."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.workers: list[Worker] = []
        self._servers: list[asyncio.subprocess.Process] = []
        self.sink_port = 0
        self.simulator_url = ""

    async def __aenter__(self) -> Processes:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.gather(*(w.stop() for w in self.workers), return_exceptions=True)
        self.workers.clear()
        await self.stop_servers()

    async def _start_server(self, module: str) -> tuple[asyncio.subprocess.Process, int]:
        log = _log_file(self.run_dir / f"{module.rsplit('.', 1)[-1]}.log")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        self._servers.append(process)
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        if not line.startswith(b"PORT "):
            raise WorkerError(f"{module} did not start; see {log.name}")
        return process, int(line.split()[1])

    async def start_sink(self) -> int:
        """``bench.sink``: where every exporter and Sentry transport sends."""
        _, self.sink_port = await self._start_server("bench.sink")
        return self.sink_port

    async def start_simulator(self) -> str:
        """``bench.simulator``: the Bolna simulator; returns its base URL."""
        _, port = await self._start_server("bench.simulator")
        self.simulator_url = f"http://127.0.0.1:{port}"
        return self.simulator_url

    async def reset_simulator(self) -> None:
        async with httpx.AsyncClient() as client:
            await client.post(f"{self.simulator_url}/_sim/reset")

    async def sink_counts(self) -> dict[str, dict[str, int]]:
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{self.sink_port}/_counts")
            counts: dict[str, dict[str, int]] = response.json()
            return counts

    async def stop_servers(self) -> None:
        servers, self._servers = self._servers, []
        for process in servers:
            if process.returncode is not None:
                continue
            assert process.stdin is not None
            process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.terminate()
                await process.wait()

    async def start_worker(self, name: str, spec: dict[str, Any]) -> Worker:
        log_path = self.run_dir / f"worker-{name}.log"
        log = _log_file(log_path)
        env = dict(os.environ)
        env.setdefault("PYTHONHASHSEED", "0")
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.worker",
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            env=env,
            limit=1 << 26,
        )
        worker = Worker(name, process, log_path)
        self.workers.append(worker)
        worker.info = await worker._read(START_TIMEOUT_S)
        return worker

    async def stop_worker(self, worker: Worker) -> None:
        await worker.stop()
        if worker in self.workers:
            self.workers.remove(worker)
