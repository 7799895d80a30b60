"""Each image's environment, built by its Dockerfile's own commands, runs the pod the chart renders.

Without a Docker engine the image cannot be built, but its builder stage can be run:
the same COPY steps and the same `uv sync` commands against the frozen lock produce the
virtualenv the runtime stage copies. The test then starts the image's ENTRYPOINT from
that virtualenv with the image's ENV overlaid by the rendered pod's environment (its
ConfigMap and literal env, as Kubernetes overlays them), only the ports moved to free
loopback ports and the volumes to temporary directories, and asks every probe and the
ServiceMonitor's path on the port they name, as the kubelet and Prometheus would.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from testbed.metrics import total
from testbed.processes import ManagedProcess, free_port, wait_http
from tests.deploy.chart import (
    ROOT,
    SERVICES,
    config_env,
    container,
    container_port,
    named,
    render,
)
from tests.deploy.dockerfiles import Stage, parse

UV = ROOT / ".tools" / "bin" / "uv"
PACKAGES = {
    "gateway": "gateway",
    "upload-svc": "upload_svc",
    "ai-svc": "ai_svc",
    "library-svc": "library_svc",
}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def run_builder_stage(builder: Stage, workdir: Path, venv: Path) -> None:
    """The builder's COPY instructions into workdir, then its `uv sync` commands."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))},
        **builder.env(),
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable,
    }
    for instruction in builder.instructions:
        if instruction.keyword == "COPY":
            *sources, destination = instruction.operands()
            into = workdir / destination
            for source in sources:
                if (ROOT / source).is_dir():  # a directory's contents land in the destination
                    shutil.copytree(
                        ROOT / source,
                        into,
                        ignore=shutil.ignore_patterns("__pycache__"),
                        dirs_exist_ok=True,
                    )
                elif destination.endswith("/"):
                    into.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, into / Path(source).name)
                else:
                    into.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(ROOT / source, into)
        elif instruction.keyword == "RUN" and "uv sync" in instruction.arguments:
            words = shlex.split(instruction.arguments)
            command = [str(UV), *words[words.index("uv") + 1 :]]
            result = subprocess.run(
                command,
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            assert result.returncode == 0, result.stderr[-3000:]


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' $(VAR) references in env values."""
    return re.sub(
        r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value
    )


@pytest.mark.integration
@pytest.mark.parametrize("service", SERVICES)
def test_image_environment_runs_the_rendered_pod_and_answers_its_probes(
    service: str, tmp_path: Path
) -> None:
    assert UV.is_file(), "uv is installed by `make sync` into .tools/"
    builder, runtime = parse(ROOT / service / "Dockerfile")
    workdir, venv = tmp_path / "src", tmp_path / "app" / ".venv"
    workdir.mkdir()
    run_builder_stage(builder, workdir, venv)

    # What the runtime stage copies: the service, the chassis, gunicorn; no dev tools.
    probe = (
        "import importlib.util as u, json; "
        "print(json.dumps({m: u.find_spec(m) is not None for m in "
        "['gunicorn', 'chassis', 'gateway', 'upload_svc', 'ai_svc', 'library_svc', "
        "'pytest', 'ruff', 'checkov']}))"
    )
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-I", "-c", probe],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    modules = json.loads(found.stdout)
    own = PACKAGES[service]
    assert modules["gunicorn"]
    assert modules["chassis"]
    assert modules[own]
    assert not any(modules[m] for m in set(PACKAGES.values()) - {own}), "one service per image"
    assert not any(modules[m] for m in ("pytest", "ruff", "checkov")), "dev tools in the image"
    site = next((venv / "lib").glob("python3.*/site-packages"))
    assert (site / own / "__init__.py").is_file(), "installed as files, not editable"
    assert not any(workdir.as_posix() in p.read_text() for p in site.glob("*.pth"))

    # The pod: the image's ENV, overlaid by the rendered ConfigMap and env.
    # Defaults, on a cluster with the Prometheus operator (so the ServiceMonitor renders).
    objects = render({"apiVersions": ["monitoring.coreos.com/v1"]})
    deployment = named(objects, "Deployment", f"ideasnap-{service}")
    env = {**runtime.env(), **config_env(objects, deployment)}
    env.update({"POD_NAME": f"{service}-0", "POD_NAMESPACE": "ideasnap"})
    env = {name: expand(value, env) for name, value in env.items()}
    ports = {int(env["PORT"]): free_port(), int(env["METRICS_PORT"]): free_port()}
    env.update(
        {
            "HOST": "127.0.0.1",
            "PORT": str(ports[int(env["PORT"])]),
            "METRICS_PORT": str(ports[int(env["METRICS_PORT"])]),
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
            # The base image's PATH after the virtualenv, as in the image.
            "PATH": env["PATH"]
            .replace("/app/.venv/bin", str(venv / "bin"))
            .replace("$PATH", "/usr/local/bin:/usr/bin:/bin"),
        }
    )
    if "STORAGE_DIR" in env:
        env["STORAGE_DIR"] = str(tmp_path / "uploads")
    # What the pod reads from Secrets, given as the Secrets would: library-svc's database
    # (SQLite in the temporary directory, through the same models and migrations).
    from_secrets = {
        item["name"]
        for item in container(deployment).get("env", [])
        if "secretKeyRef" in item.get("valueFrom", {})
    }
    secret_values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'library.db'}",
        "BILLING_WEBHOOK_AUTHORIZATION": "image-test-billing-secret",
        "PAGE_TOKEN_SECRET": "image-test-page-token-secret",
    }
    env.update({name: secret_values[name] for name in from_secrets & set(secret_values)})
    # The chart's hook Jobs for this service (the migrations) run first, as Helm runs them,
    # with the writable mounts the Job declares.
    Path(env["PROMETHEUS_MULTIPROC_DIR"]).mkdir(parents=True, exist_ok=True)
    for job in objects:
        if job["kind"] != "Job" or not job["metadata"]["name"].startswith(f"ideasnap-{service}"):
            continue
        (job_container,) = job["spec"]["template"]["spec"]["containers"]
        executable, *job_args = job_container["command"]
        migrated = subprocess.run(
            [str(venv / "bin" / executable), *job_args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stderr[-3000:]
    (entrypoint,) = runtime.all("ENTRYPOINT")
    executable, *arguments = entrypoint.words
    config = str(ROOT / service / "gunicorn.conf.py")
    arguments = [config if a == "/app/gunicorn.conf.py" else a for a in arguments]
    spec = container(deployment)
    process = ManagedProcess(
        name=service,
        args=[str(venv / "bin" / executable), *arguments, *spec.get("args", [])],
        env=env,
        log_path=tmp_path / f"{service}.log",
        cwd=tmp_path,
    ).start()
    try:
        http = ports[container_port(deployment, "http")]
        wait_http(f"http://127.0.0.1:{http}/healthz", 60, process.process)
        for probe_name in PROBES:
            action = spec[probe_name]["httpGet"]
            port = ports[container_port(deployment, action["port"])]
            answer = requests.get(
                f"http://127.0.0.1:{port}{action['path']}",
                timeout=spec[probe_name]["timeoutSeconds"],
            )
            assert answer.status_code == 200, (probe_name, answer.text)
        monitor = named(objects, "ServiceMonitor", f"ideasnap-{service}")
        (endpoint,) = monitor["spec"]["endpoints"]
        kube_service = named(objects, "Service", f"ideasnap-{service}")
        target = next(p for p in kube_service["spec"]["ports"] if p["name"] == endpoint["port"])
        metrics_port = ports[container_port(deployment, target["targetPort"])]
        metrics_url = f"http://127.0.0.1:{metrics_port}{endpoint['path']}"
        scraped = requests.get(metrics_url, timeout=5)
        assert scraped.status_code == 200
        assert 'environment="production"' in scraped.text
        # Once every worker is up, the capacity the autoscaler divides by is workers x threads.
        capacity = int(env["WEB_CONCURRENCY"]) * int(env["GUNICORN_THREADS"])
        deadline = time.monotonic() + 30
        while (
            total(metrics_url, "http_server_worker_threads") < capacity
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        assert total(metrics_url, "http_server_worker_threads") == capacity
        # The public port never serves metrics (the Ingress routes to it).
        assert requests.get(f"http://127.0.0.1:{http}/metrics", timeout=5).status_code == 404
    finally:
        process.stop()
    assert process.process is not None
    assert process.process.returncode == 0, process.log_text()[-3000:]
