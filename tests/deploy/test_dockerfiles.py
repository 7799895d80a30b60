"""The service images: what each Dockerfile builds, checked without a Docker engine.

hadolint lints them; the rest reads the instructions and holds them to the chart that
runs the images (user, ports, writable mounts, entry point). test_image_runs.py runs the
builder stage's own commands and the ENTRYPOINT.
"""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.deploy.chart import (
    ROOT,
    SERVICES,
    config_env,
    container,
    merged_values,
    named,
    rendered_set,
)
from tests.deploy.dockerfiles import Stage, parse

HADOLINT = Path(sys.executable).parent / "hadolint"
BASE = re.compile(r"^python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}$")


def stages(service: str) -> list[Stage]:
    return parse(ROOT / service / "Dockerfile")


def package_name(service: str) -> str:
    return tomllib.loads((ROOT / service / "pyproject.toml").read_text())["project"]["name"]


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str) -> bool:
    return any(
        fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern.removeprefix("**/"))
        for pattern in dockerignore()
    )


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_is_clean(service: str) -> None:
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(ROOT / service / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_hadolint_is_not_a_rubber_stamp(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\n")
    result = subprocess.run([str(HADOLINT), str(bad)], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "DL3007" in result.stdout


def test_every_stage_of_every_image_uses_one_base_pinned_by_digest() -> None:
    bases = {stage.base for service in SERVICES for stage in stages(service)}
    assert len(bases) == 1, bases
    assert BASE.match(bases.pop())


@pytest.mark.parametrize("service", SERVICES)
def test_builder_installs_the_service_from_the_frozen_lock_without_dev_tools(service: str) -> None:
    builder, runtime = stages(service)
    assert builder.name == "builder"
    assert runtime.name == "runtime"
    syncs = [shlex.split(r.arguments) for r in builder.all("RUN") if "uv sync" in r.arguments]
    assert len(syncs) == 2, "dependencies first (cached layer), then the workspace code"
    for words in syncs:
        command = words[words.index("uv") :]
        assert {"--frozen", "--no-dev", "--no-editable"} <= set(command)
        assert command[command.index("--package") + 1] == package_name(service)
    assert "--no-install-workspace" in syncs[0]
    assert "--no-install-workspace" not in syncs[1]
    pins = [r.arguments for r in builder.all("RUN") if "pip install" in r.arguments]
    assert pins
    assert all('"uv==${UV_VERSION}"' in pin for pin in pins)
    assert re.match(r"^\d+\.\d+\.\d+$", builder.args()["UV_VERSION"])


@pytest.mark.parametrize("service", SERVICES)
def test_runtime_stage_has_no_build_tools_and_only_the_built_environment(service: str) -> None:
    _, runtime = stages(service)
    for run in runtime.all("RUN"):
        assert not re.search(r"\b(pip|uv|apt-get|apk)\s+install\b", run.arguments), run.arguments
    assert "pip uninstall" in " ".join(r.arguments for r in runtime.all("RUN"))
    copies = runtime.all("COPY")
    from_builder = [c for c in copies if c.flags().get("from") == "builder"]
    assert [c.operands() for c in from_builder] == [["/app/.venv", "/app/.venv"]]
    local = [c.operands() for c in copies if "from" not in c.flags()]
    assert local == [[f"{service}/gunicorn.conf.py", "/app/gunicorn.conf.py"]]
    # Release builds keep the code owned by root; only the dev loop changes the owner.
    assert runtime.args()["SOURCE_OWNER"] == "0"


@pytest.mark.parametrize("service", SERVICES)
def test_image_runs_as_the_user_the_chart_expects(service: str) -> None:
    _, runtime = stages(service)
    (user,) = runtime.all("USER")
    uid, _, gid = user.arguments.partition(":")
    merged = merged_values("default")
    assert (
        int(uid)
        == merged["podSecurityContext"]["runAsUser"]
        == merged["containerSecurityContext"]["runAsUser"]
    )
    assert int(gid) == merged["podSecurityContext"]["runAsGroup"]
    assert int(uid) > 10000
    assert runtime.instructions.index(user) > max(
        runtime.instructions.index(r) for r in runtime.all("RUN")
    )


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_and_environment_match_the_chart(service: str) -> None:
    _, runtime = stages(service)
    (entrypoint,) = runtime.all("ENTRYPOINT")
    assert entrypoint.words == ["gunicorn", "-c", "/app/gunicorn.conf.py"]
    assert (ROOT / service / "gunicorn.conf.py").is_file()
    objects = rendered_set("default")
    deployment = named(objects, "Deployment", f"ideasnap-{service}")
    chart_env = config_env(objects, deployment)
    image_env = runtime.env()
    for name in ("HOST", "PORT", "METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR"):
        assert image_env[name] == chart_env[name], name
    exposed = {int(port) for e in runtime.all("EXPOSE") for port in e.words}
    assert exposed == {p["containerPort"] for p in container(deployment)["ports"]}
    assert image_env["PATH"].startswith("/app/.venv/bin:")
    # The metrics directory exists in the image, owned by the service's user.
    prepared = " ".join(r.arguments for r in runtime.all("RUN"))
    assert (
        f"install -d -o 10001 -g 10001 -m 0750 {image_env['PROMETHEUS_MULTIPROC_DIR']}" in prepared
    )


@pytest.mark.parametrize("service", SERVICES)
def test_build_context_sends_what_the_build_copies_and_nothing_else(service: str) -> None:
    builder, _ = stages(service)
    for copy in builder.all("COPY"):
        for source in copy.operands()[:-1]:
            path = ROOT / source
            assert path.exists(), source
            assert not ignored(source.rstrip("/")), f"{source} is excluded by .dockerignore"
    for heavy in (".venv", ".git", ".tools", "tests", "var", "k8s", "helm"):
        assert ignored(heavy), f".dockerignore should exclude {heavy}"
    assert ignored("chassis/src/chassis/__pycache__")
