"""The chart renders through Helm's own engine, lints clean, and refuses bad values."""

from __future__ import annotations

import copy
import json
from typing import Any

import helm_python
import pytest
import yaml

from tests.deploy.chart import (
    CHART,
    NEWEST_KUBERNETES,
    OLDEST_KUBERNETES,
    SERVICES,
    VALUE_SETS,
    merged_values,
    named,
    of_kind,
    render,
    rendered_set,
    values_for,
)

REQUIRED_SETS = {"default", "s3", "redis", "keda", "cnpg"}


def test_the_required_value_sets_are_exercised() -> None:
    assert set(VALUE_SETS) >= REQUIRED_SETS


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_value_set_renders_a_complete_release(value_set: str) -> None:
    objects = rendered_set(value_set)
    kinds = {obj["kind"] for obj in objects}
    assert {"Deployment", "Service", "ConfigMap", "NetworkPolicy"} <= kinds
    assert {obj["metadata"]["namespace"] for obj in objects} == {"ideasnap"}
    names = [(obj["kind"], obj["metadata"]["name"]) for obj in objects]
    assert len(names) == len(set(names)), "two objects of one kind share a name"
    for name in SERVICES:
        named(objects, "Deployment", f"ideasnap-{name}")
        named(objects, "Service", f"ideasnap-{name}")


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_is_clean_on_the_oldest_and_newest_kubernetes(value_set: str) -> None:
    for kube_version in (f"v{OLDEST_KUBERNETES}", f"v{NEWEST_KUBERNETES}"):
        report = helm_python.lint(
            CHART, values_for(value_set), strict=True, kube_version=kube_version
        )
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert report["errors"] == [], (kube_version, report)
        assert problems == [], (kube_version, report)


def test_every_values_key_is_typed_in_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[1]]
        if isinstance(value, dict) and "properties" in node:
            assert node.get("additionalProperties") is False, f"{path} accepts unknown keys"
            for key, child in value.items():
                assert key in node["properties"], f"{path}.{key} is not in the schema"
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(defaults, schema, "values")


@pytest.mark.parametrize(
    ("values", "where"),
    [
        ({"gatway": {"replicaCount": 3}}, "gatway"),
        ({"gateway": {"replicas": 3}}, "replicas"),
        ({"aiSvc": {"autoscaling": {"minReplica": 3}}}, "minReplica"),
        ({"uploadSvc": {"storage": {"s3": {"bucketName": "x"}}}}, "bucketName"),
        ({"networkPolicy": {"egres": {}}}, "egres"),
        ({"ingress": {"nginx": {"proxyBodySizes": "20m"}}}, "proxyBodySizes"),
    ],
)
def test_schema_rejects_a_misspelt_key(values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as raised:
        render(values)
    assert where in str(raised.value)


@pytest.mark.parametrize(
    "values",
    [
        {"gateway": {"replicaCount": "three"}},
        {"aiSvc": {"autoscaling": {"enabled": "yes"}}},
        {"uploadSvc": {"storage": {"backend": "ftp"}}},
        {"config": {"logLevel": "LOUD"}},
        {"config": {"maxUploadBytes": -1}},
        {"gateway": {"image": {"digest": "latest"}}},
        {"gateway": {"config": {"NOT-AN-ENV-NAME": "x"}}},
        {"gateway": {"config": {"PORT": 8080}}},
        {"aiSvc": {"autoscaling": {"inFlight": {"targetUtilization": 1.5}}}},
        {"networkPolicy": {"egress": {"gemini": {"to": [], "ports": [{"port": 443}]}}}},
    ],
)
def test_schema_rejects_wrong_types_and_values(values: dict[str, Any]) -> None:
    with pytest.raises(helm_python.HelmValuesError):
        render(values)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"uploadSvc": {"storage": {"backend": "s3"}}}, "uploadSvc.storage.s3.bucket is required"),
        ({"uploadSvc": {"autoscaling": {"enabled": True}}}, "would not see each other's uploads"),
        ({"uploadSvc": {"replicaCount": 3}}, "would not see each other's uploads"),
        ({"redis": {"enabled": True}}, "redis.enabled needs redis.url or redis.existingSecret"),
        ({"gateway": {"apiKeys": {"enabled": True}}}, "gateway.apiKeys.enabled needs"),
        (
            {"gateway": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}},
            "gateway.autoscaling.minReplicas (5) is above",
        ),
        (
            {
                "uploadSvc": {
                    "storage": {"backend": "s3", "s3": {"bucket": "b", "accessKeyId": "k"}}
                }
            },
            "set both accessKeyId and secretAccessKey",
        ),
    ],
)
def test_incoherent_values_stop_the_render_with_a_clear_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm_python.HelmRenderError) as raised:
        render(values)
    assert message in str(raised.value)


def test_local_storage_scales_out_on_a_read_write_many_volume() -> None:
    values = {
        "uploadSvc": {
            "autoscaling": {"enabled": True},
            "storage": {"local": {"persistence": {"accessModes": ["ReadWriteMany"]}}},
        }
    }
    objects = render(values)
    named(objects, "HorizontalPodAutoscaler", "ideasnap-upload-svc")
    deployment = named(objects, "Deployment", "ideasnap-upload-svc")
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    claim = named(objects, "PersistentVolumeClaim", "ideasnap-upload-svc-uploads")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_default_upload_volume_is_kept_and_replaced_not_rolled() -> None:
    objects = rendered_set("default")
    claim = named(objects, "PersistentVolumeClaim", "ideasnap-upload-svc-uploads")
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    deployment = named(objects, "Deployment", "ideasnap-upload-svc")
    # A ReadWriteOnce volume cannot attach to a surge pod on another node.
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    assert deployment["spec"]["replicas"] == 1


def test_keda_replaces_the_ai_svc_autoscaler_and_keeps_the_others() -> None:
    objects = rendered_set("keda")
    hpas = {obj["metadata"]["name"] for obj in of_kind(objects, "HorizontalPodAutoscaler")}
    assert "ideasnap-ai-svc" not in hpas, "KEDA makes its own HPA; two would fight"
    assert "ideasnap-gateway" in hpas
    scaled = named(objects, "ScaledObject", "ideasnap-ai-svc")
    triggers = {trigger["type"]: trigger for trigger in scaled["spec"]["triggers"]}
    assert set(triggers) == {"prometheus", "cpu"}
    query = triggers["prometheus"]["metadata"]["query"]
    assert "http_server_active_requests" in query
    assert 'service="ideasnap-ai-svc"' in query
    assert 'namespace="ideasnap"' in query
    merged = merged_values("keda")["aiSvc"]
    capacity = merged["gunicorn"]["workers"] * merged["gunicorn"]["threads"]
    threshold = float(triggers["prometheus"]["metadata"]["threshold"])
    assert threshold == pytest.approx(
        capacity * merged["autoscaling"]["inFlight"]["targetUtilization"]
    )


def test_ai_svc_autoscaler_scales_on_in_flight_requests_with_cpu_as_a_floor() -> None:
    objects = render({"aiSvc": {"autoscaling": {"inFlight": {"prometheusAdapter": True}}}})
    hpa = named(objects, "HorizontalPodAutoscaler", "ideasnap-ai-svc")
    metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
    assert metrics["Pods"]["pods"]["metric"]["name"] == "http_server_active_requests"
    assert metrics["Pods"]["pods"]["target"]["type"] == "AverageValue"
    assert metrics["Resource"]["resource"]["name"] == "cpu"
    ai = merged_values("default")["aiSvc"]
    capacity = ai["gunicorn"]["workers"] * ai["gunicorn"]["threads"]
    target = float(metrics["Pods"]["pods"]["target"]["averageValue"])
    assert target == pytest.approx(capacity * ai["autoscaling"]["inFlight"]["targetUtilization"])
    assert 0 < target < capacity
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] > 0
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_redis_url_with_a_password_comes_from_the_secret_only() -> None:
    objects = rendered_set("redis")
    for name in ("gateway", "ai-svc"):
        deployment = named(objects, "Deployment", f"ideasnap-{name}")
        env = {
            item["name"]: item
            for item in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "ideasnap-redis",
            "key": "redis-url",
        }
        assert "REDIS_URL" not in named(objects, "ConfigMap", f"ideasnap-{name}")["data"]
    upload = named(objects, "Deployment", "ideasnap-upload-svc")
    assert all(
        item["name"] != "REDIS_URL"
        for item in upload["spec"]["template"]["spec"]["containers"][0]["env"]
    )


def test_inline_credentials_land_in_secrets_never_in_config_maps() -> None:
    secrets = {
        "sentry": {"dsn": "https://public@sentry.invalid/1"},
        "aiSvc": {"gemini": {"apiKey": "gemini-key-value-123"}},
        "uploadSvc": {
            "autoscaling": {"enabled": True},
            "storage": {
                "backend": "s3",
                "s3": {
                    "bucket": "b",
                    "accessKeyId": "AKIAEXAMPLE",
                    "secretAccessKey": "s3cr3t-value",
                },
            },
        },
        "gateway": {"apiKeys": {"enabled": True, "content": "0123456789abcdef:mobile\n"}},
    }
    objects = render(copy.deepcopy(secrets))
    text = yaml.safe_dump([obj for obj in objects if obj["kind"] != "Secret"])
    for value in (
        "public@sentry.invalid",
        "gemini-key-value-123",
        "AKIAEXAMPLE",
        "s3cr3t-value",
        "0123456789abcdef",
    ):
        assert value not in text
    made = {obj["metadata"]["name"] for obj in of_kind(objects, "Secret")}
    assert made == {"ideasnap-sentry", "ideasnap-gemini", "ideasnap-s3", "ideasnap-api-keys"}


def test_existing_secret_names_are_used_as_given() -> None:
    objects = rendered_set("production")
    assert of_kind(objects, "Secret") == [], "existing secrets must not be re-created"
    refs = set()
    for deployment in of_kind(objects, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        for item in spec["containers"][0]["env"]:
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                refs.add((item["name"], ref["name"]))
        for volume in spec["volumes"]:
            if "secret" in volume:
                refs.add(("volume", volume["secret"]["secretName"]))
    assert refs == {
        ("SENTRY_DSN", "ideasnap-sentry"),
        ("REDIS_URL", "ideasnap-redis"),
        ("GEMINI_API_KEY", "ideasnap-gemini"),
        ("AWS_ACCESS_KEY_ID", "ideasnap-s3"),
        ("AWS_SECRET_ACCESS_KEY", "ideasnap-s3"),
        ("volume", "ideasnap-api-keys"),
        ("DATABASE_URL", "ideasnap-library-database"),
        ("BILLING_WEBHOOK_AUTHORIZATION", "ideasnap-library"),
        ("PAGE_TOKEN_SECRET", "ideasnap-library"),
    }


def test_a_config_change_rolls_the_pods_of_that_service() -> None:
    before = {d["metadata"]["name"]: d for d in of_kind(rendered_set("default"), "Deployment")}
    after = {
        d["metadata"]["name"]: d
        for d in of_kind(render({"aiSvc": {"gemini": {"model": "gemini-2.5-pro"}}}), "Deployment")
    }

    def checksum(deployment: dict[str, Any]) -> str:
        return deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]

    assert checksum(before["ideasnap-ai-svc"]) != checksum(after["ideasnap-ai-svc"])
    assert checksum(before["ideasnap-gateway"]) == checksum(after["ideasnap-gateway"])


def test_free_form_config_reaches_the_service_and_wins() -> None:
    objects = render(
        {
            "config": {"extra": {"FEATURE_X": "on"}},
            "gateway": {"config": {"RATE_LIMIT_STRATEGY": "moving-window", "LOG_LEVEL": "DEBUG"}},
        }
    )
    gateway = named(objects, "ConfigMap", "ideasnap-gateway")["data"]
    assert gateway["RATE_LIMIT_STRATEGY"] == "moving-window"
    assert gateway["LOG_LEVEL"] == "DEBUG"
    assert gateway["FEATURE_X"] == "on"
    assert named(objects, "ConfigMap", "ideasnap-ai-svc")["data"]["LOG_LEVEL"] == "INFO"


def test_large_numbers_are_written_as_integers() -> None:
    data = named(render({"config": {"maxUploadBytes": 26214400}}), "ConfigMap", "ideasnap-gateway")[
        "data"
    ]
    assert data["MAX_UPLOAD_BYTES"] == "26214400"
