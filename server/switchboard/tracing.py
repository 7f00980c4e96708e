"""OpenTelemetry tracing, off unless ``--otlp-endpoint`` names an OTLP/HTTP collector.

Each Switchboard RPC is a SERVER span named after its method (``switchboard.v1.RouterService/
Generate``), child of the caller's span when the call carries W3C ``traceparent`` metadata. Each
provider attempt of a Generate is a CLIENT span (``provider <model id>``) under it, with the
model, adapter, attempt number and outcome; HTTP providers receive the trace context in their
request headers. Spans are batched and exported in the background; shutdown flushes them.

Without an endpoint the tracer is OpenTelemetry's no-op tracer and the RPC wrapper skips tracing
altogether, so it costs nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

NOOP: trace.Tracer = trace.NoOpTracer()


class _MetadataGetter(Getter[Iterable[tuple[str, Any]]]):
    """Reads W3C trace context keys from gRPC invocation metadata."""

    def get(self, carrier: Iterable[tuple[str, Any]], key: str) -> list[str] | None:
        values = [v.decode("latin-1") if isinstance(v, bytes) else str(v) for k, v in carrier or () if k.lower() == key]
        return values or None

    def keys(self, carrier: Iterable[tuple[str, Any]]) -> list[str]:
        return [k for k, _ in carrier or ()]


_GETTER = _MetadataGetter()


def parent_context(metadata: Iterable[tuple[str, Any]] | None) -> Context:
    """The caller's trace context from gRPC metadata (an empty context when there is none)."""
    return propagate.extract(list(metadata or ()), getter=_GETTER)


def inject_headers(headers: dict[str, str]) -> None:
    """Add the current trace context (``traceparent``) to outgoing HTTP headers."""
    propagate.inject(headers)


class Tracing:
    """The tracer provider of one server and its exporter."""

    def __init__(self, endpoint: str, service_name: str = "switchboard") -> None:
        # Imported here: the exporter is only needed when tracing is on.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        self.endpoint = endpoint
        self.provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        self.provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces"), schedule_delay_millis=1000)
        )
        self.tracer: trace.Tracer = self.provider.get_tracer("switchboard")

    def flush(self, timeout_ms: int = 5000) -> bool:
        """Export every finished span now."""
        return bool(self.provider.force_flush(timeout_ms))

    def shutdown(self) -> None:
        """Flush and stop the exporter."""
        self.provider.shutdown()


def span_attributes(fields: Mapping[str, Any]) -> dict[str, str | int]:
    """The call's log fields worth a span attribute, under ``switchboard.*`` names."""
    out: dict[str, str | int] = {}
    for key in ("request_id", "account", "model", "mode", "attempts", "credits", "reason", "api_key"):
        value = fields.get(key)
        if value is not None and value != "":
            out[f"switchboard.{key}"] = value if isinstance(value, int) else str(value)
    return out
