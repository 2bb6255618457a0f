"""Instrumentation of the three libraries on the request path, each given the provider.

    undo_app = instrument_fastapi(app, provider, excluded_urls="/health")
    undo_sql = instrument_sqlalchemy(async_engine, provider, mode="events")  # or an Engine
    undo_http = instrument_httpx(client, provider)
    ...
    undo_app(); undo_sql(); undo_http()

FastAPI, SQLAlchemy and httpx use light hooks of our own by default: the stock contrib
instrumentors match routes, build attributes, parse SQL and record metrics for every
request, sampled or not. Ours decide first and do nothing more for a request that is
not recorded (one non-recording server span, so the sampling decision still
propagates). ``stock=True`` selects the contrib instrumentors instead (benchmarks,
or ASGI ``send``/``receive`` sub-spans via ``asgi_sub_spans=True``).

What is recorded:
- one SERVER span per request, named ``"{method} {route template}"``, with
  ``http.request.method``, ``url.path``, ``url.scheme``, ``http.route``,
  ``http.response.status_code``; 5xx or an unhandled exception sets status ERROR and
  ``error.type`` (the exception is recorded as an event). URLs matching
  ``excluded_urls`` (comma list of regexes, searched in the path) get no span.
- SQL executed inside a sampled trace (SQL outside any trace is not traced), by
  ``mode`` (``TELEMETRY_SQL_SPANS``): ``events``, one ``db.query`` event per statement
  on the current span with ``db.operation``, ``db.statement`` (parameterised:
  placeholders, no values) and ``app.db.duration_ms``; ``spans``, one CLIENT span per
  statement, named after the operation, with ``db.system``, ``db.statement``,
  ``db.operation``; ``off``, nothing. Transaction control (``BEGIN``, ``SAVEPOINT``,
  ``RELEASE``, ``COMMIT``, ``ROLLBACK``) is never recorded.
- one CLIENT span per httpx request, named after the method, with
  ``http.request.method``, ``url.full`` (no query string), ``server.address``,
  ``server.port``, ``http.response.status_code`` (4xx/5xx or an exception: status
  ERROR and ``error.type``); ``traceparent`` (and ``sentry-trace`` when configured)
  injected through the global propagator. Inside an unsampled trace, only the headers.

FastAPI >= 0.16x traces by itself as soon as a global TracerProvider exists; our
middleware switches that off for the instrumented app, so each request yields one
server span (the contrib middleware is recognised by FastAPI and stands it down).
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from collections.abc import Callable, MutableMapping
from typing import Any, Final, Literal, Protocol, cast

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider
from opentelemetry.util.types import AttributeValue
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.routing import Match

from telemetry import attributes as attr

logger = logging.getLogger(__name__)

Undo = Callable[[], None]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]
ASGIApp = Callable[[Scope, Receive, Send], Any]

_SCOPE: Final = "telemetry"
_MAX_STATEMENT_CHARS: Final = 4096
# No metrics exporter is configured: give the contrib instrumentors a no-op meter so
# they do not build and record histogram attributes for nothing.
_NO_METERS: Final = NoOpMeterProvider()


# --- FastAPI / ASGI ------------------------------------------------------------------


class _AsgiHeaders(Getter[Scope]):
    """Reads request headers straight from the ASGI scope (names are lower-case bytes)."""

    def get(self, carrier: Scope, key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        values = [v.decode("latin-1") for k, v in carrier.get("headers", ()) if k == wanted]
        return values or None

    def keys(self, carrier: Scope) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier.get("headers", ())]


_ASGI_HEADERS: Final = _AsgiHeaders()


class _RouteTemplates:
    """Full route templates (``/calls/{call_id}``) for the route left in ``scope["route"]``.

    FastAPI >= 0.137 keeps included routers nested: the route it leaves in the scope
    has the router's own path, not the prefixed one. The table built from
    ``fastapi.routing.iter_route_contexts`` maps it back to the full template.
    """

    def __init__(self, app: Any) -> None:
        self._app = app
        self._table: dict[int, list[Any]] | None = None
        self._misses: set[int] = set()

    def _build(self) -> dict[int, list[Any]]:
        table: dict[int, list[Any]] = {}
        try:
            from fastapi.routing import iter_route_contexts
        except ImportError:  # FastAPI < 0.137.2 flattens included routes itself
            return table
        for context in iter_route_contexts(self._app.routes):
            table.setdefault(id(context.original_route), []).append(context)
        return table

    def template(self, scope: Scope) -> str | None:
        route = scope.get("route")
        if route is None:
            return None
        if self._table is None:
            self._table = self._build()
        contexts = self._table.get(id(route))
        if contexts is None and id(route) not in self._misses:
            self._misses.add(id(route))  # a route added after the first request
            self._table = self._build()
            contexts = self._table.get(id(route))
        if not contexts:
            path_format = getattr(route, "path_format", None)
            return path_format if isinstance(path_format, str) else None
        if len(contexts) == 1:
            path_format = contexts[0].path_format
        else:  # one router included under several prefixes
            path_format = next(
                (c.path_format for c in contexts if c.matches(scope)[0] is Match.FULL),
                contexts[0].path_format,
            )
        return path_format if isinstance(path_format, str) else None


def _compile_excluded(excluded_urls: str) -> re.Pattern[str] | None:
    patterns = [p.strip() for p in excluded_urls.split(",") if p.strip()]
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def _record_failure(span: trace.Span, exc: BaseException) -> None:
    if span.is_recording():
        span.record_exception(exc)
        span.set_attribute(attr.ERROR_TYPE, type(exc).__qualname__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))


_FAILURE_KEY: Final = "telemetry.exception"


class _ExceptionRecorder:
    """Inside Starlette's ServerErrorMiddleware: notes an unhandled exception in the
    scope before the 500 response is sent (which ends the server span)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except Exception as exc:
            scope[_FAILURE_KEY] = exc
            raise


class ServerSpanMiddleware:
    """One SERVER span per HTTP request; near-free when the request is not sampled."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer: Tracer,
        excluded: re.Pattern[str] | None,
        routes: _RouteTemplates,
    ) -> None:
        self.app = app
        self._tracer = tracer
        self._excluded = excluded
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            self._excluded is not None and self._excluded.search(scope.get("path", ""))
        ):
            await self.app(scope, receive, send)
            return
        method: str = scope.get("method", "GET")
        parent = propagate.extract(scope, getter=_ASGI_HEADERS)
        span = self._tracer.start_span(method, context=parent, kind=SpanKind.SERVER)
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            if span.is_recording():
                await self._traced(span, method, scope, receive, send)
            else:
                await self.app(scope, receive, send)
        finally:
            otel_context.detach(token)

    async def _traced(
        self, span: trace.Span, method: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        span.set_attributes(
            {
                attr.HTTP_REQUEST_METHOD: method,
                attr.URL_PATH: scope.get("path", ""),
                attr.URL_SCHEME: scope.get("scheme", "http"),
            }
        )
        status_code: int | None = None
        ended = False

        def finish(error: BaseException | None) -> None:
            nonlocal ended
            if ended:
                return
            ended = True
            route = self._routes.template(scope)
            if route:
                span.update_name(f"{method} {route}")
                span.set_attribute(attr.HTTP_ROUTE, route)
            if status_code is not None:
                span.set_attribute(attr.HTTP_RESPONSE_STATUS_CODE, status_code)
            error = error or scope.pop(_FAILURE_KEY, None)
            if error is not None:
                _record_failure(span, error)
            elif status_code is None or status_code >= 500:
                span.set_attribute(attr.ERROR_TYPE, str(status_code or "incomplete_response"))
                span.set_status(Status(StatusCode.ERROR))
            span.end()

        async def send_and_observe(message: Message) -> None:
            nonlocal status_code
            kind = message["type"]
            if kind == "http.response.start":
                status_code = message["status"]
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                finish(None)  # the response is complete; background tasks are not timed

        try:
            await self.app(scope, receive, send_and_observe)
        except BaseException as exc:
            finish(exc)
            raise
        finally:
            finish(None)


def _builtin_fastapi_options(app: Any) -> dict[str, Any] | None:
    """FastAPI's own OpenTelemetry options for ``app`` (``FastAPI(telemetry=...)``), if any.

    FastAPI (0.16x) keeps them in ``app._telemetry`` and reads them on every request;
    there is no public setter after construction.
    """
    options = getattr(app, "_telemetry", None)
    return options if isinstance(options, dict) and "tracing" in options else None


def instrument_fastapi(
    app: Any,
    tracer_provider: TracerProvider,
    *,
    excluded_urls: str = "",
    stock: bool = False,
    asgi_sub_spans: bool = False,
) -> Undo:
    """Trace ``app``'s HTTP requests; returns the undo. Safe to call during lifespan startup."""
    if getattr(app, "_telemetry_instrumented", False):
        logger.warning("FastAPI app already instrumented; left as is")
        return _nothing
    # Our middleware needs FastAPI's own tracing switched off; a FastAPI whose switch
    # we do not recognise gets the contrib middleware, which FastAPI itself detects.
    light = _builtin_fastapi_options(app) is not None or not hasattr(app, "_native_telemetry")
    if stock or asgi_sub_spans or not light:
        undo = _instrument_fastapi_stock(app, tracer_provider, excluded_urls, asgi_sub_spans)
    else:
        undo = _instrument_fastapi_light(app, tracer_provider, excluded_urls)
    app._telemetry_instrumented = True
    # Starlette builds the middleware stack on the first ASGI event, which is the
    # lifespan startup that usually calls us: rebuild it so the tracing layer is in.
    app.middleware_stack = None

    def undo_all() -> None:
        undo()
        app._telemetry_instrumented = False
        app.middleware_stack = None

    return undo_all


def _instrument_fastapi_light(app: Any, provider: TracerProvider, excluded_urls: str) -> Undo:
    builtin = _builtin_fastapi_options(app)
    saved = dict(builtin) if builtin is not None else None
    if builtin is not None:
        builtin.update(tracing=False, metrics=False, logs=False)
    original_build = app.build_middleware_stack
    tracer = provider.get_tracer(_SCOPE + ".asgi")
    excluded = _compile_excluded(excluded_urls)
    routes = _RouteTemplates(app)

    def build_middleware_stack() -> ASGIApp:
        stack: ASGIApp = original_build()
        if isinstance(stack, ServerErrorMiddleware):
            stack.app = _ExceptionRecorder(stack.app)
        return ServerSpanMiddleware(stack, tracer=tracer, excluded=excluded, routes=routes)

    app.build_middleware_stack = build_middleware_stack

    def undo() -> None:
        app.build_middleware_stack = original_build
        if builtin is not None and saved is not None:
            builtin.update(saved)

    return undo


def _instrument_fastapi_stock(
    app: Any, provider: TracerProvider, excluded_urls: str, asgi_sub_spans: bool
) -> Undo:
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        meter_provider=_NO_METERS,
        excluded_urls=excluded_urls,
        exclude_spans=None if asgi_sub_spans else ["receive", "send"],
    )
    return lambda: FastAPIInstrumentor.uninstrument_app(app)


# --- SQLAlchemy ----------------------------------------------------------------------

SqlMode = Literal["spans", "events", "off"]
SQL_MODES: Final[tuple[SqlMode, ...]] = ("spans", "events", "off")
DB_QUERY_EVENT: Final = "db.query"
_DB_SYSTEMS: Final = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql"}
# Transaction control (SQLite's BEGIN IMMEDIATE on every transaction, SAVEPOINTs of
# nested sessions): a sixth of all statements, no information a trace reader needs.
_TRANSACTION_CONTROL: Final = (
    "BEGIN",
    "SAVEPOINT",
    "RELEASE",
    "COMMIT",
    "ROLLBACK",
    "begin",
    "savepoint",
    "release",
    "commit",
    "rollback",
)
_sql_instrumented: weakref.WeakKeyDictionary[Engine, Undo] = weakref.WeakKeyDictionary()


def _operation(statement: str) -> str:
    words = statement.split(maxsplit=1)
    return words[0].upper() if words else "SQL"


class _SqlSpans:
    """One CLIENT span per statement run inside a sampled trace."""

    def __init__(self, tracer: Tracer, engine: Engine) -> None:
        self._tracer = tracer
        url = engine.url
        system = _DB_SYSTEMS.get(engine.dialect.name, engine.dialect.name)
        base: dict[str, AttributeValue] = {attr.DB_SYSTEM: system}
        # A SQLite "database" is a file path: not a name worth exporting.
        database = url.database if system != "sqlite" else None
        if database:
            base[attr.DB_NAME] = database
        if url.host:
            base[attr.SERVER_ADDRESS] = url.host
        if url.port:
            base[attr.SERVER_PORT] = url.port
        self._base = base
        self._name_suffix = f" {database}" if database else ""

    def start(self, statement: str) -> object | None:
        if not trace.get_current_span().get_span_context().trace_flags.sampled:
            return None
        if statement.startswith(_TRANSACTION_CONTROL):
            return None
        operation = _operation(statement)
        return self._tracer.start_span(
            operation + self._name_suffix,
            kind=SpanKind.CLIENT,
            attributes={
                **self._base,
                attr.DB_OPERATION: operation,
                attr.DB_STATEMENT: statement[:_MAX_STATEMENT_CHARS],
            },
        )

    def finish(self, started: object, statement: str, error: BaseException | None) -> None:
        span = cast(trace.Span, started)
        if error is not None:
            # The class only: DBAPI messages quote the statement's parameters.
            error_type = type(error).__qualname__
            span.set_attribute(attr.ERROR_TYPE, error_type)
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end()


class _SqlEvents:
    """One ``db.query`` event per statement on the current span, when it is recording.

    The event (timestamped when the statement started) carries ``db.operation``,
    ``db.statement`` and the duration; a failed statement adds ``error.type``. A span
    costs several times an event (start, end, processors, export), and a request runs
    ten statements or so.
    """

    def start(self, statement: str) -> object | None:
        span = trace.get_current_span()
        if not span.is_recording() or statement.startswith(_TRANSACTION_CONTROL):
            return None
        return span, time.time_ns()

    def finish(self, started: object, statement: str, error: BaseException | None) -> None:
        span, began = cast(tuple[trace.Span, int], started)
        attributes: dict[str, AttributeValue] = {
            attr.DB_OPERATION: _operation(statement),
            attr.DB_STATEMENT: statement[:_MAX_STATEMENT_CHARS],
            attr.DB_DURATION_MS: (time.time_ns() - began) / 1e6,
        }
        if error is not None:
            # The class only: DBAPI messages quote the statement's parameters.
            attributes[attr.ERROR_TYPE] = type(error).__qualname__
        span.add_event(DB_QUERY_EVENT, attributes, timestamp=began)


class _SqlRecorder(Protocol):
    def start(self, statement: str) -> object | None: ...

    def finish(self, started: object, statement: str, error: BaseException | None) -> None: ...


def _traced_execution_context(base: type[Any], recorder: _SqlRecorder) -> type[Any]:
    """``base`` (the dialect's execution context) recording each statement it runs.

    The hooks are the context's own ``pre_exec``/``post_exec``/``handle_dbapi_exception``,
    which SQLAlchemy calls for every statement anyway: registering cursor event listeners
    instead would send every statement, sampled or not, through SQLAlchemy's event
    dispatch (about as costly as recording it).
    """

    class TracedExecutionContext(base):  # type: ignore[misc]
        _telemetry_started: object | None = None

        def pre_exec(self) -> None:
            super().pre_exec()
            statement = self.statement
            if isinstance(statement, str):
                self._telemetry_started = recorder.start(statement)

        def post_exec(self) -> None:
            started = self._telemetry_started
            if started is not None:
                self._telemetry_started = None
                recorder.finish(started, self.statement, None)
            super().post_exec()

        def handle_dbapi_exception(self, e: BaseException) -> None:
            started = self._telemetry_started
            if started is not None:
                self._telemetry_started = None
                recorder.finish(started, self.statement, e)
            super().handle_dbapi_exception(e)

    TracedExecutionContext.__name__ = TracedExecutionContext.__qualname__ = f"Traced{base.__name__}"
    return TracedExecutionContext


def instrument_sqlalchemy(
    engine: Engine | AsyncEngine,
    tracer_provider: TracerProvider,
    *,
    stock: bool = False,
    mode: SqlMode = "spans",
) -> Undo:
    """Trace the statements ``engine`` runs (an AsyncEngine's ``sync_engine``); returns the undo.

    ``mode``: ``spans`` (a CLIENT span per statement), ``events`` (a ``db.query`` event
    per statement on the current span) or ``off`` (nothing). ``stock=True`` (contrib
    instrumentor, cursor event listeners) always records spans, unless ``off``.
    """
    if mode not in SQL_MODES:
        raise ValueError(
            f"TELEMETRY_SQL_SPANS: unknown mode {mode!r}; valid: {', '.join(SQL_MODES)}"
        )
    if mode == "off":
        return _nothing
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
    if sync_engine in _sql_instrumented:
        logger.warning("SQLAlchemy engine already instrumented; left as is")
        return _nothing
    if stock:
        undo = _instrument_sqlalchemy_stock(sync_engine, tracer_provider)
    else:
        recorder: _SqlRecorder = (
            _SqlEvents()
            if mode == "events"
            else _SqlSpans(tracer_provider.get_tracer(_SCOPE + ".sqlalchemy"), sync_engine)
        )
        undo = _trace_execution_contexts(sync_engine, recorder)
    _sql_instrumented[sync_engine] = undo

    def undo_all() -> None:
        if _sql_instrumented.pop(sync_engine, None) is not None:
            undo()

    return undo_all


def _trace_execution_contexts(engine: Engine, recorder: _SqlRecorder) -> Undo:
    dialect = engine.dialect
    had_own = "execution_ctx_cls" in vars(dialect)
    original = dialect.execution_ctx_cls
    dialect.execution_ctx_cls = _traced_execution_context(original, recorder)

    def undo() -> None:
        if had_own:
            dialect.execution_ctx_cls = original
        else:
            del dialect.execution_ctx_cls  # back to the dialect class's own

    return undo


def _instrument_sqlalchemy_stock(engine: Engine, provider: TracerProvider) -> Undo:
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor

    instrumentor = SQLAlchemyInstrumentor()
    # 0.66b declares sqlalchemy<2.1 and otherwise refuses silently; we pin below 2.1.
    instrumentor.instrument(
        engine=engine,
        tracer_provider=provider,
        meter_provider=_NO_METERS,
        skip_dep_check=True,
    )
    return lambda: instrumentor.uninstrument()


# --- httpx ---------------------------------------------------------------------------


_HTTP_METHODS: Final = ("handle_request", "handle_async_request")
_ABSENT: Final = object()


class _HttpxSpans:
    """One CLIENT span per request, trace headers injected into it.

    Inside an unsampled trace only the headers are injected: no span, no attributes.
    The contrib instrumentation costs about three SQL spans per request (header
    normalisation, both HTTP semantic conventions), sampled or not.
    """

    def __init__(self, tracer: Tracer) -> None:
        self._tracer = tracer

    def _start(self, request: Any) -> trace.Span | None:
        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid and not span_context.trace_flags.sampled:
            propagate.inject(request.headers)
            return None
        method: str = request.method
        url = request.url
        attributes: dict[str, AttributeValue] = {
            attr.HTTP_REQUEST_METHOD: method,
            # No query string: it is where tokens travel.
            attr.URL_FULL: f"{url.scheme}://{url.host}{url.path}",
            attr.SERVER_ADDRESS: url.host,
        }
        if url.port is not None:
            attributes[attr.SERVER_PORT] = url.port
        span = self._tracer.start_span(method, kind=SpanKind.CLIENT, attributes=attributes)
        propagate.inject(request.headers, context=trace.set_span_in_context(span))
        return span

    @staticmethod
    def _finish(span: trace.Span, response: Any) -> None:
        if span.is_recording():
            status_code: int = response.status_code
            span.set_attribute(attr.HTTP_RESPONSE_STATUS_CODE, status_code)
            if status_code >= 400:
                span.set_attribute(attr.ERROR_TYPE, str(status_code))
                span.set_status(Status(StatusCode.ERROR))
        span.end()

    @staticmethod
    def _fail(span: trace.Span, exc: BaseException) -> None:
        _record_failure(span, exc)
        span.end()

    def wrap(self, send: Callable[[Any], Any], is_async: bool) -> Callable[[Any], Any]:
        start, finish, fail = self._start, self._finish, self._fail
        if is_async:

            async def handle_async_request(request: Any) -> Any:
                span = start(request)
                if span is None:
                    return await send(request)
                try:
                    response = await send(request)
                except BaseException as exc:
                    fail(span, exc)
                    raise
                finish(span, response)
                return response

            return handle_async_request

        def handle_request(request: Any) -> Any:
            span = start(request)
            if span is None:
                return send(request)
            try:
                response = send(request)
            except BaseException as exc:
                fail(span, exc)
                raise
            finish(span, response)
            return response

        return handle_request


def instrument_httpx(client: Any, tracer_provider: TracerProvider, *, stock: bool = False) -> Undo:
    """Trace ``client``'s requests and inject trace headers into them; returns the undo.

    Wraps the client's transports (and mounted ones). ``stock=True`` uses the contrib
    instrumentation instead (benchmarks).
    """
    transports = [t for t in (client._transport, *client._mounts.values()) if t is not None]
    if stock:
        return _instrument_httpx_stock(client, tracer_provider, transports)
    if getattr(client, "_telemetry_instrumented", False):
        logger.warning("httpx client already instrumented; left as is")
        return _nothing
    spans = _HttpxSpans(tracer_provider.get_tracer(_SCOPE + ".httpx"))
    replaced: list[tuple[Any, str, object]] = []  # (transport, method, its own attribute)
    for transport in transports:
        for method in _HTTP_METHODS:
            send = getattr(transport, method, None)
            if send is not None:
                replaced.append((transport, method, vars(transport).get(method, _ABSENT)))
                setattr(transport, method, spans.wrap(send, method == "handle_async_request"))
    client._telemetry_instrumented = True

    def undo() -> None:
        for transport, method, own in replaced:
            if own is _ABSENT:
                vars(transport).pop(method, None)  # back to the class's method
            else:
                setattr(transport, method, own)
        client._telemetry_instrumented = False

    return undo


def _instrument_httpx_stock(client: Any, provider: TracerProvider, transports: list[Any]) -> Undo:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.utils import unwrap

    HTTPXClientInstrumentor.instrument_client(
        client, tracer_provider=provider, meter_provider=_NO_METERS
    )

    def undo() -> None:
        # uninstrument_client unwraps only one of the two methods a transport may
        # have (MockTransport has both): unwrap both ourselves.
        for transport in transports:
            for method in _HTTP_METHODS:
                if hasattr(getattr(transport, method, None), "__wrapped__"):
                    unwrap(transport, method)
        client._is_instrumented_by_opentelemetry = False

    return undo


def _nothing() -> None:
    return None
