"""The alert rules as Helm renders them: valid, tested with promtool, and documented.

Every check starts from the chart rendered by Helm's engine, never from a copy of the
rules, so what is tested is what ``helm install`` would hand the Prometheus operator.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import helm_python
import jsonschema
import pytest
import yaml

from observability.inventory import rule_groups, rule_queries
from tests.observability.chart import ROOT, of_kind, render

PROMTOOL_TESTS = Path(__file__).parent / "promtool"
RUNBOOKS = ROOT / "docs" / "runbooks.md"
SCHEMAS = ROOT / "tests" / "schemas"
# Every alert the chart can render: the defaults plus the optional uptime Probe's alerts.
ALL_ALERTS_VALUES = yaml.safe_load((ROOT / "helm" / "values" / "uptime.yaml").read_text())
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


RUNBOOK_BASE = "https://runbooks.example.com/ideasnap"


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render({**ALL_ALERTS_VALUES, "prometheusRule": {"runbookBaseUrl": RUNBOOK_BASE}})


@pytest.fixture(scope="module")
def rule_file(objects: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rendered rules in Prometheus's rule-file shape, next to copies of the tests."""
    directory = tmp_path_factory.mktemp("promtool")
    path = directory / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(objects)}, sort_keys=False))
    for test_file in PROMTOOL_TESTS.glob("*.yaml"):
        shutil.copy(test_file, directory / test_file.name)
    return path


def alerts(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [query.rule for query in rule_queries(objects) if query.kind == "alert"]


def crd_schema(name: str) -> dict[str, Any]:
    crd = yaml.safe_load((SCHEMAS / name).read_text())
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return version["schema"]["openAPIV3Schema"]


def pruned_fields(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields the API server would silently drop: not in the structural schema."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key not in schema["properties"]:
                found.append(f"{path}.{key}")
            else:
                found += pruned_fields(item, schema["properties"][key], f"{path}.{key}")
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, item in value.items():
            found += pruned_fields(item, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += pruned_fields(item, schema["items"], f"{path}[{index}]")
    return found


def test_prometheus_rule_validates_against_the_operator_crd(
    objects: list[dict[str, Any]],
) -> None:
    rules = of_kind(objects, "PrometheusRule")
    assert {rule["metadata"]["name"] for rule in rules} == {"ideasnap", "ideasnap-uptime"}
    schema = crd_schema("monitoring.coreos.com_prometheusrules.yaml")
    for rule in rules:
        # The CRD's patterns are Go regular expressions, so the schema itself is not checked
        # against the metaschema; the object is checked against the schema.
        errors = [error.message for error in jsonschema.Draft7Validator(schema).iter_errors(rule)]
        assert errors == []
        assert pruned_fields(rule, schema) == []
        assert rule["apiVersion"] == "monitoring.coreos.com/v1"
        assert rule["metadata"]["namespace"] == "ideasnap"
        assert rule["metadata"]["labels"]["app.kubernetes.io/instance"] == "ideasnap"


def test_promtool_check_rules_is_clean(rule_file: Path) -> None:
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(rule_file)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 33 rules found" in result.stdout


@pytest.mark.parametrize("test_file", sorted(p.name for p in PROMTOOL_TESTS.glob("*.yaml")))
def test_promtool_unit_tests_pass(rule_file: Path, test_file: str) -> None:
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(rule_file.parent / test_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_silent(objects: list[dict[str, Any]]) -> None:
    """Each alert needs a series that should page and a healthy one that should not."""
    fires: set[str] = set()
    silent: set[str] = set()
    for test_file in PROMTOOL_TESTS.glob("*.yaml"):
        spec = yaml.safe_load(test_file.read_text())
        assert spec["rule_files"] == ["rules.yaml"], test_file.name
        for case in spec["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts(objects)}
    assert len(names) == 19
    assert names - fires == set(), "alerts with no test that makes them fire"
    assert names - silent == set(), "alerts with no test that keeps them silent"
    assert (fires | silent) - names == set(), "tests of alerts that no longer exist"


def test_every_alert_has_summary_description_and_a_runbook(
    objects: list[dict[str, Any]],
) -> None:
    headings = re.findall(r"^## (\S+)\s*$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    names = [rule["alert"] for rule in alerts(objects)]
    assert sorted(headings) == sorted(names), "docs/runbooks.md must have one section per alert"
    for rule in alerts(objects):
        annotations = rule["annotations"]
        assert set(annotations) == {"summary", "description", "runbook_url"}, rule["alert"]
        assert annotations["runbook_url"] == f"{RUNBOOK_BASE}#{rule['alert'].lower()}"
        assert rule["labels"]["severity"] in {"critical", "warning"}
    # Without a base URL: no link rather than a relative path no receiver can open.
    (default,) = of_kind(render(), "PrometheusRule")
    for group in default["spec"]["groups"]:
        for rule in group["rules"]:
            assert "runbook_url" not in rule.get("annotations", {})


def test_every_runbook_says_what_to_check_and_what_to_do() -> None:
    sections = re.split(r"^## ", RUNBOOKS.read_text(), flags=re.MULTILINE)[1:]
    assert sections
    for section in sections:
        name = section.split("\n", 1)[0].strip()
        for part in ("**Meaning**", "**Impact**", "**Diagnosis**", "**Mitigation**"):
            assert part in section, f"{name}: missing {part}"


def test_only_the_slo_burn_and_the_outside_view_page(objects: list[dict[str, Any]]) -> None:
    """The SLO burn pages; so does the public URL failing from outside, which the SLO
    cannot see (a request that never reaches the gateway is counted nowhere)."""
    critical = {
        rule["alert"] for rule in alerts(objects) if rule["labels"]["severity"] == "critical"
    }
    assert critical == {
        "IdeaSnapSnapsAvailabilityFastBurn",
        "IdeaSnapSnapsLatencyFastBurn",
        "IdeaSnapPublicEndpointDown",
    }
    defaults = {
        rule["alert"] for rule in alerts(render()) if rule["labels"]["severity"] == "critical"
    }
    assert defaults == {"IdeaSnapSnapsAvailabilityFastBurn", "IdeaSnapSnapsLatencyFastBurn"}


def test_burn_rate_windows_follow_the_sre_workbook(objects: list[dict[str, Any]]) -> None:
    rules = {query.name: query.expr for query in rule_queries(objects)}
    for sli in ("availability_errors", "latency_slow"):
        for window in ("5m", "30m", "1h", "2h", "6h", "1d", "3d"):
            recorded = rules[f"ideasnap:snaps_{sli}:ratio_rate{window}"]
            assert f"[{window}]" in recorded
            assert 'route="/v1/snaps"' in recorded
            assert 'method="POST"' in recorded
    expectations = {
        "AvailabilityFastBurn": [("1h", "5m", "14.4"), ("6h", "30m", "6")],
        "AvailabilitySlowBurn": [("1d", "2h", "3"), ("3d", "6h", "1")],
        "LatencyFastBurn": [("1h", "5m", "14.4"), ("6h", "30m", "6")],
        "LatencySlowBurn": [("1d", "2h", "3"), ("3d", "6h", "1")],
    }
    for alert, windows in expectations.items():
        expr = " ".join(rules[f"IdeaSnapSnaps{alert}"].split())
        target = "0.995" if alert.startswith("Availability") else "0.95"
        for long, short, factor in windows:
            assert f'ratio_rate{long}{{namespace="ideasnap"}} > ({factor} * (1 - {target}))' in expr
            assert (
                f'ratio_rate{short}{{namespace="ideasnap"}} > ({factor} * (1 - {target}))' in expr
            )


def test_slo_targets_come_from_the_chart_values() -> None:
    objects = render(
        {
            "prometheusRule": {
                "slo": {"availability": 0.999, "latency": {"thresholdSeconds": 1, "target": 0.9}},
                "runbookBaseUrl": "https://runbooks.example.com/ideasnap/",
                "labels": {"release": "kube-prometheus-stack"},
            }
        },
        namespace="prod",
    )
    (rule,) = of_kind(objects, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    exprs = {query.name: query.expr for query in rule_queries(objects)}
    assert "(14.4 * (1 - 0.999))" in exprs["IdeaSnapSnapsAvailabilityFastBurn"]
    assert "(6 * (1 - 0.9))" in exprs["IdeaSnapSnapsLatencyFastBurn"]
    assert 'le="1.0"' in exprs["ideasnap:snaps_latency_slow:ratio_rate5m"]
    assert 'namespace="prod"' in exprs["ideasnap:snaps_latency_slow:ratio_rate5m"]
    for alert in alerts(objects):
        assert alert["annotations"]["runbook_url"] == (
            f"https://runbooks.example.com/ideasnap/#{alert['alert'].lower()}"
        )


def test_a_latency_threshold_between_buckets_is_refused() -> None:
    with pytest.raises(helm_python.HelmError, match="thresholdSeconds must be one of"):
        render({"prometheusRule": {"slo": {"latency": {"thresholdSeconds": 3}}}})


def test_rules_and_dashboards_can_be_switched_off() -> None:
    objects = render({"prometheusRule": {"enabled": False}, "dashboards": {"enabled": False}})
    assert of_kind(objects, "PrometheusRule") == []
    assert not [
        obj
        for obj in of_kind(objects, "ConfigMap")
        if "grafana_dashboard" in obj["metadata"]["labels"]
    ]


def test_pod_and_autoscaler_alerts_name_the_charts_objects(objects: list[dict[str, Any]]) -> None:
    """The kube-state-metrics alerts select this release's Deployments and HPAs by name."""
    deployments = {obj["metadata"]["name"] for obj in of_kind(objects, "Deployment")}
    hpas = {obj["metadata"]["name"] for obj in of_kind(objects, "HorizontalPodAutoscaler")}
    exprs = {query.name: query.expr for query in rule_queries(objects)}
    pod_pattern = re.search(r'pod=~"([^"]+)"', exprs["IdeaSnapPodRestarting"])
    hpa_pattern = re.search(r'horizontalpodautoscaler=~"([^"]+)"', exprs["IdeaSnapHPAAtMaximum"])
    assert pod_pattern
    assert hpa_pattern
    assert deployments == {
        "ideasnap-gateway",
        "ideasnap-upload-svc",
        "ideasnap-ai-svc",
        "ideasnap-library-svc",
    }
    for deployment in deployments:
        assert re.fullmatch(pod_pattern.group(1), f"{deployment}-5d8f7c9b6-x7k2p")
        assert not re.fullmatch(pod_pattern.group(1), f"other-{deployment}-5d8f7c9b6-x7k2p")
    assert hpas
    for hpa in hpas:
        assert re.fullmatch(hpa_pattern.group(1), hpa)
