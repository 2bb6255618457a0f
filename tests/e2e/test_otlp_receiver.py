"""The test OTLP receiver decodes what the real OTLP/HTTP exporters put on the wire."""

from __future__ import annotations

import gzip
import logging
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tests.e2e.otlp_receiver import OtlpReceiver

pytestmark = pytest.mark.e2e

RESOURCE = Resource.create({"service.name": "receiver-test", "deployment.environment.name": "test"})
COMPRESSIONS = [
    pytest.param(Compression.Gzip, id="gzip"),
    pytest.param(Compression.NoCompression, id="plain"),
]


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as running:
        yield running


def tracer_provider(receiver: OtlpReceiver, compression: Compression) -> TracerProvider:
    exporter = OTLPSpanExporter(
        endpoint=f"{receiver.endpoint}/v1/traces", compression=compression, timeout=5
    )
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_spans_arrive_decoded_with_resource_parentage_links_and_status(
    receiver: OtlpReceiver, compression: Compression
) -> None:
    provider = tracer_provider(receiver, compression)
    tracer = provider.get_tracer("tests.receiver")

    with tracer.start_as_current_span("webhook", kind=SpanKind.SERVER) as webhook:
        webhook_context = webhook.get_span_context()
    with tracer.start_as_current_span(
        "POST /calls", kind=SpanKind.SERVER, links=[Link(webhook_context, {"app.link": "call"})]
    ) as parent:
        parent.set_attribute("app.call.id", 42)
        parent.set_attribute("app.tags", ["a", "b"])
        with tracer.start_as_current_span("bolna.make_call", kind=SpanKind.CLIENT) as child:
            child.add_event("retry", {"app.bolna.attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "upstream 503"))
    provider.shutdown()

    spans = receiver.wait_for(lambda: receiver.spans() if len(receiver.spans()) >= 3 else [])
    by_name = {span.name: span for span in spans}
    call, bolna = by_name["POST /calls"], by_name["bolna.make_call"]
    assert call.kind == "SERVER" and bolna.kind == "CLIENT"
    assert call.resource["service.name"] == "receiver-test"
    assert call.scope == "tests.receiver"
    assert call.attributes == {"app.call.id": 42, "app.tags": ["a", "b"]}
    assert call.parent_span_id is None
    assert bolna.parent_span_id == call.span_id and bolna.trace_id == call.trace_id
    assert len(call.trace_id) == 32 and len(call.span_id) == 16
    assert bolna.status_code == "ERROR" and bolna.status_message == "upstream 503"
    assert [(e.name, e.attributes) for e in bolna.events] == [("retry", {"app.bolna.attempt": 2})]
    assert call.duration_seconds >= 0
    [link] = call.links
    webhook_span = by_name["webhook"]
    assert (link.trace_id, link.span_id) == (webhook_span.trace_id, webhook_span.span_id)
    assert link.attributes == {"app.link": "call"}

    requests = receiver.requests("/v1/traces")
    assert requests and all(r.status == 200 for r in requests)
    expected_encoding = "gzip" if compression is Compression.Gzip else None
    assert {r.headers.get("content-encoding") for r in requests} == {expected_encoding}


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_log_records_arrive_with_the_active_trace_context(
    receiver: OtlpReceiver, compression: Compression
) -> None:
    tracer_side = tracer_provider(receiver, compression)
    logger_provider = LoggerProvider(resource=RESOURCE)
    logger_provider.add_log_record_processor(
        SimpleLogRecordProcessor(
            OTLPLogExporter(
                endpoint=f"{receiver.endpoint}/v1/logs", compression=compression, timeout=5
            )
        )
    )
    logger = logging.getLogger(f"tests.receiver.{compression.value}")
    logger.propagate = False
    handler = LoggingHandler(level=logging.INFO, logger_provider=logger_provider)
    logger.addHandler(handler)
    try:
        with tracer_side.get_tracer("tests.receiver").start_as_current_span("work") as span:
            logger.error("call failed", extra={"app.feature": "calls"})
            context = span.get_span_context()
    finally:
        logger.removeHandler(handler)
        logger_provider.shutdown()
        tracer_side.shutdown()

    [record] = receiver.wait_for(receiver.logs)
    assert record.body == "call failed"
    assert record.severity_text == "ERROR"
    assert record.attributes["app.feature"] == "calls"
    assert record.trace_id == format(context.trace_id, "032x")
    assert record.span_id == format(context.span_id, "016x")
    assert record.resource["service.name"] == "receiver-test"


def test_rejects_what_it_cannot_decode(receiver: OtlpReceiver) -> None:
    protobuf = {"Content-Type": "application/x-protobuf"}
    with httpx.Client(base_url=receiver.endpoint, timeout=5) as client:
        assert client.post("/v1/traces", content=b"\xff\xff", headers=protobuf).status_code == 400
        bad_gzip = {**protobuf, "Content-Encoding": "gzip"}
        assert client.post("/v1/logs", content=b"nope", headers=bad_gzip).status_code == 400
        as_json = {"Content-Type": "application/json"}
        assert client.post("/v1/traces", content=b"{}", headers=as_json).status_code == 415
        assert client.post("/v2/else", content=b"", headers=protobuf).status_code == 404
        empty = gzip.compress(b"")
        assert client.post("/v1/traces", content=empty, headers=bad_gzip).status_code == 200
    assert receiver.spans() == []
    assert [r.status for r in receiver.requests()] == [400, 400, 415, 404, 200]


def test_fail_next_makes_the_exporter_retry(receiver: OtlpReceiver) -> None:
    receiver.fail_next(1, status=503)
    provider = tracer_provider(receiver, Compression.Gzip)
    with provider.get_tracer("tests.receiver").start_as_current_span("retried"):
        pass
    provider.shutdown()

    receiver.wait_for(lambda: receiver.spans(name="retried"), timeout=15)
    assert [r.status for r in receiver.requests("/v1/traces")] == [503, 200]


def test_wait_for_gives_up_with_a_summary(receiver: OtlpReceiver) -> None:
    with pytest.raises(AssertionError, match="0 spans"):
        receiver.wait_for(lambda: receiver.spans(name="never"), timeout=0.2)
