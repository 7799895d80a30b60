"""Defaults that hold in a real cluster: CRDs only where served, a shared store whenever the
gateway runs several processes, autoscalers with only the metrics their sources provide,
Gateway API where it exists, and one in-flight target everywhere it is stated."""

from __future__ import annotations

import re
from typing import Any

import helm_python
import pytest
import yaml

from tests.deploy.chart import (
    ROOT,
    SERVICES,
    VALUE_SETS,
    container,
    matches_selector,
    merged_values,
    named,
    of_kind,
    pod_labels,
    render,
    rendered_set,
)

# The kinds a cluster serves with no CRD installed (what the default render may contain).
BUILT_IN = {
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Pod"),
    ("batch/v1", "Job"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("networking.k8s.io/v1", "Ingress"),
}
GATEWAY_API = "gateway.networking.k8s.io/v1"
PARENT = {"name": "public", "namespace": "gateway-system"}


def kinds(objects: Any) -> set[tuple[str, str]]:
    return {(obj["apiVersion"], obj["kind"]) for obj in objects}


def render_error(values: dict[str, Any]) -> str:
    with pytest.raises(helm_python.HelmError) as failure:
        render(values)
    return str(failure.value)


# --- a plain cluster ---------------------------------------------------------------------


def test_default_values_render_only_built_in_kinds() -> None:
    objects = rendered_set("default")
    assert kinds(objects) <= BUILT_IN, kinds(objects) - BUILT_IN
    # ...and still a complete release: the three services and their shared store.
    for name in SERVICES:
        named(objects, "Deployment", f"ideasnap-{name}")
    named(objects, "StatefulSet", "ideasnap-valkey")


@pytest.mark.parametrize(
    ("api", "kind", "values"),
    [
        ("monitoring.coreos.com/v1", "ServiceMonitor", {}),
        ("monitoring.coreos.com/v1", "PrometheusRule", {}),
        (
            "keda.sh/v1alpha1",
            "ScaledObject",
            {"aiSvc": {"autoscaling": {"keda": {"enabled": True}}}},
        ),
        (GATEWAY_API, "HTTPRoute", {"gatewayApi": {"parentRefs": [PARENT]}}),
    ],
)
def test_each_crd_object_renders_exactly_where_its_api_is_served(
    api: str, kind: str, values: dict[str, Any]
) -> None:
    declared = render({**values, "apiVersions": [api]})
    assert of_kind(declared, kind), f"{kind} missing although {api} is served"
    # The same API named with its kind is the form .Capabilities.APIVersions.Has takes too.
    assert of_kind(render({**values, "apiVersions": [f"{api}/{kind}"]}), kind)
    if kind == "ScaledObject":
        assert "aiSvc.autoscaling.keda.enabled needs KEDA" in render_error(values)
    else:
        assert of_kind(render(values), kind) == []


# --- the shared store --------------------------------------------------------------------


def test_the_gateway_and_ai_svc_share_the_charts_valkey_by_default() -> None:
    objects = rendered_set("default")
    valkey = named(objects, "StatefulSet", "ideasnap-valkey")
    service = named(objects, "Service", "ideasnap-valkey")
    assert matches_selector({"matchLabels": service["spec"]["selector"]}, pod_labels(valkey))
    for name in ("gateway", "ai-svc"):
        data = named(objects, "ConfigMap", f"ideasnap-{name}")["data"]
        assert data["REDIS_URL"] == "redis://ideasnap-valkey:6379/0"
    assert "REDIS_URL" not in named(objects, "ConfigMap", "ideasnap-upload-svc")["data"]
    pod = valkey["spec"]["template"]["spec"]
    spec = container(valkey)
    assert spec["image"].startswith("valkey/valkey:")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 10000
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert {"startupProbe", "livenessProbe", "readinessProbe"} <= set(spec)
    assert {"requests", "limits"} <= set(spec["resources"])
    budget = named(objects, "PodDisruptionBudget", "ideasnap-valkey")["spec"]
    assert matches_selector(budget["selector"], pod_labels(valkey))
    assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    # No data volume claim unless persistence is asked for.
    assert "volumeClaimTemplates" not in valkey["spec"]
    persistent = named(
        render({"valkey": {"persistence": {"enabled": True}}}), "StatefulSet", "ideasnap-valkey"
    )
    (claim,) = persistent["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"


def test_only_the_gateway_and_ai_svc_may_reach_valkey() -> None:
    objects = rendered_set("default")
    policy = named(objects, "NetworkPolicy", "ideasnap-valkey")["spec"]
    valkey = named(objects, "StatefulSet", "ideasnap-valkey")
    assert matches_selector(policy["podSelector"], pod_labels(valkey))
    assert policy["egress"] == []
    (rule,) = policy["ingress"]
    admitted = {
        name
        for name in SERVICES
        if any(
            matches_selector(
                peer["podSelector"], pod_labels(named(objects, "Deployment", f"ideasnap-{name}"))
            )
            for peer in rule["from"]
        )
    }
    assert admitted == {"gateway", "ai-svc"}
    assert [p["port"] for p in rule["ports"]] == [6379]


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        ({"valkey": {"enabled": False}}, "gateway.autoscaling.maxReplicas"),
        (
            {
                "valkey": {"enabled": False},
                "gateway": {"autoscaling": {"enabled": False}, "replicaCount": 1},
            },
            "gateway.gunicorn.workers",
        ),
        (
            {
                "valkey": {"enabled": False},
                "gateway": {
                    "autoscaling": {"enabled": False},
                    "replicaCount": 1,
                    "gunicorn": {"workers": 1},
                    "config": {"WEB_CONCURRENCY": "3"},
                },
            },
            "WEB_CONCURRENCY",
        ),
    ],
)
def test_several_gateway_processes_without_a_shared_store_fail_naming_the_setting(
    values: dict[str, Any], setting: str
) -> None:
    message = render_error(values)
    assert "no shared store" in message
    assert setting in message
    assert "valkey.enabled" in message


def test_a_single_gateway_process_needs_no_shared_store() -> None:
    objects = render(
        {
            "valkey": {"enabled": False},
            "gateway": {
                "autoscaling": {"enabled": False},
                "replicaCount": 1,
                "gunicorn": {"workers": 1},
            },
        }
    )
    assert "REDIS_URL" not in named(objects, "ConfigMap", "ideasnap-gateway")["data"]
    assert of_kind(objects, "StatefulSet") == []


def test_an_external_redis_replaces_valkey_and_egress_goes_only_where_named() -> None:
    objects = rendered_set("redis")
    assert of_kind(objects, "StatefulSet") == []
    policy = named(objects, "NetworkPolicy", "ideasnap-gateway")["spec"]
    redis_rules = [r for r in policy["egress"] if any(p.get("port") == 6379 for p in r["ports"])]
    (rule,) = redis_rules
    assert rule["to"] == merged_values("redis")["networkPolicy"]["egress"]["redis"]["to"]
    for peer in rule["to"]:
        assert peer.get("namespaceSelector") != {}, "any namespace is not a place"
    message = render_error({"redis": {"enabled": True, "existingSecret": "ideasnap-redis"}})
    assert "networkPolicy.egress.redis.to" in message


# --- liveness --------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_liveness_asks_the_gunicorn_master_on_the_metrics_port(value_set: str) -> None:
    for deployment in of_kind(rendered_set(value_set), "Deployment"):
        spec = container(deployment)
        assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        # Readiness keeps its meaning: the service's own dependencies, on the request port.
        assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


# --- autoscaling -------------------------------------------------------------------------


def hpa_metrics(objects: Any) -> dict[str, set[str]]:
    found = {}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        found[hpa["metadata"]["name"].removeprefix("ideasnap-")] = {
            metric["type"] for metric in hpa["spec"]["metrics"]
        }
    return found


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_autoscaler_uses_only_metrics_its_declared_sources_provide(value_set: str) -> None:
    merged = merged_values(value_set)
    adapter = merged["aiSvc"]["autoscaling"]["inFlight"]["prometheusAdapter"]
    for name, types in hpa_metrics(rendered_set(value_set)).items():
        # metrics-server gives Resource metrics; only the declared adapter gives Pods metrics.
        allowed = {"Resource", "Pods"} if (name == "ai-svc" and adapter) else {"Resource"}
        assert types <= allowed, (name, types)
        assert "Resource" in types, f"{name} must scale on CPU on a plain cluster"


def test_every_service_autoscales_on_cpu_by_default_with_s3() -> None:
    metrics = hpa_metrics(rendered_set("s3"))
    assert set(metrics) == set(SERVICES)
    assert all(types == {"Resource"} for types in metrics.values())


def in_flight_per_pod_in_results_md() -> float:
    text = (ROOT / "bench" / "RESULTS.md").read_text()
    snippet = text.split("As chart values (`helm/ideasnap/values.yaml`):", 1)[1]
    block = snippet.split("```yaml", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)["aiSvc"]["autoscaling"]["inFlight"]["targetUtilization"]


def test_the_in_flight_target_is_one_figure_in_sizing_values_docs_and_render() -> None:
    utilization = in_flight_per_pod_in_results_md()
    ai = merged_values("default")["aiSvc"]
    assert ai["autoscaling"]["inFlight"]["targetUtilization"] == utilization
    per_pod = ai["gunicorn"]["workers"] * ai["gunicorn"]["threads"] * utilization
    figure = f"{per_pod:g}"
    results = (ROOT / "bench" / "RESULTS.md").read_text()
    assert f"ai-svc's in-flight target: {figure} requests in flight per pod" in results
    deploy = (ROOT / "docs" / "deploy.md").read_text()
    stated = set(re.findall(r"(\d+) requests in flight per pod", deploy))
    assert stated == {figure}, stated
    hpa = named(
        render({"aiSvc": {"autoscaling": {"inFlight": {"prometheusAdapter": True}}}}),
        "HorizontalPodAutoscaler",
        "ideasnap-ai-svc",
    )
    (pods,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert pods["pods"]["target"]["averageValue"] == figure
    scaled = named(rendered_set("keda"), "ScaledObject", "ideasnap-ai-svc")
    (trigger,) = [t for t in scaled["spec"]["triggers"] if t["type"] == "prometheus"]
    assert trigger["metadata"]["threshold"] == figure


# --- the entry point ---------------------------------------------------------------------


def test_with_gateway_api_served_an_httproute_and_no_ingress() -> None:
    objects = render(
        {
            "apiVersions": [GATEWAY_API],
            "gatewayApi": {"parentRefs": [PARENT], "hostnames": ["api.example.com"]},
            "ingress": {"hosts": ["api.example.com"]},
        }
    )
    assert of_kind(objects, "Ingress") == []
    (route,) = of_kind(objects, "HTTPRoute")
    assert route["apiVersion"] == GATEWAY_API
    (parent,) = route["spec"]["parentRefs"]
    assert parent | PARENT == parent
    assert parent["kind"] == "Gateway"
    assert route["spec"]["hostnames"] == ["api.example.com"]
    (rule,) = route["spec"]["rules"]
    (backend,) = rule["backendRefs"]
    gateway = named(objects, "Service", "ideasnap-gateway")
    assert backend["name"] == "ideasnap-gateway"
    http = next(p for p in gateway["spec"]["ports"] if p["port"] == backend["port"])
    assert http["name"] == "http"
    # Long enough for a streamed answer (the gateway's own AI timeout is 60 s).
    for timeout in rule["timeouts"].values():
        assert timeout == "0s" or int(timeout.removesuffix("s")) >= 120


def test_gateway_api_without_a_named_gateway_fails_naming_the_setting() -> None:
    assert "gatewayApi.parentRefs" in render_error({"apiVersions": [GATEWAY_API]})


def test_the_ingress_is_controller_neutral_and_no_catch_all_unless_asked() -> None:
    assert of_kind(rendered_set("default"), "Ingress") == []
    (hosted,) = of_kind(render({"ingress": {"hosts": ["api.example.com"]}}), "Ingress")
    assert "annotations" not in hosted["metadata"]
    assert "ingressClassName" not in hosted["spec"]
    assert [rule["host"] for rule in hosted["spec"]["rules"]] == ["api.example.com"]
    (catch_all,) = of_kind(render({"ingress": {"catchAll": True}}), "Ingress")
    assert [set(rule) for rule in catch_all["spec"]["rules"]] == [{"http"}]
    (nginx,) = of_kind(
        render({"ingress": {"hosts": ["api.example.com"], "nginx": {"enabled": True}}}), "Ingress"
    )
    assert nginx["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"


# --- scrapers, runbooks, upload-svc -------------------------------------------------------


def test_metrics_scrapers_are_admitted_by_namespace_name_not_a_pod_label() -> None:
    for policy in of_kind(rendered_set("default"), "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []):
            if not any(p["port"] == 9090 for p in rule["ports"]):
                continue
            (peer,) = rule["from"]
            assert set(peer) == {"namespaceSelector"}
            (expression,) = peer["namespaceSelector"]["matchExpressions"]
            assert expression == {
                "key": "kubernetes.io/metadata.name",
                "operator": "In",
                "values": ["monitoring"],
            }


def test_runbook_links_are_absolute_or_refused() -> None:
    objects = render(
        {
            "apiVersions": ["monitoring.coreos.com/v1"],
            "prometheusRule": {"runbookBaseUrl": "https://runbooks.example.com/ideasnap"},
        }
    )
    (rule,) = of_kind(objects, "PrometheusRule")
    links = [
        r["annotations"]["runbook_url"]
        for group in rule["spec"]["groups"]
        for r in group["rules"]
        if "alert" in r
    ]
    assert links
    assert all(link.startswith("https://runbooks.example.com/ideasnap#ideasnap") for link in links)
    message = render_error({"prometheusRule": {"runbookBaseUrl": "docs/runbooks.md"}})
    assert "prometheusRule.runbookBaseUrl" in message


@pytest.mark.parametrize(
    "storage",
    [
        {"backend": "s3", "s3": {"bucket": "ideasnap-uploads"}},
        {"local": {"persistence": {"accessModes": ["ReadWriteMany"]}}},
    ],
)
def test_upload_svc_rolls_and_has_a_budget_whenever_its_storage_is_shared(
    storage: dict[str, Any],
) -> None:
    objects = render({"uploadSvc": {"storage": storage}})
    deployment = named(objects, "Deployment", "ideasnap-upload-svc")
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = named(objects, "HorizontalPodAutoscaler", "ideasnap-upload-svc")
    assert hpa["spec"]["minReplicas"] >= 2
    budget = named(objects, "PodDisruptionBudget", "ideasnap-upload-svc")["spec"]
    assert budget["minAvailable"] == hpa["spec"]["minReplicas"] - 1


def test_upload_svc_on_a_read_write_once_volume_says_its_trade_off() -> None:
    from tests.deploy.chart import render_templates

    rendered = render_templates({})
    objects = render({})
    assert named(objects, "Deployment", "ideasnap-upload-svc")["spec"]["strategy"] == {
        "type": "Recreate"
    }
    assert "ideasnap-upload-svc" not in {
        p["metadata"]["name"] for p in of_kind(objects, "PodDisruptionBudget")
    }
    notes = rendered["ideasnap/templates/NOTES.txt"]
    assert "every rollout and node drain is a short outage" in " ".join(notes.split())
