"""A small OTLP/HTTP receiver for end-to-end tests: what the collector would see.

It listens on a free loopback port, accepts ``POST /v1/traces`` and ``POST /v1/logs``
(``application/x-protobuf``, gzip or not), decodes the real
``ExportTraceServiceRequest`` / ``ExportLogsServiceRequest`` protobufs and keeps the
spans and log records as plain, comparable values.

    with OtlpReceiver() as receiver:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, ...}
        ...  # run the app against it
        server = receiver.wait_for(lambda: receiver.spans(name="POST /calls"))
        assert server[0].resource["service.name"] == "calling-backend"

``/v1/metrics`` is accepted and counted but not decoded. ``fail_next`` answers the
next requests with an error status, to exercise exporter retries.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, TypeVar

from google.protobuf.message import DecodeError, Message
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

T = TypeVar("T")

MAX_BODY_BYTES = 32 * 1024 * 1024
PROTOBUF = "application/x-protobuf"
SIGNAL_PATHS = ("/v1/traces", "/v1/logs", "/v1/metrics")


# --- decoded values ------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedLink:
    trace_id: str
    span_id: str
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class ReceivedSpan:
    """One span as exported, with its resource and instrumentation scope."""

    name: str
    trace_id: str  # 32 lowercase hex digits
    span_id: str  # 16 lowercase hex digits
    parent_span_id: str | None
    kind: str  # INTERNAL, SERVER, CLIENT, PRODUCER, CONSUMER, UNSPECIFIED
    status_code: str  # UNSET, OK, ERROR
    status_message: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    events: tuple[ReceivedEvent, ...]
    links: tuple[ReceivedLink, ...]
    resource: dict[str, Any]
    scope: str

    @property
    def duration_seconds(self) -> float:
        return (self.end_time_unix_nano - self.start_time_unix_nano) / 1e9


@dataclass(frozen=True)
class ReceivedLogRecord:
    """One log record as exported, with its resource and instrumentation scope."""

    body: Any
    severity_text: str
    severity_number: int
    trace_id: str | None
    span_id: str | None
    time_unix_nano: int
    attributes: dict[str, Any]
    resource: dict[str, Any]
    scope: str


@dataclass(frozen=True)
class ReceivedRequest:
    """One HTTP request as it arrived, before decoding."""

    path: str
    headers: dict[str, str]  # lower-case names
    body_bytes: int  # as sent on the wire (compressed when gzip)
    status: int  # what the receiver answered


def any_value(value: AnyValue) -> Any:
    """An OTLP ``AnyValue`` as the plain Python value it carries."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    return getattr(value, kind)


def attributes(pairs: Iterable[KeyValue]) -> dict[str, Any]:
    return {pair.key: any_value(pair.value) for pair in pairs}


def _hex_or_none(raw: bytes) -> str | None:
    return raw.hex() if raw and any(raw) else None


def _enum_suffix(name: str, prefix: str) -> str:
    return name.removeprefix(prefix)


def decode_spans(request: ExportTraceServiceRequest) -> list[ReceivedSpan]:
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=_hex_or_none(span.parent_span_id),
                        kind=_enum_suffix(Span.SpanKind.Name(span.kind), "SPAN_KIND_"),
                        status_code=_enum_suffix(
                            Status.StatusCode.Name(span.status.code), "STATUS_CODE_"
                        ),
                        status_message=span.status.message,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=attributes(span.attributes),
                        events=tuple(
                            ReceivedEvent(e.name, e.time_unix_nano, attributes(e.attributes))
                            for e in span.events
                        ),
                        links=tuple(
                            ReceivedLink(
                                link.trace_id.hex(), link.span_id.hex(), attributes(link.attributes)
                            )
                            for link in span.links
                        ),
                        resource=resource,
                        scope=scope_spans.scope.name,
                    )
                )
    return spans


def decode_logs(request: ExportLogsServiceRequest) -> list[ReceivedLogRecord]:
    records = []
    for resource_logs in request.resource_logs:
        resource = attributes(resource_logs.resource.attributes)
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                records.append(
                    ReceivedLogRecord(
                        body=any_value(record.body),
                        severity_text=record.severity_text,
                        severity_number=record.severity_number,
                        trace_id=_hex_or_none(record.trace_id),
                        span_id=_hex_or_none(record.span_id),
                        time_unix_nano=record.time_unix_nano,
                        attributes=attributes(record.attributes),
                        resource=resource,
                        scope=scope_logs.scope.name,
                    )
                )
    return records


# --- the server ------------------------------------------------------------------------


class _BadRequest(Exception):
    def __init__(self, status: HTTPStatus, detail: str) -> None:
        super().__init__(detail)
        self.status = status


class OtlpReceiver:
    """An OTLP/HTTP endpoint on loopback that records what it is sent. Thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._changed = threading.Condition(threading.RLock())
        self._spans: list[ReceivedSpan] = []
        self._logs: list[ReceivedLogRecord] = []
        self._requests: list[ReceivedRequest] = []
        self._failures: list[int] = []
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # lifecycle
    @property
    def endpoint(self) -> str:
        """Base URL, as for ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporters add ``/v1/...``)."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> OtlpReceiver:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="otlp-receiver",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # what was received
    def spans(self, name: str | None = None) -> list[ReceivedSpan]:
        with self._changed:
            return [s for s in self._spans if name is None or s.name == name]

    def logs(self) -> list[ReceivedLogRecord]:
        with self._changed:
            return list(self._logs)

    def requests(self, path: str | None = None) -> list[ReceivedRequest]:
        with self._changed:
            return [r for r in self._requests if path is None or r.path == path]

    def clear(self) -> None:
        with self._changed:
            self._spans.clear()
            self._logs.clear()
            self._requests.clear()

    def fail_next(self, count: int = 1, status: int = HTTPStatus.SERVICE_UNAVAILABLE) -> None:
        """Answer the next *count* export requests with *status* and record nothing from them."""
        with self._changed:
            self._failures.extend([int(status)] * count)

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        """Return the first truthy result of *predicate*, re-checked as exports arrive.

        Raises ``AssertionError`` with a summary of what did arrive after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                result = predicate()
                if result:
                    return result
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"OTLP receiver: condition not met within {timeout:.1f}s; {self.summary()}"
                    )
                self._changed.wait(min(remaining, 0.5))

    def summary(self) -> str:
        with self._changed:
            names = sorted({s.name for s in self._spans})
            return (
                f"{len(self._requests)} requests, {len(self._spans)} spans {names}, "
                f"{len(self._logs)} log records"
            )

    # request handling (runs on the server's threads)
    def _receive(self, path: str, headers: Mapping[str, str], body: bytes) -> tuple[int, bytes]:
        with self._changed:
            injected = self._failures.pop(0) if self._failures else None
        status, payload = HTTPStatus.OK, b""
        try:
            if injected is not None:
                raise _BadRequest(HTTPStatus(injected), "failure injected by the test")
            status, payload = self._decode_and_store(path, headers, body)
        except _BadRequest as exc:
            status, payload = exc.status, str(exc).encode()
        with self._changed:
            self._requests.append(ReceivedRequest(path, dict(headers), len(body), int(status)))
            self._changed.notify_all()
        return int(status), payload

    def _decode_and_store(
        self, path: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[HTTPStatus, bytes]:
        if path not in SIGNAL_PATHS:
            raise _BadRequest(HTTPStatus.NOT_FOUND, f"no OTLP signal at {path}")
        content_type = headers.get("content-type", "").split(";")[0].strip()
        if content_type != PROTOBUF:
            detail = f"only {PROTOBUF} is accepted, not {content_type!r}"
            raise _BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, detail)
        raw = _decompress(headers.get("content-encoding", ""), body)
        response: Message
        if path == "/v1/traces":
            spans = decode_spans(_parse(ExportTraceServiceRequest(), raw))
            with self._changed:
                self._spans.extend(spans)
            response = ExportTraceServiceResponse()
        elif path == "/v1/logs":
            records = decode_logs(_parse(ExportLogsServiceRequest(), raw))
            with self._changed:
                self._logs.extend(records)
            response = ExportLogsServiceResponse()
        else:
            response = ExportMetricsServiceResponse()
        return HTTPStatus.OK, response.SerializeToString()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY_BYTES:
                    self._answer(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"body too large")
                    self.close_connection = True
                    return
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                status, payload = receiver._receive(self.path.split("?")[0], headers, body)
                self._answer(status, payload)

            def _answer(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header(
                    "Content-Type", PROTOBUF if status == HTTPStatus.OK else "text/plain"
                )
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean; requests() records everything

        return Handler


M = TypeVar("M", bound=Message)


def _parse(message: M, raw: bytes) -> M:
    try:
        message.ParseFromString(raw)
    except DecodeError as exc:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f"not a valid protobuf: {exc}") from exc
    return message


def _decompress(encoding: str, body: bytes) -> bytes:
    encoding = encoding.strip().lower()
    try:
        if encoding in ("", "identity"):
            return body
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error, EOFError) as exc:
        raise _BadRequest(HTTPStatus.BAD_REQUEST, f"bad {encoding} body: {exc}") from exc
    raise _BadRequest(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Encoding {encoding}")
