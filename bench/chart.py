"""What the Helm chart says a pod is, so "per pod" in the results means the chart's pod.

The benchmark runs each service with the chart's default gunicorn workers and threads,
and the sizing section puts its recommendations next to the chart's current defaults.
When the chart is absent or a key is missing, the chassis defaults (2 workers x 8
threads) apply and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
VALUES = ROOT / "helm" / "ideasnap" / "values.yaml"
CHART_KEYS = {"gateway": "gateway", "upload-svc": "uploadSvc", "ai-svc": "aiSvc"}
CHASSIS_WORKERS = 2
CHASSIS_THREADS = 8


@dataclass(frozen=True)
class PodShape:
    workers: int
    threads: int
    source: str

    @property
    def capacity(self) -> int:
        return self.workers * self.threads


def chart_values(path: Path = VALUES) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def service_values(name: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    found = (values if values is not None else chart_values()).get(CHART_KEYS[name])
    return found if isinstance(found, dict) else {}


def pod_shapes(values: dict[str, Any] | None = None) -> dict[str, PodShape]:
    values = values if values is not None else chart_values()
    shapes = {}
    for name, key in CHART_KEYS.items():
        gunicorn = service_values(name, values).get("gunicorn") or {}
        workers, threads = gunicorn.get("workers"), gunicorn.get("threads")
        if isinstance(workers, int) and isinstance(threads, int):
            shapes[name] = PodShape(workers, threads, f"chart {key}.gunicorn")
        else:
            shapes[name] = PodShape(CHASSIS_WORKERS, CHASSIS_THREADS, "chassis defaults")
    return shapes


def current_defaults(name: str, values: dict[str, Any] | None = None) -> dict[str, Any]:
    """The chart's resources and autoscaling targets for one service, as they are now."""
    service = service_values(name, values)
    autoscaling = service.get("autoscaling") or {}
    in_flight = autoscaling.get("inFlight") or {}
    return {
        "resources": service.get("resources"),
        "targetCPUUtilizationPercentage": autoscaling.get("targetCPUUtilizationPercentage"),
        "inFlightTargetUtilization": in_flight.get("targetUtilization"),
    }


def trace_sampling(values: dict[str, Any] | None = None) -> dict[str, str]:
    """The sampler the chart sets on every service, so that "observability on" is as deployed."""
    config = (values if values is not None else chart_values()).get("config") or {}
    ratio = config.get("traceSampleRatio", 1.0)
    return {
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": str(ratio),
    }
