"""The gateway hop: what one proxied small request costs, against no proxy and nginx.

The same small request (``GET /v1/presets``, ~0.9 kB of JSON from ai-svc) is sent three
ways, in one run on the same cores:

- ``direct``: straight to ai-svc;
- ``gateway``: through the gateway, as deployed (limits counted in Redis, CORS, security
  headers, access log, request id), with limits raised far above the offered load;
- ``nginx``: through Debian's nginx configured as the same reverse proxy (keep-alive
  upstream pool, request id and X-Forwarded-For set, access log on, 2 workers).

wrk measures each at two points: one connection in a closed loop (latency: p50/p99, and
the added latency is the proxied figure minus the direct one) and 16 connections
(throughput, requests per second). Targets are measured in rounds, the order rotating
every round so that drift on the machine falls on all three; a figure is the median
over the rounds. The gateway's extra memory for a ~10 MB upload is measured too (peak
resident memory of its worker above the start, per request; see tests/gateway).

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
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from PIL import Image

from testbed.processes import Service, free_port, gunicorn_service
from testbed.servers import Nginx, RedisServer, boot, stop_all

NAME = "gateway_hop"
PATH = "/v1/presets"
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
}
WRK_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


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


@dataclass
class Measurement:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk(url: str, connections: int, seconds: float, script: Path) -> Measurement:
    command = [
        shutil.which("wrk") or "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        url,
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = [text for text in run.stdout.splitlines() if text.startswith("{")][-1]
    data = json.loads(line)
    return Measurement(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"],
    )


def python_load(url: str, connections: int, seconds: float, _: Path) -> Measurement:
    """Fallback when wrk is missing: keep-alive sessions in threads (costlier per request)."""
    deadline = time.monotonic() + seconds

    def loop() -> tuple[list[float], int]:
        latencies, errors = [], 0
        with requests.Session() as session:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    ok = session.get(url, timeout=10).status_code == 200
                except requests.RequestException:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1
        return latencies, errors

    began = time.monotonic()
    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(lambda _: loop(), range(connections)))
    elapsed = time.monotonic() - began
    latencies = sorted(value for found, _ in results for value in found)
    errors = sum(count for _, count in results)

    def percentile(share: float) -> float:
        return latencies[min(len(latencies) - 1, int(share * len(latencies)))] * 1000

    return Measurement(len(latencies), elapsed, percentile(0.50), percentile(0.99), errors)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children (a gunicorn or nginx tree)."""
    pids, total = [pid], 0.0
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        pids.extend(int(child) for child in children)
    return total


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


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
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    workers = [int(pid) for pid in children]
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
            Path(f"/proc/{pid}/clear_refs").write_text("5")
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
            "pids": {
                "gateway": gateway.managed.process.pid,  # type: ignore[union-attr]
                "ai-svc": ai.managed.process.pid,  # type: ignore[union-attr]
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


def run(out_dir: Path, smoke: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    # Smoke: every code path once, in seconds; its figures mean nothing.
    seconds = 1.0 if smoke else 5.0
    rounds = 1 if smoke else 2
    workers = 1 if smoke else WORKERS
    load_before = os.getloadavg()
    use_wrk = shutil.which("wrk") is not None
    load: Callable[[str, int, float, Path], Measurement] = wrk if use_wrk else python_load
    script = out_dir / "report.lua"
    script.write_text(WRK_REPORT)
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
                raw[target]["latency"].append(
                    load(urls[target], LATENCY_CONNECTIONS, seconds, script)
                )
                before = {name: tree_cpu_seconds(pid) for name, pid in running["pids"].items()}
                measured = load(urls[target], THROUGHPUT_CONNECTIONS, seconds, script)
                raw[target]["throughput"].append(measured)
                for name, pid in running["pids"].items():
                    spent = tree_cpu_seconds(pid) - before[name]
                    cpu[target].setdefault(name, []).append(
                        1000 * spent / max(1, measured.requests)
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
    figures["gateway_added_p50_ms"] = round(gateway["p50_ms"] - direct["p50_ms"], 3)
    figures["gateway_added_p99_ms"] = round(gateway["p99_ms"] - direct["p99_ms"], 3)
    figures["nginx_added_p50_ms"] = round(nginx["p50_ms"] - direct["p50_ms"], 3)
    figures["nginx_added_p99_ms"] = round(nginx["p99_ms"] - direct["p99_ms"], 3)
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

    table = [
        {
            "metric": "gateway added latency p50 (ms, 1 connection)",
            "value": figures["gateway_added_p50_ms"],
            "goal": f"< {GOALS['gateway_added_p50_ms']}",
            "met": figures["gateway_added_p50_ms"] < GOALS["gateway_added_p50_ms"],
        },
        {
            "metric": "gateway added latency p99 (ms, 1 connection)",
            "value": figures["gateway_added_p99_ms"],
            "goal": f"< {GOALS['gateway_added_p99_ms']}",
            "met": figures["gateway_added_p99_ms"] < GOALS["gateway_added_p99_ms"],
        },
        {
            "metric": "gateway throughput / direct (16 connections)",
            "value": figures["gateway_rps_vs_direct"],
            "goal": f">= {GOALS['gateway_rps_vs_direct']}",
            "met": figures["gateway_rps_vs_direct"] >= GOALS["gateway_rps_vs_direct"],
        },
        {
            "metric": "nginx throughput / direct (16 connections), for comparison",
            "value": figures["nginx_rps_vs_direct"],
            "goal": "reference",
            "met": True,
        },
        {
            "metric": "gateway throughput / nginx",
            "value": figures["gateway_rps_vs_nginx"],
            "goal": "reference",
            "met": True,
        },
        {
            "metric": "CPU per proxied request (ms): gateway / nginx",
            "value": f"{figures['gateway_cpu_ms_per_request']} / "
            f"{figures['nginx_cpu_ms_per_request']}",
            "goal": "reference",
            "met": True,
        },
        {
            "metric": f"gateway extra memory per {memory['photo_bytes'] / 1e6:.1f} MB upload (KiB)",
            "value": memory["peak_extra_kib_per_upload"],
            "goal": f"< {GOALS['upload_memory_kib_per_request']}",
            "met": memory["peak_extra_kib_per_upload"] < GOALS["upload_memory_kib_per_request"],
        },
        {
            "metric": "errors in all load runs",
            "value": sum(figures[target]["errors"] for target in TARGETS),
            "goal": "0",
            "met": sum(figures[target]["errors"] for target in TARGETS) == 0,
        },
    ]
    return {
        "name": NAME,
        "title": "Gateway hop: proxied small request vs direct vs nginx",
        "smoke": smoke,
        "figures": figures,
        "table": table,
        "inputs": {
            "request": f"GET {PATH} (ai-svc presets, ~0.9 kB JSON)",
            "load_tool": version_of(["wrk", "--version"]) if use_wrk else "python keep-alive",
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
