"""IdeaSnap / AI: what Gemini is doing for us, how well, and what it costs.

Gemini is the one dependency IdeaSnap pays for and cannot fix, so this view separates
its failures by kind (timeouts, rate limits, server errors, blocked content), shows
what the resilience layer does about them (retries, the circuit breaker, the cache),
and turns token counts into an estimated bill. Prices are dashboard variables because
they change and differ by model: see docs/observability.md, "Estimated cost".
"""

from __future__ import annotations

from observability.dashboards.layout import DashboardSpec, Row
from observability.dashboards.panels import (
    AI,
    Query,
    label_variable,
    number_variable,
    stat_panel,
    state_panel,
    timeseries_panel,
    trace_search_link,
)

CALLS = "gen_ai_client_operation_duration_seconds"
SEL = f'namespace=~"$namespace", job="{AI}"'
MODEL_SEL = f'{SEL}, model=~"$model"'
RATE = "$__rate_interval"
TOKENS = "gen_ai_client_token_usage_total"
FAILED = 'outcome!~"ok|blocked"'

# USD per million tokens, the list prices of gemini-2.5-flash (paid tier, text/image
# input; thinking tokens are billed as output). Operators override them on the dashboard.
PRICE_INPUT_PER_MILLION = "0.30"
PRICE_OUTPUT_PER_MILLION = "2.50"


def _calls(by: str, extra: str = "", window: str = RATE) -> str:
    return f"sum by ({by}) (rate({CALLS}_count{{{MODEL_SEL}{extra}}}[{window}]))"


def _tokens(types: str, window: str, fn: str = "rate") -> str:
    return f'(sum({fn}({TOKENS}{{{MODEL_SEL}, type=~"{types}"}}[{window}])) or vector(0))'


def _cost(window: str, fn: str) -> str:
    """Input tokens at the input price plus output and thinking tokens at the output price."""
    return (
        f"({_tokens('input', window, fn)} * $price_input"
        f" + {_tokens('output|thinking', window, fn)} * $price_output) / 1e6"
    )


def calls_row() -> Row:
    return Row(
        "Gemini calls",
        [
            timeseries_panel(
                "Gemini calls per second by outcome",
                "Every upstream call ai-svc made, by how it ended.",
                [Query(_calls("model, outcome"), "{{model}} {{outcome}}")],
                unit="reqps",
                span=8,
                stacked=True,
            ),
            timeseries_panel(
                "Gemini errors by kind",
                "Failed calls: timeout, rate_limited (429 from Google), server_error, "
                "connection_error, invalid_output, circuit_open (not attempted).",
                [Query(_calls("model, outcome", f", {FAILED}"), "{{model}} {{outcome}}")],
                unit="reqps",
                span=8,
                stacked=True,
            ),
            timeseries_panel(
                "Gemini failure ratio",
                "Failed calls over all calls (blocked content is not a failure of Gemini). "
                "The IdeaSnapGeminiFailing alert watches this.",
                [
                    Query(
                        f"({_calls('model', f', {FAILED}')} or 0 * {_calls('model')})"
                        f" / {_calls('model')}",
                        "{{model}}",
                    )
                ],
                unit="percentunit",
                span=8,
                thresholds=[(None, "green"), (0.05, "orange"), (0.2, "red")],
            ),
            timeseries_panel(
                "Gemini latency percentiles",
                "Duration of each upstream call (one attempt, retries are separate calls). "
                "Click a point for ai-svc traces at least as slow.",
                [
                    Query(
                        f"histogram_quantile({q}, sum by (model, le) "
                        f"(rate({CALLS}_bucket{{{MODEL_SEL}}}[{RATE}])))",
                        f"{{{{model}}}} p{round(q * 100)}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                unit="s",
                span=12,
                links=[trace_search_link(AI)],
            ),
            timeseries_panel(
                "Calls in flight",
                "Gemini calls waiting for an answer right now, per pod: the saturation "
                "ai-svc scales on.",
                [
                    Query(
                        f"sum by (instance) (ai_upstream_in_flight{{{SEL}}})",
                        "{{instance}}",
                    )
                ],
                unit="short",
                span=12,
            ),
        ],
    )


def resilience_row() -> Row:
    return Row(
        "Resilience",
        [
            timeseries_panel(
                "Retries per second by reason",
                "Attempts repeated after a retryable failure (with backoff).",
                [
                    Query(
                        f"sum by (model, reason) (rate(ai_upstream_retries_total"
                        f"{{{MODEL_SEL}}}[{RATE}]))",
                        "{{model}} {{reason}}",
                    )
                ],
                unit="reqps",
                span=8,
            ),
            state_panel(
                "Circuit breaker state",
                "Per model: closed (calls go through), half-open (probing), open (calls "
                "fail fast without reaching Gemini). Worst state over the pods.",
                [Query(f"max by (model) (ai_circuit_state{{{MODEL_SEL}}})", "{{model}}")],
                states={0: ("closed", "green"), 1: ("half-open", "orange"), 2: ("open", "red")},
                span=8,
                height=8,
            ),
            timeseries_panel(
                "Cache hit ratio",
                "Ideas served from the result cache instead of a new Gemini call.",
                [
                    Query(
                        f'(sum(rate(ai_cache_requests_total{{{SEL}, result="hit"}}[{RATE}]))'
                        f" or 0 * sum(rate(ai_cache_requests_total{{{SEL}}}[{RATE}])))"
                        f" / sum(rate(ai_cache_requests_total{{{SEL}}}[{RATE}]))",
                        "hit ratio",
                    )
                ],
                unit="percentunit",
                span=8,
                soft_max=1,
            ),
        ],
    )


def tokens_row() -> Row:
    return Row(
        "Tokens and cost",
        [
            timeseries_panel(
                "Tokens per minute, in and out",
                "Tokens sent to Gemini (input) and billed back (output, thinking).",
                [
                    Query(
                        f"sum by (model, type) (rate({TOKENS}{{{MODEL_SEL}}}[{RATE}])) * 60",
                        "{{model}} {{type}}",
                    )
                ],
                unit="short",
                span=12,
            ),
            timeseries_panel(
                "Estimated cost per hour (USD)",
                "Token rate × the prices set in the dashboard's variables (per 1M tokens).",
                [Query(f"{_cost(RATE, 'rate')} * 3600", "USD per hour")],
                unit="currencyUSD",
                span=6,
            ),
            stat_panel(
                "Estimated cost in the time range (USD)",
                "Tokens used in the dashboard's time range × the prices per 1M tokens.",
                [Query(_cost("$__range", "increase"))],
                unit="currencyUSD",
                span=6,
                height=8,
                decimals=2,
            ),
        ],
    )


def content_row() -> Row:
    return Row(
        "Ideas and blocked content",
        [
            timeseries_panel(
                "Ideas by provider and outcome",
                "Idea requests answered, by provider (gemini or the offline local one).",
                [
                    Query(
                        f"sum by (provider, outcome) (rate(ai_ideas_total{{{SEL}}}[{RATE}]))",
                        "{{provider}} {{outcome}}",
                    )
                ],
                unit="reqps",
                span=12,
                stacked=True,
            ),
            timeseries_panel(
                "Blocked content by reason",
                "Requests Gemini refused on safety grounds, so no ideas were returned. "
                "A jump can mean abuse or a prompt change.",
                [
                    Query(
                        f"sum by (reason) (rate(ai_content_blocked_total{{{SEL}}}[{RATE}]))",
                        "{{reason}}",
                    )
                ],
                unit="reqps",
                span=12,
            ),
        ],
    )


def spec() -> DashboardSpec:
    return DashboardSpec(
        uid="ideasnap-ai",
        title="IdeaSnap / AI",
        description="Gemini calls, errors, retries, circuit, cache, tokens and cost.",
        variables=[
            label_variable("model", "Model", f"{CALLS}_count", "model"),
            number_variable(
                "price_input",
                "USD per 1M input tokens",
                PRICE_INPUT_PER_MILLION,
                "Gemini list price per million input tokens of your model and tier.",
            ),
            number_variable(
                "price_output",
                "USD per 1M output tokens",
                PRICE_OUTPUT_PER_MILLION,
                "Gemini list price per million output tokens (thinking included).",
            ),
        ],
        rows=[calls_row(), resilience_row(), tokens_row(), content_row()],
    )
