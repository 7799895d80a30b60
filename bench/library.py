"""library-svc on PostgreSQL: history pages and draft saves at 1, 8 and 32 clients.

library-svc runs as one gunicorn tree with the chart's workers and threads (2 x 8, "one
pod") against a throwaway PostgreSQL (testbed/postgres.py), its schema made by its own
migrations (``python -m library_svc.migrate``). Clients call it directly with the
identity headers the gateway would set (``X-IdeaSnap-User``, ``X-IdeaSnap-Tier``), so
the figures are the service and its database, not the gateway or token checks.

Two operations, each at 1, 8 and 32 concurrent clients for a fixed time:

- **history**: ``GET /v1/snaps?page_size=20``, the first page of a person's history
  (each client is its own person, seeded with snaps through ``POST /internal/snaps``);
- **draft PATCH**: an autosave, ``PATCH /v1/drafts/{id}`` with ``If-Match`` set to the
  etag of the previous answer, each client on its own draft (no conflicts: a 412 is
  counted as an error).

Reported per operation and concurrency: requests per second, p50/p95/p99 latency in
milliseconds, and errors.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from testbed.postgres import postgres_database
from testbed.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = (1, 8, 32)
SNAPS_PER_PERSON = 50
PAGE_SIZE = 20
WORKERS, THREADS = 2, 8  # the chart's librarySvc.gunicorn defaults
START_TIMEOUT_SECONDS = 60.0


def service_env(database_url: str, port: int, metrics_port: int, work: Path) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "PROMETHEUS_MULTIPROC_DIR": str(work / "metrics"),
        "DATABASE_URL": database_url,
        # Not called by these operations; the settings still need a value.
        "UPLOAD_SVC_URL": "http://127.0.0.1:9",
        "FIREBASE_PROJECT_ID": "ideasnap-bench",
        "BILLING_WEBHOOK_AUTHORIZATION": "bench-billing-secret-0123456789",
        "PAGE_TOKEN_SECRET": "bench-page-token-secret-0123456789",
        "WEB_CONCURRENCY": str(WORKERS),
        "GUNICORN_THREADS": str(THREADS),
        "OTEL_SDK_DISABLED": "true",
        "LOG_LEVEL": "WARNING",
        "ENVIRONMENT": "bench",
        # Passed through so a run can point at another checkout of library_svc.
        **{
            name: os.environ[name]
            for name in ("PYTHONPATH", "PYTHONPYCACHEPREFIX")
            if name in os.environ
        },
    }


def migrate(env: dict[str, str], work: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "library_svc.migrate"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrations failed: {result.stderr[-2000:]}")


class LibraryService:
    """library-svc under gunicorn with the chart's config file."""

    def __init__(self, env: dict[str, str], work: Path) -> None:
        self.url = f"http://127.0.0.1:{env['PORT']}"
        (work / "metrics").mkdir(parents=True, exist_ok=True)
        self.log = (work / "library-svc.log").open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(ROOT / "library-svc" / "gunicorn.conf.py"),
            ],
            env=env,
            cwd=work,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"library-svc exited with {self.process.returncode}")
            try:
                if requests.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("library-svc did not become ready")
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def identity(person: str) -> dict[str, str]:
    return {"X-IdeaSnap-User": person, "X-IdeaSnap-Tier": "pro"}


def snap_record(index: int) -> dict[str, Any]:
    """One history entry in the shape the gateway records after a snap."""
    return {
        "upload": {
            "id": uuid.uuid4().hex,
            "size": 180_000 + index,
            "content_type": "image/jpeg",
            "width": 1200,
            "height": 900,
            "sha256": uuid.uuid4().hex * 2,
        },
        "preset": {"template": "social_post", "tone": "friendly", "language": "en", "count": 3},
        "ideas": [
            {
                "title": f"Idea {index}.{n}",
                "body": "Golden light over the harbour, a quiet start to the day. " * 3,
                "hashtags": ["#morning", "#harbour", "#light"],
            }
            for n in range(3)
        ],
        "provider": "local",
        "model": "local",
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }


SEED_CLIENTS = 8


def seed_person(url: str, person: str, snaps_per_person: int) -> str:
    """One person's snaps and draft; returns the draft's etag."""
    with requests.Session() as session:
        for index in range(snaps_per_person):
            answer = session.post(
                f"{url}/internal/snaps",
                json=snap_record(index),
                headers=identity(person),
                timeout=10,
            )
            answer.raise_for_status()
        draft = session.put(
            f"{url}/v1/drafts/{draft_id(person)}",
            json={"title": "Draft", "body": "First words."},
            headers=identity(person),
            timeout=10,
        )
        draft.raise_for_status()
        return draft.headers.get("ETag") or draft.json()["etag"]


def seed(url: str, people: list[str], snaps_per_person: int) -> dict[str, str]:
    """Snaps for each person and one draft each; returns person -> the draft's etag.

    People are seeded side by side (as many as the pod has threads, about), so the
    setup does not take longer than the measurement.
    """
    with ThreadPoolExecutor(SEED_CLIENTS) as pool:
        etags = pool.map(lambda person: seed_person(url, person, snaps_per_person), people)
        return dict(zip(people, etags, strict=True))


def draft_id(person: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ideasnap-bench/{person}"))


@dataclass
class Round:
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, seconds: float, ok: bool) -> None:
        with self.lock:
            if ok:
                self.latencies.append(seconds)
            else:
                self.errors += 1


def percentile_ms(ordered: list[float], fraction: float) -> float | None:
    if not ordered:
        return None
    rank = max(1, round(fraction * len(ordered)))
    return round(ordered[min(rank, len(ordered)) - 1] * 1000, 2)


def load(
    url: str, operation: str, people: list[str], etags: dict[str, str], seconds: float
) -> dict[str, Any]:
    """Each person as one client in a closed loop for `seconds`."""
    result = Round()
    stop_at = time.monotonic() + seconds
    start = threading.Barrier(len(people) + 1)

    def client(person: str) -> None:
        headers = identity(person)
        etag = etags[person]
        counter = 0
        with closing(requests.Session()) as session:
            start.wait()
            while time.monotonic() < stop_at:
                began = time.perf_counter()
                try:
                    if operation == "history":
                        answer = session.get(
                            f"{url}/v1/snaps",
                            params={"page_size": PAGE_SIZE},
                            headers=headers,
                            timeout=30,
                        )
                        ok = answer.status_code == 200 and len(answer.json()["snaps"]) == PAGE_SIZE
                    else:
                        counter += 1
                        answer = session.patch(
                            f"{url}/v1/drafts/{draft_id(person)}",
                            json={"body": f"First words, then {counter} more."},
                            headers={**headers, "If-Match": etag},
                            timeout=30,
                        )
                        ok = answer.status_code == 200
                        if ok:
                            etag = answer.headers.get("ETag") or answer.json()["etag"]
                except (requests.RequestException, ValueError, KeyError):
                    ok = False
                result.record(time.perf_counter() - began, ok)
        with result.lock:
            etags[person] = etag  # the next round's first PATCH goes on from here

    threads = [threading.Thread(target=client, args=(person,)) for person in people]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.monotonic()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    ordered = sorted(result.latencies)
    return {
        "clients": len(people),
        "seconds": round(elapsed, 2),
        "requests_ok": len(ordered),
        "errors": result.errors,
        "requests_per_second": round(len(ordered) / elapsed, 1) if elapsed else None,
        "p50_ms": percentile_ms(ordered, 0.50),
        "p95_ms": percentile_ms(ordered, 0.95),
        "p99_ms": percentile_ms(ordered, 0.99),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else None,
    }


def run(out_dir: Path, smoke: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds = 2.0 if smoke else 20.0
    # A smoke run checks the scenario works: one page and a next one is enough history.
    snaps_per_person = PAGE_SIZE + 1 if smoke else SNAPS_PER_PERSON
    people = [f"bench-person-{n:02d}" for n in range(max(CONCURRENCY))]
    figures: dict[str, Any] = {"history": {}, "draft_patch": {}}
    with postgres_database(out_dir) as database_url:
        env = service_env(database_url, free_port(), free_port(), out_dir)
        (out_dir / "metrics").mkdir(parents=True, exist_ok=True)
        migrate(env, out_dir)
        service = LibraryService(env, out_dir)
        try:
            etags = seed(service.url, people, snaps_per_person)
            for clients in CONCURRENCY:
                figures["history"][str(clients)] = load(
                    service.url, "history", people[:clients], etags, seconds
                )
            for clients in CONCURRENCY:
                figures["draft_patch"][str(clients)] = load(
                    service.url, "draft_patch", people[:clients], etags, seconds
                )
        finally:
            service.stop()
    table: list[dict[str, Any]] = []
    for operation, label in (
        ("history", "GET /v1/snaps?page_size=20"),
        ("draft_patch", "PATCH /v1/drafts/{id}"),
    ):
        for clients in CONCURRENCY:
            step = figures[operation][str(clients)]
            table.append(
                {
                    "metric": f"{label}, {clients} clients: req/s; p50 / p95 / p99 ms",
                    "value": f"{step['requests_per_second']}; "
                    f"{step['p50_ms']} / {step['p95_ms']} / {step['p99_ms']}",
                    "goal": "(reported)",
                    "met": None,
                }
            )
            table.append(
                {
                    "metric": f"{label}, {clients} clients: errors",
                    "value": step["errors"],
                    "goal": "0",
                    "met": step["errors"] == 0,
                }
            )
    return {
        "title": "library-svc on PostgreSQL: history list and draft PATCH",
        "command": "python -m bench.run --only library" + (" --smoke" if smoke else ""),
        "inputs": {
            "service": f"library-svc under gunicorn, {WORKERS} workers x {THREADS} threads",
            "database": "PostgreSQL from Debian, local, fsync off (testbed/postgres.py)",
            "snaps_per_person": snaps_per_person,
            "page_size": PAGE_SIZE,
            "seconds_per_step": seconds,
            "concurrency": list(CONCURRENCY),
        },
        "figures": figures,
        "table": table,
    }


if __name__ == "__main__":
    import json

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(run(target, smoke="--smoke" in sys.argv), indent=2))
