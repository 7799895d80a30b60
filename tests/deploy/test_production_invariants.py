"""The things that break in production, checked over the rendered objects of every value set.

Autoscalers that target nothing, probes on a path or port nobody serves, Services that
select no pod, a budget that blocks every drain, a kill before the drain finishes, an
Ingress that exposes more than the gateway, network policies that block the real call
graph or let anything else in.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.deploy.chart import (
    CALL_GRAPH,
    SERVICES,
    VALUE_SETS,
    component,
    config_env,
    container,
    container_port,
    matches_selector,
    merged_values,
    named,
    of_kind,
    pod_labels,
    render,
    rendered_set,
)
from tests.deploy.netpol import Endpoint, allowed

RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
}
MULTIPART_OVERHEAD_BYTES = 64 * 1024  # gateway.settings.MULTIPART_OVERHEAD_BYTES


def autoscaled(merged: dict[str, Any], name: str) -> bool:
    """The chart's rule: upload-svc's autoscaling null means on when its storage is shared."""
    svc = merged[SERVICES[name]]
    enabled = svc["autoscaling"].get("enabled")
    if enabled is not None:
        return bool(enabled)
    storage = svc.get("storage") or {}
    local = (storage.get("local") or {}).get("persistence") or {}
    return storage.get("backend") == "s3" or (
        bool(local.get("enabled")) and "ReadWriteMany" in local.get("accessModes", [])
    )


def declares(merged: dict[str, Any], api: str) -> bool:
    return api in (merged.get("apiVersions") or [])


def ingress_expected(merged: dict[str, Any]) -> bool:
    expose = merged["expose"]
    if expose == "auto":
        expose = "gatewayApi" if declares(merged, "gateway.networking.k8s.io/v1") else "ingress"
    ingress = merged["ingress"]
    return (
        expose == "ingress" and ingress["enabled"] and bool(ingress["hosts"] or ingress["catchAll"])
    )


def deployments(value_set: str) -> dict[str, dict[str, Any]]:
    return {component(d): d for d in of_kind(rendered_set(value_set), "Deployment")}


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_object_carries_the_recommended_labels(value_set: str) -> None:
    per_service = {
        "Deployment",
        "Service",
        "ServiceAccount",
        "HorizontalPodAutoscaler",
        "ScaledObject",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
    }
    for obj in rendered_set(value_set):
        labels = obj["metadata"].get("labels", {})
        expected = RECOMMENDED_LABELS - {"app.kubernetes.io/component"}
        if obj["kind"] in per_service:
            expected = RECOMMENDED_LABELS
            assert labels["app.kubernetes.io/component"] in {*SERVICES, "valkey"}
        missing = expected - set(labels)
        assert not missing, f"{obj['kind']}/{obj['metadata']['name']} lacks {missing}"
        assert labels["app.kubernetes.io/instance"] == "ideasnap"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_autoscaler_targets_an_existing_deployment(value_set: str) -> None:
    objects = rendered_set(value_set)
    names = {d["metadata"]["name"] for d in of_kind(objects, "Deployment")}
    scalers = of_kind(objects, "HorizontalPodAutoscaler") + of_kind(objects, "ScaledObject")
    targets = []
    for scaler in scalers:
        ref = scaler["spec"]["scaleTargetRef"]
        assert ref.get("apiVersion", "apps/v1") == "apps/v1"
        assert ref.get("kind", "Deployment") == "Deployment"
        assert ref["name"] in names, f"{scaler['metadata']['name']} targets nothing"
        targets.append(ref["name"])
    assert len(targets) == len(set(targets)), "two autoscalers fight over one Deployment"
    merged = merged_values(value_set)
    for name in SERVICES:
        deployment = named(objects, "Deployment", f"ideasnap-{name}")
        scaled = f"ideasnap-{name}" in targets
        assert scaled == autoscaled(merged, name)
        # An autoscaled Deployment leaves replicas to the autoscaler (upgrades must not reset it).
        assert ("replicas" in deployment["spec"]) != scaled


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_autoscalers_have_behavior_and_sane_bounds(value_set: str) -> None:
    for hpa in of_kind(rendered_set(value_set), "HorizontalPodAutoscaler"):
        spec = hpa["spec"]
        assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
        assert spec["metrics"], "an autoscaler needs a metric"
        assert {"scaleUp", "scaleDown"} <= set(spec["behavior"])


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_point_at_the_served_paths_and_the_port_the_service_listens_on(
    value_set: str,
) -> None:
    objects = rendered_set(value_set)
    for name, deployment in deployments(value_set).items():
        spec = container(deployment)
        env = config_env(objects, deployment)
        listening = int(env["PORT"])
        paths = {}
        for probe in ("startupProbe", "readinessProbe"):
            action = spec[probe]["httpGet"]
            assert container_port(deployment, action["port"]) == listening, (name, probe)
            paths[probe] = action["path"]
        # Liveness asks the gunicorn master on the metrics port: never queued behind requests.
        liveness = spec["livenessProbe"]["httpGet"]
        assert container_port(deployment, liveness["port"]) == int(env["METRICS_PORT"]), name
        paths["livenessProbe"] = liveness["path"]
        # Liveness never touches dependencies; readiness checks them.
        assert paths == {
            "startupProbe": "/healthz",
            "livenessProbe": "/healthz",
            "readinessProbe": "/readyz",
        }
        # Readiness must give the service's own dependency checks time to answer.
        assert spec["readinessProbe"]["timeoutSeconds"] > float(
            env.get("READINESS_TIMEOUT_SECONDS", "2")
        )
        assert container_port(deployment, "metrics") == int(env["METRICS_PORT"])
        assert env["HOST"] == "0.0.0.0", "a container must listen on every interface"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_service_selects_pods_and_targets_declared_ports(value_set: str) -> None:
    objects = rendered_set(value_set)
    pods = list(deployments(value_set).values())
    for service in of_kind(objects, "Service"):
        if component(service) not in SERVICES:
            continue
        selected = [
            d
            for d in pods
            if matches_selector({"matchLabels": service["spec"]["selector"]}, pod_labels(d))
        ]
        assert len(selected) == 1, (
            f"{service['metadata']['name']} selects {len(selected)} Deployments"
        )
        assert component(selected[0]) == component(service)
        for port in service["spec"]["ports"]:
            container_port(selected[0], port["targetPort"])
    for deployment in pods:
        selector = deployment["spec"]["selector"]
        assert matches_selector(selector, pod_labels(deployment))
        others = [d for d in pods if d is not deployment]
        assert not any(matches_selector(selector, pod_labels(o)) for o in others)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_reach_each_other_through_real_services(value_set: str) -> None:
    """UPLOAD_SVC_URL, AI_SVC_URL and LIBRARY_SVC_URL name a rendered Service and its http port."""
    objects = rendered_set(value_set)
    services = {s["metadata"]["name"]: s for s in of_kind(objects, "Service")}
    calls = set()
    for name, deployment in deployments(value_set).items():
        env = config_env(objects, deployment)
        for variable, callee in (
            ("UPLOAD_SVC_URL", "upload-svc"),
            ("AI_SVC_URL", "ai-svc"),
            ("LIBRARY_SVC_URL", "library-svc"),
        ):
            if variable not in env:
                continue
            host, _, port = env[variable].removeprefix("http://").partition(":")
            service = services[host]
            assert component(service) == callee
            http = next(p for p in service["spec"]["ports"] if p["name"] == "http")
            assert int(port) == http["port"]
            calls.add((name, callee))
    assert calls == CALL_GRAPH


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_service_monitors_scrape_the_metrics_port_of_each_service(value_set: str) -> None:
    objects = rendered_set(value_set)
    monitors = of_kind(objects, "ServiceMonitor")
    merged = merged_values(value_set)
    if not (merged["serviceMonitor"]["enabled"] and declares(merged, "monitoring.coreos.com/v1")):
        assert monitors == []
        return
    assert {component(m) for m in monitors} == set(SERVICES)
    for monitor in monitors:
        assert monitor["spec"]["namespaceSelector"]["matchNames"] == ["ideasnap"]
        services = [
            s
            for s in of_kind(objects, "Service")
            if matches_selector(monitor["spec"]["selector"], s["metadata"]["labels"])
        ]
        assert len(services) == 1
        (endpoint,) = monitor["spec"]["endpoints"]
        port = next(p for p in services[0]["spec"]["ports"] if p["name"] == endpoint["port"])
        deployment = named(objects, "Deployment", services[0]["metadata"]["name"])
        assert container_port(deployment, port["targetPort"]) == int(
            config_env(objects, deployment)["METRICS_PORT"]
        )
        assert endpoint["path"] == "/metrics"
        # The scrape job is the service's own name, whatever the release is called.
        assert services[0]["metadata"]["labels"][monitor["spec"]["jobLabel"]] == component(monitor)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_disruption_budgets_protect_the_minimum_and_never_block_a_drain(value_set: str) -> None:
    objects = rendered_set(value_set)
    merged = merged_values(value_set)
    budgets = {component(p): p for p in of_kind(objects, "PodDisruptionBudget")}
    for name, key in SERVICES.items():
        svc = merged[key]
        minimum = (
            svc["autoscaling"]["minReplicas"] if autoscaled(merged, name) else svc["replicaCount"]
        )
        if minimum < 2:
            assert name not in budgets, "a budget over one replica blocks every drain"
            continue
        budget = budgets[name]["spec"]
        assert matches_selector(
            budget["selector"], pod_labels(named(objects, "Deployment", f"ideasnap-{name}"))
        )
        assert budget["minAvailable"] == minimum - 1
        assert budget["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_termination_waits_longer_than_the_drain(value_set: str) -> None:
    objects = rendered_set(value_set)
    for deployment in deployments(value_set).values():
        env = config_env(objects, deployment)
        pre_stop = container(deployment)["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        drain = int(pre_stop[1]) + int(env["GUNICORN_GRACEFUL_TIMEOUT"])
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_are_hardened(value_set: str) -> None:
    relaxed = value_set in {"dev"}
    for deployment in deployments(value_set).values():
        pod = deployment["spec"]["template"]["spec"]
        spec = container(deployment)
        security = spec["securityContext"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 10000
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert security["readOnlyRootFilesystem"] is (not relaxed)
        assert {"requests", "limits"} <= set(spec["resources"])
        mounts = {m["mountPath"] for m in spec["volumeMounts"]}
        env = config_env(rendered_set(value_set), deployment)
        assert {"/tmp", env["PROMETHEUS_MULTIPROC_DIR"]} <= mounts
        spread = {c["topologyKey"] for c in pod["topologySpreadConstraints"]}
        assert {"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= spread
        account = pod["serviceAccountName"]
        named(rendered_set(value_set), "ServiceAccount", account)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_ingress_reaches_the_gateway_alone_and_never_metrics(value_set: str) -> None:
    objects = rendered_set(value_set)
    ingresses = of_kind(objects, "Ingress")
    if not ingress_expected(merged_values(value_set)):
        assert ingresses == []
        return
    (ingress,) = ingresses
    gateway = named(objects, "Service", "ideasnap-gateway")
    backends = [
        path["backend"]["service"]
        for rule in ingress["spec"]["rules"]
        for path in rule["http"]["paths"]
    ]
    assert "defaultBackend" not in ingress["spec"]
    assert backends
    assert all(b["name"] == "ideasnap-gateway" for b in backends)
    for backend in backends:
        port = next(
            p
            for p in gateway["spec"]["ports"]
            if p["name"] == backend["port"].get("name")
            or p["port"] == backend["port"].get("number")
        )
        assert port["targetPort"] == "http"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_ingress_admits_the_largest_upload(value_set: str) -> None:
    objects = rendered_set(value_set)
    if not of_kind(objects, "Ingress"):
        return
    (ingress,) = of_kind(objects, "Ingress")
    annotations = ingress["metadata"].get("annotations") or {}
    if "nginx.ingress.kubernetes.io/proxy-body-size" not in annotations:
        # Controller-neutral: the body limit is the controller's own setting (docs/deploy.md).
        assert not merged_values(value_set)["ingress"]["nginx"]["enabled"]
        return
    size = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    limit = int(size[:-1]) * units[size[-1].lower()]
    gateway_env = config_env(objects, named(objects, "Deployment", "ideasnap-gateway"))
    max_upload = int(gateway_env["MAX_UPLOAD_BYTES"])
    assert limit > 10 * 1024 * 1024
    assert limit >= max_upload + MULTIPART_OVERHEAD_BYTES
    upload_env = config_env(objects, named(objects, "Deployment", "ideasnap-upload-svc"))
    assert int(upload_env["MAX_UPLOAD_BYTES"]) == max_upload


def test_body_limit_follows_a_larger_upload_setting() -> None:
    objects = render(
        {
            "config": {"maxUploadBytes": 25 * 1024 * 1024},
            "ingress": {"hosts": ["api.example.com"], "nginx": {"enabled": True}},
        }
    )
    (ingress,) = of_kind(objects, "Ingress")
    size = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert size == f"{math.ceil(25) + 2}m"


# --- network policies -------------------------------------------------------------------

EXTERNAL = Endpoint("internet", "203.0.113.10")
METADATA = Endpoint("cloud metadata", "169.254.169.254")


def cluster(value_set: str) -> dict[str, Endpoint]:
    """The release's pods plus everything around them that might try to talk."""
    pods = {
        name: Endpoint(
            name, f"10.244.0.{i + 10}", "ideasnap", pod_labels(d), {"http": 8080, "metrics": 9090}
        )
        for i, (name, d) in enumerate(sorted(deployments(value_set).items()))
    }
    controller = merged_values(value_set)["networkPolicy"]["ingressController"]
    controller_namespace = controller["namespaceSelector"]["matchLabels"][
        "kubernetes.io/metadata.name"
    ]
    pods.update(
        {
            "ingress-controller": Endpoint(
                "ingress-controller",
                "10.244.1.2",
                controller_namespace,
                {"app.kubernetes.io/name": "ingress-nginx"},
            ),
            "spoofed-controller": Endpoint(
                "spoofed-controller",
                "10.244.1.3",
                "default",
                {"app.kubernetes.io/name": "ingress-nginx"},
            ),
            "prometheus": Endpoint(
                "prometheus", "10.244.2.2", "monitoring", {"app.kubernetes.io/name": "prometheus"}
            ),
            "kube-dns": Endpoint("kube-dns", "10.244.3.2", "kube-system", {"k8s-app": "kube-dns"}),
            "neighbour": Endpoint(
                "neighbour", "10.244.0.99", "ideasnap", {"app": "something-else"}
            ),
            "stranger": Endpoint("stranger", "10.244.4.2", "default", {"app": "stranger"}),
            "redis": Endpoint("redis", "10.244.5.2", "redis", {"app.kubernetes.io/name": "redis"}),
            "minio": Endpoint("minio", "10.244.6.2", "minio", {"app.kubernetes.io/name": "minio"}),
            "postgres": Endpoint(
                "postgres", "10.244.7.2", "databases", {"app.kubernetes.io/name": "postgresql"}
            ),
            "library-db": Endpoint(
                "library-db", "10.244.0.50", "ideasnap", {"cnpg.io/cluster": "ideasnap-library-db"}
            ),
        }
    )
    return pods


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_network_policies_admit_the_call_graph_and_nothing_else_in(value_set: str) -> None:
    policies = of_kind(rendered_set(value_set), "NetworkPolicy")
    valkey = (
        not merged_values(value_set)["redis"]["enabled"]
        and merged_values(value_set)["valkey"]["enabled"]
    )
    assert {component(p) for p in policies} == set(SERVICES) | ({"valkey"} if valkey else set())
    pods = cluster(value_set)
    sources = [*pods.values(), EXTERNAL]
    for name in SERVICES:
        destination = pods[name]
        callers = {src for src, dst in CALL_GRAPH if dst == name}
        expected_http = {"ingress-controller"} if name == "gateway" else callers
        admitted_http = {
            s.name
            for s in sources
            if s is not destination and allowed(policies, s, destination, 8080)
        }
        assert admitted_http == expected_http, name
        admitted_metrics = {
            s.name
            for s in sources
            if s is not destination and allowed(policies, s, destination, 9090)
        }
        assert admitted_metrics == {"prometheus"}, name
        # Nothing at all on a port the service does not serve.
        assert not any(
            allowed(policies, s, destination, 22) for s in sources if s is not destination
        )


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_network_policies_limit_egress_to_what_each_service_needs(value_set: str) -> None:
    merged = merged_values(value_set)
    policies = of_kind(rendered_set(value_set), "NetworkPolicy")
    pods = cluster(value_set)
    redis_on = merged["redis"]["enabled"]
    s3 = merged["uploadSvc"]["storage"]["backend"] == "s3"
    gemini = bool(
        merged["aiSvc"]["gemini"]["apiKey"] or merged["aiSvc"]["gemini"]["existingSecret"]
    )
    extra = bool(merged["networkPolicy"]["extraEgress"])
    cnpg = merged["librarySvc"]["database"]["cnpg"]["enabled"]
    managed_database = Endpoint("managed PostgreSQL", "10.20.0.5")
    storage_on_internet = any(
        "ipBlock" in peer and peer["ipBlock"]["cidr"] == "0.0.0.0/0"
        for peer in merged["networkPolicy"]["egress"]["storage"]["to"]
    )
    for name in SERVICES:
        source = pods[name]
        assert allowed(policies, source, pods["kube-dns"], 53, "UDP")
        assert allowed(policies, source, pods["kube-dns"], 53, "TCP")
        for other in SERVICES:
            if other != name:
                assert allowed(policies, source, pods[other], 8080) == ((name, other) in CALL_GRAPH)
        assert not allowed(policies, source, pods["stranger"], 8080)
        assert not allowed(policies, source, pods["neighbour"], 8080)
        assert allowed(policies, source, pods["redis"], 6379) == (
            redis_on and name in {"gateway", "ai-svc"}
        )
        # PostgreSQL: library-svc alone, at the chart's Cluster or else the external server.
        reaches_cluster_db = allowed(policies, source, pods["library-db"], 5432)
        if name != "library-svc":
            assert not reaches_cluster_db
        elif cnpg:
            assert reaches_cluster_db
        for database in (pods["postgres"], managed_database):
            assert allowed(policies, source, database, 5432) == (name == "library-svc" and not cnpg)
        assert not allowed(policies, source, pods["library-db"], 8080)
        reaches_internet = allowed(policies, source, EXTERNAL, 443)
        if not extra:
            assert reaches_internet == (
                (name == "upload-svc" and s3 and storage_on_internet)
                or (name == "ai-svc" and gemini)
                or name == "library-svc"  # Firebase Admin: Google's APIs
            )
        assert allowed(policies, source, pods["minio"], 9000) == (
            name == "upload-svc" and s3 and not storage_on_internet
        )
        assert not allowed(policies, source, METADATA, 80)
        assert not allowed(policies, source, METADATA, 443)


def test_network_policy_model_is_not_vacuous() -> None:
    """Without the chart's policies everything would be allowed: the model does isolate."""
    pods = cluster("default")
    assert allowed([], pods["stranger"], pods["upload-svc"], 8080)
    policies = of_kind(rendered_set("default"), "NetworkPolicy")
    assert not allowed(policies, pods["stranger"], pods["upload-svc"], 8080)
    assert not allowed(policies, pods["spoofed-controller"], pods["gateway"], 8080)


def test_a_load_balancer_range_can_be_admitted_to_the_gateway_alone() -> None:
    balancer = Endpoint("cloud load balancer", "130.211.0.5")
    rule = {"from": [{"ipBlock": {"cidr": "130.211.0.0/22"}}], "ports": [{"port": 8080}]}
    pods = cluster("default")
    before = of_kind(rendered_set("default"), "NetworkPolicy")
    after = of_kind(render({"networkPolicy": {"extraGatewayIngress": [rule]}}), "NetworkPolicy")
    assert not allowed(before, balancer, pods["gateway"], 8080)
    assert allowed(after, balancer, pods["gateway"], 8080)
    assert not allowed(after, balancer, pods["upload-svc"], 8080)
    assert not allowed(after, balancer, pods["gateway"], 9090)
