"""The chart as Helm renders it, for the observability tests.

Rendering is the deploy tests' own (:mod:`tests.deploy.chart`: Helm's Go engine through
helm-python-sdk, offline, as ``helm install`` would), so the rules promtool tests and
the dashboards the ConfigMaps carry are exactly what a cluster gets, with the SLO
values rendered into the expressions.
"""

from __future__ import annotations

from typing import Any

from tests.deploy.chart import NAMESPACE, RELEASE, ROOT
from tests.deploy.chart import render as render_chart

__all__ = ["NAMESPACE", "RELEASE", "ROOT", "of_kind", "render"]


def render(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """Every object the chart renders with these values, in template order.

    The cluster is declared to serve the Prometheus operator's API, as the
    observability stack these tests stand for does.
    """
    declared = {"apiVersions": ["monitoring.coreos.com/v1"], **(values or {})}
    return render_chart(declared, release=release, namespace=namespace)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") == kind]
