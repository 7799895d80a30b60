"""checkov over the rendered manifests of every production value set and the Dockerfiles.

No check may fail. An exception is a skip annotation in the chart with its reason, and
only the exceptions listed here, each for the reason it gives. checkov starts slowly, so
it runs once for the whole module over one directory holding everything.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.chart import CHART, HARDENED_VALUE_SETS, ROOT, SERVICES, of_kind, rendered_set

CHECKOV = Path(sys.executable).parent / "checkov"
# Each exception the chart declares (as a checkov.io/skip annotation) and why it is sound.
ALLOWED_SKIPS = {
    # Image digests are set per release (<service>.image.digest); the tag is the fallback.
    "CKV_K8S_43",
    # IfNotPresent with immutable release tags; with a digest the check passes by itself.
    "CKV_K8S_15",
    # Credentials reach the services as environment variables from secretKeyRef.
    "CKV_K8S_35",
}
# The `helm test` pod runs one check and exits: probes would watch nothing. Only that pod.
TEST_POD_SKIPS = {"CKV_K8S_8", "CKV_K8S_9"}
TEST_POD = "Pod.ideasnap.ideasnap-gateway-test"


@pytest.fixture(scope="module")
def checkov_report(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    scan = tmp_path_factory.mktemp("checkov")
    for value_set in HARDENED_VALUE_SETS:
        directory = scan / "manifests" / value_set
        directory.mkdir(parents=True)
        for index, obj in enumerate(rendered_set(value_set)):
            (directory / f"{index:03d}-{obj['kind'].lower()}.yaml").write_text(yaml.safe_dump(obj))
    for service in SERVICES:
        (scan / "images" / service).mkdir(parents=True)
        shutil.copy(ROOT / service / "Dockerfile", scan / "images" / service / "Dockerfile")
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE", "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"}
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(scan),
            "--framework",
            "kubernetes",
            "dockerfile",
            "--skip-download",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout)
    return report if isinstance(report, list) else [report]


def by_type(report: list[dict[str, Any]], check_type: str) -> dict[str, Any]:
    (found,) = [r for r in report if r["check_type"] == check_type]
    return found


def test_no_check_fails(checkov_report: list[dict[str, Any]]) -> None:
    failed = [
        f"{check['check_id']} {check['resource']} ({check['file_path']})"
        for report in checkov_report
        for check in report["results"]["failed_checks"]
    ]
    assert failed == []


def test_everything_was_scanned(checkov_report: list[dict[str, Any]]) -> None:
    dockerfile = by_type(checkov_report, "dockerfile")
    scanned = {Path(c["file_path"]).parent.name for c in dockerfile["results"]["passed_checks"]}
    assert scanned == set(SERVICES)
    kubernetes = by_type(checkov_report, "kubernetes")
    deployments = sum(len(of_kind(rendered_set(v), "Deployment")) for v in HARDENED_VALUE_SETS)
    checked = {
        (c["file_path"], c["resource"])
        for c in kubernetes["results"]["passed_checks"]
        if c["resource"].startswith("Deployment.")
    }
    assert len(checked) == deployments
    assert kubernetes["summary"]["parsing_errors"] == 0
    assert dockerfile["summary"]["parsing_errors"] == 0


def test_every_exception_is_declared_in_the_chart_with_its_reason(
    checkov_report: list[dict[str, Any]],
) -> None:
    deployments = "\n".join(p.read_text() for p in sorted((CHART / "templates").glob("*.yaml")))
    test_pod = (CHART / "templates" / "tests" / "gateway-test.yaml").read_text()
    skipped = [c for report in checkov_report for c in report["results"]["skipped_checks"]]
    assert skipped, "the chart declares exceptions; checkov must have honoured them"
    for check in skipped:
        reason = check["check_result"]["suppress_comment"]
        assert reason != "No comment provided"
        assert len(reason) > 40
        if check["resource"] == TEST_POD:
            assert check["check_id"] in TEST_POD_SKIPS, check["check_id"]
            assert f"{check['check_id']}={reason}" in test_pod
        else:
            assert check["check_id"] in ALLOWED_SKIPS, (check["check_id"], check["resource"])
            assert f"{check['check_id']}={reason}" in deployments
