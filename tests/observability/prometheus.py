"""A real Prometheus (Debian's package) scraping the running services, for the tests.

The scrape config labels each target the way the chart's ServiceMonitors do in a
cluster: ``job`` is the service's name and ``namespace`` the release's namespace (plus
the ``service``, ``pod``, ``endpoint`` labels the operator adds), so the dashboards'
and alerts' selectors are exercised exactly as they will run.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import requests
import yaml

from testbed.processes import ManagedProcess, base_env, free_port, wait_http

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class QueryError(AssertionError):
    """Prometheus refused a query (bad syntax, unknown function, ...)."""


@dataclass
class Target:
    job: str
    address: str
    labels: Mapping[str, str]


@dataclass
class Prometheus:
    managed: ManagedProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; a refusal raises with Prometheus's own message."""
        response = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = response.json()
        if response.status_code != 200 or body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}\n  in: {expr}")
        data = body["data"]
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def wait_until(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException, QueryError):
                if check():
                    return
            time.sleep(0.25)
        raise TimeoutError(f"Prometheus never saw {what} within {timeout}s")

    def targets_up(self, count: int) -> bool:
        return self.value("sum(up)") == count

    def rules(self) -> list[dict[str, Any]]:
        body = requests.get(f"{self.url}/api/v1/rules", timeout=10).json()
        return [rule for group in body["data"]["groups"] for rule in group["rules"]]

    def wait_for_scrape_after(self, moment: float) -> float:
        """Wait until every target was scraped after ``moment``; returns the latest scrape."""
        self.wait_until(
            lambda: (self.value("min(timestamp(up))") or 0) > moment,
            "a scrape of every target after the traffic",
        )
        return self.value("max(timestamp(up))") or moment

    def wait_for_rules_after(self, moment: float) -> None:
        """Wait until every rule group was evaluated after ``moment``."""

        def evaluated() -> bool:
            body = requests.get(f"{self.url}/api/v1/rules", timeout=10).json()
            groups = body["data"]["groups"]
            return bool(groups) and all(
                go_time(group["lastEvaluation"]) > moment for group in groups
            )

        self.wait_until(evaluated, "an evaluation of every rule group after the traffic")


def go_time(text: str) -> float:
    """Seconds since the epoch of a Go RFC 3339 time (nanoseconds, ``Z`` or an offset)."""
    match = re.fullmatch(r"(.+?)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    whole, fraction, zone = match.groups()
    moment = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return moment.timestamp() + float(f"0.{fraction or 0}")


def write_config(
    directory: Path,
    targets: list[Target],
    rule_groups: list[dict[str, Any]],
    interval: str = "1s",
) -> Path:
    rules = directory / "rules.yaml"
    rules.write_text(yaml.safe_dump({"groups": rule_groups}, sort_keys=False))
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": target.job,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "static_configs": [{"targets": [target.address], "labels": dict(target.labels)}],
            }
            for target in targets
        ],
    }
    path = directory / "prometheus.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@contextlib.contextmanager
def running_prometheus(
    tmp: Path, targets: list[Target], rule_groups: list[dict[str, Any]]
) -> Iterator[Prometheus]:
    directory = tmp / "prometheus"
    directory.mkdir()
    config = write_config(directory, targets, rule_groups)
    port = free_port()
    managed = ManagedProcess(
        name="prometheus",
        args=[
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=warn",
        ],
        env=base_env(),
        log_path=tmp / "prometheus.log",
        cwd=directory,
    ).start()
    try:
        wait_http(f"http://127.0.0.1:{port}/-/ready", timeout=30, process=managed.process)
        prometheus = Prometheus(managed=managed, port=port)
        prometheus.wait_until(lambda: _ready(prometheus), "its ready endpoint", timeout=30)
        yield prometheus
    finally:
        managed.stop()


def _ready(prometheus: Prometheus) -> bool:
    return requests.get(f"{prometheus.url}/-/ready", timeout=2).status_code == 200
