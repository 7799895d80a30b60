"""Every query the operators' view runs, ready to be executed against a real Prometheus.

A dashboard panel that shows nothing, or an alert whose expression names a metric no
service exports, fails silently in production. This module lists each panel query of
the generated dashboards and each rule expression of the rendered PrometheusRule,
substitutes Grafana's variables the way Grafana does on first load, and names the
metrics a query reads, so a test can run them all and notice a renamed metric.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# What Grafana puts in for its built-in variables, for a short range over fresh data.
GRAFANA_BUILTINS: dict[str, str] = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__range": "5m",
    "__range_s": "300",
}

PROMQL_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "atan2",
        "inf",
        "nan",
    }
)


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel, as written in the dashboard (variables not substituted)."""

    dashboard: str
    row: str
    panel: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


@dataclass(frozen=True)
class RuleQuery:
    """One recording or alerting rule of a PrometheusRule."""

    group: str
    name: str
    kind: str  # "alert" or "record"
    expr: str
    rule: Mapping[str, Any]


def panel_queries(dashboard: Mapping[str, Any]) -> list[PanelQuery]:
    """Every Prometheus query of a dashboard, with the row each panel sits under."""
    found: list[PanelQuery] = []
    row = ""
    uid = str(dashboard.get("uid", dashboard.get("title", "")))

    def visit(panel: Mapping[str, Any], current_row: str) -> None:
        for target in panel.get("targets") or []:
            expr = target.get("expr")
            if expr:
                found.append(
                    PanelQuery(uid, current_row, str(panel.get("title", "")), target["refId"], expr)
                )

    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            row = str(panel.get("title", ""))
            for nested in panel.get("panels") or []:  # collapsed rows keep their panels
                visit(nested, row)
            continue
        visit(panel, row)
    return found


def variable_values(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """The value Grafana gives each variable when the dashboard is first opened.

    "All" becomes the variable's ``allValue``; a text box its default; a constant its
    value. Datasource variables are not used inside queries and are left out.
    """
    values: dict[str, str] = {}
    for variable in dashboard.get("templating", {}).get("list", []):
        kind = variable.get("type")
        name = variable["name"]
        current = variable.get("current") or {}
        if kind == "datasource":
            continue
        if current.get("value") == "$__all" or (
            variable.get("includeAll") and not current.get("value")
        ):
            values[name] = str(variable.get("allValue") or ".*")
        elif kind in {"textbox", "constant"}:
            values[name] = str(current.get("value") or variable.get("query") or "")
        else:
            values[name] = str(current.get("value") or "")
    return values


_VARIABLE = re.compile(r"\$\{(\w+)(?::[\w]+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def interpolate(
    expr: str, values: Mapping[str, str], builtins: Mapping[str, str] = GRAFANA_BUILTINS
) -> str:
    """Substitute ``$name``, ``${name}`` and ``[[name]]``; an unknown variable is an error."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(3)
        if name in values:
            return values[name]
        if name in builtins:
            return builtins[name]
        raise KeyError(f"unknown dashboard variable ${name} in {expr!r}")

    return _VARIABLE.sub(replace, expr)


_STRINGS = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_GROUPING = re.compile(
    r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", re.IGNORECASE
)
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (not functions, keywords or labels)."""
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue
        names.add(name)
    return names


def rule_queries(objects: Iterable[Mapping[str, Any]]) -> list[RuleQuery]:
    """Every rule of every PrometheusRule among rendered Kubernetes objects."""
    found: list[RuleQuery] = []
    for obj in objects:
        if not obj or obj.get("kind") != "PrometheusRule":
            continue
        for group in obj.get("spec", {}).get("groups", []):
            for rule in group.get("rules", []):
                kind = "alert" if "alert" in rule else "record"
                found.append(
                    RuleQuery(group["name"], rule[kind], kind, str(rule["expr"]).strip(), rule)
                )
    return found


def rule_groups(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The rule groups of every PrometheusRule, in Prometheus's own rule-file shape."""
    groups: list[dict[str, Any]] = []
    for obj in objects:
        if obj and obj.get("kind") == "PrometheusRule":
            groups.extend(obj.get("spec", {}).get("groups", []))
    return groups
