"""k8s/ is the chart rendered with its defaults, kept in sync by `make manifests`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from tests.deploy.chart import ROOT, is_test_hook, load_render_script, rendered_set

K8S = ROOT / "k8s"


def test_k8s_matches_a_fresh_render_of_the_chart() -> None:
    script = load_render_script()
    stale = script.stale_files(script.plain_manifests(), K8S)
    assert stale == [], f"k8s/ is out of date ({', '.join(stale)}): run `make manifests`"


def test_check_mode_reports_a_stale_file(tmp_path: Path) -> None:
    script = load_render_script()
    expected = script.plain_manifests()
    target = tmp_path
    script.write(expected, target)
    assert script.stale_files(expected, target) == []
    (target / "deployment.yaml").write_text(
        expected["deployment.yaml"].replace("replicas: 1", "replicas: 3")
    )
    (target / "leftover.yaml").write_text("kind: ConfigMap\n")
    assert script.stale_files(expected, target) == ["deployment.yaml", "leftover.yaml"]


def test_make_manifests_check_exits_zero_when_in_sync() -> None:
    result = subprocess.run(
        [sys.executable, "scripts/render_manifests.py", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_kustomization_lists_every_manifest_and_the_namespace_comes_first() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files
    assert kustomization["resources"][0] == "namespace.yaml"


def test_plain_manifests_hold_exactly_the_default_release() -> None:
    objects = [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name not in {"kustomization.yaml", "namespace.yaml"}
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]

    def key(obj: dict[str, object]) -> str:
        return yaml.safe_dump(obj, sort_keys=True)

    release = [obj for obj in rendered_set("default") if not is_test_hook(obj)]
    assert sorted(map(key, objects)) == sorted(map(key, release))


def test_helm_test_hooks_stay_out_of_the_plain_manifests() -> None:
    """`kubectl apply -k k8s/` must not start the test pod: it runs under `helm test` only."""
    hooks = [obj for obj in rendered_set("default") if is_test_hook(obj)]
    assert {obj["kind"] for obj in hooks} == {"Pod", "NetworkPolicy"}
    shipped = [
        doc for path in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text())
    ]
    assert not [doc for doc in shipped if doc and is_test_hook(doc)]
    assert not [doc for doc in shipped if doc and doc.get("kind") == "Pod"]


def test_namespace_enforces_the_restricted_pod_security_standard() -> None:
    namespace = yaml.safe_load((K8S / "namespace.yaml").read_text())
    assert namespace["metadata"]["name"] == "ideasnap"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
