"""Sign-in at the edge: what verifying a Firebase ID token costs, and what it adds.

- ``verify_ms``: one warm verify (certificates cached) by the gateway's
  ``TokenVerifier`` (PyJWT + cryptography), per call over many calls; the goal is
  0.3 ms (firebase-admin's own verify measured 0.75 ms on this machine).
- ``cpu_ms_per_request``: the gateway's CPU per proxied ``GET /v1/presets`` (its process
  tree's CPU time over the run / requests), anonymous and signed in, with the
  certificates served by the local fake of Google's endpoint (testbed/fakes).
- ``local_store_hit_ms``: one counter hit on the SQLite file the workers share without
  Redis, the cost that decided a shared file over running the gateway as one process.

Run: ``python -m bench.run --only tokens`` (or ``make bench``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

from bench.gateway_hop import tree_cpu_seconds
from gateway.local_store import LocalLimitStorage
from gateway.tokens import CertificateCache, TokenVerifier
from testbed.fakes.google_certs import FakeGoogleCerts
from testbed.processes import gunicorn_service
from testbed.servers import boot, stop_all

NAME = "tokens"
PROJECT = "bench-ideasnap"
PATH = "/v1/presets"
GOALS = {"verify_ms": 0.3}
# Every tier's limits far above the offered load: counted, never refused.
UNLIMITED_TIER = (
    "    rate_limit: 1000000000/minute\n    ai_rate_limit: 1000000000/minute\n"
    "    ai_daily_quota: 1000000000/day\n    history_size: 0\n    storage_quota_bytes: 0\n"
)


def verify_cost(certs: FakeGoogleCerts, calls: int) -> float:
    verifier = TokenVerifier(PROJECT, CertificateCache(certs.url))
    token = certs.token(PROJECT, "bench-user")
    verifier.verify(token)
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            verifier.verify(token)
        best = min(best, (time.perf_counter() - started) / calls)
    return round(best * 1000, 4)


def local_store_cost(calls: int) -> float:
    folder = Path(tempfile.mkdtemp(prefix="bench-state-"))
    try:
        storage = LocalLimitStorage(f"gateway+sqlite://{folder / 'state.sqlite3'}")
        started = time.perf_counter()
        for number in range(calls):
            storage.incr(f"LIMITER/gateway/ip:10.0.0.{number % 50}/default/60/1/minute", 60)
        return round((time.perf_counter() - started) / calls * 1000, 4)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def gateway_cpu(url: str, pid: int, requests_count: int, headers: dict[str, str]) -> float:
    with requests.Session() as session:
        for _ in range(20):
            session.get(url, headers=headers, timeout=10).raise_for_status()
        before = tree_cpu_seconds(pid)
        for _ in range(requests_count):
            session.get(url, headers=headers, timeout=10).raise_for_status()
        spent = tree_cpu_seconds(pid) - before
    return round(1000 * spent / requests_count, 3)


def run(out_dir: Path, smoke: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    calls = 200 if smoke else 5000
    requests_count = 30 if smoke else 1500
    rounds = 1 if smoke else 3
    certs = FakeGoogleCerts().start()
    storage = Path(tempfile.mkdtemp(prefix="bench-tokens-storage-"))
    started: list[Any] = []
    try:
        verify_ms = verify_cost(certs, calls)
        store_ms = local_store_cost(calls)
        tiers_file = out_dir / "tiers.yaml"
        tiers_file.write_text(
            "tiers:\n"
            + "".join(f"  {name}:\n{UNLIMITED_TIER}" for name in ("anonymous", "free", "pro"))
        )
        upload = gunicorn_service(
            "upload-svc", out_dir, {"STORAGE_DIR": str(storage)}, workers=1, threads=4
        )
        ai = gunicorn_service(
            "ai-svc", out_dir, {"UPLOAD_SVC_URL": upload.url}, workers=1, threads=4
        )
        env = {
            "UPLOAD_SVC_URL": upload.url,
            "AI_SVC_URL": ai.url,
            "FIREBASE_PROJECT_ID": PROJECT,
            "FIREBASE_CERTS_URL": certs.url,
            "TIERS_FILE": str(tiers_file),
        }
        gateway = gunicorn_service("gateway", out_dir, env, workers=1, threads=4)
        started = [upload, ai, gateway]
        boot(started)
        assert gateway.managed.process is not None
        pid = gateway.managed.process.pid
        url = f"{gateway.url}{PATH}"
        signed = {"Authorization": f"Bearer {certs.token(PROJECT, 'bench-user')}"}
        anonymous_runs, signed_runs = [], []
        for _ in range(rounds):
            anonymous_runs.append(gateway_cpu(url, pid, requests_count, {}))
            signed_runs.append(gateway_cpu(url, pid, requests_count, signed))
    finally:
        stop_all(list(reversed(started)))
        certs.stop()
        shutil.rmtree(storage, ignore_errors=True)
    anonymous_ms = sorted(anonymous_runs)[len(anonymous_runs) // 2]
    signed_ms = sorted(signed_runs)[len(signed_runs) // 2]
    figures = {
        "verify_ms": verify_ms,
        "local_store_hit_ms": store_ms,
        "cpu_ms_per_request": {"anonymous": anonymous_ms, "signed_in": signed_ms},
        "signed_in_extra_cpu_ms": round(signed_ms - anonymous_ms, 3),
        "rounds": {"anonymous": anonymous_runs, "signed_in": signed_runs},
    }
    table = [
        {
            "metric": "token verify, warm cache (ms per call)",
            "value": verify_ms,
            "goal": f"<= {GOALS['verify_ms']}",
            "met": verify_ms <= GOALS["verify_ms"],
        },
        {
            "metric": "gateway CPU per proxied request (ms): anonymous / signed in",
            "value": f"{anonymous_ms} / {signed_ms}",
            "goal": "reference",
            "met": True,
        },
        {
            "metric": "shared local store: one counter hit (ms)",
            "value": store_ms,
            "goal": "reference",
            "met": True,
        },
    ]
    return {
        "name": NAME,
        "title": "Sign-in: token verification and its cost per request",
        "smoke": smoke,
        "figures": figures,
        "table": table,
        "inputs": {
            "verify_calls": calls,
            "requests_per_round": requests_count,
            "rounds": rounds,
            "request": f"GET {PATH} through the gateway (1 worker x 4 threads)",
            "cores": os.cpu_count(),
            "load_average": [round(value, 2) for value in os.getloadavg()],
        },
        "command": "python -m bench.run --only tokens" + (" --smoke" if smoke else ""),
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    print(json.dumps(run(Path(tempfile.mkdtemp(prefix="bench-tokens-")), smoke=False), indent=2))
