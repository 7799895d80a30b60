"""upload-svc's intake against one full decode of the same 12-megapixel JPEG.

What is timed, side by side and interleaved in one process (so both see the same
machine, caches and neighbours):

- **accept**: what ``POST /v1/uploads`` does after the socket: the body copied into the
  spool in 64 KiB chunks, then ``Uploads.create``: sniff, open, validate by decoding
  every scan (draft mode, 1/4 scale), strip the metadata, hash, store the original in
  the real local storage (fsync included), render and store the 768 px preview and the
  320 px thumbnail;
- **full decode**: ``Image.open(path).load()``, Pillow decoding the same file once at
  full size, nothing else.

The goal is accept <= 1.0x full decode. Wall time is the figure (storage is written on a
thread while the renditions are made, as in the service); process CPU time is reported
next to it, because on a busy machine overlap helps latency, not capacity.

Also measured, and reported without a goal: the same photo as a portrait (stored
sideways with EXIF orientation 6, as every portrait phone photo is), which intake turns
upright in the DCT domain, and its CPU time per upload against the landscape one's;
the whole HTTP request through a
real gunicorn worker on loopback; and the worker's peak resident memory while it
receives a ~10 MB photo.

Inputs are generated, never downloaded: ``testbed/corpus.py`` makes a
photo-like 4000x3000 JPEG (gradients, shapes, sensor-like grain, quality 90, camera EXIF
with GPS), about the size a phone writes.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import structlog
from PIL import Image

from chassis.caller import ANONYMOUS
from testbed import corpus
from testbed.processes import gunicorn_service
from upload_svc.receiving import READ_CHUNK, ReceivedBody
from upload_svc.settings import UploadSettings
from upload_svc.storage import build_storage
from upload_svc.uploads import Uploads

GOAL_RATIO = 1.0
FULL_SIZE = (4000, 3000)
SMOKE_SIZE = (1200, 900)


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def timed(action: Callable[[], object]) -> tuple[float, float]:
    """Wall and process-CPU seconds of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


class Pipeline:
    """upload-svc's accept path in this process, on real local storage."""

    def __init__(self, work: Path) -> None:
        spool = work / "spool"
        spool.mkdir(parents=True, exist_ok=True)
        self.settings = UploadSettings(
            storage_dir=work / "storage", spool_dir=spool, otel_sdk_disabled=True
        )
        self.uploads = Uploads(build_storage(self.settings), self.settings)
        self.created: list[str] = []

    def accept(self, path: Path) -> dict[str, Any]:
        with (
            path.open("rb") as body,
            tempfile.SpooledTemporaryFile(
                max_size=256 * 1024, dir=self.settings.spool_dir
            ) as spool,
        ):
            size = 0
            while chunk := body.read(READ_CHUNK):
                spool.write(chunk)
                size += len(chunk)
            spool.seek(0)
            record = self.uploads.create(ReceivedBody(spool, size), ANONYMOUS)
        self.created.append(record["id"])
        return record

    def forget(self) -> None:
        for upload_id in self.created:
            self.uploads.delete(upload_id, ANONYMOUS)
        self.created.clear()


def full_decode(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def side_by_side(pipeline: Pipeline, path: Path, rounds: int) -> dict[str, list[float]]:
    for _ in range(2):  # warm-up: imports, allocator, page cache
        pipeline.accept(path)
        full_decode(path)
    found: dict[str, list[float]] = {"accept": [], "accept_cpu": [], "decode": [], "decode_cpu": []}
    for index in range(rounds):
        order = ("accept", "decode") if index % 2 == 0 else ("decode", "accept")
        for name in order:
            action = (
                (lambda: pipeline.accept(path)) if name == "accept" else lambda: full_decode(path)
            )
            wall, cpu = timed(action)
            found[name].append(wall)
            found[f"{name}_cpu"].append(cpu)
        pipeline.forget()
    return found


def summary(found: dict[str, list[float]]) -> dict[str, Any]:
    ratios = [a / d for a, d in zip(found["accept"], found["decode"], strict=True)]
    return {
        "accept_ms_median": median_ms(found["accept"]),
        "accept_ms_min": round(min(found["accept"]) * 1000, 2),
        "accept_cpu_ms_median": median_ms(found["accept_cpu"]),
        "full_decode_ms_median": median_ms(found["decode"]),
        "full_decode_ms_min": round(min(found["decode"]) * 1000, 2),
        "ratio_of_medians": round(
            statistics.median(found["accept"]) / statistics.median(found["decode"]), 3
        ),
        "median_of_round_ratios": round(statistics.median(ratios), 3),
        "cpu_ratio_of_medians": round(
            statistics.median(found["accept_cpu"]) / statistics.median(found["decode_cpu"]), 3
        ),
        "rounds": len(ratios),
    }


def worker_pid(master: int) -> int:
    return int(Path(f"/proc/{master}/task/{master}/children").read_text().split()[0])


def status_bytes(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


def over_http(work: Path, path: Path, rounds: int) -> dict[str, Any]:
    """The whole request through one real gunicorn worker, and its peak memory."""
    work.mkdir(parents=True, exist_ok=True)
    service = gunicorn_service(
        "upload-svc",
        work,
        {
            "STORAGE_DIR": str(work / "http-storage"),
            "OTEL_SDK_DISABLED": "true",
            "LOG_LEVEL": "WARNING",
        },
        workers=1,
        threads=4,
    ).start()
    try:
        url = f"{service.url}/v1/uploads"
        photo = path.read_bytes()
        headers = {"Content-Type": "application/octet-stream"}
        session = requests.Session()

        def post(data: bytes) -> None:
            answer = session.post(url, data=data, headers=headers, timeout=60)
            answer.raise_for_status()
            session.delete(service.url + answer.json()["urls"]["image"], timeout=10)

        for _ in range(2):
            post(photo)
        requests_s, decodes_s = [], []
        for _ in range(rounds):
            requests_s.append(timed(lambda: post(photo))[0])
            decodes_s.append(timed(lambda: full_decode(path))[0])
        big = corpus.jpeg_near_size(10 * 1024 * 1024)
        # Warm up with a small photo (code paths, libraries), not a big one: memory a big
        # upload freed would be reused by the next one without showing in the peak.
        post(corpus.phone_photo(1600, 1200, seed=5))
        assert service.managed.process is not None
        worker = worker_pid(service.managed.process.pid)
        Path(f"/proc/{worker}/clear_refs").write_text("5")
        baseline = status_bytes(worker, "VmRSS:")
        post(big)
        growth = status_bytes(worker, "VmHWM:") - baseline
        return {
            "http_request_ms_median": median_ms(requests_s),
            "http_full_decode_ms_median": median_ms(decodes_s),
            "http_ratio_of_medians": round(
                statistics.median(requests_s) / statistics.median(decodes_s), 3
            ),
            "memory_upload_bytes": len(big),
            "memory_peak_rss_growth_bytes": growth,
            "memory_growth_per_upload_size": round(growth / len(big), 3),
        }
    finally:
        service.stop()


def run(out_dir: Path, smoke: bool) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    width, height = SMOKE_SIZE if smoke else FULL_SIZE
    rounds = 3 if smoke else 25
    photo = out_dir / "photo.jpg"
    exif = corpus.private_exif(orientation=1, offset="+02:00").tobytes()
    photo.write_bytes(corpus.phone_photo(width, height, seed=3, quality=90, exif=exif))
    sideways = out_dir / "photo-orientation-6.jpg"
    exif6 = corpus.private_exif(orientation=6).tobytes()
    sideways.write_bytes(corpus.phone_photo(width, height, seed=3, quality=90, exif=exif6))
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    pipeline = Pipeline(out_dir / "in-process")
    with structlog.testing.capture_logs():  # one log line per upload would flood the console
        upright = summary(side_by_side(pipeline, photo, rounds))
        rotated = summary(side_by_side(pipeline, sideways, max(3, rounds // 3)))
    http = {} if smoke else over_http(out_dir / "http", photo, 10)
    portrait_ratio = round(rotated["accept_cpu_ms_median"] / upright["accept_cpu_ms_median"], 3)
    figures: dict[str, Any] = {
        "photo": {
            "width": width,
            "height": height,
            "bytes": photo.stat().st_size,
            "jpeg_quality": 90,
            "exif_orientation": 1,
        },
        "upright": upright,
        "rotated_orientation_6": rotated,
        "portrait_over_landscape_cpu_per_upload": portrait_ratio,
        **http,
        "cpu_count": os.cpu_count(),
        # Other work on the machine slows both sides alike; it is recorded, not hidden.
        "load_average_1m_before_after": [
            load_before,
            os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        ],
    }
    ratio = upright["ratio_of_medians"]
    table: list[dict[str, Any]] = [
        {
            "metric": f"accept / full decode, {width}x{height} JPEG (median wall time)",
            "value": ratio,
            "goal": f"<= {GOAL_RATIO}",
            "met": ratio <= GOAL_RATIO,
        },
        {
            "metric": "accept, ms (median)",
            "value": upright["accept_ms_median"],
            "goal": "",
            "met": None,
        },
        {
            "metric": "full decode, ms (median)",
            "value": upright["full_decode_ms_median"],
            "goal": "",
            "met": None,
        },
        {
            "metric": "accept / full decode, process CPU time",
            "value": upright["cpu_ratio_of_medians"],
            "goal": "(reported)",
            "met": None,
        },
        {
            "metric": "portrait photo (orientation 6: lossless turn) / full decode",
            "value": rotated["ratio_of_medians"],
            "goal": "(reported)",
            "met": None,
        },
        {
            "metric": "accept CPU per upload, ms: landscape / portrait (orientation 6)",
            "value": f"{upright['accept_cpu_ms_median']} / {rotated['accept_cpu_ms_median']}",
            "goal": "",
            "met": None,
        },
        {
            "metric": "portrait / landscape, accept CPU per upload",
            "value": portrait_ratio,
            "goal": "(reported)",
            "met": None,
        },
    ]
    if http:
        table += [
            {
                "metric": "whole HTTP request via gunicorn / full decode",
                "value": http["http_ratio_of_medians"],
                "goal": "(reported)",
                "met": None,
            },
            {
                "metric": f"worker peak RSS growth, {http['memory_upload_bytes']} byte upload",
                "value": f"{http['memory_peak_rss_growth_bytes'] / 1024**2:.1f} MiB "
                f"({http['memory_growth_per_upload_size']}x)",
                "goal": "< 2x upload size",
                "met": http["memory_growth_per_upload_size"] < 2,
            },
        ]
    return {
        "title": "upload-svc intake vs one full decode",
        "command": "python -m bench.run --only intake" + (" --smoke" if smoke else ""),
        "inputs": {
            "photo": "testbed/corpus.py phone_photo(seed=3, quality=90) + EXIF with GPS",
            "rounds": rounds,
            "storage": "local directory, fsync on, in the run's work directory",
        },
        "figures": figures,
        "table": table,
    }


if __name__ == "__main__":
    import json
    import sys

    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    print(json.dumps(run(target, smoke="--smoke" in sys.argv), indent=2))
