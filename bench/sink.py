"""A local sink for telemetry: accepts any POST (OTLP/HTTP, Sentry envelopes), answers 200.

    python -m bench.sink        # prints "PORT <n>" once listening on 127.0.0.1
    GET /_counts                # {"/v1/traces": {"requests": 12, "bytes": 345678}, ...}

It reads and discards bodies, like a collector that keeps up; the exporters under test
pay their real serialisation and HTTP costs. Stops on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_counts: dict[str, dict[str, int]] = {}
_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 1 << 16))
            if not chunk:
                break
            remaining -= len(chunk)
        path = self.path.split("?", 1)[0]
        with _lock:
            entry = _counts.setdefault(path, {"requests": 0, "bytes": 0})
            entry["requests"] += 1
            entry["bytes"] += length
        self._reply(b"{}")

    def do_GET(self) -> None:
        with _lock:
            body = json.dumps(_counts).encode()
        self._reply(body)

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def _exit(*_: object) -> None:
    raise SystemExit(0)


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="sink", daemon=True)
    thread.start()
    print(f"PORT {server.server_address[1]}", flush=True)
    signal.signal(signal.SIGTERM, _exit)
    try:
        sys.stdin.read()  # the parent closes our stdin (or dies): time to go
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
