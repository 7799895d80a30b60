"""Every rendered object validates against the cluster's own schemas.

Built-in kinds: the Kubernetes OpenAPI schemas of the oldest and the newest supported
release, strictly (an unknown field is an error, as `kubectl apply --validate=strict`
makes it). Custom resources: the CRDs' own openAPIV3Schema, as published by the
Prometheus operator, KEDA and CloudNativePG.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import all_versions

from tests.deploy.chart import (
    NEWEST_KUBERNETES,
    OLDEST_KUBERNETES,
    VALUE_SETS,
    named,
    of_kind,
    rendered_set,
)

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
CRD_FILES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.yaml",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.yaml",
    ("monitoring.coreos.com/v1", "PodMonitor"): "monitoring.coreos.com_podmonitors.yaml",
    ("monitoring.coreos.com/v1", "Probe"): "monitoring.coreos.com_probes.yaml",
    ("keda.sh/v1alpha1", "ScaledObject"): "keda.sh_scaledobjects.yaml",
    ("gateway.networking.k8s.io/v1", "HTTPRoute"): "gateway.networking.k8s.io_httproutes.yaml",
    ("postgresql.cnpg.io/v1", "Cluster"): "postgresql.cnpg.io_clusters.yaml",
}


def crd_schemas_dir() -> Path:
    """The published CRD and skaffold schemas, copied into tests/schemas/."""
    return SCHEMAS


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    group, version = api_version.split("/")
    crd = yaml.safe_load((crd_schemas_dir() / CRD_FILES[(api_version, kind)]).read_text())
    assert crd["spec"]["group"] == group
    assert crd["spec"]["names"]["kind"] == kind
    served = {v["name"]: v for v in crd["spec"]["versions"]}
    assert version in served, f"{api_version} {kind} is not in the CRD"
    assert served[version]["served"], f"{api_version} {kind} is not served"
    return jsonschema.Draft7Validator(served[version]["schema"]["openAPIV3Schema"])


def is_custom(obj: dict[str, Any]) -> bool:
    return (obj["apiVersion"], obj["kind"]) in CRD_FILES


def test_newest_version_is_the_newest_schema_set_shipped() -> None:
    assert kubernetes_validate.latest_version() == NEWEST_KUBERNETES
    assert OLDEST_KUBERNETES in all_versions()


@pytest.mark.parametrize("kube_version", [OLDEST_KUBERNETES, NEWEST_KUBERNETES])
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_built_in_objects_validate_strictly(value_set: str, kube_version: str) -> None:
    failures = []
    for obj in rendered_set(value_set):
        if is_custom(obj):
            continue
        try:
            kubernetes_validate.validate(obj, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError as error:
            failures.append(f"{obj['kind']}/{obj['metadata']['name']}: {error.message}")
    assert failures == []


def test_strict_validation_catches_an_unknown_field() -> None:
    """The validator is not a rubber stamp: a misplaced field fails."""
    deployment = named(rendered_set("default"), "Deployment", "ideasnap-gateway")
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, NEWEST_KUBERNETES, strict=True)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_custom_resources_validate_against_their_crds(value_set: str) -> None:
    custom = [obj for obj in rendered_set(value_set) if is_custom(obj)]
    failures = []
    for obj in custom:
        for error in crd_validator(obj["apiVersion"], obj["kind"]).iter_errors(obj):
            failures.append(
                f"{obj['kind']}/{obj['metadata']['name']}: {error.json_path}: {error.message}"
            )
    assert failures == []


def test_crd_validation_catches_a_wrong_field() -> None:
    monitor = of_kind(rendered_set("production"), "ServiceMonitor")[0]
    broken = yaml.safe_load(yaml.safe_dump(monitor))
    broken["spec"]["endpoints"][0]["interval"] = "every minute"
    assert list(crd_validator(broken["apiVersion"], broken["kind"]).iter_errors(broken))
    scaled = named(rendered_set("keda"), "ScaledObject", "ideasnap-ai-svc")
    broken = yaml.safe_load(yaml.safe_dump(scaled))
    del broken["spec"]["scaleTargetRef"]["name"]
    assert list(crd_validator(broken["apiVersion"], broken["kind"]).iter_errors(broken))
    route = named(rendered_set("production"), "HTTPRoute", "ideasnap")
    broken = yaml.safe_load(yaml.safe_dump(route))
    broken["spec"]["rules"][0]["timeouts"]["request"] = "five minutes"
    assert list(crd_validator(broken["apiVersion"], broken["kind"]).iter_errors(broken))
