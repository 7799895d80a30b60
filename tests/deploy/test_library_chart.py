"""library-svc's database wiring: DATABASE_URL from a Secret or the CloudNativePG Cluster,
and the migrations Job that runs before the pods roll, as Helm hooks."""

from __future__ import annotations

from typing import Any

import helm_python
import pytest

from tests.deploy.chart import (
    config_env,
    container,
    matches_selector,
    merged_values,
    named,
    of_kind,
    pod_labels,
    render,
    rendered_set,
)
from tests.deploy.netpol import Endpoint, allowed
from tests.deploy.test_kubernetes_schemas import crd_validator

DEPLOYMENT = "ideasnap-library-svc"
JOB = "ideasnap-library-svc-migrations"
SECRET_VARIABLES = ("DATABASE_URL", "BILLING_WEBHOOK_AUTHORIZATION", "PAGE_TOKEN_SECRET")


def secret_refs(spec: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        item["name"]: item["valueFrom"]["secretKeyRef"]
        for item in spec.get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }


def test_database_url_comes_from_the_existing_secret_and_never_from_the_config_map() -> None:
    objects = render(
        {"librarySvc": {"database": {"existingSecret": "pg", "existingSecretKey": "u"}}}
    )
    refs = secret_refs(container(named(objects, "Deployment", DEPLOYMENT)))
    assert refs["DATABASE_URL"] == {"name": "pg", "key": "u"}
    assert refs["BILLING_WEBHOOK_AUTHORIZATION"] == {
        "name": "ideasnap-library",
        "key": "billing-webhook-authorization",
    }
    assert refs["PAGE_TOKEN_SECRET"] == {"name": "ideasnap-library", "key": "page-token-secret"}
    data = named(objects, "ConfigMap", DEPLOYMENT)["data"]
    assert not set(SECRET_VARIABLES) & set(data)
    assert of_kind(objects, "Cluster") == [], "CRD-backed objects render only when enabled"


def test_library_svc_settings_reach_its_config_map() -> None:
    objects = render({"librarySvc": {"firebase": {"projectId": "ideasnap-prod"}}})
    env = config_env(objects, named(objects, "Deployment", DEPLOYMENT))
    assert env["FIREBASE_PROJECT_ID"] == "ideasnap-prod"
    assert env["UPLOAD_SVC_URL"] == "http://ideasnap-upload-svc:80"
    gateway = config_env(objects, named(objects, "Deployment", "ideasnap-gateway"))
    assert gateway["LIBRARY_SVC_URL"] == "http://ideasnap-library-svc:80"


def test_cloudnative_pg_cluster_feeds_database_url_from_its_app_secret() -> None:
    objects = rendered_set("cnpg")
    (cluster,) = of_kind(objects, "Cluster")
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    cnpg = merged_values("cnpg")["librarySvc"]["database"]["cnpg"]
    assert cluster["spec"]["instances"] == cnpg["instances"]
    assert cluster["spec"]["bootstrap"]["initdb"] == {
        "database": cnpg["database"],
        "owner": cnpg["owner"],
    }
    # CloudNativePG names the owner's generated Secret "<cluster>-app"; `uri` is the URL.
    app_secret = {"name": f"{cluster['metadata']['name']}-app", "key": "uri"}
    assert (
        secret_refs(container(named(objects, "Deployment", DEPLOYMENT)))["DATABASE_URL"]
        == app_secret
    )
    job = named(objects, "Job", JOB)
    assert secret_refs(container_of_job(job))["DATABASE_URL"] == app_secret
    # Every pod the chart runs at once fits in the server's connections, with room for the Job.
    library = merged_values("cnpg")["librarySvc"]
    pool = (
        library["autoscaling"]["maxReplicas"]
        * library["gunicorn"]["workers"]
        * library["gunicorn"]["threads"]
    )
    assert pool < int(cluster["spec"]["postgresql"]["parameters"]["max_connections"])


def test_the_cluster_is_checked_against_the_cloudnative_pg_crd() -> None:
    (cluster,) = of_kind(rendered_set("cnpg"), "Cluster")
    validator = crd_validator(cluster["apiVersion"], cluster["kind"])
    assert list(validator.iter_errors(cluster)) == []
    broken = {**cluster, "spec": {**cluster["spec"], "instances": "three"}}
    assert list(validator.iter_errors(broken))


def container_of_job(job: dict[str, Any]) -> dict[str, Any]:
    (only,) = job["spec"]["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize(
    ("value_set", "hooks"),
    [("default", "pre-install,pre-upgrade"), ("cnpg", "post-install,pre-upgrade")],
)
def test_migrations_run_as_a_hook_job_before_the_pods_roll(value_set: str, hooks: str) -> None:
    objects = rendered_set(value_set)
    job = named(objects, "Job", JOB)
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == hooks
    assert int(annotations["helm.sh/hook-weight"]) < 0
    assert set(annotations["helm.sh/hook-delete-policy"].split(",")) == {
        "before-hook-creation",
        "hook-succeeded",
    }
    spec = job["spec"]
    migrations = merged_values(value_set)["librarySvc"]["migrations"]
    assert spec["activeDeadlineSeconds"] == migrations["activeDeadlineSeconds"]
    assert spec["backoffLimit"] == migrations["backoffLimit"]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    migrate = container_of_job(job)
    assert migrate["command"] == ["python", "-m", "library_svc.migrate"]
    deployment = named(objects, "Deployment", DEPLOYMENT)
    assert migrate["image"] == container(deployment)["image"]
    # The same database and settings as the pods, given inline: at install the ConfigMap
    # does not exist yet, at upgrade it still holds the previous release's values.
    assert secret_refs(migrate) == secret_refs(container(deployment))
    literal = {item["name"]: item["value"] for item in migrate["env"] if "value" in item}
    assert literal == named(objects, "ConfigMap", DEPLOYMENT)["data"]
    assert migrate["securityContext"]["readOnlyRootFilesystem"] is True
    # A read-only root: the settings' writable directories are mounted, as in the pods.
    mounts = {mount["mountPath"] for mount in migrate["volumeMounts"]}
    assert {"/tmp", literal["PROMETHEUS_MULTIPROC_DIR"]} <= mounts
    # The Job's pod is never an endpoint of library-svc's Service.
    service = named(objects, "Service", DEPLOYMENT)
    assert not matches_selector(
        {"matchLabels": service["spec"]["selector"]}, job["spec"]["template"]["metadata"]["labels"]
    )
    assert matches_selector({"matchLabels": service["spec"]["selector"]}, pod_labels(deployment))


def test_migrations_job_can_be_turned_off() -> None:
    objects = render({"librarySvc": {"migrations": {"enabled": False}}})
    assert of_kind(objects, "Job") == []


def test_library_svc_without_a_database_stops_the_render() -> None:
    with pytest.raises(helm_python.HelmRenderError) as raised:
        render({"librarySvc": {"database": {"existingSecret": ""}}})
    assert "library-svc needs a database" in str(raised.value)


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"librarySvc": {"database": {"cnpg": {"instance": 3}}}}, "instance"),
        ({"librarySvc": {"migrations": {"deadlineSeconds": 60}}}, "deadlineSeconds"),
        ({"librarySvc": {"database": {"cnpg": {"owner": "Robert'); DROP"}}}}, "owner"),
    ],
)
def test_schema_rejects_bad_library_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as raised:
        render(values)
    assert where in str(raised.value)


def test_the_migrations_pod_reaches_only_dns_and_the_database() -> None:
    objects = rendered_set("default")
    policies = of_kind(objects, "NetworkPolicy")
    job = named(objects, "Job", JOB)
    pod = Endpoint(
        "migrate", "10.244.0.60", "ideasnap", job["spec"]["template"]["metadata"]["labels"]
    )
    dns = Endpoint("kube-dns", "10.244.3.2", "kube-system", {"k8s-app": "kube-dns"})
    database = Endpoint("managed PostgreSQL", "10.20.0.5")
    upload = named(objects, "Deployment", "ideasnap-upload-svc")
    upload_pod = Endpoint(
        "upload-svc", "10.244.0.11", "ideasnap", pod_labels(upload), {"http": 8080}
    )
    gateway = named(objects, "Deployment", "ideasnap-gateway")
    gateway_pod = Endpoint("gateway", "10.244.0.10", "ideasnap", pod_labels(gateway))
    assert allowed(policies, pod, dns, 53, "UDP")
    assert allowed(policies, pod, database, 5432)
    assert not allowed(policies, pod, upload_pod, 8080)
    assert not allowed(policies, pod, Endpoint("internet", "203.0.113.10"), 443)
    assert not allowed(policies, gateway_pod, pod, 8080)
    # Made before the Job, as a hook of the same phases, so it holds at the first install.
    policy = named(objects, "NetworkPolicy", JOB)["metadata"]["annotations"]
    job_hooks = job["metadata"]["annotations"]
    assert policy["helm.sh/hook"] == job_hooks["helm.sh/hook"]
    assert int(policy["helm.sh/hook-weight"]) < int(job_hooks["helm.sh/hook-weight"])
