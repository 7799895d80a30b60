"""IdeaSnap's Grafana dashboards, as code.

``python -m observability.dashboards`` (``make dashboards``) writes one JSON file per
dashboard into ``helm/ideasnap/dashboards/``; the chart ships each as a ConfigMap that
Grafana's dashboard sidecar loads. ``--check`` fails when the files in the chart differ
from what the code generates, so a panel edited by hand in the chart cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder

from observability.dashboards import ai, edge, intake, library, overview
from observability.dashboards.layout import DashboardSpec, build, finish

ROOT = Path(__file__).resolve().parents[2]
CHART_DASHBOARDS = ROOT / "helm" / "ideasnap" / "dashboards"


def specs() -> list[DashboardSpec]:
    return [overview.spec(), ai.spec(), intake.spec(), edge.spec(), library.spec()]


def model(spec: DashboardSpec) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (plain dicts and lists)."""
    encoded = JSONEncoder(sort_keys=True).encode(build(spec).build())
    return finish(json.loads(encoded))


def render() -> dict[str, str]:
    """File name to file content, for every dashboard."""
    return {
        spec.file_name: json.dumps(model(spec), indent=2, sort_keys=True) + "\n" for spec in specs()
    }
