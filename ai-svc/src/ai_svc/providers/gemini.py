"""The Gemini provider, on Google's ``google-genai`` SDK.

``google-genai`` is the maintained successor of ``google-generativeai`` (whose support
ended on 2025-11-30). The SDK is configured explicitly: base URL, API version, a
timeout in *milliseconds* (it has none by default) and its own retries switched off
(one attempt per call), because retries, backoff, fallback, the circuit breaker and
the concurrency bound live in :mod:`ai_svc.resilience`, in one place.

One request here is: the model preview and the preset's prompt in, JSON ideas out,
validated against a schema. A truncated (MAX_TOKENS) or malformed answer is asked
again once with a stricter budget (no thinking, shorter ideas) and then answered
502 ``upstream_invalid_output``; a blocked prompt or answer is 422 ``content_blocked``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx2
import structlog
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.semconv.attributes import server_attributes
from opentelemetry.trace import Span, TracerProvider
from pydantic import BaseModel, Field, ValidationError

from ai_svc import telemetry
from ai_svc.presets import Catalogue, Preset
from ai_svc.prompts import PromptRequest, build_prompt
from ai_svc.providers.base import (
    ContentBlocked,
    Generation,
    Idea,
    InvalidOutput,
    PreviewImage,
    Usage,
)
from ai_svc.resilience import (
    CircuitBreaker,
    CircuitOpen,
    Clock,
    Deadline,
    Overloaded,
    ResilientCaller,
    RetryPolicy,
    Sleep,
    UpstreamFault,
    UpstreamSlots,
)
from ai_svc.settings import AiSettings
from ai_svc.streaming import IdeaParser, StreamCancelled, StreamSink, capture_response
from chassis.errors import ApiError

log = structlog.get_logger(__name__)

PROVIDER = "gemini"
DEFAULT_HOST = ("generativelanguage.googleapis.com", 443)
BLOCKING_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "MODEL_ARMOR",
    }
)
RETRYABLE_STATUS = {408: "timeout", 429: "rate_limited", 500: "server_error", 502: "server_error"}
RETRYABLE_STATUS |= {503: "server_error", 504: "timeout"}
DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class IdeasAnswer(BaseModel):
    """The JSON the response schema asks for."""

    ideas: list[Idea] = Field(min_length=1)


def retry_delay(error: genai_errors.APIError) -> float | None:
    """The server's wish: ``google.rpc.RetryInfo.retryDelay`` or a ``Retry-After`` header."""
    details = error.details if isinstance(error.details, dict) else {}
    body = details.get("error", details)
    for item in body.get("details", []) if isinstance(body, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            match = DELAY.match(str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    headers = getattr(error.response, "headers", None) or {}
    value = headers.get("retry-after") if hasattr(headers, "get") else None
    if value and str(value).strip().isdigit():
        return float(value)
    return None


def classify(error: BaseException) -> UpstreamFault | None:
    """One name per kind of failure; ``None`` for what is not an upstream failure."""
    if isinstance(error, genai_errors.APIError):
        status = int(error.code or 0)
        outcome = RETRYABLE_STATUS.get(status)
        if outcome is None and status >= 500:
            outcome = "server_error"
        if outcome is None:
            return UpstreamFault(
                "client_error",
                f"Gemini refused the request: {status} {error.status}",
                retryable=False,
                status=status,
            )
        return UpstreamFault(
            outcome,
            f"Gemini answered {status} {error.status}",
            retryable=True,
            overloaded=status in (429, 503),
            retry_after=retry_delay(error) if status in (429, 503) else None,
            status=status,
        )
    if isinstance(error, httpx2.TimeoutException):
        return UpstreamFault("timeout", "Gemini did not answer in time.", retryable=True)
    if isinstance(error, httpx2.TransportError):
        return UpstreamFault(
            "connection_error", f"Connection to Gemini failed: {error}", retryable=True
        )
    return None


def usage_of(response: types.GenerateContentResponse) -> Usage:
    metadata = response.usage_metadata
    if metadata is None:
        return Usage()
    input_tokens = metadata.prompt_token_count or 0
    output_tokens = metadata.candidates_token_count or 0
    thinking_tokens = metadata.thoughts_token_count or 0
    return Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        thinking_tokens=thinking_tokens,
        total_tokens=metadata.total_token_count or input_tokens + output_tokens + thinking_tokens,
    )


def enum_name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


def answer_text(response: types.GenerateContentResponse) -> str:
    """The first candidate's answer text, without thought summaries."""
    candidate = response.candidates[0] if response.candidates else None
    if candidate is None or candidate.content is None or not candidate.content.parts:
        return ""
    return "".join(part.text for part in candidate.content.parts if part.text and not part.thought)


def parse_ideas(response: types.GenerateContentResponse, count: int) -> list[Idea]:
    """Ideas from an answer, or why there are none (blocked, cut short, malformed)."""
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        raise ContentBlocked(enum_name(feedback.block_reason).lower(), "prompt")
    if not response.candidates:
        raise InvalidOutput("empty", "no candidates")
    candidate = response.candidates[0]
    finish = enum_name(candidate.finish_reason)
    if finish in BLOCKING_FINISH_REASONS:
        raise ContentBlocked(finish.lower(), "answer")
    if finish == "MAX_TOKENS":
        raise InvalidOutput("max_tokens", "the answer was cut at the output token limit")
    text = answer_text(response)
    if not text.strip():
        raise InvalidOutput("empty", f"no text (finish reason {finish or 'none'})")
    try:
        answer = IdeasAnswer.model_validate(json.loads(text))
    except ValueError as error:
        reason = "schema" if isinstance(error, ValidationError) else "malformed"
        raise InvalidOutput(reason, str(error)[:200]) from None
    return answer.ideas[:count]


def make_client(settings: AiSettings) -> genai.Client:
    """The SDK client: explicit endpoint, millisecond timeout, no SDK retries."""
    if settings.gemini_api_key is None:
        raise ValueError("GEMINI_API_KEY is required for the Gemini provider")
    slots = settings.upstream_slots_per_worker
    return genai.Client(
        api_key=settings.gemini_api_key.get_secret_value(),
        http_options=types.HttpOptions(
            base_url=settings.gemini_base_url,
            api_version=settings.gemini_api_version,
            timeout=int(settings.gemini_timeout_seconds * 1000),
            retry_options=types.HttpRetryOptions(attempts=1),
            client_args={
                "limits": httpx2.Limits(
                    max_connections=slots, max_keepalive_connections=slots, keepalive_expiry=30
                ),
                # A streamed answer's connection, so a client that leaves can stop it.
                "event_hooks": {"response": [capture_response]},
            },
        ),
    )


def make_caller(
    settings: AiSettings,
    *,
    clock: Clock = time.monotonic,
    sleep: Sleep = time.sleep,
    rng: Callable[[], float] | None = None,
) -> ResilientCaller:
    models = [settings.gemini_model]
    if settings.gemini_fallback_model and settings.gemini_fallback_model != settings.gemini_model:
        models.append(settings.gemini_fallback_model)
    breakers = {
        model: CircuitBreaker(
            model,
            failure_threshold=settings.gemini_breaker_failures,
            reset_seconds=settings.gemini_breaker_reset_seconds,
            clock=clock,
            on_change=telemetry.set_circuit_state,
        )
        for model in models
    }
    slots = UpstreamSlots(
        settings.upstream_slots_per_worker,
        on_enter=telemetry.UPSTREAM_IN_FLIGHT.inc,
        on_exit=telemetry.UPSTREAM_IN_FLIGHT.dec,
    )
    extra: dict[str, Any] = {"rng": rng} if rng is not None else {}
    return ResilientCaller(
        primary=settings.gemini_model,
        fallback=settings.gemini_fallback_model,
        policy=RetryPolicy(
            max_attempts=settings.gemini_max_attempts,
            backoff_base=settings.gemini_backoff_base_seconds,
            backoff_max=settings.gemini_backoff_max_seconds,
            attempt_timeout=settings.gemini_timeout_seconds,
            min_attempt_seconds=settings.gemini_min_attempt_seconds,
            slot_wait=settings.gemini_slot_wait_seconds,
        ),
        breakers=breakers,
        slots=slots,
        clock=clock,
        sleep=sleep,
        on_retry=telemetry.count_retry,
        on_rejected=telemetry.count_rejected,
        **extra,
    )


def retry_after_header(seconds: float | None) -> dict[str, str]:
    return {"Retry-After": str(max(1, round(seconds or 1)))}


def answer_for(fault: UpstreamFault) -> ApiError:
    """What the client hears when the upstream could not be made to work in time."""
    if fault.outcome == "timeout":
        return ApiError(504, "upstream_timeout", "The AI model did not answer in time.")
    if fault.outcome == "client_error":
        return ApiError(502, "upstream_error", "The AI model refused the request.")
    return ApiError(
        503,
        "upstream_unavailable",
        "The AI model is unavailable right now. Try again shortly.",
        headers=retry_after_header(fault.retry_after),
        details={"reason": fault.outcome},
    )


class GeminiProvider:
    name = PROVIDER
    streams = True

    def __init__(
        self,
        settings: AiSettings,
        *,
        client: genai.Client | None = None,
        caller: ResilientCaller | None = None,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        self.settings = settings
        self.model = settings.gemini_model
        self.client = client or make_client(settings)
        self.caller = caller or make_caller(settings)
        self.tracer_provider = tracer_provider
        endpoint = urlsplit(settings.gemini_base_url) if settings.gemini_base_url else None
        self.server = (
            (endpoint.hostname or "", endpoint.port or (443 if endpoint.scheme == "https" else 80))
            if endpoint
            else DEFAULT_HOST
        )

    def close(self) -> None:
        self.caller.slots.shutdown()
        self.client.close()

    def generate(
        self,
        image: PreviewImage,
        preset: Preset,
        catalogue: Catalogue,
        deadline: Deadline,
        *,
        sink: StreamSink | None = None,
    ) -> Generation:
        """Ideas for ``image``; with a ``sink``, streamed and sent to it one by one.

        A streamed answer is retried like any other until its first idea was sent;
        after that a failure ends it (the client cannot take an idea back).
        """
        spent: list[Usage] = []
        problem: InvalidOutput | None = None
        for strict in (False, True):
            prompt = build_prompt(
                preset,
                catalogue,
                tokens_per_idea=self.settings.gemini_output_tokens_per_idea,
                thinking_budget=self.settings.gemini_thinking_budget,
                strict=strict,
            )

            def attempt(model: str, timeout: float, prompt: PromptRequest = prompt) -> list[Idea]:
                if sink is not None and sink.cancelled:
                    raise StreamCancelled
                try:
                    return self.call_model(
                        model,
                        timeout,
                        image=image,
                        prompt=prompt,
                        count=preset.count,
                        spent=spent,
                        sink=sink,
                    )
                except UpstreamFault as fault:
                    if sink is not None and sink.emitted:
                        fault.retryable = False
                    raise

            try:
                ideas, model = self.caller.call(attempt, deadline)
            except InvalidOutput as invalid:
                problem = invalid
                if (
                    strict
                    or (sink is not None and sink.emitted)
                    or deadline.remaining() < self.settings.gemini_min_attempt_seconds
                ):
                    break
                telemetry.count_retry(invalid.model or self.model, "invalid_output")
                log.info("gemini_retry_strict", reason=invalid.reason)
                continue
            except ContentBlocked as blocked:
                telemetry.CONTENT_BLOCKED.labels(blocked.reason).inc()
                raise ApiError(
                    422,
                    "content_blocked",
                    "The AI model's safety filters blocked this photo or its ideas.",
                    details={"reason": blocked.reason, "stage": blocked.stage},
                ) from None
            except CircuitOpen as open_circuit:
                raise ApiError(
                    503,
                    "upstream_unavailable",
                    "The AI model is failing; not calling it for a while. Try again later.",
                    headers=retry_after_header(open_circuit.retry_after),
                    details={"reason": "circuit_open"},
                ) from None
            except Overloaded as overloaded:
                raise ApiError(
                    503,
                    "overloaded",
                    "Too many ideas are being written right now. Try again shortly.",
                    headers=retry_after_header(overloaded.retry_after),
                ) from None
            except UpstreamFault as fault:
                log.warning("gemini_failed", outcome=fault.outcome, status=fault.status)
                raise answer_for(fault) from None
            usage = sum(spent, Usage())
            return Generation(ideas=ideas, provider=PROVIDER, model=model, usage=usage)
        log.warning("gemini_invalid_output", reason=problem.reason if problem else None)
        raise ApiError(
            502,
            "upstream_invalid_output",
            "The AI model's answer could not be used. Try again.",
            details={"reason": problem.reason if problem else "unknown"},
        )

    def call_model(
        self,
        model: str,
        timeout: float,
        *,
        image: PreviewImage,
        prompt: PromptRequest,
        count: int,
        spent: list[Usage],
        sink: StreamSink | None = None,
    ) -> list[Idea]:
        """One upstream call, inside its GenAI span, timed and classified."""
        budget = prompt.budget
        config = types.GenerateContentConfig(
            system_instruction=prompt.system,
            response_mime_type="application/json",
            response_schema=prompt.schema,
            max_output_tokens=budget.max_output_tokens,
            temperature=self.settings.gemini_temperature,
            thinking_config=None
            if budget.thinking_budget is None
            else types.ThinkingConfig(thinking_budget=budget.thinking_budget),
            automatic_continuation=False,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            http_options=types.HttpOptions(timeout=max(1, int(timeout * 1000))),
        )
        contents = [types.Part.from_bytes(data=image.data, mime_type=image.mime_type), prompt.text]
        attributes = {
            gen_ai.GEN_AI_REQUEST_MAX_TOKENS: budget.max_output_tokens,
            gen_ai.GEN_AI_REQUEST_TEMPERATURE: self.settings.gemini_temperature,
            gen_ai.GEN_AI_OUTPUT_TYPE: gen_ai.GenAiOutputTypeValues.JSON.value,
            gen_ai.GEN_AI_REQUEST_STREAM: sink is not None,
            server_attributes.SERVER_ADDRESS: self.server[0],
            server_attributes.SERVER_PORT: self.server[1],
        }
        with telemetry.genai_span(
            model, tracer_provider=self.tracer_provider, attributes=attributes
        ) as span:
            started = time.perf_counter()
            outcome = "ok"
            try:
                response = (
                    self.client.models.generate_content(
                        model=model, contents=contents, config=config
                    )
                    if sink is None
                    else self.read_stream(
                        model, contents, config, count=count, sink=sink, span=span, spent=spent
                    )
                )
                usage = usage_of(response)
                spent.append(usage)
                telemetry.count_tokens(
                    model, usage.input_tokens, usage.output_tokens, usage.thinking_tokens
                )
                finish_reasons = [
                    enum_name(candidate.finish_reason).lower()
                    for candidate in response.candidates or []
                    if candidate.finish_reason is not None
                ]
                span.set_attributes(
                    {
                        gen_ai.GEN_AI_RESPONSE_MODEL: response.model_version or model,
                        gen_ai.GEN_AI_RESPONSE_FINISH_REASONS: finish_reasons,
                        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
                        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens
                        + usage.thinking_tokens,
                        **(
                            {gen_ai.GEN_AI_RESPONSE_ID: response.response_id}
                            if response.response_id
                            else {}
                        ),
                    }
                )
                ideas = parse_ideas(response, count)
                if sink is not None:
                    for idea in ideas[sink.emitted :]:
                        sink.emit(idea)
                return ideas
            except StreamCancelled:
                outcome = "cancelled"
                telemetry.mark_span_error(span, "cancelled", "the client went away")
                raise
            except ContentBlocked as blocked:
                outcome = "blocked"
                telemetry.mark_span_error(span, "content_blocked", blocked.reason)
                raise
            except InvalidOutput as invalid:
                outcome = "invalid_output"
                invalid.model = model
                telemetry.mark_span_error(span, "invalid_output", invalid.reason)
                raise
            except Exception as error:
                if sink is not None and sink.cancelled:
                    outcome = "cancelled"
                    telemetry.mark_span_error(span, "cancelled", "the client went away")
                    raise StreamCancelled from error
                fault = classify(error)
                if fault is None:
                    outcome = "error"
                    telemetry.mark_span_error(span, type(error).__qualname__, str(error)[:200])
                    raise
                outcome = fault.outcome
                telemetry.mark_span_error(
                    span, str(fault.status) if fault.status else fault.outcome, str(fault)
                )
                raise fault from error
            finally:
                telemetry.OPERATION_DURATION.labels(telemetry.OPERATION, model, outcome).observe(
                    time.perf_counter() - started
                )

    def read_stream(
        self,
        model: str,
        contents: list[Any],
        config: types.GenerateContentConfig,
        *,
        count: int,
        sink: StreamSink,
        span: Span,
        spent: list[Usage],
    ) -> types.GenerateContentResponse:
        """``streamGenerateContent``: each idea to ``sink`` the moment its object closes.

        Returns the chunks merged into one answer, checked afterwards exactly like a
        non-streamed one (blocked, cut short, schema). Usage is cumulative in every
        chunk, so a stream cut off by the client still says what it cost.
        """
        parser = IdeaParser(count)
        started = time.perf_counter()
        last: types.GenerateContentResponse | None = None
        text: list[str] = []
        chunks = self.client.models.generate_content_stream(
            model=model, contents=contents, config=config
        )
        try:
            for chunk in chunks:
                if last is None:
                    span.set_attribute(
                        gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, time.perf_counter() - started
                    )
                last = chunk
                feedback = chunk.prompt_feedback
                if feedback is not None and feedback.block_reason is not None:
                    break
                candidate = chunk.candidates[0] if chunk.candidates else None
                piece = answer_text(chunk)
                text.append(piece)
                for idea in parser.feed(piece):
                    sink.emit(idea)
                if candidate is not None and candidate.finish_reason is not None:
                    sink.detach()
        except BaseException:
            if last is not None and sink.cancelled:
                usage = usage_of(last)
                spent.append(usage)
                telemetry.count_tokens(
                    model, usage.input_tokens, usage.output_tokens, usage.thinking_tokens
                )
            raise
        finally:
            sink.detach()
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        if last is None:
            raise InvalidOutput("empty", "the stream ended without a chunk")
        merged = last.model_copy(deep=True)
        if merged.candidates:
            merged.candidates[0].content = types.Content(
                role="model", parts=[types.Part(text="".join(text))] if text else None
            )
        return merged
