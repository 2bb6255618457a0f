"""otel-collector.yaml is a coherent gateway config, checked without the collector binary.

No collector build is available from the package registries this project uses, so this
checks what the collector would refuse at start-up (undefined components, unknown
extensions) and what we promise about the pipeline (processor order, redaction, health
filter, sampling policies, Sentry exporter, documented environment, the app's port).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from telemetry.settings import TelemetrySettings

REPO_ROOT = Path(__file__).resolve().parents[1]
CONFIG_PATH = REPO_ROOT / "otel-collector.yaml"
DOC_PATHS = (REPO_ROOT / ".env.example", REPO_ROOT / "README.md")
COMPONENT_KINDS = ("receivers", "processors", "exporters", "connectors")
ENV_REFERENCE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    loaded = yaml.safe_load(CONFIG_PATH.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def pipelines(config: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    result: dict[str, dict[str, list[str]]] = config["service"]["pipelines"]
    return result


def component_type(name: str) -> str:
    """``otlphttp/sentry`` -> ``otlphttp``: the collector's type/name convention."""
    return name.split("/", 1)[0]


def string_values(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from string_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from string_values(value)


def test_every_component_a_pipeline_names_is_defined(
    config: dict[str, Any], pipelines: dict[str, dict[str, list[str]]]
) -> None:
    assert set(pipelines) >= {"traces", "logs"}
    for pipeline_name, pipeline in pipelines.items():
        assert pipeline.get("receivers") and pipeline.get("exporters"), pipeline_name
        for kind in ("receivers", "processors", "exporters"):
            defined = config.get(kind) or {}
            for name in pipeline.get(kind, []):
                assert name in defined, f"{pipeline_name}: {kind[:-1]} {name!r} is not defined"
                assert component_type(name), name


def test_every_defined_component_is_used(
    config: dict[str, Any], pipelines: dict[str, dict[str, list[str]]]
) -> None:
    for kind in COMPONENT_KINDS:
        used = {name for pipeline in pipelines.values() for name in pipeline.get(kind, [])}
        unused = set(config.get(kind) or {}) - used
        assert not unused, f"{kind} defined but in no pipeline: {sorted(unused)}"


def test_service_extensions_are_defined_and_include_health_check(config: dict[str, Any]) -> None:
    listed = config["service"].get("extensions", [])
    defined = config.get("extensions") or {}
    assert listed, "no extensions enabled"
    for name in listed:
        assert name in defined, f"extension {name!r} is not defined"
    assert "health_check" in {component_type(name) for name in listed}


def test_processor_order(pipelines: dict[str, dict[str, list[str]]]) -> None:
    for pipeline_name, pipeline in pipelines.items():
        types = [component_type(p) for p in pipeline.get("processors", [])]
        assert types[0] == "memory_limiter", f"{pipeline_name}: memory_limiter must come first"
        assert types[-1] == "batch", f"{pipeline_name}: batch must come last"
        assert "redaction" in types, f"{pipeline_name}: no redaction"

    traces = [component_type(p) for p in pipelines["traces"]["processors"]]
    assert traces.index("tail_sampling") == len(traces) - 2, "tail_sampling right before batch"
    for needed_before_sampling in ("filter", "redaction"):
        assert traces.index(needed_before_sampling) < traces.index("tail_sampling")
    logs = [component_type(p) for p in pipelines["logs"]["processors"]]
    assert "tail_sampling" not in logs, "error reports must never be sampled away"


def processors_in(
    config: dict[str, Any], pipelines: dict[str, dict[str, list[str]]], kind: str, pipeline: str
) -> list[dict[str, Any]]:
    return [
        config["processors"][name] or {}
        for name in pipelines[pipeline]["processors"]
        if component_type(name) == kind
    ]


def test_health_check_spans_are_filtered(
    config: dict[str, Any], pipelines: dict[str, dict[str, list[str]]]
) -> None:
    [health_filter] = processors_in(config, pipelines, "filter", "traces")
    conditions = health_filter["traces"]["span"]
    assert any("/health" in condition for condition in conditions)


@pytest.mark.parametrize(
    ("sample", "must_match"),
    [
        ("call to +919876543210 failed", True),
        ("Authorization: Bearer abc.def-ghi", True),
        ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", True),
        ("GET /calls?api_key=sk_live_123&x=1", True),
        ("call 42 completed in 73 s", False),
    ],
)
def test_redaction_patterns_catch_phone_numbers_and_secrets(
    config: dict[str, Any],
    pipelines: dict[str, dict[str, list[str]]],
    sample: str,
    must_match: bool,
) -> None:
    # RE2 and Python's re agree on these patterns (no backslashes, no look-arounds).
    for pipeline in ("traces", "logs"):
        [redaction] = processors_in(config, pipelines, "redaction", pipeline)
        matched = any(re.search(pattern, sample) for pattern in redaction["blocked_values"])
        assert matched is must_match, f"{pipeline}: {sample!r}"


def test_tail_sampling_keeps_errors_slow_traces_and_a_share_of_the_rest(
    config: dict[str, Any], pipelines: dict[str, dict[str, list[str]]]
) -> None:
    [sampling] = processors_in(config, pipelines, "tail_sampling", "traces")
    policies = {policy["type"]: policy for policy in sampling["policies"]}
    assert policies["status_code"]["status_code"]["status_codes"] == ["ERROR"]
    assert policies["latency"]["latency"]["threshold_ms"] > 0
    assert 0 < policies["probabilistic"]["probabilistic"]["sampling_percentage"] < 100


def test_sentry_exporter_takes_endpoints_and_key_from_the_environment(
    config: dict[str, Any], pipelines: dict[str, dict[str, list[str]]]
) -> None:
    sentry = config["exporters"]["otlphttp/sentry"]
    assert sentry["traces_endpoint"].startswith("${env:")
    assert sentry["logs_endpoint"].startswith("${env:")
    assert re.fullmatch(r"sentry sentry_key=\$\{env:\w+\}", sentry["headers"]["x-sentry-auth"])
    for pipeline in ("traces", "logs"):
        assert "otlphttp/sentry" in pipelines[pipeline]["exporters"]
        assert "debug" in pipelines[pipeline]["exporters"]


def test_every_environment_variable_it_reads_is_documented(config: dict[str, Any]) -> None:
    referenced = {
        match for value in string_values(config) for match in ENV_REFERENCE.findall(value)
    }
    assert referenced, "expected ${env:...} references for the Sentry endpoint and key"
    docs = "\n".join(path.read_text() for path in DOC_PATHS if path.exists())
    undocumented = sorted(
        name for name in referenced if not re.search(rf"\b{re.escape(name)}\b", docs)
    )
    assert not undocumented, (
        f"document {undocumented} in .env.example or README.md (read by otel-collector.yaml)"
    )


def test_otlp_http_receiver_listens_on_the_apps_default_endpoint_port(
    config: dict[str, Any],
) -> None:
    # The field default, not TelemetrySettings(): a developer's environment must not matter.
    app_default = TelemetrySettings.model_fields["otlp_endpoint"].default
    assert urlsplit(app_default).port == 4318
    http = config["receivers"]["otlp"]["protocols"]["http"]
    assert int(http["endpoint"].rsplit(":", 1)[1]) == urlsplit(app_default).port
    grpc = config["receivers"]["otlp"]["protocols"]["grpc"]
    assert grpc["endpoint"].endswith(":4317")
