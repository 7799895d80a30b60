"""The few panel shapes every IdeaSnap dashboard is made of.

Keeping them here means every panel has the same datasource variable, the same legend
and tooltip behaviour, and explicit ``refId``s, so a dashboard module is a list of
queries with titles and units, and nothing else. The helpers return the SDK's builders;
:func:`observability.dashboards.render` turns a finished dashboard into JSON.
"""

from __future__ import annotations

import json
import string
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import quote

from grafana_foundation_sdk.builders import bargauge, stat, statetimeline, timeseries
from grafana_foundation_sdk.builders.common import (
    ReduceDataOptions,
    StackingConfig,
    VizLegendOptions,
    VizTooltipOptions,
)
from grafana_foundation_sdk.builders.dashboard import (
    DashboardLink,
    DatasourceVariable,
    QueryVariable,
    TextBoxVariable,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.models.common import (
    BarGaugeDisplayMode,
    BigValueColorMode,
    BigValueGraphMode,
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    StackingMode,
    TooltipDisplayMode,
    VisibilityMode,
    VizOrientation,
)
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    ValueMap,
    ValueMappingResult,
    VariableHide,
    VariableOption,
    VariableRefresh,
    VariableSort,
)

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="${datasource}")

# The services' Prometheus job names. The chart's ServiceMonitors set ``job`` to the
# service's own name (see docs/observability.md, "Labels"), so dashboards and alerts can
# name a service without knowing the Helm release it was installed as.
GATEWAY = "gateway"
UPLOAD = "upload-svc"
AI = "ai-svc"
LIBRARY = "library-svc"
SERVICES = (GATEWAY, UPLOAD, AI, LIBRARY)
SERVICES_REGEX = "|".join(SERVICES)

AnyPanel = timeseries.Panel | stat.Panel | bargauge.Panel | statetimeline.Panel


@dataclass(frozen=True)
class Query:
    """One PromQL query of a panel and how its series are named in the legend."""

    expr: str
    legend: str = ""


def _targets(queries: Sequence[Query], *, instant: bool) -> list[Dataquery]:
    targets = []
    for ref_id, query in zip(string.ascii_uppercase, queries, strict=False):
        target = (
            Dataquery().expr(query.expr).ref_id(ref_id).datasource(PROMETHEUS).interval_factor(1)
        )
        if query.legend:
            target = target.legend_format(query.legend)
        target = target.instant() if instant else target.range()
        targets.append(target)
    if len(targets) != len(queries):
        raise ValueError("a panel holds at most 26 queries")
    return targets


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> ThresholdsConfig:
    return (
        ThresholdsConfig()
        .mode(ThresholdsMode.ABSOLUTE)
        .steps([Threshold(value=value, color=color) for value, color in steps])
    )


GREEN_ONLY: tuple[tuple[float | None, str], ...] = ((None, "green"),)


def timeseries_panel(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    span: int = 12,
    height: int = 8,
    links: Sequence[DashboardLink] = (),
    stacked: bool = False,
    thresholds: Sequence[tuple[float | None, str]] = GREEN_ONLY,
    soft_max: float | None = None,
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_targets(queries, instant=False))
        .unit(unit)
        .min(0)
        .span(span)
        .height(height)
        .fill_opacity(10 if not stacked else 35)
        .line_width(1)
        .show_points(VisibilityMode.NEVER)
        .thresholds(_thresholds(thresholds))
        .legend(
            VizLegendOptions()
            .display_mode(LegendDisplayMode.TABLE)
            .placement(LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["mean", "max", "lastNotNull"])
        )
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
    )
    if stacked:
        panel = panel.stacking(StackingConfig().mode(StackingMode.NORMAL))
    if soft_max is not None:
        panel = panel.axis_soft_max(soft_max)
    if links:
        panel = panel.data_links(list(links))
    return panel


def stat_panel(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    span: int = 6,
    height: int = 5,
    thresholds: Sequence[tuple[float | None, str]] = GREEN_ONLY,
    decimals: int | None = None,
) -> stat.Panel:
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_targets(queries, instant=True))
        .unit(unit)
        .span(span)
        .height(height)
        .thresholds(_thresholds(thresholds))
        .graph_mode(BigValueGraphMode.NONE)
        .color_mode(BigValueColorMode.VALUE)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if decimals is not None:
        panel = panel.decimals(decimals)
    return panel


def bar_gauge_panel(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str,
    span: int = 12,
    height: int = 8,
) -> bargauge.Panel:
    return (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_targets(queries, instant=True))
        .unit(unit)
        .min(0)
        .span(span)
        .height(height)
        .thresholds(_thresholds(GREEN_ONLY))
        .display_mode(BarGaugeDisplayMode.GRADIENT)
        .orientation(VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .reduce_options(ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )


def state_panel(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    states: dict[int, tuple[str, str]],
    span: int = 12,
    height: int = 6,
) -> statetimeline.Panel:
    """A state timeline whose integer values are named and coloured (e.g. circuit states)."""
    mapping = ValueMap(
        options={
            str(value): ValueMappingResult(text=text, color=color, index=index)
            for index, (value, (text, color)) in enumerate(sorted(states.items()))
        }
    )
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(PROMETHEUS)
        .targets(_targets(queries, instant=False))
        .span(span)
        .height(height)
        .mappings([mapping])
        .thresholds(_thresholds(GREEN_ONLY))
        .show_value(VisibilityMode.AUTO)
        .merge_values(True)
        .legend(VizLegendOptions().display_mode(LegendDisplayMode.LIST).show_legend(True))
        .tooltip(VizTooltipOptions().mode(TooltipDisplayMode.SINGLE).sort(SortOrder.NONE))
    )


def trace_search_link(service: str, route: str | None = None) -> DashboardLink:
    """A data link from a latency point to the traces that explain it.

    The services export no exemplars: prometheus-client cannot attach them in
    multiprocess mode, which gunicorn's several workers need. So the link opens Explore
    on the trace datasource (``$tempo``) with a TraceQL search for the same service and
    route, at least as slow as the clicked point, in the dashboard's time range.
    ``service`` and ``route`` are Grafana expressions such as ``${__field.labels.job}``.
    """
    conditions = [f'resource.service.name = "{service}"']
    if route is not None:
        conditions.append(f'span.http.route = "{route}"')
    conditions.append("duration >= ${__value.raw}s")
    traceql = "{ " + " && ".join(conditions) + " }"
    pane = {
        "traces": {
            "datasource": "${tempo}",
            "queries": [
                {
                    "refId": "A",
                    "datasource": {"type": "tempo", "uid": "${tempo}"},
                    "queryType": "traceql",
                    "query": traceql,
                    "limit": 20,
                }
            ],
            "range": {"from": "${__from}", "to": "${__to}"},
        }
    }
    # Grafana replaces the ${...} placeholders before opening the link, so they stay
    # readable; everything a query string would misread (&, spaces, quotes) is encoded.
    encoded = quote(json.dumps(pane, separators=(",", ":")), safe="${}:,_.-/[]")
    title = "Traces of this service and route" if route else "Traces of this service"
    return (
        DashboardLink(f"{title} (as slow or slower)")
        .url(f"/explore?schemaVersion=1&panes={encoded}")
        .target_blank(True)
    )


def datasource_variables() -> list[DatasourceVariable]:
    return [
        DatasourceVariable("datasource")
        .label("Prometheus")
        .type("prometheus")
        .current(VariableOption(text="default", value="default", selected=True)),
        DatasourceVariable("tempo")
        .label("Traces")
        .type("tempo")
        .description("Trace datasource the latency panels' data links search in."),
    ]


def namespace_variable() -> QueryVariable:
    return (
        QueryVariable("namespace")
        .label("Namespace")
        .description("Kubernetes namespace IdeaSnap runs in.")
        .datasource(PROMETHEUS)
        .query(f'label_values(ideasnap_service_info{{job=~"{SERVICES_REGEX}"}}, namespace)')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(".*")
        .multi(True)
        .current(VariableOption(text="All", value="$__all", selected=True))
    )


def label_variable(
    name: str, label: str, metric: str, label_name: str, *, all_value: str = ".*"
) -> QueryVariable:
    return (
        QueryVariable(name)
        .label(label)
        .datasource(PROMETHEUS)
        .query(f'label_values({metric}{{namespace=~"$namespace"}}, {label_name})')
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .include_all(True)
        .all_value(all_value)
        .multi(True)
        .current(VariableOption(text="All", value="$__all", selected=True))
    )


def number_variable(name: str, label: str, default: str, description: str) -> TextBoxVariable:
    return (
        TextBoxVariable(name)
        .label(label)
        .description(description)
        .default_value(default)
        .current(VariableOption(text=default, value=default, selected=True))
        .hide(VariableHide.DONT_HIDE)
    )
