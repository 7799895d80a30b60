"""upload-svc's intake against one full decode of the same 12-megapixel JPEG.

What is timed, side by side and interleaved (so both see the same machine, caches and
neighbours):

- **accept**: one ``POST /v1/uploads`` of the photo to upload-svc in one real gunicorn
  worker, as deployed: the body received into the spool, sniffed, opened, validated by
  decoding every scan (draft mode, 1/4 scale), stripped of its metadata, hashed, the
  original stored in real local storage (fsync included), the 768 px preview and the
  320 px thumbnail rendered and stored. Its wall time is the request's latency, its CPU
  the worker's process tree's, to the nanosecond (``testbed.resources.tree_run_seconds``);
- **full decode**: ``Image.open(path).load()`` in this process, Pillow decoding the same
  file once at full size, nothing else.

The service is only spoken to over HTTP, as a client would; nothing of its code runs
here. The goal is accept <= 1.0x full decode. Wall time is the figure (storage is
written on a thread while the renditions are made); process CPU time is reported next
to it, because on a busy machine overlap helps latency, not capacity.

Also measured, and reported without a goal: the same photo as a portrait (stored
sideways with EXIF orientation 6, as every portrait phone photo is), which intake turns
upright in the DCT domain, and its CPU time per upload against the landscape one's,
and whether that turn was lossless (the stored original, fetched back over HTTP, keeps
the source's quantisation tables, turned with it, and its pixels match the source's
decoded and rotated ones within IDCT rounding: mean absolute difference under 1 level);
and the worker's peak resident memory while it receives a ~10 MB photo.

Inputs are generated, never downloaded: ``testbed/corpus.py`` makes a
photo-like 4000x3000 JPEG (gradients, shapes, sensor-like grain, quality 90, camera EXIF
with GPS), about the size a phone writes.
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from PIL import Image, ImageChops, ImageOps, ImageStat

from testbed import corpus
from testbed.processes import Service, gunicorn_service
from testbed.resources import children, reset_peak, status_kib, tree_run_seconds

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


class UploadService:
    """upload-svc in one gunicorn worker on local storage, spoken to over HTTP only."""

    def __init__(self, work: Path) -> None:
        work.mkdir(parents=True, exist_ok=True)
        self.storage = work / "storage"
        self.service: Service = gunicorn_service(
            "upload-svc",
            work,
            {"STORAGE_DIR": str(self.storage), "OTEL_SDK_DISABLED": "true", "LOG_LEVEL": "WARNING"},
            workers=1,
            threads=4,
        ).start()
        assert self.service.managed.process is not None
        self.master = self.service.managed.process.pid
        self.session = requests.Session()
        self.created: list[str] = []

    def accept(self, path: Path) -> dict[str, Any]:
        return self.post(path.read_bytes())

    def post(self, photo: bytes) -> dict[str, Any]:
        answer = self.session.post(
            f"{self.service.url}/v1/uploads",
            data=photo,
            headers={"Content-Type": "application/octet-stream"},
            timeout=60,
        )
        answer.raise_for_status()
        record: dict[str, Any] = answer.json()
        self.created.append(record["urls"]["image"])
        return record

    def timed_accept(self, photo: bytes) -> tuple[float, float]:
        """Wall seconds of one upload and the worker tree's CPU seconds for it."""
        cpu, wall = tree_run_seconds(self.master), time.perf_counter()
        self.post(photo)
        return time.perf_counter() - wall, tree_run_seconds(self.master) - cpu

    def original(self, record: dict[str, Any]) -> bytes:
        answer = self.session.get(self.service.url + record["urls"]["image"], timeout=30)
        answer.raise_for_status()
        return answer.content

    def worker(self) -> int:
        return children(self.master)[0]

    def forget(self) -> None:
        for url in self.created:
            self.session.delete(self.service.url + url, timeout=10)
        self.created.clear()

    def stop(self) -> None:
        self.forget()
        self.session.close()
        self.service.stop()


def full_decode(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


LOSSLESS_MEAN_DIFFERENCE = 1.0


def turned_losslessly(service: UploadService, path: Path) -> dict[str, Any]:
    """Whether intake stored an EXIF-rotated JPEG upright without a re-encode.

    The stored original must carry the source's quantisation tables (transposed with
    the coefficients by a quarter turn) and decode to the source's pixels turned
    upright, within IDCT rounding. A lossless turn may trim the partial block at one
    edge, so the stored picture is compared at each corner of the expected one and the
    closest is kept.
    """
    data = service.original(service.accept(path))
    service.forget()
    with Image.open(path) as source, Image.open(io.BytesIO(data)) as kept:
        upright = ImageOps.exif_transpose(source).convert("RGB")
        swaps = upright.size != source.size
        tables = {
            key: [table[column * 8 + row] for row in range(8) for column in range(8)]
            if swaps
            else list(table)
            for key, table in source.quantization.items()
        }
        tables_kept = {key: list(table) for key, table in kept.quantization.items()} == tables
        pixels = kept.convert("RGB")
    width, height = pixels.size
    dx, dy = upright.width - width, upright.height - height
    differences = [
        statistics.fmean(
            ImageStat.Stat(
                ImageChops.difference(upright.crop((x, y, x + width, y + height)), pixels)
            ).mean
        )
        for x in {0, dx}
        for y in {0, dy}
        if dx >= 0 and dy >= 0
    ]
    difference = round(min(differences), 3) if differences else None
    return {
        "tables_kept": tables_kept,
        "mean_abs_difference": difference,
        "trimmed_px": [dx, dy],
        "lossless": tables_kept
        and difference is not None
        and difference < LOSSLESS_MEAN_DIFFERENCE,
    }


def side_by_side(service: UploadService, path: Path, rounds: int) -> dict[str, list[float]]:
    photo = path.read_bytes()
    for _ in range(2):  # warm-up: imports, allocator, page cache
        service.post(photo)
        full_decode(path)
    found: dict[str, list[float]] = {"accept": [], "accept_cpu": [], "decode": [], "decode_cpu": []}
    for index in range(rounds):
        order = ("accept", "decode") if index % 2 == 0 else ("decode", "accept")
        for name in order:
            if name == "accept":
                wall, cpu = service.timed_accept(photo)
            else:
                wall, cpu = timed(lambda: full_decode(path))
            found[name].append(wall)
            found[f"{name}_cpu"].append(cpu)
        service.forget()
    return found


def summary(found: dict[str, list[float]]) -> dict[str, Any]:
    ratios = [a / d for a, d in zip(found["accept"], found["decode"], strict=True)]
    return {
        "accept_ms_median": median_ms(found["accept"]),
        "accept_ms_min": round(min(found["accept"]) * 1000, 2),
        "accept_cpu_ms_median": median_ms(found["accept_cpu"]),
        "full_decode_ms_median": median_ms(found["decode"]),
        "full_decode_ms_min": round(min(found["decode"]) * 1000, 2),
        "full_decode_cpu_ms_median": median_ms(found["decode_cpu"]),
        "ratio_of_medians": round(
            statistics.median(found["accept"]) / statistics.median(found["decode"]), 3
        ),
        "median_of_round_ratios": round(statistics.median(ratios), 3),
        "cpu_ratio_of_medians": round(
            statistics.median(found["accept_cpu"]) / statistics.median(found["decode_cpu"]), 3
        ),
        "rounds": len(ratios),
    }


def upload_memory(work: Path) -> dict[str, Any]:
    """A fresh worker's peak resident memory above its start while it takes a ~10 MB photo.

    Fresh, because a worker that has already taken many photos has memory of its own to
    reuse, and the peak would not show what one upload needs.
    """
    service = UploadService(work)
    try:
        big = corpus.jpeg_near_size(10 * 1024 * 1024)
        # Warm up with a small photo (code paths, libraries), not a big one: memory a big
        # upload freed would be reused by the next one without showing in the peak.
        service.post(corpus.phone_photo(1600, 1200, seed=5))
        worker = service.worker()
        reset_peak(worker)
        baseline = status_kib(worker, "VmRSS") * 1024
        service.post(big)
        growth = status_kib(worker, "VmHWM") * 1024 - baseline
    finally:
        service.stop()
    return {
        "memory_upload_bytes": len(big),
        "memory_peak_rss_growth_bytes": growth,
        "memory_growth_per_upload_size": round(growth / len(big), 3),
    }


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
    service = UploadService(out_dir / "upload-svc")
    try:
        upright = summary(side_by_side(service, photo, rounds))
        rotated = summary(side_by_side(service, sideways, max(3, rounds // 3)))
        rotated.update(turned_losslessly(service, sideways))
    finally:
        service.stop()
    memory = {} if smoke else upload_memory(out_dir / "upload-svc-memory")
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
        **memory,
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
        {
            "metric": "portrait stored losslessly (source's quantisation tables kept; "
            "mean absolute pixel difference to the source turned upright)",
            "value": f"{'yes' if rotated['lossless'] else 'no'} "
            f"(tables kept: {'yes' if rotated['tables_kept'] else 'no'}; "
            f"{rotated['mean_abs_difference']})",
            "goal": "(reported)",
            "met": None,
        },
    ]
    if memory:
        table.append(
            {
                "metric": f"worker peak RSS growth, {memory['memory_upload_bytes']} byte upload",
                "value": f"{memory['memory_peak_rss_growth_bytes'] / 1024**2:.1f} MiB "
                f"({memory['memory_growth_per_upload_size']}x)",
                "goal": "< 2x upload size",
                "met": memory["memory_growth_per_upload_size"] < 2,
            }
        )
    return {
        "title": "upload-svc intake vs one full decode",
        "command": "python -m bench.run --only intake" + (" --smoke" if smoke else ""),
        "inputs": {
            "photo": "testbed/corpus.py phone_photo(seed=3, quality=90) + EXIF with GPS",
            "rounds": rounds,
            "service": "upload-svc, 1 gunicorn worker x 4 threads, over HTTP on loopback",
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
