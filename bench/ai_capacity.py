"""What ai-svc itself costs per model call, and how many calls one pod holds in flight.

ai-svc spends most of a snap waiting on Gemini, so its throughput says little: with
Gemini's latency fixed, any server with enough threads passes N / latency requests per
second at N in flight (Little's law), and a comparison of thread counts cannot fail.
What does depend on ai-svc is what it adds on top of the wait, so that is measured:

1. **In-flight calls one pod holds.** wrk keeps N requests to ``POST /v1/ideas`` in
   flight (closed loop, one connection each; every request a different photo and preset,
   the result cache off; the connections' requests staggered evenly over one Gemini
   latency, as independent users arrive, not in lockstep waves: bench/wrk.py) against
   one ai-svc pod with its defaults (2 workers x 64 threads, ``GEMINI_MAX_IN_FLIGHT``
   128), while the fake Gemini API (reached by the real google-genai client) answers
   every call after a fixed latency L. N rises until the p99 passes 1.1 x L: beyond it
   ai-svc's own queueing or CPU adds more than a tenth to every snap. The largest N that
   stayed under is the pod's in-flight capacity, the figure the chart's in-flight
   autoscaling target is derived from (bench/sizing.py).
2. **CPU per model call**: the CPU time of the pod's process tree (master and workers,
   testbed/resources.py) over those runs, divided by the calls the fake Gemini API
   received in them (it includes the stagger's one ``/healthz`` per connection and step,
   under 5 % of the figure at the largest step). This is the work ai-svc does per snap:
   fetch the preview from upload-svc, build the prompt, the client call, validate and
   answer.
3. **Upstream bytes per snap for a 12-megapixel photo**: the request body bytes and the
   image size the fake Gemini API received from ai-svc as deployed (768 px preview)
   against an ai-svc told to send the full-size image (``PREVIEW_LONG_SIDE=4096``), and
   the image tokens Google documents for those sizes (see :func:`documented_image_tokens`).

``python -m bench.ai_capacity`` runs it alone; ``make bench`` runs it with the rest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from bench.console import say
from bench.goals import INVALID, goal_row
from bench.machine import describe_machine
from bench.photos import PHONE_SIZE, make_photo
from bench.wrk import Stagger, script, version, wrk
from testbed.fakes.gemini import FakeGeminiProcess
from testbed.processes import Service, gunicorn_service, wait_http
from testbed.resources import tree_cpu_seconds

P99_FACTOR = 1.1
BYTES_GOAL_RATIO = 0.05
WORKERS, THREADS = 2, 64
TEMPLATES = ("social_post", "product_idea", "blog_outline", "story", "study_notes")
TONES = ("friendly", "witty", "professional", "poetic", "calm")
LANGUAGES = ("en", "ko", "ja")
# Google's image-token rule for Gemini (https://ai.google.dev/gemini-api/docs/tokens,
# "image" under multimodal tokens, stated from Gemini 2.0 on): an image with both sides
# at most 384 px counts 258 tokens; a larger one is scaled and cropped into 768x768 px
# tiles of 258 tokens each.
SMALL_SIDE, TILE_SIDE, TOKENS_PER_TILE = 384, 768, 258


def documented_image_tokens(width: int, height: int) -> int:
    """Input tokens Google documents for one image of this size (see the rule above).

    An estimate of the bill, not a measurement: the real figure is the API's
    ``usageMetadata.promptTokenCount``, and newer models may count by media resolution.
    """
    if width <= SMALL_SIDE and height <= SMALL_SIDE:
        return TOKENS_PER_TILE
    return math.ceil(width / TILE_SIDE) * math.ceil(height / TILE_SIDE) * TOKENS_PER_TILE


@dataclass(frozen=True)
class Plan:
    """What one run does; the smoke plan only proves the scenario still works."""

    gemini_latency: float
    step_seconds: float
    in_flight: tuple[int, ...]
    photos: int
    photo_size: tuple[int, int]
    cost_photo_size: tuple[int, int]
    workers: int = WORKERS
    min_calls: int = 200

    @classmethod
    def for_run(cls, smoke: bool) -> Plan:
        if smoke:
            return cls(
                gemini_latency=0.05,
                step_seconds=1.0,
                in_flight=(2, 4),
                photos=2,
                photo_size=(640, 480),
                cost_photo_size=(1600, 1200),
                workers=1,
                min_calls=5,
            )
        return cls(
            gemini_latency=2.0,
            step_seconds=8.0,
            in_flight=(8, 16, 32, 64, 96, 128, 160),
            photos=4,
            photo_size=(1600, 1200),
            cost_photo_size=PHONE_SIZE,
        )

    @property
    def p99_limit_ms(self) -> float:
        return P99_FACTOR * self.gemini_latency * 1000


def request_bodies(upload_ids: list[str]) -> list[str]:
    """Every request a different (photo, preset): 1,500 combinations before any repeats."""
    combinations = itertools.product(upload_ids, TEMPLATES, TONES, LANGUAGES, range(1, 6))
    return [
        json.dumps(
            {
                "upload_id": upload_id,
                "template": template,
                "tone": tone,
                "language": language,
                "count": count,
            }
        )
        for upload_id, template, tone, language, count in combinations
    ]


def upload(service: Service, image: bytes, name: str) -> dict[str, Any]:
    response = requests.post(
        f"{service.url}/v1/uploads",
        files={"image": (f"{name}.jpg", image, "image/jpeg")},
        timeout=120,
    )
    response.raise_for_status()
    return response.json()


def warm_previews(service: Service, upload_ids: list[str]) -> None:
    """Render each preview once, so the timed phase measures ai-svc, not first renders."""
    for upload_id in upload_ids:
        requests.get(
            f"{service.url}/internal/uploads/{upload_id}/preview",
            params={"long_side": 768},
            timeout=60,
        ).raise_for_status()


def settle(gemini: FakeGeminiProcess, latency: float, patience: float = 90.0) -> None:
    """Wait until ai-svc has no call left: requests queued when wrk stopped still run.

    The next step's figures, and the upstream-bytes check that counts one call per snap,
    must not see the last step's stragglers.
    """
    deadline = time.monotonic() + patience
    calls = gemini.stats()["calls"]
    while time.monotonic() < deadline:
        time.sleep(max(0.05, latency * 1.5))
        now = gemini.stats()
        if now["in_flight"] == 0 and now["calls"] == calls:
            return
        calls = now["calls"]
    raise RuntimeError(f"ai-svc still calling Gemini {patience:g} s after the load stopped")


def in_flight_ladder(
    ai: Service, gemini: FakeGeminiProcess, bodies: list[str], work: Path, plan: Plan
) -> dict[str, Any]:
    """Raise the calls in flight until the p99 passes the limit; CPU over all steps."""
    assert ai.managed.process is not None
    pid = ai.managed.process.pid
    steps: list[dict[str, Any]] = []
    held = 0
    cpu_seconds, calls = 0.0, 0
    for connections in plan.in_flight:
        # Enough calls for a p99 that is not just the slowest one, after the stagger.
        seconds = plan.gemini_latency + max(
            plan.step_seconds, plan.min_calls * plan.gemini_latency / connections
        )
        calls_before = gemini.stats()["calls"]
        lua = script(
            work / f"ideas-{connections}.lua", bodies, Stagger(connections, plan.gemini_latency)
        )
        cpu_before = tree_cpu_seconds(pid)
        measured = wrk(f"{ai.url}/v1/ideas", connections, seconds, lua, timeout=30)
        spent = tree_cpu_seconds(pid) - cpu_before
        made = gemini.stats()["calls"] - calls_before
        cpu_seconds, calls = cpu_seconds + spent, calls + made
        under = measured.errors == 0 and measured.p99_ms <= plan.p99_limit_ms
        steps.append(
            {
                "in_flight": connections,
                "requests": measured.requests,
                "errors": measured.errors,
                "per_second": round(measured.rps, 2),
                "p50_ms": round(measured.p50_ms, 1),
                "p99_ms": round(measured.p99_ms, 1),
                "gemini_calls": made,
                "cpu_ms_per_call": round(1000 * spent / made, 2) if made else None,
                "p99_within_limit": under,
            }
        )
        say(
            f"  {connections:4d} in flight: {measured.rps:7.1f}/s, p99 {measured.p99_ms:.0f} ms"
            f" (limit {plan.p99_limit_ms:.0f}), errors {measured.errors}"
        )
        settle(gemini, plan.gemini_latency)
        if not under:
            break
        held = connections
    return {
        "in_flight_held": held,
        "first_over_limit": None if steps[-1]["p99_within_limit"] else steps[-1]["in_flight"],
        "cpu_ms_per_call": round(1000 * cpu_seconds / calls, 3) if calls else math.nan,
        "gemini_calls": calls,
        "steps": steps,
    }


def sent_upstream(ai: Service, gemini: FakeGeminiProcess, upload_id: str) -> dict[str, Any]:
    """One snap through ``ai``: what the fake Gemini API received for it."""
    before = gemini.stats()["calls"]
    answer = requests.post(
        f"{ai.url}/v1/ideas", json={"upload_id": upload_id, "count": 3}, timeout=120
    )
    answer.raise_for_status()
    after = gemini.stats()
    # The fake keeps only its latest requests, so the new call is the last one kept.
    received = after["requests"][-1:] if after["calls"] == before + 1 else after["requests"]
    if len(received) != 1 or len(received[0]["images"]) != 1:
        raise RuntimeError(
            f"expected one call with one image upstream, got {after['calls'] - before}"
        )
    image = received[0]["images"][0]
    return {
        "body_bytes": received[0]["bytes"],
        "image_bytes": image["bytes"],
        "dimensions": [image["width"], image["height"]],
        "documented_image_tokens": documented_image_tokens(image["width"], image["height"]),
    }


def upstream_cost(
    ai: Service, full_size: Service, uploads: Service, gemini: FakeGeminiProcess, photo: bytes
) -> dict[str, Any]:
    record = upload(uploads, photo, "phone-12mp")
    preview = sent_upstream(ai, gemini, record["id"])
    original = sent_upstream(full_size, gemini, record["id"])
    return {
        "photo_megapixels": round(record["width"] * record["height"] / 1e6, 1),
        "photo_dimensions": [record["width"], record["height"]],
        "photo_bytes": record["size"],
        "preview": preview,
        "full_size": original,
        "bytes_ratio": round(preview["body_bytes"] / original["body_bytes"], 4),
        "documented_tokens_ratio": round(
            preview["documented_image_tokens"] / original["documented_image_tokens"], 4
        ),
    }


def run(out_dir: Path, smoke: bool) -> dict[str, Any]:
    plan = Plan.for_run(smoke)
    work = out_dir / "ai_capacity"
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    load_before = os.getloadavg()
    gemini = FakeGeminiProcess(latency=plan.gemini_latency, log_path=work / "fake-gemini.log")
    uploads = gunicorn_service(
        "upload-svc",
        work,
        {"STORAGE_DIR": str(work / "storage"), "MAX_UPLOAD_BYTES": str(40 * 1024 * 1024)},
        workers=plan.workers,
        threads=16,
    )
    common = {
        "GEMINI_API_KEY": "bench-key",
        "AI_CACHE_SIZE": "0",
        "LOG_LEVEL": "WARNING",
        "GUNICORN_TIMEOUT": "120",
        "GEMINI_BASE_URL": gemini.url,
        "UPLOAD_SVC_URL": uploads.url,
    }
    ai = gunicorn_service("ai-svc", work, common, workers=plan.workers, threads=THREADS)
    full_size = gunicorn_service(
        "ai-svc", work, {**common, "PREVIEW_LONG_SIDE": "4096"}, workers=1, threads=2
    )
    full_size.managed.log_path = work / "ai-svc-full-size.log"
    services: list[Any] = [gemini, uploads, ai, full_size]
    try:
        for service in (uploads, ai, full_size):  # all boot at once
            service.managed.start()
        gemini.start()
        for service in (uploads, ai, full_size):
            wait_http(f"{service.url}/healthz", 90, service.managed.process)
        upload_ids = [
            upload(uploads, make_photo(*plan.photo_size, seed=100 + index), f"p{index}")["id"]
            for index in range(plan.photos)
        ]
        warm_previews(uploads, upload_ids)
        bodies = request_bodies(upload_ids)
        for body in bodies[:4]:  # untimed: connections, imports, every worker
            requests.post(
                f"{ai.url}/v1/ideas", json=json.loads(body), timeout=60
            ).raise_for_status()
        say(f"ai_capacity: in flight against one pod ({plan.workers} x {THREADS} threads)")
        ladder = in_flight_ladder(ai, gemini, bodies, work, plan)
        cost = upstream_cost(
            ai, full_size, uploads, gemini, make_photo(*plan.cost_photo_size, seed=7)
        )
    finally:
        with ThreadPoolExecutor(len(services)) as pool:  # stop them all at once, too
            list(pool.map(lambda service: service.stop(), services))
    return report(plan, ladder=ladder, cost=cost, load_before=load_before, started=started)


def report(
    plan: Plan,
    *,
    ladder: dict[str, Any],
    cost: dict[str, Any],
    load_before: tuple[float, float, float],
    started: float,
) -> dict[str, Any]:
    limit = plan.p99_limit_ms
    preview, original = cost["preview"], cost["full_size"]
    figures = {
        "gemini_latency_s": plan.gemini_latency,
        "p99_limit_ms": limit,
        "in_flight_per_pod": ladder["in_flight_held"],
        "first_in_flight_over_limit": ladder["first_over_limit"],
        "cpu_ms_per_model_call": ladder["cpu_ms_per_call"],
        "gemini_calls": ladder["gemini_calls"],
        **cost,
    }
    table = [
        {
            "metric": f"calls in flight one pod holds with p99 <= {P99_FACTOR:g} x Gemini's "
            f"{plan.gemini_latency:g} s ({plan.workers} workers x {THREADS} threads; "
            "sizes the in-flight autoscaling target)",
            "value": ladder["in_flight_held"],
            "goal": f"reported (first over: {ladder['first_over_limit'] or 'none tried'})",
            "met": None,
        },
        {
            "metric": "ai-svc CPU per model call (ms: its process tree over the ladder / the "
            "calls Gemini received)",
            "value": ladder["cpu_ms_per_call"],
            "goal": "reported",
            "met": None,
        },
        goal_row(
            f"upstream bytes per snap, {cost['photo_megapixels']} MP photo: preview "
            f"{preview['body_bytes']:,} B / full size {original['body_bytes']:,} B",
            cost["bytes_ratio"],
            "<",
            BYTES_GOAL_RATIO,
            (0.0, 1.0),
        ),
        {
            "metric": "image tokens by Google's documented rule: preview "
            f"{'x'.join(map(str, preview['dimensions']))} / full size "
            f"{'x'.join(map(str, original['dimensions']))}",
            "value": f"{preview['documented_image_tokens']} / "
            f"{original['documented_image_tokens']} = {cost['documented_tokens_ratio']:.1%}",
            "goal": "reported (an estimate; the bill is Gemini's promptTokenCount)",
            "met": None,
        },
    ]
    # A CPU figure that is not a positive number is a broken measurement, not "reported".
    if not ladder["cpu_ms_per_call"] > 0:
        table[1] |= {"met": INVALID, "invalid_because": "no positive CPU per call"}
    return {
        "scenario": "ai_capacity",
        "title": "ai-svc: calls in flight per pod, CPU per model call, upstream bytes per snap",
        "smoke": plan.gemini_latency < 1,
        "command": "python -m bench.ai_capacity" + (" --smoke" if plan.gemini_latency < 1 else ""),
        "inputs": {
            **asdict(plan),
            "pod": f"ai-svc defaults: WEB_CONCURRENCY={plan.workers} GUNICORN_THREADS={THREADS}"
            ", GEMINI_MAX_IN_FLIGHT=128, AI_CACHE_SIZE=0",
            "full_size": "ai-svc with PREVIEW_LONG_SIDE=4096 (sends the photo at full size)",
            "load": f"{version()}: closed loop, one request in flight per connection, "
            "connections staggered over one Gemini latency",
        },
        "machine": {**describe_machine(), "load_average_before": load_before},
        "figures": figures,
        "table": table,
        "steps": ladder["steps"],
        "seconds": round(time.monotonic() - started, 1),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ai_capacity", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, no figures")
    parser.add_argument("--out-dir", type=Path, default=Path("bench/out"))
    args = parser.parse_args(argv)
    result = run(args.out_dir, args.smoke)
    print(json.dumps(result, indent=2))
    for row in result["table"]:
        print(f"{row['metric']}: {row['value']} (goal {row['goal']}, met {row['met']})")


if __name__ == "__main__":
    main()
