"""ai-svc's own metrics and the GenAI client span.

Names follow the metrics contract every dashboard and alert relies on, and the
OpenTelemetry GenAI semantic conventions where they exist
(``gen_ai_client_operation_duration_seconds``, ``gen_ai_client_token_usage``, the
``generate_content {model}`` CLIENT span with ``gen_ai.*`` attributes). Gauges carry a
``multiprocess_mode`` because gunicorn runs several workers per pod.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import error_attributes
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from prometheus_client import Counter, Gauge, Histogram

from ai_svc.resilience import BreakerState

GENAI_PROVIDER = gen_ai.GenAiProviderNameValues.GCP_GEMINI.value
OPERATION = gen_ai.GenAiOperationNameValues.GENERATE_CONTENT.value
# The GenAI semantic conventions' advice for operation duration, in seconds.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96)

OPERATION_DURATION = Histogram(
    "gen_ai_client_operation_duration_seconds",
    "Duration of upstream model calls, by operation, requested model and outcome.",
    ["operation", "model", "outcome"],
    buckets=DURATION_BUCKETS,
)
TOKEN_USAGE = Counter(
    "gen_ai_client_token_usage",
    "Tokens billed by the model provider, by model and type (input, output, thinking).",
    ["model", "type"],
)
RETRIES = Counter(
    "ai_upstream_retries",
    "Upstream calls repeated, by the model that failed and why.",
    ["model", "reason"],
)
CIRCUIT_STATE = Gauge(
    "ai_circuit_state",
    "Circuit breaker state per model: 0 closed, 1 half-open, 2 open (worst worker).",
    ["model"],
    multiprocess_mode="livemax",
)
CACHE_REQUESTS = Counter(
    "ai_cache_requests",
    "Result cache lookups, by result (hit, miss).",
    ["result"],
)
UPSTREAM_IN_FLIGHT = Gauge(
    "ai_upstream_in_flight",
    "Upstream model calls in progress right now.",
    multiprocess_mode="livesum",
)
IDEAS = Counter(
    "ai_ideas",
    "Idea requests answered, by provider and outcome (ok, blocked, error).",
    ["provider", "outcome"],
)
# Seconds, for a person waiting on a phone: from the request's arrival.
ANSWER_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 20.0, 30.0)
FIRST_IDEA = Histogram(
    "ai_time_to_first_idea_seconds",
    "Streamed answers: time from the request's arrival to its first idea event, by provider.",
    ["provider"],
    buckets=ANSWER_BUCKETS,
)
ANSWER_DURATION = Histogram(
    "ai_answer_duration_seconds",
    "Time from the request's arrival to its whole answer (the done event, or the JSON "
    "document), by provider and mode (stream, json).",
    ["provider", "mode"],
    buckets=ANSWER_BUCKETS,
)
STREAMS_CANCELLED = Counter(
    "ai_streams_cancelled",
    "Streamed answers stopped because the client went away (the model call was cut off).",
    ["provider"],
)
CONTENT_BLOCKED = Counter(
    "ai_content_blocked",
    "Requests refused because the model's safety filters blocked the prompt or answer.",
    ["reason"],
)


def set_circuit_state(model: str, state: BreakerState) -> None:
    CIRCUIT_STATE.labels(model).set(int(state))


def count_retry(model: str, reason: str) -> None:
    RETRIES.labels(model, reason).inc()


def count_rejected(model: str) -> None:
    """A call the open circuit refused: observed with zero duration, so it is counted."""
    OPERATION_DURATION.labels(OPERATION, model, "circuit_open").observe(0.0)


def count_tokens(model: str, input_tokens: int, output_tokens: int, thinking_tokens: int) -> None:
    for kind, value in (
        ("input", input_tokens),
        ("output", output_tokens),
        ("thinking", thinking_tokens),
    ):
        if value:
            TOKEN_USAGE.labels(model, kind).inc(value)


@contextmanager
def genai_span(
    model: str,
    *,
    tracer_provider: TracerProvider | None = None,
    attributes: dict[str, Any] | None = None,
) -> Iterator[Span]:
    """The CLIENT span of one model call, named ``generate_content {model}``."""
    tracer = trace.get_tracer("ai_svc.gemini", tracer_provider=tracer_provider)
    with tracer.start_as_current_span(
        f"{OPERATION} {model}",
        kind=SpanKind.CLIENT,
        attributes={
            gen_ai.GEN_AI_OPERATION_NAME: OPERATION,
            gen_ai.GEN_AI_PROVIDER_NAME: GENAI_PROVIDER,
            gen_ai.GEN_AI_REQUEST_MODEL: model,
            **(attributes or {}),
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        yield span


def mark_span_error(span: Span, error_type: str, message: str) -> None:
    span.set_attribute(error_attributes.ERROR_TYPE, error_type)
    span.set_status(Status(StatusCode.ERROR, message))
