"""The chart's requests, limits and HPA targets, computed from one run's figures.

The rules (also in bench/README.md), per service, with K the knee in snaps/s per pod
(one pod of each service, as the benchmark runs them):

- CPU request = CPU seconds per snap x K, rounded up to 50m: what one pod burns at its
  knee, so a pod scheduled on that request can reach its knee on a busy node.
- CPU limit = 2 x the request: room for start-up and bursts without CFS throttling,
  which would add straight to p99.
- Memory request = resident memory (master + workers) at the end of the soak x 1.25,
  rounded up to 32 MiB; memory limit = 2 x the request, so a leak or a burst of large
  decodes meets the limit long before the node runs out. upload-svc's limit is at least
  its soak RSS plus the largest decodes it admits at once (workers x
  ``INTAKE_CONCURRENCY`` x ``MAX_IMAGE_PIXELS`` x 3 bytes): the benchmark's 12 MP photos
  do not reach the largest image it accepts, and an OOM kill mid-upload is a 502.
- HPA on CPU (gateway, upload-svc, and ai-svc's floor): target = (K/2) / K = 50% of the
  request, so pods are added when they average half the knee and a doubling of load
  while new pods start still lands at the knee, not past it.
- ai-svc on in-flight requests (it waits on Gemini with idle CPU, so CPU does not show
  its saturation; used where a metric source is declared): the same rule as CPU, against
  ai-svc's own knee. ``ai_capacity`` measures the requests one ai-svc pod holds in
  flight before its p99 passes 1.1 x the fake Gemini's latency. The target is half of
  that, rounded up to a whole request, as a fraction of the pod's threads (workers x
  threads, the chart's ``inFlight.targetUtilization``). The stack's knee cannot give
  it: there the gateway's and upload-svc's CPU run out while ai-svc still has most of
  its threads free.

CPU per snap comes from the soak (steady state) when it ran, else from the knee step;
memory likewise. The recommendations stand next to the chart's current defaults.

``python -m bench.sizing bench/results/<run>.json`` applies the current rules to a
recorded run again and rewrites its sizing and bench/RESULTS.md (nothing is measured).
"""

from __future__ import annotations

import functools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.chart import CHART_KEYS, PodShape, current_defaults

SERVICES = ("gateway", "upload-svc", "ai-svc")
CPU_STEP_MILLICORES = 50
MEMORY_STEP_MIB = 32
MEMORY_HEADROOM = 1.25
LIMIT_FACTOR = 2
HPA_LOAD_FRACTION = 0.5
RULES = [
    "CPU request = CPU s/snap x knee snaps/s, rounded up to 50m; CPU limit = 2 x request",
    "memory request = soak-end RSS (master + workers) x 1.25, rounded up to 32Mi; "
    "memory limit = 2 x request (upload-svc: at least RSS + workers x INTAKE_CONCURRENCY x "
    "MAX_IMAGE_PIXELS x 3 bytes, the largest decodes it admits at once)",
    "HPA CPU target = 50% of the request (a pod at half its knee)",
    "ai-svc in-flight target = half the requests one ai-svc pod holds at its own knee "
    "(ai_capacity: in flight before p99 passes 1.1 x Gemini latency) / (workers x threads), "
    "rounded up to a whole request per pod",
]


def round_up(value: float, step: int) -> int:
    return max(step, math.ceil(value / step) * step)


# Read in a child process: the benchmark does not import the services' modules, and
# these defaults are upload-svc's own (its settings), not something the chart sets.
UPLOAD_DEFAULTS = """
import json
from upload_svc.settings import UploadSettings
names = ("max_image_pixels", "intake_concurrency")
print(json.dumps({name: UploadSettings.model_fields[name].default for name in names}))
"""


@functools.cache
def upload_defaults() -> dict[str, int]:
    """upload-svc's MAX_IMAGE_PIXELS and INTAKE_CONCURRENCY defaults."""
    run = subprocess.run(
        [sys.executable, "-c", UPLOAD_DEFAULTS], capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout)


def largest_decodes_mib(shape: PodShape) -> float:
    """RGB buffers of the largest images upload-svc decodes at once, per pod (its defaults)."""
    defaults = upload_defaults()
    pixels, slots = defaults["max_image_pixels"], defaults["intake_concurrency"]
    return shape.workers * slots * pixels * 3 / (1024 * 1024)


def rss_from_knee(knee: dict[str, Any]) -> dict[str, float]:
    steps = knee.get("steps") or []
    if not steps:
        return {}
    concurrency = (knee.get("figures") or {}).get("knee_concurrency")
    chosen = next((step for step in steps if step["users"] == concurrency), steps[-1])
    return {name: service["rss_mib"] for name, service in chosen["services"].items()}


def service_sizing(
    name: str,
    knee_rate: float,
    *,
    per_snap: float | None,
    rss: float | None,
    routes: dict[str, float],
    shape: PodShape,
    own_knee_in_flight: float | None = None,
) -> dict[str, Any]:
    resources: dict[str, dict[str, str]] = {"requests": {}, "limits": {}}
    if per_snap is not None:
        request_m = round_up(per_snap * knee_rate * 1000, CPU_STEP_MILLICORES)
        resources["requests"]["cpu"] = f"{request_m}m"
        resources["limits"]["cpu"] = f"{request_m * LIMIT_FACTOR}m"
    decodes = largest_decodes_mib(shape) if name == "upload-svc" else 0.0
    if rss is not None:
        request_mi = round_up(rss * MEMORY_HEADROOM, MEMORY_STEP_MIB)
        limit_mi = max(request_mi * LIMIT_FACTOR, round_up(rss + decodes, MEMORY_STEP_MIB))
        resources["requests"]["memory"] = f"{request_mi}Mi"
        resources["limits"]["memory"] = f"{limit_mi}Mi"
    autoscaling: dict[str, Any] = {"targetCPUUtilizationPercentage": round(100 * HPA_LOAD_FRACTION)}
    in_flight = routes.get("*")
    extra: dict[str, Any] = {}
    if name == "ai-svc" and own_knee_in_flight:
        per_pod = max(1, math.ceil(round(own_knee_in_flight * HPA_LOAD_FRACTION, 6)))
        utilization = round(min(per_pod, shape.capacity) / shape.capacity, 6)
        autoscaling["inFlight"] = {"targetUtilization": utilization}
        extra = {
            "in_flight_at_own_knee": round(own_knee_in_flight, 1),
            "in_flight_target_per_pod": round(shape.capacity * utilization, 3),
        }
    return {
        "values": {"resources": resources, "autoscaling": autoscaling},
        "chart_now": current_defaults(name),
        "inputs": {
            "cpu_seconds_per_snap": per_snap,
            "rss_mib": rss,
            "in_flight_at_half_knee": in_flight,
            "threads_per_pod": shape.capacity,
            **({"largest_decodes_mib": round(decodes, 1)} if decodes else {}),
            **extra,
        },
    }


def recommend(
    results: dict[str, dict[str, Any]], pods: dict[str, PodShape]
) -> dict[str, Any] | None:
    """Recommended chart values, or None when the run has no knee to derive them from."""
    knee = results.get("knee") or {}
    knee_figures = knee.get("figures") or {}
    knee_rate = knee_figures.get("knee_snaps_per_second")
    if not knee_rate:
        return None
    soak = (results.get("soak") or {}).get("figures") or {}
    knee_cpu = knee_figures.get("knee_cpu_seconds_per_snap") or {}
    soak_cpu = soak.get("cpu_seconds_per_snap") or {}
    cpu_per_snap = {
        name: soak_cpu.get(name) if soak_cpu.get(name) is not None else knee_cpu.get(name)
        for name in SERVICES
    }
    memory = {
        name: item["end_mib"]
        for name, item in (soak.get("memory") or {}).items()
        if item.get("end_mib")
    } or rss_from_knee(knee)
    in_flight = soak.get("in_flight_by_route") or {}
    ai_capacity = (results.get("ai_capacity") or {}).get("figures") or {}
    ai_knee_in_flight = ai_capacity.get("in_flight_per_pod") or None
    services = {
        name: service_sizing(
            name,
            knee_rate,
            per_snap=cpu_per_snap.get(name),
            rss=memory.get(name),
            routes=in_flight.get(name) or {},
            shape=pods.get(name) or PodShape(2, 8, "chassis defaults"),
            own_knee_in_flight=ai_knee_in_flight if name == "ai-svc" else None,
        )
        for name in SERVICES
    }
    return {
        "knee_snaps_per_second_per_pod": knee_rate,
        "hpa_target_snaps_per_second_per_pod": round(knee_rate * HPA_LOAD_FRACTION, 3),
        "source": "soak" if soak else "knee step",
        "rules": RULES,
        "services": services,
        "chart_values": {CHART_KEYS[name]: entry["values"] for name, entry in services.items()},
    }


def resize_recorded_run(path: Path, markdown: Path | None = None) -> dict[str, Any] | None:
    """Apply the current rules to a recorded run: its ``sizing`` and the Markdown again."""
    from bench.report import render

    document = json.loads(path.read_text())
    results = {
        name: entry["result"]
        for name, entry in document["scenarios"].items()
        if entry.get("status") == "ok"
    }
    pods = {
        name: PodShape(shape["workers"], shape["threads"], shape["source"])
        for name, shape in document["settings"]["pods"].items()
    }
    document["sizing"] = recommend(results, pods)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    target = markdown or Path(__file__).resolve().parent / "RESULTS.md"
    target.write_text(render(document))
    return document["sizing"]


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.sizing bench/results/<run>.json")
    resize_recorded_run(Path(sys.argv[1]))
