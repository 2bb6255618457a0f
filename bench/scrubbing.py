"""Case 6: scrubbing cost per span, on the spans of a real call's trace.

A worker with OTel at 100% places one call (``POST /calls``, simulator) and receives
its six webhooks, with an extra span processor keeping the raw spans (before the
scrubbing gate). Each span is then scrubbed ``repeat`` times two ways:
``scrub_attributes(span.attributes)`` (the pure function) and ``scrub_span(span)`` (what
``ScrubbingSpanProcessor.on_end`` does: attributes, events, links and status, copied).
"""

from __future__ import annotations

import json
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bench.context import Context
from bench.report import Goal, Section, table
from bench.stats import fmt


async def measure_trace(worker: Any, repeat: int) -> dict[str, Any]:
    """In the worker: drive one call and its webhooks, then time scrubbing their spans."""
    import httpx
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor

    from app.simulator._scenario import WebhookStep, new_scenario, render_webhook
    from bench import workload
    from telemetry._processors import scrub_span
    from telemetry.scrubbing import scrub_attributes

    collected: list[ReadableSpan] = []

    class Keep(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            collected.append(span)

    provider = worker.telemetry.tracer_provider
    provider.add_span_processor(Keep())
    base = "http://api.bench"
    seeded = worker.seeded
    request = httpx.Request(
        "POST",
        f"{base}/calls",
        json={"agent_id": seeded.agent_id, "contact_id": seeded.contact_id},
        headers={"authorization": f"Bearer {seeded.token}"},
    )
    response = await worker.transport.handle_async_request(request)
    call = json.loads(await response.aread())
    execution_id = call["execution_id"]
    scenario = new_scenario(
        random.Random(1),
        execution_id=execution_id,
        agent_id=workload.AGENT_UUID,
        to_number=workload.CONTACT_PHONE,
        from_number="+15550100000",
        user_data={"name": "Asha", "call_id": str(call["id"])},
        outcome="completed",
        created_at="2026-05-01T10:00:00+00:00",
    )
    for status in workload.statuses_of(0):
        body = render_webhook(scenario, WebhookStep(status), updated_at="2026-05-01T10:01:00")
        webhook = httpx.Request(
            "POST",
            base + workload.webhook_path(),
            content=body,
            headers={"content-type": "application/json"},
        )
        await (await worker.transport.handle_async_request(webhook)).aread()
    provider.force_flush()
    clock = time.perf_counter_ns
    spans = []
    for span in collected:
        attrs = dict(span.attributes or {})
        attr_ns, span_ns = [], []
        for _ in range(repeat):
            began = clock()
            scrub_attributes(attrs)
            attr_ns.append(clock() - began)
        for _ in range(repeat):
            began = clock()
            scrub_span(span)
            span_ns.append(clock() - began)
        clean = scrub_attributes(attrs)
        spans.append(
            {
                "name": span.name,
                "attributes": len(attrs),
                "events": len(span.events),
                "links": len(span.links),
                "changed": sum(1 for k in attrs if clean.get(k) != attrs[k]),
                "attributes_us": statistics.median(attr_ns) / 1e3,
                "span_us": statistics.median(span_ns) / 1e3,
            }
        )
    return {"spans": spans, "repeat": repeat}


@dataclass
class ScrubbingResult:
    spans: list[dict[str, Any]] = field(default_factory=list)
    repeat: int = 0


async def run(ctx: Context) -> ScrubbingResult:
    worker = await ctx.start_worker("scrub", config="otel100")
    try:
        reply = await worker.call({"cmd": "scrub_trace", "repeat": ctx.plan.scrub_repeat})
    finally:
        await ctx.procs.stop_worker(worker)
    return ScrubbingResult(spans=reply["spans"], repeat=reply["repeat"])


def section(result: ScrubbingResult) -> Section:
    spans = result.spans
    if not spans:
        return "## 6. Scrubbing\n\nnot measured: no spans captured\n", []
    per_span = statistics.fmean(s["span_us"] for s in spans)
    per_attrs = statistics.fmean(s["attributes_us"] for s in spans)
    total = sum(s["span_us"] for s in spans)
    worst = max(spans, key=lambda s: s["span_us"])
    by_name: dict[str, list[dict[str, Any]]] = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    rows = [
        [
            f"`{name}`",
            str(len(group)),
            fmt(statistics.fmean(s["attributes"] for s in group), 1),
            fmt(statistics.fmean(s["events"] + s["links"] for s in group), 1),
            str(sum(s["changed"] for s in group)),
            fmt(statistics.fmean(s["attributes_us"] for s in group), 1),
            fmt(statistics.fmean(s["span_us"] for s in group), 1),
        ]
        for name, group in sorted(by_name.items(), key=lambda kv: -len(kv[1]))
    ]
    goals = [
        Goal(
            "6 scrubbing",
            "scrubbing cost per span, real call trace",
            f"{fmt(per_span, 1)} µs/span mean ({fmt(per_attrs, 1)} µs attributes only); "
            f"{fmt(total, 0)} µs for the {len(spans)} spans of one call + 6 webhooks",
            None,
            f"slowest: `{worst['name']}` {fmt(worst['span_us'], 1)} µs",
        )
    ]
    text = "\n".join(
        [
            "## 6. Scrubbing cost per span",
            "",
            f"The {len(spans)} spans of one call (`POST /calls` → Bolna) and its 6 webhooks, "
            f"each scrubbed {result.repeat} times (median per span).",
            "",
            table(
                [
                    "span",
                    "count",
                    "attributes",
                    "events + links",
                    "values changed",
                    "scrub_attributes µs",
                    "scrub_span µs",
                ],
                rows,
            ),
            "",
            f"Mean per span: {fmt(per_span, 1)} µs (`scrub_span`), {fmt(per_attrs, 1)} µs "
            f"(`scrub_attributes`); whole trace {fmt(total, 0)} µs.",
        ]
    )
    return text, goals
