"""The chart's `helm test` hook, its optional uptime Probe, and its generated README table."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from helm_python import _native

from tests.deploy.chart import (
    CHART,
    NAMESPACE,
    RELEASE,
    ROOT,
    is_test_hook,
    merged_values,
    named,
    objects_of,
    of_kind,
    pod_labels,
    render,
    rendered_set,
)
from tests.deploy.netpol import Endpoint, allowed
from tests.deploy.test_kubernetes_schemas import crd_validator

PROBE_API = "monitoring.coreos.com/v1/Probe"
UPTIME = {"uptime": {"probe": {"enabled": True, "assumeApiAvailable": True}}}
PUBLIC_HOST = {
    "ingress": {
        "hosts": ["api.example.com"],
        "tls": [{"secretName": "api-tls", "hosts": ["api.example.com"]}],
    }
}


def render_on_cluster(values: dict[str, Any], api_versions: list[str]) -> list[dict[str, Any]]:
    """Render as `helm install` does against a cluster that serves these extra APIs.

    helm-python's Chart.render does not expose the option, so this calls the same C
    entry point with Helm's `api_versions` render option (what `--api-versions` sets).
    """
    options = {"name": RELEASE, "namespace": NAMESPACE, "is_install": True}
    with helm_python.Chart.load(CHART) as chart:
        rendered = _native.call_string(
            "helm_render",
            chart._raw(),
            json.dumps(values),
            json.dumps({**options, "api_versions": api_versions}),
        )
    return objects_of(json.loads(rendered))


# --- helm test ------------------------------------------------------------------------


def helm_test_pod() -> dict[str, Any]:
    (pod,) = [obj for obj in of_kind(rendered_set("default"), "Pod") if is_test_hook(obj)]
    return pod


def test_the_test_pod_checks_readyz_and_presets_through_the_gateway_service() -> None:
    objects = rendered_set("default")
    pod = helm_test_pod()
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    (container,) = pod["spec"]["containers"]
    script = container["command"][-1]
    service = named(objects, "Service", "ideasnap-gateway")
    port = service["spec"]["ports"][0]["port"]
    assert f'base="http://ideasnap-gateway:{port}"' in script
    assert "get /readyz" in script
    assert "get /v1/presets" in script
    assert '"templates"' in script


def test_the_test_pod_is_hardened_like_the_services_and_pinned_by_digest() -> None:
    pod = helm_test_pod()
    spec = pod["spec"]
    (container,) = spec["containers"]
    values = merged_values("default")
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == values["podSecurityContext"]
    assert container["securityContext"] == values["containerSecurityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"requests", "limits"} <= set(container["resources"])
    assert {m["mountPath"] for m in container["volumeMounts"]} == {"/tmp"}
    assert re.fullmatch(
        r"docker\.io/library/busybox:1\.37\.0@sha256:[0-9a-f]{64}", container["image"]
    )


def test_the_test_image_can_be_pointed_at_a_mirror_by_tag() -> None:
    objects = render(
        {
            "helmTest": {
                "image": {"repository": "mirror.example/busybox", "tag": "1.37", "digest": ""}
            }
        }
    )
    (pod,) = [obj for obj in of_kind(objects, "Pod") if is_test_hook(obj)]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "mirror.example/busybox:1.37"
    assert container["imagePullPolicy"] == "Always"


def test_the_test_pod_sends_an_api_key_from_a_secret_file_when_given() -> None:
    objects = render(
        {
            "helmTest": {"apiKey": {"existingSecret": "ideasnap-test-key"}},
            "gateway": {"config": {"API_KEY_HEADER": "X-Client-Key"}},
        }
    )
    (pod,) = [obj for obj in of_kind(objects, "Pod") if is_test_hook(obj)]
    (volume,) = [v for v in pod["spec"]["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == "ideasnap-test-key"
    (container,) = pod["spec"]["containers"]
    assert "X-Client-Key: $key" in container["command"][-1]
    assert all("valueFrom" not in item for item in container.get("env", []))


def test_only_the_test_pod_is_admitted_to_the_gateway_and_only_on_http() -> None:
    objects = rendered_set("default")
    policies = of_kind(objects, "NetworkPolicy")
    hook = [p for p in policies if is_test_hook(p)]
    assert len(hook) == 2
    pods = {
        d["metadata"]["name"]: Endpoint(
            d["metadata"]["name"],
            f"10.244.0.{i + 10}",
            NAMESPACE,
            pod_labels(d),
            {"http": 8080, "metrics": 9090},
        )
        for i, d in enumerate(of_kind(objects, "Deployment"))
    }
    tester = Endpoint("helm-test", "10.244.0.50", NAMESPACE, helm_test_pod()["metadata"]["labels"])
    neighbour = Endpoint("neighbour", "10.244.0.51", NAMESPACE, {"app": "other"})
    assert not allowed(
        [p for p in policies if not is_test_hook(p)], tester, pods["ideasnap-gateway"], 8080
    )
    assert allowed(policies, tester, pods["ideasnap-gateway"], 8080)
    assert not allowed(policies, tester, pods["ideasnap-gateway"], 9090)
    assert not allowed(policies, tester, pods["ideasnap-upload-svc"], 8080)
    assert not allowed(policies, tester, pods["ideasnap-ai-svc"], 8080)
    assert not allowed(policies, neighbour, pods["ideasnap-gateway"], 8080)
    outside = Endpoint("internet", "203.0.113.10")
    dns = Endpoint("kube-dns", "10.244.3.2", "kube-system", {"k8s-app": "kube-dns"})
    assert not allowed(policies, tester, outside, 443)
    assert allowed(policies, tester, dns, 53, "UDP")
    assert not allowed(policies, neighbour, tester, 8080)


def test_the_test_hooks_can_be_switched_off() -> None:
    assert not [obj for obj in render({"helmTest": {"enabled": False}}) if is_test_hook(obj)]


# --- uptime from outside --------------------------------------------------------------


def test_no_probe_by_default_nor_when_the_cluster_lacks_the_api() -> None:
    assert of_kind(rendered_set("default"), "Probe") == []
    assert of_kind(render({"uptime": {"probe": {"enabled": True}}, **PUBLIC_HOST}), "Probe") == []
    assert of_kind(render_on_cluster({}, [PROBE_API]), "Probe") == []


def test_the_probe_renders_where_the_cluster_serves_the_probe_api() -> None:
    objects = render_on_cluster(
        {"uptime": {"probe": {"enabled": True}}, **PUBLIC_HOST}, [PROBE_API]
    )
    (probe,) = of_kind(objects, "Probe")
    assert probe["spec"]["targets"]["staticConfig"]["static"] == ["https://api.example.com/healthz"]


def test_the_probe_watches_the_public_healthz_through_the_blackbox_exporter() -> None:
    objects = render({**UPTIME, **PUBLIC_HOST})
    (probe,) = of_kind(objects, "Probe")
    errors = [
        e.message for e in crd_validator(probe["apiVersion"], probe["kind"]).iter_errors(probe)
    ]
    assert errors == []
    spec = probe["spec"]
    assert spec["module"] == "http_2xx"
    assert spec["prober"]["url"] == "prometheus-blackbox-exporter.monitoring.svc:9115"
    assert spec["prober"]["path"] == "/probe"
    assert spec["jobName"] == "ideasnap/ideasnap-uptime"
    plain = render({**UPTIME, "ingress": {"hosts": ["api.example.com"]}})
    (probe,) = of_kind(plain, "Probe")
    assert probe["spec"]["targets"]["staticConfig"]["static"] == ["http://api.example.com/healthz"]
    custom = render(
        {
            "uptime": {
                "probe": {**UPTIME["uptime"]["probe"], "targetUrl": "https://x.example/healthz"}
            }
        }
    )
    (probe,) = of_kind(custom, "Probe")
    assert probe["spec"]["targets"]["staticConfig"]["static"] == ["https://x.example/healthz"]


def test_a_probe_without_a_public_url_stops_the_render_with_a_clear_message() -> None:
    with pytest.raises(helm_python.HelmRenderError, match=r"uptime\.probe\.targetUrl is required"):
        render(UPTIME)


def test_the_uptime_alerts_select_the_probe_job_and_follow_the_switches() -> None:
    objects = render({**UPTIME, **PUBLIC_HOST})
    rule = named(objects, "PrometheusRule", "ideasnap-uptime")
    errors = [e.message for e in crd_validator(rule["apiVersion"], rule["kind"]).iter_errors(rule)]
    assert errors == []
    (probe,) = of_kind(objects, "Probe")
    rules = {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}
    assert set(rules) == {"IdeaSnapPublicEndpointDown", "IdeaSnapUptimeProbeMissing"}
    for alert in rules.values():
        assert f'job="{probe["spec"]["jobName"]}"' in alert["expr"]
    assert rules["IdeaSnapPublicEndpointDown"]["labels"]["severity"] == "critical"
    without_rules = render({**UPTIME, **PUBLIC_HOST, "prometheusRule": {"enabled": False}})
    assert of_kind(without_rules, "PrometheusRule") == []
    assert len(of_kind(without_rules, "Probe")) == 1


# --- the chart's README ---------------------------------------------------------------


def load_chart_docs() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("chart_docs", ROOT / "scripts" / "chart_docs.py")
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_values_table_is_fresh() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/chart_docs.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_the_values_table_documents_every_commented_key_with_its_default() -> None:
    docs = load_chart_docs()
    values_text = (CHART / "values.yaml").read_text()
    readme = (CHART / "README.md").read_text()
    assert values_text.count("# -- ") == len(docs.documented_keys(values_text)) > 200
    assert "| `gateway.gunicorn.threads` | `32` |" in readme
    assert "| `uptime.probe.enabled` | `false` |" in readme
    assert "| `helmTest.image.digest` |" in readme


def test_a_changed_default_makes_the_table_stale(tmp_path: Path) -> None:
    chart = tmp_path / "ideasnap"
    chart.mkdir()
    (chart / "README.md").write_text((CHART / "README.md").read_text())
    values = (CHART / "values.yaml").read_text().replace("threads: 32", "threads: 48")
    (chart / "values.yaml").write_text(values)
    docs = load_chart_docs()
    assert docs.main(["--check", "--chart", str(chart)]) == 1
    assert docs.main(["--chart", str(chart)]) == 0
    assert docs.main(["--check", "--chart", str(chart)]) == 0
    assert "| `gateway.gunicorn.threads` | `48` |" in (chart / "README.md").read_text()
    assert yaml.safe_load(values)["gateway"]["gunicorn"]["threads"] == 48
