"""What the chart ships for the operators: dashboard ConfigMaps and scrape labels."""

from __future__ import annotations

import json
from typing import Any

import kubernetes_validate
import pytest

from observability.dashboards import render as generated_dashboards
from observability.dashboards.panels import SERVICES
from tests.observability.chart import of_kind, render

KUBERNETES = kubernetes_validate.latest_version()


def dashboard_maps(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        obj
        for obj in of_kind(objects, "ConfigMap")
        if obj["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboards"
    ]


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render()


def test_each_dashboard_ships_as_a_configmap_for_the_sidecar(
    objects: list[dict[str, Any]],
) -> None:
    maps = dashboard_maps(objects)
    files = generated_dashboards()
    assert {name for obj in maps for name in obj["data"]} == set(files)
    for obj in maps:
        kubernetes_validate.validate(obj, KUBERNETES, strict=True)
        metadata = obj["metadata"]
        assert metadata["namespace"] == "ideasnap"
        assert metadata["name"].startswith("ideasnap-dashboard-")
        assert len(metadata["name"]) <= 63
        assert metadata["labels"]["grafana_dashboard"] == "1"
        assert metadata["labels"]["app.kubernetes.io/instance"] == "ideasnap"
        assert metadata["annotations"]["grafana_folder"] == "IdeaSnap"
        ((name, text),) = obj["data"].items()
        assert json.loads(text) == json.loads(files[name])
    assert len({obj["metadata"]["name"] for obj in maps}) == len(maps)


def test_sidecar_labels_folder_and_annotations_come_from_values() -> None:
    objects = render(
        {
            "dashboards": {
                "labels": {"grafana_dashboard": "ideasnap", "team": "platform"},
                "annotations": {"grafana_folder": "Apps/IdeaSnap", "owner": "platform"},
                "folder": "IdeaSnap",
            }
        }
    )
    maps = dashboard_maps(objects)
    assert maps
    for obj in maps:
        assert obj["metadata"]["labels"]["grafana_dashboard"] == "ideasnap"
        assert obj["metadata"]["labels"]["team"] == "platform"
        # An explicit annotation wins over the folder value.
        assert obj["metadata"]["annotations"]["grafana_folder"] == "Apps/IdeaSnap"
        assert obj["metadata"]["annotations"]["owner"] == "platform"
    without_folder = dashboard_maps(render({"dashboards": {"folder": ""}}))
    assert all("annotations" not in obj["metadata"] for obj in without_folder)


def scrape_job(monitor: dict[str, Any], services: list[dict[str, Any]]) -> str:
    """The ``job`` label the Prometheus operator gives this ServiceMonitor's targets.

    A relabeling that writes ``job`` wins; else the value of the Service's label named
    by ``jobLabel``; else the Service's name (the operator's default).
    """
    selector = monitor["spec"]["selector"]["matchLabels"]
    (service,) = [
        svc
        for svc in services
        if all(svc["metadata"]["labels"].get(k) == v for k, v in selector.items())
    ]
    for endpoint in monitor["spec"]["endpoints"]:
        for relabeling in endpoint.get("relabelings", []):
            if relabeling.get("targetLabel") == "job" and "replacement" in relabeling:
                return str(relabeling["replacement"])
    job_label = monitor["spec"].get("jobLabel")
    if job_label:
        return str(service["metadata"]["labels"][job_label])
    return str(service["metadata"]["name"])


def test_service_monitors_give_each_service_the_job_the_view_selects_by(
    objects: list[dict[str, Any]],
) -> None:
    """Dashboards and alerts select ``job="gateway"`` etc., whatever the release is called.

    With the operator's default the job would be the Service's name (``<release>-gateway``)
    and every panel and alert would be empty in a cluster.
    """
    monitors = of_kind(objects, "ServiceMonitor")
    services = of_kind(objects, "Service")
    assert len(monitors) == len(SERVICES)
    assert sorted(scrape_job(monitor, services) for monitor in monitors) == sorted(SERVICES)
    renamed = render(release="shop-prod")
    assert sorted(
        scrape_job(monitor, of_kind(renamed, "Service"))
        for monitor in of_kind(renamed, "ServiceMonitor")
    ) == sorted(SERVICES)
