"""skaffold.yaml: valid for its apiVersion, and wired to the Dockerfiles and chart that exist."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import CHART, ROOT, SERVICES, merged_values, named, render, values_for
from tests.deploy.dockerfiles import parse
from tests.deploy.test_kubernetes_schemas import crd_schemas_dir

SKAFFOLD = ROOT / "skaffold.yaml"
VALUES_KEY = dict(SERVICES)


def config() -> dict[str, Any]:
    return yaml.safe_load(SKAFFOLD.read_text())


def schema_validator(api_version: str) -> jsonschema.Draft7Validator:
    version = api_version.removeprefix("skaffold/")
    path = crd_schemas_dir() / f"skaffold-{version}.json"
    assert path.is_file(), f"no published schema for {api_version}"
    return jsonschema.Draft7Validator(json.loads(path.read_text()))


def test_validates_against_the_published_schema_of_its_api_version() -> None:
    loaded = config()
    assert loaded["apiVersion"] == "skaffold/v4beta14"
    errors = [
        f"{e.json_path}: {e.message}"
        for e in schema_validator(loaded["apiVersion"]).iter_errors(loaded)
    ]
    assert errors == []


def test_schema_check_catches_a_misspelt_field() -> None:
    broken = config()
    broken["build"]["artifacts"][0]["docker"]["dockerFile"] = "gateway/Dockerfile"
    assert list(schema_validator(broken["apiVersion"]).iter_errors(broken))


def test_each_profile_validates_once_applied() -> None:
    """Profiles are JSON patches: applied, the result must still be a valid config."""
    loaded = config()
    validator = schema_validator(loaded["apiVersion"])
    for profile in loaded["profiles"]:
        patched = apply_patches(copy.deepcopy(loaded), profile.get("patches", []))
        patched.pop("profiles")
        assert list(validator.iter_errors(patched)) == [], profile["name"]


def apply_patches(document: dict[str, Any], patches: list[dict[str, Any]]) -> dict[str, Any]:
    for patch in patches:
        assert patch.get("op", "replace") in {"add", "replace"}
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in patch["path"].split("/")[1:]
        ]
        node: Any = document
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            if last == "-":
                node.append(patch["value"])
            else:
                node[int(last)] = patch["value"]
        else:
            node[last] = patch["value"]
    return document


def test_artifacts_are_the_three_images_built_by_their_dockerfiles() -> None:
    artifacts = config()["build"]["artifacts"]
    assert len(artifacts) == len(SERVICES)
    by_dockerfile = {a["docker"]["dockerfile"]: a for a in artifacts}
    assert set(by_dockerfile) == {f"{service}/Dockerfile" for service in SERVICES}
    defaults = merged_values("default")
    for service, key in SERVICES.items():
        artifact = by_dockerfile[f"{service}/Dockerfile"]
        assert artifact.get("context", ".") == "."
        assert (ROOT / artifact["docker"]["dockerfile"]).is_file()
        assert artifact["image"] == defaults[key]["image"]["repository"]
        build_args = set(artifact["docker"].get("buildArgs", {}))
        declared = {name for stage in parse(ROOT / service / "Dockerfile") for name in stage.args()}
        assert build_args <= declared


def image_variable(image: str, kind: str) -> str:
    return "{{{{.IMAGE_{}_{}}}}}".format(kind, re.sub(r"[^A-Za-z0-9]", "_", image))


def test_the_chart_deploys_the_images_skaffold_built() -> None:
    loaded = config()
    (release,) = loaded["deploy"]["helm"]["releases"]
    assert (ROOT / release["chartPath"]).resolve() == CHART
    templates = release["setValueTemplates"]
    for artifact in loaded["build"]["artifacts"]:
        service = Path(artifact["docker"]["dockerfile"]).parent.name
        key = VALUES_KEY[service]
        assert templates[f"{key}.image.repository"] == image_variable(artifact["image"], "REPO")
        assert templates[f"{key}.image.tag"] == image_variable(artifact["image"], "TAG")
    # The values skaffold sets exist in the chart: render with them substituted.
    substituted: dict[str, Any] = {}
    for dotted, _ in templates.items():
        key, _, field = dotted.partition(".image.")
        substituted.setdefault(key, {"image": {}})["image"][field] = (
            "registry.test/x" if field == "repository" else "t1"
        )
    objects = render(substituted, release=release["name"], namespace=release["namespace"])
    for service in SERVICES:
        deployment = named(objects, "Deployment", f"{release['name']}-{service}")
        assert (
            deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.test/x:t1"
        )


def test_file_sync_maps_sources_onto_the_installed_packages() -> None:
    artifacts = config()["build"]["artifacts"]
    for artifact in artifacts:
        service = Path(artifact["docker"]["dockerfile"]).parent.name
        runtime = parse(ROOT / service / "Dockerfile")[-1]
        python = re.search(r"python:(\d+\.\d+)", runtime.base).group(1)  # type: ignore[union-attr]
        rules = artifact["sync"]["manual"]
        synced_packages = set()
        for rule in rules:
            matched = list(ROOT.glob(rule["src"]))
            assert matched, f"{rule['src']} matches no file"
            assert rule["src"].startswith(rule["strip"])
            package = Path(rule["strip"]).name
            assert rule["dest"] == f"/app/.venv/lib/python{python}/site-packages/{package}"
            assert (ROOT / rule["strip"] / "__init__.py").is_file()
            synced_packages.add(package)
        own = {
            "gateway": "gateway",
            "upload-svc": "upload_svc",
            "ai-svc": "ai_svc",
            "library-svc": "library_svc",
        }[service]
        assert synced_packages == {own, "chassis"}
        # Every file the packages install is synced, so an edit never waits for a rebuild.
        synced = {path for rule in rules for path in ROOT.glob(rule["src"])}
        for package_dir in (ROOT / service / "src" / own, ROOT / "chassis" / "src" / "chassis"):
            for path in package_dir.rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    assert path in synced, path.relative_to(ROOT)


def test_dev_profile_makes_sync_possible_and_reloads() -> None:
    loaded = config()
    (dev,) = [p for p in loaded["profiles"] if p["name"] == "dev"]
    assert {"command": "dev"} in dev["activation"]
    patched = apply_patches(copy.deepcopy(loaded), dev["patches"])
    for artifact in patched["build"]["artifacts"]:
        # The synced files must be writable by the container's user.
        assert artifact["docker"]["buildArgs"]["SOURCE_OWNER"] == str(
            merged_values("default")["containerSecurityContext"]["runAsUser"]
        )
    (release,) = patched["deploy"]["helm"]["releases"]
    assert release["valuesFiles"] == ["helm/values/dev.yaml"]
    dev_values = values_for("dev")
    assert dev_values["containerSecurityContext"]["readOnlyRootFilesystem"] is False
    for key in SERVICES.values():
        assert "--reload" in dev_values[key]["args"]


def test_debug_profile_runs_gunicorn_under_python_for_the_debugger() -> None:
    loaded = config()
    (debug,) = [p for p in loaded["profiles"] if p["name"] == "debug"]
    assert {"command": "debug"} in debug["activation"]
    patched = apply_patches(copy.deepcopy(loaded), debug["patches"])
    (release,) = patched["deploy"]["helm"]["releases"]
    objects = render(values_for("debug"), release=release["name"], namespace=release["namespace"])
    for service in SERVICES:
        spec = named(objects, "Deployment", f"ideasnap-{service}")["spec"]["template"]["spec"]
        command = spec["containers"][0]["command"]
        assert command[:3] == ["python", "-m", "gunicorn"]
        liveness = spec["containers"][0]["livenessProbe"]
        assert liveness["periodSeconds"] * liveness["failureThreshold"] >= 600


def test_port_forward_reaches_the_gateway_service() -> None:
    loaded = config()
    (release,) = loaded["deploy"]["helm"]["releases"]
    (forward,) = loaded["portForward"]
    objects = render({}, release=release["name"], namespace=release["namespace"])
    service = named(objects, "Service", forward["resourceName"])
    assert forward["resourceType"] == "service"
    assert forward["namespace"] == release["namespace"]
    assert service["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    assert forward["port"] in {p["port"] for p in service["spec"]["ports"] if p["name"] == "http"}


def test_every_image_has_a_test_step() -> None:
    loaded = config()
    images = {a["image"] for a in loaded["build"]["artifacts"]}
    tested = {t["image"] for t in loaded["test"]}
    assert tested == images
    for step in loaded["test"]:
        (custom,) = step["custom"]
        assert "$IMAGE" in custom["command"]
        assert "--check-config" in custom["command"]
        # The test runs the image the way the chart does: read-only root, non-root user.
        assert "--read-only" in custom["command"]
        assert "--tmpfs /tmp" in custom["command"]


@pytest.mark.parametrize("name", ["dev", "debug"])
def test_profile_values_files_render(name: str) -> None:
    assert render(values_for(name))
