"""OpenTelemetry tracing for a service process.

Set up once per process, after gunicorn forks (the app factory runs in each worker), so
no worker inherits the master's exporter thread. The SDK reads the standard ``OTEL_*``
variables itself (sampler, propagators, exporter headers); spans leave over OTLP/HTTP
only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.
"""

from __future__ import annotations

import importlib.util
import os
import threading

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

_lock = threading.Lock()
_provider: TracerProvider | None = None


def setup_tracing(
    service: str,
    release: str,
    environment: str,
    extra_processors: list[SpanProcessor] | None = None,
) -> TracerProvider | None:
    """Install the global tracer provider and the outgoing-HTTP instrumentation (idempotent)."""
    global _provider  # noqa: PLW0603
    with _lock:
        if _provider is not None:
            for processor in extra_processors or []:
                _provider.add_span_processor(processor)
            return _provider
        if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
            return None
        resource = Resource.create(
            {
                "service.name": os.environ.get("OTEL_SERVICE_NAME", service),
                "service.version": release,
                "deployment.environment.name": environment,
            }
        )
        provider = TracerProvider(resource=resource)
        if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
        ):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        for processor in extra_processors or []:
            provider.add_span_processor(processor)
        trace.set_tracer_provider(provider)
        _instrument_outgoing_http()
        _provider = provider
        return provider


def _instrument_outgoing_http() -> None:
    """requests carries service-to-service calls; httpx2 is google-genai's transport.

    google-genai sends through ``httpx2`` (a fork of httpx under its own import name)
    whenever it is installed, so instrumenting ``httpx`` alone records no client span
    for a call to Gemini. Each library that is present is instrumented.
    """
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RequestsInstrumentor().instrument()
    if importlib.util.find_spec("httpx2") is not None:
        from opentelemetry.instrumentation.httpx import HTTPX2ClientInstrumentor

        HTTPX2ClientInstrumentor().instrument()
    if importlib.util.find_spec("httpx") is not None:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument()


def shutdown_tracing() -> None:
    if _provider is not None:
        _provider.shutdown()
