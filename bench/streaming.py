"""Scenario: streamed snaps at the knee's load, time to the first idea vs the whole answer.

The same stack as the knee (one pod of each service, the chart's workers and threads),
with the fake Gemini thinking for ``gemini_latency`` and then writing its answer in
``CHUNKS`` chunks spread over the same time again, as a model streams. Closed-loop users,
as many as the knee found (or the smoke's two), post snaps (a distinct photo each) with
``Accept: text/event-stream`` and note when the first ``idea`` event and the ``done``
event arrived. The gap between the two is what a person no longer waits for.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import requests

from bench.loadgen import nearest_rank
from bench.photos import fresh_variants, photo_pool, priming_photo, variant
from bench.settings import BenchSettings
from bench.stack import scenario_stack

NAME = "streaming"
TITLE = "Streamed snaps at the knee: time to first idea vs the whole answer"
CHUNKS = 8


def one_snap(url: str, image: bytes) -> dict[str, Any]:
    started = time.perf_counter()
    first: float | None = None
    ended = "broken"
    with requests.post(
        f"{url}/v1/snaps",
        files={"image": ("photo.jpg", image, "image/jpeg")},
        data={"template": "social_post", "count": "3"},
        headers={"Accept": "text/event-stream"},
        stream=True,
        timeout=60,
    ) as response:
        if response.status_code != 200:
            return {"ok": False, "status": response.status_code}
        for line in response.iter_lines(chunk_size=1024):
            if line == b"event: idea" and first is None:
                first = time.perf_counter() - started
            elif line in (b"event: done", b"event: error"):
                ended = line.decode().removeprefix("event: ")
        whole = time.perf_counter() - started
    return {"ok": ended == "done" and first is not None, "first": first, "whole": whole}


def milliseconds(values: list[float], fraction: float) -> float | None:
    found = nearest_rank(sorted(values), fraction)
    return None if found is None else round(found * 1000, 1)


def run(
    out_dir: Path,
    smoke: bool,
    settings: BenchSettings | None = None,
    *,
    knee: dict[str, Any] | None = None,
) -> dict[str, Any]:
    settings = settings or BenchSettings.for_run(smoke)
    knee_users = (knee or {}).get("figures", {}).get("knee_concurrency")
    users = int(knee_users or (2 if smoke else 8))
    seconds = settings.knee_step_seconds
    photos = photo_pool(out_dir.parent / "photos", settings.photo_pool, settings.photo_size)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    with scenario_stack(out_dir / "stack", settings, priming_photo=priming_photo(photos)) as stack:
        # The fake's streaming shape is put back afterwards: a smoke run's stack is shared.
        previous = {key: stack.gemini.stats()[key] for key in ("stream_chunks", "chunk_interval")}
        stack.gemini.control(stream_chunks=CHUNKS, chunk_interval=settings.gemini_latency / CHUNKS)
        stop_at = time.monotonic() + seconds

        bases = [path.read_bytes() for path in photos]
        first_variant = fresh_variants()

        def user(number: int) -> None:
            turn = number
            while time.monotonic() < stop_at:
                # A distinct photo every time: a cached answer would stream at once.
                photo = variant(bases[turn % len(bases)], first_variant + turn)
                outcome = one_snap(stack.url, photo)
                turn += users
                with lock:
                    results.append(outcome)

        threads = [threading.Thread(target=user, args=(n,), daemon=True) for n in range(users)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(seconds + 90)
        stack.gemini.control(**previous)
        config = stack.config
    ok = [result for result in results if result["ok"]]
    firsts = [result["first"] for result in ok]
    wholes = [result["whole"] for result in ok]
    figures = {
        "users": users,
        "users_from_knee": knee_users is not None,
        "streams": len(results),
        "errors": len(results) - len(ok),
        "first_idea_p50_ms": milliseconds(firsts, 0.5),
        "first_idea_p99_ms": milliseconds(firsts, 0.99),
        "whole_answer_p50_ms": milliseconds(wholes, 0.5),
        "whole_answer_p99_ms": milliseconds(wholes, 0.99),
    }
    earlier = (
        None
        if figures["first_idea_p50_ms"] is None or figures["whole_answer_p50_ms"] is None
        else round(figures["whole_answer_p50_ms"] - figures["first_idea_p50_ms"], 1)
    )
    figures["first_idea_earlier_p50_ms"] = earlier
    return {
        "scenario": NAME,
        "title": TITLE,
        "command": f"python -m bench.run --only knee,{NAME}",
        "inputs": {
            "seconds": seconds,
            "gemini_thinking_seconds": settings.gemini_latency,
            "gemini_chunks": CHUNKS,
            "gemini_chunk_interval_seconds": settings.gemini_latency / CHUNKS,
            "stack": config,
        },
        "figures": figures,
        "table": [
            {
                "metric": f"time to first idea p50 / p99 (ms), {users} users",
                "value": f"{figures['first_idea_p50_ms']} / {figures['first_idea_p99_ms']}",
                "goal": None,
                "met": None,
            },
            {
                "metric": f"whole answer p50 / p99 (ms), {users} users",
                "value": f"{figures['whole_answer_p50_ms']} / {figures['whole_answer_p99_ms']}",
                "goal": None,
                "met": None,
            },
            {
                "metric": "first idea before the whole answer (p50)",
                "value": "n/a" if earlier is None else f"{earlier} ms earlier",
                "goal": "> 0",
                "met": None if earlier is None else earlier > 0,
            },
            {
                "metric": "streams that did not end with done",
                "value": f"{figures['errors']} of {figures['streams']}",
                "goal": "0",
                "met": figures["errors"] == 0 and figures["streams"] > 0,
            },
        ],
    }
