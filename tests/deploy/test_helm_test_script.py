"""The `helm test` pod's script, run by busybox against the real services.

The script is taken from the chart as Helm renders it; only the Service address is
swapped for the gateway's loopback address. busybox's own applets (sh, wget, grep, ...)
are the only commands on PATH, as in the pod's image.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from testbed.processes import Stack, start_stack
from tests.deploy.chart import is_test_hook, of_kind, render

pytestmark = pytest.mark.integration

BUSYBOX = shutil.which("busybox") or "/usr/bin/busybox"
APPLETS = ("sh", "wget", "timeout", "date", "grep", "cat", "head", "sleep")
SERVICE_URL = 'base="http://ideasnap-gateway:80"'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("helm-test-stack"), workers=1, threads=4)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def applets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("busybox-bin")
    for applet in APPLETS:
        (directory / applet).symlink_to(BUSYBOX)
    return directory


def script(values: dict[str, Any] | None = None) -> str:
    (pod,) = [obj for obj in of_kind(render(values), "Pod") if is_test_hook(obj)]
    (container,) = pod["spec"]["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    text = container["command"][2]
    assert SERVICE_URL in text
    return text


def run(text: str, url: str, applets: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(applets / "sh"), "-c", text.replace(SERVICE_URL, f'base="{url}"')],
        env={"PATH": str(applets), "TMPDIR": str(tmp_path), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_script_passes_against_a_healthy_stack(
    stack: Stack, applets: Path, tmp_path: Path
) -> None:
    result = run(script(), stack.url, applets, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: GET /readyz" in result.stdout
    assert "ok: GET /v1/presets" in result.stdout
    assert '"templates"' in (tmp_path / "presets").read_text()


def test_the_script_fails_when_the_gateway_never_gets_ready(applets: Path, tmp_path: Path) -> None:
    with_short_wait = script({"helmTest": {"readyTimeoutSeconds": 3}})
    result = run(with_short_wait, "http://127.0.0.1:9", applets, tmp_path)
    assert result.returncode == 1
    assert "FAIL: GET http://127.0.0.1:9/readyz did not answer 200 within 3s" in result.stdout


def test_the_script_fails_when_the_gateway_cannot_reach_ai_svc(
    tmp_path_factory: pytest.TempPathFactory, applets: Path, tmp_path: Path
) -> None:
    broken = start_stack(tmp_path_factory.mktemp("no-ai"), workers=1, threads=2)
    try:
        broken.ai.managed.stop()
        result = run(script(), broken.url, applets, tmp_path)
    finally:
        broken.stop()
    assert result.returncode == 1, result.stdout
    assert "ok: GET /readyz" in result.stdout
    assert "FAIL: GET" in result.stdout
    assert "/v1/presets did not answer 200" in result.stdout
