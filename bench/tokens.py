"""Sign-in at the edge: what verifying a Firebase ID token costs, and what it adds.

- ``verify_ms``: one warm RS256 verify of a Firebase ID token (key already parsed) with
  the libraries the gateway verifies with, PyJWT and cryptography, called through their
  public entry points (``jwt.decode`` with the gateway's checks: audience, issuer,
  required claims). A micro-benchmark of a library call, because the library's cost is
  the question (it chose PyJWT over firebase-admin, whose own verify measured 0.75 ms
  on this machine); it does not import the gateway. Goal: 0.3 ms.
- ``cpu_ms_per_request``: the gateway's CPU per proxied ``GET /v1/presets`` (its process
  tree's CPU time over the run / requests wrk completed, one connection), anonymous and
  signed in, with the certificates served by the local fake of Google's endpoint
  (testbed/fakes). What a signed-in request costs the gateway, verify included, as
  deployed; without Redis its limits are counted in the SQLite file its workers share,
  so both figures include that store's hits.

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

import jwt
from cryptography.x509 import load_pem_x509_certificate

from bench.goals import goal_row
from bench.wrk import script, version, wrk
from testbed.fakes.google_certs import FakeGoogleCerts
from testbed.processes import gunicorn_service
from testbed.resources import tree_cpu_seconds
from testbed.servers import boot, stop_all

NAME = "tokens"
PROJECT = "bench-ideasnap"
PATH = "/v1/presets"
GOALS = {"verify_ms": 0.3}
# The checks the gateway makes on a Firebase ID token (docs/auth: Firebase's rules).
ISSUER_PREFIX = "https://securetoken.google.com/"
REQUIRED_CLAIMS = ("exp", "iat", "aud", "iss", "sub")
# Every tier's limits far above the offered load: counted, never refused.
UNLIMITED_TIER = (
    "    rate_limit: 1000000000/minute\n    ai_rate_limit: 1000000000/minute\n"
    "    ai_daily_quota: 1000000000/day\n    history_size: 0\n    storage_quota_bytes: 0\n"
)


def verify_cost(certs: FakeGoogleCerts, calls: int) -> float:
    """Best of three: ms per ``jwt.decode`` of one valid token with the gateway's checks."""
    token = certs.token(PROJECT, "bench-user")
    kid = jwt.get_unverified_header(token)["kid"]
    key = load_pem_x509_certificate(certs.pems[kid].encode()).public_key()

    def verify() -> None:
        jwt.get_unverified_header(token)
        jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            audience=PROJECT,
            issuer=ISSUER_PREFIX + PROJECT,
            leeway=60,
            options={"require": list(REQUIRED_CLAIMS), "verify_iat": True},
        )

    verify()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for _ in range(calls):
            verify()
        best = min(best, (time.perf_counter() - started) / calls)
    return round(best * 1000, 4)


def gateway_cpu(
    url: str, pid: int, seconds: float, lua: Path, headers: dict[str, str]
) -> tuple[float, int]:
    """Gateway CPU ms per request over ``seconds`` of one wrk connection; and the count."""
    wrk(url, 1, 1, lua, headers=headers)  # warm: connections, caches, certificates
    before = tree_cpu_seconds(pid)
    measured = wrk(url, 1, seconds, lua, headers=headers)
    spent = tree_cpu_seconds(pid) - before
    if measured.errors or not measured.requests:
        raise RuntimeError(f"{measured.errors} errors in {measured.requests} requests")
    return round(1000 * spent / measured.requests, 3), measured.requests


def run(out_dir: Path, smoke: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    calls = 200 if smoke else 5000
    seconds = 1.0 if smoke else 5.0
    rounds = 1 if smoke else 3
    lua = script(out_dir / "report.lua")
    certs = FakeGoogleCerts().start()
    storage = Path(tempfile.mkdtemp(prefix="bench-tokens-storage-"))
    started: list[Any] = []
    try:
        verify_ms = verify_cost(certs, calls)
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
        anonymous_runs, signed_runs, counts = [], [], []
        for _ in range(rounds):
            for runs, headers in ((anonymous_runs, {}), (signed_runs, signed)):
                cpu_ms, count = gateway_cpu(url, pid, seconds, lua, headers)
                runs.append(cpu_ms)
                counts.append(count)
    finally:
        stop_all(list(reversed(started)))
        certs.stop()
        shutil.rmtree(storage, ignore_errors=True)
    anonymous_ms = sorted(anonymous_runs)[len(anonymous_runs) // 2]
    signed_ms = sorted(signed_runs)[len(signed_runs) // 2]
    figures = {
        "verify_ms": verify_ms,
        "cpu_ms_per_request": {"anonymous": anonymous_ms, "signed_in": signed_ms},
        "signed_in_extra_cpu_ms": round(signed_ms - anonymous_ms, 3),
        "rounds": {"anonymous": anonymous_runs, "signed_in": signed_runs},
    }
    table = [
        goal_row(
            "token verify, key parsed (ms per call; PyJWT + cryptography)",
            verify_ms,
            "<=",
            GOALS["verify_ms"],
        ),
        {
            "metric": "gateway CPU per proxied request (ms): anonymous / signed in",
            "value": f"{anonymous_ms} / {signed_ms}",
            "goal": "reference",
            "met": None,
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
            "seconds_per_round": seconds,
            "requests_per_round": counts,
            "load_tool": version(),
            "rounds": rounds,
            "request": f"GET {PATH} through the gateway (1 worker x 4 threads)",
            "cores": os.cpu_count(),
            "load_average": [round(value, 2) for value in os.getloadavg()],
        },
        "command": "python -m bench.run --only tokens" + (" --smoke" if smoke else ""),
    }


if __name__ == "__main__":  # pragma: no cover - manual runs
    print(json.dumps(run(Path(tempfile.mkdtemp(prefix="bench-tokens-")), smoke=False), indent=2))
