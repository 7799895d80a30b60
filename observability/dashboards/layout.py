"""Assembling a dashboard from rows of panels, the same way for every dashboard.

Every IdeaSnap dashboard has the same variables first (Prometheus, traces, namespace),
the same time range and refresh, and links to its siblings by the shared tag, so an
operator moves between the overview and a service's view without losing the namespace
or the time range.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DashboardLink,
)
from grafana_foundation_sdk.builders.dashboard import (
    Row as RowBuilder,
)
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.models.dashboard import DashboardLinkType, VariableModel

from observability.dashboards.panels import AnyPanel, datasource_variables, namespace_variable

TAG = "ideasnap"


@dataclass
class Row:
    title: str
    panels: Sequence[AnyPanel]


@dataclass
class DashboardSpec:
    uid: str
    title: str
    description: str
    rows: Sequence[Row]
    variables: Sequence[Builder[VariableModel]] = field(default_factory=list)

    @property
    def file_name(self) -> str:
        return f"{self.uid}.json"


def build(spec: DashboardSpec) -> Dashboard:
    dashboard = (
        Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags([TAG])
        .editable()
        .time("now-3h", "now")
        .refresh("30s")
        .timezone("browser")
        .link(
            DashboardLink("IdeaSnap dashboards")
            .type(DashboardLinkType.DASHBOARDS)
            .tags([TAG])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
    )
    for variable in [*datasource_variables(), namespace_variable(), *spec.variables]:
        dashboard = dashboard.with_variable(variable)
    for row in spec.rows:
        dashboard = dashboard.with_row(RowBuilder(row.title))
        for panel in row.panels:
            dashboard = dashboard.with_panel(panel)
    return dashboard


def finish(model: dict[str, Any]) -> dict[str, Any]:
    """Give every panel a stable id and the annotation list Grafana expects.

    The SDK leaves panel ids to Grafana, which assigns them on first load; links to one
    panel (``viewPanel=<id>``) and provisioning diffs need them fixed in the file.
    """
    for number, panel in enumerate(model.get("panels", []), start=1):
        panel["id"] = number
    model["annotations"] = {
        "list": [
            {
                "builtIn": 1,
                "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": True,
                "hide": True,
                "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts",
                "type": "dashboard",
            }
        ]
    }
    for variable in model.get("templating", {}).get("list", []):
        # The SDK writes a placeholder UUID as every variable's id; Grafana uses the name.
        variable.pop("id", None)
    return model
