"""Instrumentation through real requests: one server span per request, SQL and httpx spans
under it, /health excluded, sampling honoured, Sentry's span-processor mode."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind, StatusCode
from sqlalchemy import create_engine, text

from telemetry.testing import (
    FAKE_SENTRY_DSN,
    CapturingSentryTransport,
    SpanCapture,
    capture_spans,
    settings_for_tests,
)
from tests.telemetry.conftest import MiniApp, instrument


def server_spans(spans: list[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.kind is SpanKind.SERVER]


def scope_names(spans: list[ReadableSpan]) -> set[str]:
    return {s.instrumentation_scope.name for s in spans if s.instrumentation_scope}


async def test_the_trap_fastapi_traces_by_itself_once_a_global_provider_exists(
    capture: SpanCapture, mini: MiniApp
) -> None:
    """Without our instrumentation FastAPI's built-in tracing switches on (several spans)."""
    async with mini.client() as client:
        assert (await client.get("/health")).status_code == 200
    assert "fastapi" in scope_names(capture.spans())


@pytest.mark.parametrize("stock", [False, True], ids=["light", "stock"])
async def test_each_request_yields_exactly_one_server_span(
    capture: SpanCapture, mini: MiniApp, stock: bool
) -> None:
    instrument(capture, mini, stock=stock)
    async with mini.client() as client:
        for item in (1, 2, 3):
            assert (await client.get(f"/items/{item}")).status_code == 200
    spans = capture.spans()
    servers = server_spans(spans)
    assert len(servers) == 3
    assert {s.name for s in servers} == {"GET /items/{item_id}"}
    assert "fastapi" not in scope_names(spans)
    (server, *_) = servers
    attributes = server.attributes or {}
    assert attributes["http.route"] == "/items/{item_id}"
    if not stock:
        assert attributes["http.response.status_code"] == 200
        assert attributes["http.request.method"] == "GET"  # stable HTTP semconv
        assert attributes["url.path"] == "/items/1"
        assert not [s for s in spans if s.name.endswith((" send", " receive"))]


async def test_a_request_trace_has_server_sql_and_http_client_spans(
    sql_as_spans: SpanCapture, mini: MiniApp
) -> None:
    capture = sql_as_spans
    instrument(capture, mini)
    async with mini.client() as client:
        assert (await client.get("/items/7")).status_code == 200
    spans = capture.spans()
    (server,) = server_spans(spans)
    children = [s for s in spans if s.parent and s.parent.span_id == server.context.span_id]
    sql = [s for s in children if (s.attributes or {}).get("db.system") == "sqlite"]
    http = [s for s in children if s.kind is SpanKind.CLIENT and s not in sql]
    assert len(sql) == 1 and len(http) == 1
    assert {s.context.trace_id for s in spans} == {server.context.trace_id}
    statement = (sql[0].attributes or {})["db.statement"]
    assert statement == "SELECT ? AS id"  # parameterised: no literal value
    assert sql[0].name == "SELECT" and sql[0].kind is SpanKind.CLIENT
    http_attributes = http[0].attributes or {}
    assert http[0].name == "POST"
    assert http_attributes["http.response.status_code"] == 200
    assert http_attributes["http.request.method"] == "POST"
    assert http_attributes["url.full"] == "http://bolna.test/call"
    assert http_attributes["server.address"] == "bolna.test"
    (headers,) = mini.outgoing_headers
    assert headers["traceparent"].split("-")[2] == f"{http[0].context.span_id:016x}"


@pytest.mark.parametrize(
    ("answer", "error_type"),
    [(503, "503"), (404, "404"), (httpx.ConnectError("refused"), "ConnectError")],
)
async def test_a_failed_outgoing_request_marks_its_client_span(
    capture: SpanCapture, answer: int | Exception, error_type: str
) -> None:
    def bolna(request: httpx.Request) -> httpx.Response:
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)

    async with httpx.AsyncClient(transport=httpx.MockTransport(bolna)) as client:
        capture.telemetry.instrument_httpx(client)
        tracer = capture.telemetry.tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("parent"), contextlib.suppress(httpx.ConnectError):
            await client.get("http://bolna.test/call/1?token=secret-token-value")
    (span,) = [s for s in capture.spans() if s.kind is SpanKind.CLIENT]
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == error_type
    assert (span.attributes or {})["url.full"] == "http://bolna.test/call/1"  # no query


def test_the_stock_httpx_instrumentation_is_still_available(capture: SpanCapture) -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client:
        capture.telemetry.instrument_httpx(client, stock=True)
        with capture.telemetry.tracer_provider.get_tracer("t").start_as_current_span("parent"):
            client.get("http://bolna.test/call")
    (span,) = [s for s in capture.spans() if s.kind is SpanKind.CLIENT]
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name.startswith("opentelemetry.instrumentation.httpx")


async def test_by_default_sql_statements_are_events_on_the_enclosing_span(
    capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(capture, mini)
    async with mini.client() as client:
        assert (await client.get("/items/7")).status_code == 200
    spans = capture.spans()
    (server,) = server_spans(spans)
    assert not [s for s in spans if (s.attributes or {}).get("db.system")]  # no SQL spans
    (query,) = [e for e in server.events if e.name == "db.query"]
    attributes = query.attributes or {}
    assert attributes["db.statement"] == "SELECT ? AS id"  # parameterised: no literal value
    assert attributes["db.operation"] == "SELECT"
    duration_ms = attributes["app.db.duration_ms"]
    assert isinstance(duration_ms, float) and 0 <= duration_ms < 5_000
    assert server.start_time is not None and query.timestamp >= server.start_time
    assert len([s for s in spans if s.kind is SpanKind.CLIENT]) == 1  # the Bolna call


async def test_a_failed_statement_is_an_event_with_its_error_type_and_no_values(
    capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(capture, mini)
    tracer = capture.telemetry.tracer_provider.get_tracer("t")
    with tracer.start_as_current_span("parent"):
        async with mini.engine.connect() as connection:
            with pytest.raises(Exception, match="no such table"):
                await connection.execute(
                    text("SELECT * FROM missing WHERE phone = :phone"), {"phone": "+14155550123"}
                )
    (parent,) = capture.spans()
    (query,) = [e for e in parent.events if e.name == "db.query"]
    attributes = query.attributes or {}
    assert attributes["error.type"] == "OperationalError"
    assert attributes["db.statement"] == "SELECT * FROM missing WHERE phone = ?"
    assert "4155550123" not in str(dict(attributes))


async def test_sql_off_records_no_statement(mini: MiniApp) -> None:
    with capture_spans(settings_for_tests(sql_spans="off")) as capture:
        instrument(capture, mini)
        async with mini.client() as client:
            assert (await client.get("/items/7")).status_code == 200
        spans = capture.spans()
    assert len(server_spans(spans)) == 1
    assert not [s for s in spans if (s.attributes or {}).get("db.system")]
    assert not [e for s in spans for e in s.events if e.name == "db.query"]


@pytest.mark.parametrize("mode", ["spans", "events"])
async def test_transaction_control_is_never_recorded(mini: MiniApp, mode: str) -> None:
    with capture_spans(settings_for_tests(sql_spans=mode)) as capture:
        instrument(capture, mini)
        tracer = capture.telemetry.tracer_provider.get_tracer("t")
        with tracer.start_as_current_span("parent"):
            async with mini.engine.connect() as connection:
                await connection.exec_driver_sql("BEGIN")
                async with connection.begin_nested():  # SAVEPOINT ... RELEASE
                    await connection.execute(text("SELECT 1"))
                await connection.exec_driver_sql("COMMIT")
        spans = capture.spans()
    names = [s.name for s in spans] + [
        str((e.attributes or {}).get("db.statement")) for s in spans for e in s.events
    ]
    assert not [
        n for n in names if n.upper().startswith(("BEGIN", "SAVEPOINT", "RELEASE", "COMMIT"))
    ]
    assert "SELECT" in names or "SELECT 1" in names


async def test_sql_outside_a_trace_is_not_traced(capture: SpanCapture, mini: MiniApp) -> None:
    instrument(capture, mini)
    async with mini.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    assert capture.spans() == []


def test_sync_engines_and_the_stock_instrumentor_also_yield_sql_spans(
    sql_as_spans: SpanCapture,
) -> None:
    """The contrib instrumentor declares sqlalchemy<2.1; this proves spans really appear."""
    capture = sql_as_spans
    tracer = capture.telemetry.tracer_provider.get_tracer("t")
    for stock in (False, True):
        engine = create_engine("sqlite://")
        capture.telemetry.instrument_engine(engine, stock=stock)
        with tracer.start_as_current_span("parent"), engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    sql = [s for s in capture.spans() if "db.statement" in (s.attributes or {})]
    assert len(sql) == 2
    assert all((s.attributes or {})["db.statement"] == "SELECT 1" for s in sql)
    assert all((s.attributes or {})["db.system"] == "sqlite" for s in sql)


async def test_health_is_not_traced(capture: SpanCapture, mini: MiniApp) -> None:
    instrument(capture, mini)
    async with mini.client() as client:
        assert (await client.get("/health")).status_code == 200
    assert capture.spans() == []


async def test_an_unhandled_exception_marks_the_server_span(
    capture: SpanCapture, mini: MiniApp
) -> None:
    instrument(capture, mini)
    async with mini.client() as client:
        assert (await client.get("/boom")).status_code == 500
        assert (await client.get("/missing")).status_code == 404
    boom, missing = server_spans(capture.spans())
    assert boom.status.status_code is StatusCode.ERROR
    assert (boom.attributes or {})["error.type"] == "RuntimeError"
    assert (boom.attributes or {})["http.response.status_code"] == 500
    (exception,) = [e for e in boom.events if e.name == "exception"]
    assert "4155550123" not in str(dict(exception.attributes or {}))  # scrubbed
    assert missing.status.status_code is StatusCode.UNSET  # a 4xx is the client's doing


@pytest.mark.parametrize(("ratio", "expected"), [("0", 0), ("1", 4)])
async def test_sampling_ratio_decides_what_is_exported(
    mini: MiniApp, ratio: str, expected: int
) -> None:
    with capture_spans(settings_for_tests(traces_sampler_arg=ratio)) as capture:
        instrument(capture, mini)
        async with mini.client() as client:
            for item in range(4):
                assert (await client.get(f"/items/{item}")).status_code == 200
        assert len(server_spans(capture.spans())) == expected
        if expected == 0:
            assert capture.spans() == []  # no SQL or client spans either


async def test_instrumenting_after_the_stack_was_built_still_works(
    capture: SpanCapture, mini: MiniApp
) -> None:
    """The lifespan builds the middleware stack before it instruments the app."""
    mini.app.build_middleware_stack()
    mini.app.middleware_stack = mini.app.build_middleware_stack()
    instrument(capture, mini)
    async with mini.client() as client:
        await client.get("/items/1")
    assert len(server_spans(capture.spans())) == 1


async def test_shutdown_uninstruments_so_a_new_configuration_starts_clean(mini: MiniApp) -> None:
    with capture_spans(settings_for_tests(sql_spans="spans")) as first:
        instrument(first, mini)
        async with mini.client() as client:
            await client.get("/items/1")
        assert len(server_spans(first.spans())) == 1
    with capture_spans(settings_for_tests(sql_spans="spans")) as second:
        instrument(second, mini)
        async with mini.client() as client:
            await client.get("/items/2")
        spans = second.spans()
        assert len(server_spans(spans)) == 1
        assert len([s for s in spans if (s.attributes or {}).get("db.system")]) == 1
        assert len([s for s in spans if s.kind is SpanKind.CLIENT]) == 2
    assert len(first.exporter.get_finished_spans()) == 3  # nothing more reached the old one


@pytest.mark.parametrize(("ratio", "expected"), [("1", 3), ("0", 0)])
async def test_span_processor_mode_sends_one_transaction_per_sampled_request(
    mini: MiniApp, ratio: str, expected: int
) -> None:
    transport = CapturingSentryTransport()
    settings = settings_for_tests(
        traces_exporter="sentry",
        sentry_dsn=FAKE_SENTRY_DSN,
        sentry_traces_mode="span_processor",
        traces_sampler_arg=ratio,
    )
    with capture_spans(settings, sentry_transport=transport) as capture:
        instrument(capture, mini)
        async with mini.client() as client:
            for item in range(3):
                assert (await client.get(f"/items/{item}")).status_code == 200
        capture.telemetry.shutdown()
    assert len(transport.transactions) == expected
    for transaction in transport.transactions:
        assert transaction["transaction"] == "GET /items/{item_id}"
        # The SQL statement (a db.query event made a span) and the Bolna call.
        assert sorted(span["op"] for span in transaction["spans"]) == ["db", "http.client"]
        (query,) = [span for span in transaction["spans"] if span["op"] == "db"]
        assert query["description"] == "SELECT ? AS id"
        assert query["parent_span_id"] == transaction["contexts"]["trace"]["span_id"]
        assert transaction["start_timestamp"] <= query["start_timestamp"] <= query["timestamp"]
        assert "4155550123" not in str(transaction)


async def test_otlp_mode_sends_spans_by_otlp_and_never_as_sentry_transactions(
    mini: MiniApp, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = CapturingSentryTransport()
    settings = settings_for_tests(traces_exporter="sentry", sentry_dsn=FAKE_SENTRY_DSN)
    exported: list[ReadableSpan] = []

    def export(spans: Sequence[ReadableSpan]) -> SpanExportResult:
        exported.extend(spans)
        return SpanExportResult.SUCCESS

    with capture_spans(settings, sentry_transport=transport) as capture:
        monkeypatch.setattr(capture.telemetry.exporters[0].exporter, "export", export)
        instrument(capture, mini)
        async with mini.client() as client:
            await client.get("/items/1")
        capture.telemetry.force_flush()
        assert len(server_spans(capture.spans())) == 1
    assert len(server_spans(exported)) == 1 and len(exported) == 2  # SQL: events on it
    assert transport.transactions == []
