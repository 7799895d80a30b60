"""The gateway hop: what one proxied small request costs, against no proxy and nginx.

The same small request (``GET /v1/presets``, ~0.9 kB of JSON from ai-svc) is sent three
ways, in one run on the same cores:

- ``direct``: straight to ai-svc;
- ``gateway``: through the gateway, as deployed (limits counted in Redis, CORS, security
  headers, access log, request id), with limits raised far above the offered load;
- ``nginx``: through Debian's nginx configured as the same reverse proxy (keep-alive
  upstream pool, request id and X-Forwarded-For set, access log on, 2 workers).

wrk measures each at two points: one connection in a closed loop (latency: p50/p99) and
16 connections (throughput, requests per second). Targets are measured in rounds, the
order rotating every round so that drift on the machine falls on all three. The added
latency is paired: in each round, the proxied percentile minus the direct one measured in
that same round, and the figure is the median of those per-round differences, reported
with their spread (lowest and highest round). A difference of two medians taken over
different rounds mixes drift between rounds into the figure and can come out negative,
which no proxy can do; the goal check (bench/goals.py) marks such a figure invalid.
The gateway's extra memory for a ~10 MB upload is measured too (peak resident memory
of its worker above the start, per request; see tests/gateway).

A thumbnail is what the app fetches after every snap, so its proxied cost is measured
as well: one photo is uploaded through the gateway (anonymously, as the app may), then
its public ``GET /v1/uploads/<id>/thumbnail`` is sent through the gateway and straight
to upload-svc, 16 connections each, in alternating order per round. The figure is the
gateway's process-tree CPU per proxied GET over upload-svc's tree CPU per GET served
directly: what the hop costs against the work of serving the image at all.

Run: ``python -m bench.run --only gateway_hop`` (or ``make bench``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from bench.goals import goal_row
from bench.wrk import Measurement, script, version, wrk
from testbed import corpus
from testbed.processes import Service, free_port, gunicorn_service
from testbed.resources import children, reset_peak, status_kib, tree_cpu_seconds
from testbed.servers import Nginx, RedisServer, boot, stop_all

NAME = "gateway_hop"
PATH = "/v1/presets"
THUMBNAIL_TARGETS = ("direct", "gateway")
TARGETS = ("direct", "gateway", "nginx")
LATENCY_CONNECTIONS = 1
THROUGHPUT_CONNECTIONS = 16
WORKERS, THREADS = 2, 8
UNLIMITED = {
    "RATE_LIMIT_DEFAULT": "1000000000/minute",
    "RATE_LIMIT_AI": "1000000000/minute",
    "AI_DAILY_QUOTA": "1000000000/day",
}
GOALS = {
    "gateway_added_p50_ms": 5.0,
    "gateway_added_p99_ms": 25.0,
    "gateway_rps_vs_direct": 0.4,
    "upload_memory_kib_per_request": 1024.0,
    "thumbnail_cpu_vs_direct": 1.0,
}
# A proxy in front of a server can pass at most what the server passes alone; a ratio a
# little above 1 is noise between runs, far above it is a broken measurement.
RPS_RATIO_RANGE = (0.0, 1.25)


def nginx_config(port: int, upstream_port: int) -> str:
    return f"""
  upstream ai {{
    server 127.0.0.1:{upstream_port};
    keepalive 32;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 11m;
    location /v1/ {{
      access_log {{access_log}} combined buffer=64k;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Forwarded-For $remote_addr;
      proxy_connect_timeout 1s;
      proxy_read_timeout 60s;
      proxy_pass http://ai;
    }}
  }}
"""


def noise_photo(max_bytes: int) -> bytes:
    """A JPEG of noise (it does not compress) just under ``max_bytes``."""
    width = 2250
    while True:
        image = Image.frombytes("RGB", (width, 2200), os.urandom(width * 2200 * 3))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=100)
        if out.tell() <= max_bytes:
            return out.getvalue()
        width = int(width * 0.9 * max_bytes / out.tell())


def upload_memory(gateway: Service, rounds: int, photo_bytes: int, at_once: int) -> dict[str, Any]:
    """Peak extra resident memory of the gateway's workers per upload in flight."""
    assert gateway.managed.process is not None
    master = gateway.managed.process.pid
    workers = children(master)
    photo = noise_photo(photo_bytes)

    def upload() -> int:
        return requests.post(
            f"{gateway.url}/v1/uploads",
            files={"image": ("big.jpg", photo, "image/jpeg")},
            timeout=120,
        ).status_code

    with ThreadPoolExecutor(at_once) as pool:  # warm every worker and thread
        list(pool.map(lambda _: upload(), range(at_once * len(workers))))
    per_request = []
    for _ in range(rounds):
        for pid in workers:
            reset_peak(pid)
        baseline = {pid: status_kib(pid, "VmRSS") for pid in workers}
        with ThreadPoolExecutor(at_once) as pool:
            statuses = list(pool.map(lambda _: upload(), range(at_once)))
        if statuses != [201] * at_once:
            raise RuntimeError(f"uploads failed: {statuses}")
        grown = sum(status_kib(pid, "VmHWM") - baseline[pid] for pid in workers)
        per_request.append(grown / at_once)
    return {
        "photo_bytes": len(photo),
        "uploads_at_once": at_once,
        "peak_extra_kib_per_upload": round(max(per_request), 1),
        "rounds": [round(value, 1) for value in per_request],
    }


def thumbnail_urls(gateway: Service, upload: Service) -> dict[str, str]:
    """Upload one photo through the gateway; its thumbnail's URL direct and proxied."""
    answer = requests.post(
        f"{gateway.url}/v1/uploads",
        files={"image": ("photo.jpg", corpus.phone_photo(1600, 1200, seed=7), "image/jpeg")},
        timeout=60,
    )
    if answer.status_code != 201:
        raise RuntimeError(f"upload for the thumbnail failed: {answer.status_code}")
    path = answer.json()["urls"]["thumbnail"]
    return {"direct": f"{upload.url}{path}", "gateway": f"{gateway.url}{path}"}


def thumbnail_cpu(
    urls: dict[str, str], pids: dict[str, int], rounds: int, seconds: float, lua: Path
) -> dict[str, Any]:
    """CPU per thumbnail GET of the gateway's tree (proxied) and upload-svc's (direct).

    Each round measures both targets, in alternating order, so drift falls on both; the
    ratio is of the medians over rounds, with each round's own ratio kept as its spread.
    """
    size = 0
    for url in urls.values():  # both paths answer the image and every pool is warm
        for _ in range(3):
            answer = requests.get(url, timeout=10)
            answer.raise_for_status()
            if answer.headers.get("Content-Type") != "image/jpeg":
                raise RuntimeError(f"{url} answered {answer.headers.get('Content-Type')}")
            size = len(answer.content)
    spent: dict[str, dict[str, list[float]]] = {target: {} for target in THUMBNAIL_TARGETS}
    measured: dict[str, list[Measurement]] = {target: [] for target in THUMBNAIL_TARGETS}
    for number in range(rounds):
        order = THUMBNAIL_TARGETS if number % 2 == 0 else THUMBNAIL_TARGETS[::-1]
        for target in order:
            before = {name: tree_cpu_seconds(pid) for name, pid in pids.items()}
            result = wrk(urls[target], THROUGHPUT_CONNECTIONS, seconds, lua)
            measured[target].append(result)
            for name, pid in pids.items():
                per_request = (
                    1000 * (tree_cpu_seconds(pid) - before[name]) / max(1, result.requests)
                )
                spent[target].setdefault(name, []).append(per_request)
    gateway_ms = spent["gateway"]["gateway"]
    direct_ms = spent["direct"]["upload-svc"]
    ratio = median(gateway_ms) / median(direct_ms) if median(direct_ms) > 0 else None
    return {
        "thumbnail_bytes": size,
        "gateway_cpu_ms_per_request": median(gateway_ms),
        "upload_svc_cpu_ms_per_request_direct": median(direct_ms),
        "upload_svc_cpu_ms_per_request_proxied": median(spent["gateway"]["upload-svc"]),
        "gateway_cpu_vs_direct": None if ratio is None else round(ratio, 3),
        "round_ratios": [
            round(g / d, 3) if d > 0 else None for g, d in zip(gateway_ms, direct_ms, strict=True)
        ],
        "rps": {target: median([item.rps for item in measured[target]]) for target in measured},
        "errors": sum(item.errors for items in measured.values() for item in items),
    }


@contextlib.contextmanager
def services(work_dir: Path, workers: int) -> Iterator[dict[str, Any]]:
    """ai-svc (and upload-svc behind it), Redis, the gateway and nginx, on loopback."""
    storage = Path(tempfile.mkdtemp(prefix="gateway-hop-storage-"))
    redis_server = RedisServer(work_dir)
    nginx: Nginx | None = None
    started: list[Service] = []
    try:
        redis_server.start()
        upload = gunicorn_service(
            "upload-svc", work_dir, {"STORAGE_DIR": str(storage)}, workers=workers, threads=THREADS
        )
        ai = gunicorn_service(
            "ai-svc", work_dir, {"UPLOAD_SVC_URL": upload.url}, workers=workers, threads=THREADS
        )
        gateway = gunicorn_service(
            "gateway",
            work_dir,
            {
                "UPLOAD_SVC_URL": upload.url,
                "AI_SVC_URL": ai.url,
                "REDIS_URL": redis_server.url,
                **UNLIMITED,
            },
            workers=workers,
            threads=THREADS,
        )
        started = [upload, ai, gateway]
        boot(started)
        nginx_port = free_port()
        block = nginx_config(nginx_port, ai.port).replace(
            "{access_log}", str(work_dir / "nginx-access.log")
        )
        nginx = Nginx(work_dir / "nginx", block, workers=workers).start(nginx_port)
        yield {
            "urls": {
                "direct": f"{ai.url}{PATH}",
                "gateway": f"{gateway.url}{PATH}",
                "nginx": f"http://127.0.0.1:{nginx_port}{PATH}",
            },
            "gateway": gateway,
            "upload": upload,
            "pids": {
                "gateway": gateway.managed.process.pid,  # type: ignore[union-attr]
                "ai-svc": ai.managed.process.pid,  # type: ignore[union-attr]
                "upload-svc": upload.managed.process.pid,  # type: ignore[union-attr]
                "nginx": nginx.managed.process.pid,  # type: ignore[union-attr]
            },
        }
    finally:
        if nginx is not None:
            nginx.stop()
        stop_all(list(reversed(started)))
        redis_server.stop()
        shutil.rmtree(storage, ignore_errors=True)


def version_of(command: list[str]) -> str:
    try:
        run = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "absent"
    return (run.stdout + run.stderr).strip().splitlines()[0] if (run.stdout + run.stderr) else ""


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def paired_added(proxied: list[float], direct: list[float]) -> dict[str, Any]:
    """Added latency from per-round differences (same round, same machine state).

    Returns the median difference and its spread; ``rounds`` keeps every difference.
    """
    if len(proxied) != len(direct) or not proxied:
        raise ValueError("added latency needs one proxied and one direct figure per round")
    differences = [round(p - d, 3) for p, d in zip(proxied, direct, strict=True)]
    return {
        "median_ms": median(differences),
        "lowest_ms": min(differences),
        "highest_ms": max(differences),
        "rounds": differences,
    }


def run(out_dir: Path, smoke: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    # Smoke: every code path once, in seconds; its figures mean nothing.
    seconds = 1.0 if smoke else 5.0
    rounds = 1 if smoke else 3
    workers = 1 if smoke else WORKERS
    load_before = os.getloadavg()
    lua = script(out_dir / "report.lua")
    raw: dict[str, dict[str, list[Measurement]]] = {
        target: {"latency": [], "throughput": []} for target in TARGETS
    }
    # CPU ms per request of each process tree, over the throughput runs of each target.
    cpu: dict[str, dict[str, list[float]]] = {target: {} for target in TARGETS}
    with services(out_dir, workers) as running:
        urls = running["urls"]
        for url in urls.values():  # every path answers, every pool is warm
            for _ in range(3 if smoke else 50):
                requests.get(url, timeout=10).raise_for_status()
        for number in range(rounds):
            order = TARGETS[number % 3 :] + TARGETS[: number % 3]
            for target in order:
                raw[target]["latency"].append(wrk(urls[target], LATENCY_CONNECTIONS, seconds, lua))
                before = {name: tree_cpu_seconds(pid) for name, pid in running["pids"].items()}
                measured = wrk(urls[target], THROUGHPUT_CONNECTIONS, seconds, lua)
                raw[target]["throughput"].append(measured)
                for name, pid in running["pids"].items():
                    spent = tree_cpu_seconds(pid) - before[name]
                    cpu[target].setdefault(name, []).append(
                        1000 * spent / max(1, measured.requests)
                    )
        thumbnail = thumbnail_cpu(
            thumbnail_urls(running["gateway"], running["upload"]),
            {name: running["pids"][name] for name in ("gateway", "upload-svc")},
            rounds,
            seconds,
            lua,
        )
        memory = (
            upload_memory(running["gateway"], 1, 1024 * 1024, 1)
            if smoke
            else upload_memory(running["gateway"], 3, 10 * 1024 * 1024 - 64 * 1024, 4)
        )

    figures: dict[str, Any] = {}
    for target in TARGETS:
        latency, throughput = raw[target]["latency"], raw[target]["throughput"]
        figures[target] = {
            "p50_ms": median([item.p50_ms for item in latency]),
            "p99_ms": median([item.p99_ms for item in latency]),
            "rps_one_connection": median([item.rps for item in latency]),
            "rps": median([item.rps for item in throughput]),
            "p50_ms_at_16": median([item.p50_ms for item in throughput]),
            "p99_ms_at_16": median([item.p99_ms for item in throughput]),
            "errors": sum(item.errors for item in latency + throughput),
            "cpu_ms_per_request": {name: median(values) for name, values in cpu[target].items()},
        }
    direct, gateway, nginx = (figures[target] for target in TARGETS)
    latency = {target: raw[target]["latency"] for target in TARGETS}
    for proxy in ("gateway", "nginx"):
        for percentile in ("p50", "p99"):
            added = paired_added(
                [getattr(item, f"{percentile}_ms") for item in latency[proxy]],
                [getattr(item, f"{percentile}_ms") for item in latency["direct"]],
            )
            figures[f"{proxy}_added_{percentile}_ms"] = added["median_ms"]
            figures[f"{proxy}_added_{percentile}_spread_ms"] = added
    figures["gateway_rps_vs_direct"] = round(gateway["rps"] / direct["rps"], 3)
    figures["nginx_rps_vs_direct"] = round(nginx["rps"] / direct["rps"], 3)
    figures["gateway_rps_vs_nginx"] = round(gateway["rps"] / nginx["rps"], 3)
    figures["gateway_added_p50_vs_nginx_added"] = (
        round(figures["gateway_added_p50_ms"] / figures["nginx_added_p50_ms"], 2)
        if figures["nginx_added_p50_ms"] > 0
        else None
    )
    figures["gateway_cpu_ms_per_request"] = gateway["cpu_ms_per_request"]["gateway"]
    figures["nginx_cpu_ms_per_request"] = nginx["cpu_ms_per_request"]["nginx"]
    figures["upload_memory"] = memory
    figures["thumbnail"] = thumbnail

    spread = {
        percentile: figures[f"gateway_added_{percentile}_spread_ms"]
        for percentile in ("p50", "p99")
    }
    errors = sum(figures[target]["errors"] for target in TARGETS) + thumbnail["errors"]
    table = [
        goal_row(
            "gateway added latency p50 (ms, 1 connection; median of per-round differences, "
            f"rounds {spread['p50']['lowest_ms']} to {spread['p50']['highest_ms']})",
            figures["gateway_added_p50_ms"],
            "<",
            GOALS["gateway_added_p50_ms"],
        ),
        goal_row(
            "gateway added latency p99 (ms, 1 connection; median of per-round differences, "
            f"rounds {spread['p99']['lowest_ms']} to {spread['p99']['highest_ms']})",
            figures["gateway_added_p99_ms"],
            "<",
            GOALS["gateway_added_p99_ms"],
        ),
        goal_row(
            "gateway throughput / direct (16 connections)",
            figures["gateway_rps_vs_direct"],
            ">=",
            GOALS["gateway_rps_vs_direct"],
            RPS_RATIO_RANGE,
        ),
        {
            "metric": "nginx throughput / direct (16 connections), for comparison",
            "value": figures["nginx_rps_vs_direct"],
            "goal": "reference",
            "met": None,
        },
        {
            "metric": "gateway throughput / nginx",
            "value": figures["gateway_rps_vs_nginx"],
            "goal": "reference",
            "met": None,
        },
        {
            "metric": "CPU per proxied request (ms): gateway / nginx",
            "value": f"{figures['gateway_cpu_ms_per_request']} / "
            f"{figures['nginx_cpu_ms_per_request']}",
            "goal": "reference",
            "met": None,
        },
        goal_row(
            "gateway CPU per proxied thumbnail GET / upload-svc's CPU serving it directly "
            f"({thumbnail['gateway_cpu_ms_per_request']} / "
            f"{thumbnail['upload_svc_cpu_ms_per_request_direct']} ms, 16 connections)",
            thumbnail["gateway_cpu_vs_direct"],
            "<=",
            GOALS["thumbnail_cpu_vs_direct"],
        ),
        goal_row(
            f"gateway extra memory per {memory['photo_bytes'] / 1e6:.1f} MB upload (KiB)",
            memory["peak_extra_kib_per_upload"],
            "<",
            GOALS["upload_memory_kib_per_request"],
        ),
        goal_row("errors in all load runs", errors, "==", 0),
    ]
    return {
        "name": NAME,
        "title": "Gateway hop: proxied small request vs direct vs nginx",
        "smoke": smoke,
        "figures": figures,
        "table": table,
        "inputs": {
            "request": f"GET {PATH} (ai-svc presets, ~0.9 kB JSON)",
            "thumbnail_request": "GET /v1/uploads/<id>/thumbnail (an anonymous upload's "
            "thumbnail JPEG), through the gateway and direct to upload-svc",
            "load_tool": version(),
            "nginx": version_of([shutil.which("nginx") or "/usr/sbin/nginx", "-v"]),
            "seconds_per_measurement": seconds,
            "rounds": rounds,
            "latency_connections": LATENCY_CONNECTIONS,
            "throughput_connections": THROUGHPUT_CONNECTIONS,
            "workers_per_service": workers,
            "threads_per_worker": THREADS,
            "nginx_workers": workers,
            "gateway_limits": "counted in Redis, raised above the offered load",
            "cores": os.cpu_count(),
            "load_average_before": [round(value, 2) for value in load_before],
            "load_average_after": [round(value, 2) for value in os.getloadavg()],
        },
        "command": "python -m bench.run --only gateway_hop" + (" --smoke" if smoke else ""),
        "raw": {
            target: {kind: [vars(item) for item in items] for kind, items in raw[target].items()}
            for target in TARGETS
        },
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    print(json.dumps(run(Path(tempfile.mkdtemp(prefix="gateway-hop-")), smoke=False), indent=2))
