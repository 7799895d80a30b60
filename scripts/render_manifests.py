"""Render the Helm chart with its default values into plain manifests in k8s/.

`make manifests` runs this; `kubectl apply -k k8s/` then installs what `helm install`
would, for clusters managed without Helm. Rendering uses Helm's own Go engine (the
helm-python SDK binds it), never a re-implementation, so k8s/ is exactly the chart.

The chart's `helm test` hooks (a pod and the NetworkPolicy that admits it) are left out:
they run on demand under `helm test`, and `kubectl apply` would start the pod at once.

With ``--check`` nothing is written: the exit status is 1 when k8s/ differs from a
fresh render (the deploy tests run the same comparison).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "ideasnap"
OUT_DIR = ROOT / "k8s"
RELEASE = "ideasnap"
NAMESPACE = "ideasnap"
HEADER = (
    "# Rendered from helm/ideasnap with its default values by `make manifests`\n"
    "# (scripts/render_manifests.py). Do not edit: change the chart, then run `make manifests`.\n"
)


def render_chart(
    values: dict[str, Any] | None = None,
    *,
    release: str = RELEASE,
    namespace: str = NAMESPACE,
    chart: Path = CHART,
) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce it (NOTES included)."""
    import helm_python as helm

    with helm.Chart.load(chart) as loaded:
        return loaded.render(values=values, name=release, namespace=namespace, is_install=True)


def split_documents(text: str) -> list[str]:
    """The non-empty YAML documents of a rendered template, each without its separator."""
    documents: list[str] = []
    current: list[str] = []
    for line in text.splitlines():
        if line.rstrip() == "---":
            documents.append("\n".join(current))
            current = []
        else:
            current.append(line)
    documents.append("\n".join(current))
    return [doc.strip("\n") + "\n" for doc in documents if yaml.safe_load(doc) is not None]


def is_test_hook(document: str) -> bool:
    """Is this rendered object one of the chart's `helm test` hooks?"""
    obj = yaml.safe_load(document) or {}
    hooks = (obj.get("metadata", {}).get("annotations") or {}).get("helm.sh/hook", "")
    return "test" in {hook.strip() for hook in hooks.split(",")}


def namespace_manifest() -> str:
    """The namespace, admitting only pods that meet the restricted Pod Security Standard."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
            "labels": {
                "app.kubernetes.io/part-of": "ideasnap",
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            },
        },
    }
    return yaml.safe_dump(namespace, sort_keys=False)


def plain_manifests(rendered: dict[str, str] | None = None) -> dict[str, str]:
    """k8s/ file name -> content: a file per chart template, a namespace, a kustomization."""
    rendered = render_chart() if rendered is None else rendered
    files: dict[str, str] = {"namespace.yaml": HEADER + namespace_manifest()}
    for template, text in sorted(rendered.items()):
        if not template.endswith((".yaml", ".yml")):
            continue  # NOTES.txt and helpers
        documents = [doc for doc in split_documents(text) if not is_test_hook(doc)]
        if documents:
            files[Path(template).name] = HEADER + "---\n" + "---\n".join(documents)
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files, key=lambda name: (name != "namespace.yaml", name)),
    }
    files["kustomization.yaml"] = HEADER + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def stale_files(expected: dict[str, str], out_dir: Path = OUT_DIR) -> list[str]:
    """Names of files in out_dir that differ from, are missing from, or are not in expected."""
    present = {path.name for path in out_dir.glob("*.yaml")} if out_dir.is_dir() else set()
    differing = [
        name
        for name, content in expected.items()
        if not (out_dir / name).is_file() or (out_dir / name).read_text() != content
    ]
    return sorted(set(differing) | (present - set(expected)))


def write(expected: dict[str, str], out_dir: Path = OUT_DIR) -> None:
    out_dir.mkdir(exist_ok=True)
    for path in out_dir.glob("*.yaml"):
        if path.name not in expected:
            path.unlink()
    for name, content in expected.items():
        (out_dir / name).write_text(content)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether k8s/ is stale")
    args = parser.parse_args(argv)
    expected = plain_manifests()
    stale = stale_files(expected)
    if args.check:
        if stale:
            print(
                f"k8s/ is out of date ({', '.join(stale)}): run `make manifests`", file=sys.stderr
            )
            return 1
        print("k8s/ matches the chart")
        return 0
    write(expected)
    print(f"wrote {len(expected)} files to {OUT_DIR.relative_to(ROOT)}/ ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
