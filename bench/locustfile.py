"""The snap mix the app produces, as a locust user.

One iteration is what the app does for one photo: it loads the presets (template, tone,
language) for its picker, posts the snap with a phone-size JPEG, and shows the stored
thumbnail from the answer. So presets, snaps and thumbnails come 1:1:1, and "snaps per
second" is also iterations per second.

Each snap sends a photo no other request sent (see ``bench.photos.variant``), so ai-svc's
result cache misses and every snap really reaches the (fake) model.

Environment (set by ``bench.loadgen``):
  BENCH_PHOTOS          base JPEGs, separated by the path separator
  BENCH_VARIANT_OFFSET  first variant number this run uses
  BENCH_USER_RATE       iterations per second per user (open-loop pacing); empty: no wait
  BENCH_SUMMARY         where to write the final statistics as JSON when locust quits

The summary is written from locust's own statistics at quit, because locust's CSV files
are rewritten once a second while it runs and so miss the last second of a run.
"""

from __future__ import annotations

import itertools
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from locust import constant, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

from bench.photos import luma_table_offsets, variant

PRESET = {"template": "social_post", "tone": "friendly", "language": "en", "count": "3"}
TIMEOUT_SECONDS = 90


class PhotoSource:
    """Hands out distinct photos: base photo ``n % pool``, variant ``n``."""

    def __init__(self, paths: list[Path], offset: int) -> None:
        self.bases = [path.read_bytes() for path in paths]
        self.offsets = [luma_table_offsets(base) for base in self.bases]
        self.numbers: Iterator[int] = itertools.count(offset)

    def next(self) -> bytes:
        number = next(self.numbers)
        index = number % len(self.bases)
        return variant(self.bases[index], number, self.offsets[index])


SOURCE: dict[str, PhotoSource] = {}
RUN: dict[str, Any] = {}
SAMPLES: list[tuple[str, float, float, bool]] = []  # (name, start, milliseconds, ok)
PERCENTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
SNAP = "POST /v1/snaps"


@events.init.add_listener
def load_photos(environment: Any, **_: Any) -> None:
    RUN["environment"] = environment
    paths = [Path(item) for item in os.environ.get("BENCH_PHOTOS", "").split(os.pathsep) if item]
    if not paths:
        raise SystemExit("BENCH_PHOTOS is empty: run this locustfile through bench.loadgen")
    SOURCE["photos"] = PhotoSource(paths, int(os.environ.get("BENCH_VARIANT_OFFSET", "0")))


@events.test_start.add_listener
def mark_start(**_: Any) -> None:
    RUN["test_start"] = time.time()


@events.test_stop.add_listener
def mark_stop(**_: Any) -> None:
    RUN["test_stop"] = time.time()


@events.request.add_listener
def record(
    name: str, response_time: float, exception: Any, start_time: float = 0.0, **_: Any
) -> None:
    """Every request with its start time, so a run can be measured over a steady window."""
    SAMPLES.append((name, start_time, response_time, exception is None))


@events.quit.add_listener
def write_summary(**_: Any) -> None:
    target = os.environ.get("BENCH_SUMMARY")
    environment = RUN.get("environment")
    if not target or environment is None or environment.stats is None:
        return
    stats = environment.stats
    entries = [*stats.entries.values(), stats.total]
    started = RUN.get("test_start") or min((item[1] for item in SAMPLES), default=0.0)
    samples: dict[str, list[list[Any]]] = {}
    for name, start, milliseconds, ok in SAMPLES:
        samples.setdefault(name, []).append([round(start - started, 3), round(milliseconds, 1), ok])
    summary = {
        "entries": [
            {
                "name": "Aggregated" if entry is stats.total else entry.name,
                "requests": entry.num_requests,
                "failures": entry.num_failures,
                "mean": round(entry.avg_response_time, 1) if entry.num_requests else None,
                "max": entry.max_response_time if entry.num_requests else None,
                **{
                    key: entry.get_response_time_percentile(value) if entry.num_requests else None
                    for key, value in PERCENTILES.items()
                },
                "start_time": entry.start_time,
                "last_request_timestamp": entry.last_request_timestamp,
            }
            for entry in entries
        ],
        "test_start": started,
        "test_stop": RUN.get("test_stop"),
        "samples": samples,
        "errors": [
            {"name": error.name, "error": str(error.error)[:300], "count": error.occurrences}
            for error in stats.errors.values()
        ],
    }
    Path(target).write_text(json.dumps(summary))


def pacing() -> Callable[[FastHttpUser], float]:
    rate = os.environ.get("BENCH_USER_RATE", "").strip()
    return constant_throughput(float(rate)) if rate else constant(0)


def multipart(image: bytes) -> tuple[bytes, str]:
    """The snap's form as a phone sends it, built in one join (no per-request encoder)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in PRESET.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
        f'filename="photo.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
    )
    parts += [image, f"\r\n--{boundary}--\r\n".encode()]
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class AppUser(FastHttpUser):
    """One phone running the app in a loop.

    FastHttpUser (geventhttpclient) rather than HttpUser (requests): the load generator
    shares the machine's cores with the services, and it needs several times less CPU
    per request, so more of the machine is left to what is being measured.
    """

    network_timeout = TIMEOUT_SECONDS
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.pace = pacing()

    def wait_time(self) -> float:
        return self.pace(self)

    @task
    def snap_a_photo(self) -> None:
        self.client.get("/v1/presets", name="GET /v1/presets")
        body, content_type = multipart(SOURCE["photos"].next())
        with self.client.post(
            "/v1/snaps",
            name=SNAP,
            data=body,
            headers={"Content-Type": content_type},
            catch_response=True,
        ) as response:
            if response.status_code != 201:
                code = error_code(response)
                response.failure(f"HTTP {response.status_code} {code}")
                return
            try:
                thumbnail = response.json()["upload"]["urls"]["thumbnail"]
            except (ValueError, KeyError, TypeError):
                response.failure("201 without upload.urls.thumbnail")
                return
            response.success()
        self.client.get(thumbnail, name="GET /v1/uploads/{id}/thumbnail")


def error_code(response: Any) -> str:
    """The envelope's error code, so failure counts group by cause, not by request id."""
    try:
        return str(response.json()["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "(no error envelope)"
