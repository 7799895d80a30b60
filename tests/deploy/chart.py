"""The chart as Helm's own Go engine renders it (helm-python-sdk), and lookups over the objects.

Nothing here re-implements Helm: every object the tests look at is what `helm install`
would send to the API server for the same values.
"""

from __future__ import annotations

import importlib.util
import re
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "ideasnap"
VALUES_DIR = ROOT / "helm" / "values"
RELEASE = "ideasnap"
NAMESPACE = "ideasnap"

# The supported Kubernetes range: Chart.yaml's kubeVersion floor up to the newest release
# whose OpenAPI schemas kubernetes-validate ships. Both ends are tested.
KUBE_VERSION_FLOOR = re.compile(r"^>=\s*(\d+\.\d+)\.\d+(-0)?$")


def _oldest_kubernetes() -> str:
    constraint = yaml.safe_load((CHART / "Chart.yaml").read_text())["kubeVersion"]
    floor = KUBE_VERSION_FLOOR.match(constraint)
    assert floor, f"kubeVersion {constraint!r} is not a plain floor"
    return f"{floor.group(1)}.0"


OLDEST_KUBERNETES = _oldest_kubernetes()
NEWEST_KUBERNETES = "1.37.0"

# The value sets the chart must render: its defaults plus every example values file.
# The production-like ones must also pass checkov; dev and debug relax the pod
# hardening on purpose (file sync, debugger) and are only rendered and validated.
VALUE_SETS = ["default", *sorted(path.stem for path in VALUES_DIR.glob("*.yaml"))]
RELAXED_VALUE_SETS = {"dev", "debug"}
HARDENED_VALUE_SETS = [name for name in VALUE_SETS if name not in RELAXED_VALUE_SETS]

SERVICES = {
    "gateway": "gateway",
    "upload-svc": "uploadSvc",
    "ai-svc": "aiSvc",
    "library-svc": "librarySvc",
}
# Who calls whom on the http port: the architecture's request flow.
CALL_GRAPH = {
    ("gateway", "upload-svc"),
    ("gateway", "ai-svc"),
    ("gateway", "library-svc"),
    ("ai-svc", "upload-svc"),
    ("library-svc", "upload-svc"),
}

Obj = dict[str, Any]


def values_for(name: str) -> dict[str, Any]:
    if name == "default":
        return {}
    loaded = yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text())
    return loaded or {}


def render_templates(
    values: dict[str, Any] | None = None, *, release: str = RELEASE, namespace: str = NAMESPACE
) -> dict[str, str]:
    """Template path -> rendered text; raises helm_python.HelmError like `helm install` fails."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.render(values=values or {}, name=release, namespace=namespace, is_install=True)


def objects_of(rendered: dict[str, str]) -> list[Obj]:
    objects: list[Obj] = []
    for path in sorted(rendered):
        if path.endswith((".yaml", ".yml")):
            objects.extend(doc for doc in yaml.safe_load_all(rendered[path]) if doc)
    return objects


def render(values: dict[str, Any] | None = None, **kwargs: str) -> list[Obj]:
    return objects_of(render_templates(values, **kwargs))


@cache
def rendered_set(name: str) -> tuple[Obj, ...]:
    """The objects of a named value set (cached: rendering is pure)."""
    return tuple(render(values_for(name)))


@cache
def merged_values(name: str) -> dict[str, Any]:
    """The values a release of this set would use: the chart's defaults coalesced with the set."""
    with helm_python.Chart.load(CHART) as chart:
        return chart.merge_values(values_for(name))


def of_kind(objects: tuple[Obj, ...] | list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: tuple[Obj, ...] | list[Obj], kind: str, name: str) -> Obj:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def is_test_hook(obj: Obj) -> bool:
    """One of the chart's `helm test` hooks (run by `helm test`, never part of the release)."""
    hooks = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return "test" in {hook.strip() for hook in hooks.split(",")}


def component(obj: Obj) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def pod_labels(deployment: Obj) -> dict[str, str]:
    return deployment["spec"]["template"]["metadata"]["labels"]


def container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def container_port(deployment: Obj, port: int | str) -> int:
    """Resolve a named or numbered port against the container's declared ports."""
    declared = {p["name"]: p["containerPort"] for p in container(deployment)["ports"]}
    if isinstance(port, int):
        assert port in declared.values(), f"port {port} is not declared by the container"
        return port
    assert port in declared, f"named port {port!r} is not declared by the container"
    return declared[port]


def matches_selector(selector: Obj | None, labels: dict[str, str]) -> bool:
    """Kubernetes LabelSelector semantics (an empty selector matches everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def config_env(objects: tuple[Obj, ...] | list[Obj], deployment: Obj) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps (envFrom) and literal env values."""
    env: dict[str, str] = {}
    spec = container(deployment)
    for source in spec.get("envFrom", []):
        env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in spec.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def load_render_script() -> ModuleType:
    """scripts/render_manifests.py, the code behind `make manifests`."""
    path = ROOT / "scripts" / "render_manifests.py"
    spec = importlib.util.spec_from_file_location("render_manifests", path)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
