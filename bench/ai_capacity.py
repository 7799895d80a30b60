"""ai-svc capacity and cost per snap, against the original plan, in one run.

1. **Snaps per second one ai-svc pod sustains** while Gemini takes a fixed 2 s per
   call (the fake Gemini API, reached by the real google-genai client). Open-loop load
   (requests are sent on a fixed schedule, so a slow server cannot slow its clients down
   and hide its queue; latency counts from the scheduled send time) is offered to
   ``POST /v1/ideas`` at rising rates. A rate is *sustained* when every request got its
   ideas and the p99 stayed below 2.5 s. Side by side:

   - **baseline**, the original plan's setup: gunicorn 2 workers x 4 threads, each
     request thread doing the Gemini call inline and waiting on it;
   - **ours**, ai-svc's defaults: 2 workers x 64 threads, at most 128 upstream calls
     in flight per pod (``GEMINI_MAX_IN_FLIGHT``).

   Both run the same code with the result cache off, and every request asks for a
   different (photo, preset) pair, so no answer could come from a cache.

2. **Upstream bytes and input tokens per snap for a 12-megapixel photo**: what ai-svc
   sends (the 768 px preview from upload-svc) against sending the original upload,
   as counted by the fake Gemini API (request body bytes, ``promptTokenCount`` by the
   documented 768x768-tile rule).

``python -m bench.ai_capacity`` runs it alone; ``make bench`` runs it with the rest.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import requests

from bench.machine import describe_machine
from bench.photos import PHONE_SIZE, make_photo
from testbed.fakes.gemini import FakeGeminiProcess
from testbed.processes import Service, gunicorn_service, wait_http

P99_GOAL_SECONDS = 2.5
CAPACITY_GOAL_RATIO = 10.0
BYTES_GOAL_RATIO = 0.05
PRIMARY_MODEL = "gemini-2.5-flash"
TEMPLATES = ("social_post", "product_idea", "blog_outline", "story", "study_notes")
TONES = ("friendly", "witty", "professional", "poetic", "calm")
LANGUAGES = ("en", "ko", "ja")


@dataclass(frozen=True)
class Plan:
    """What one run does; the smoke plan only proves the scenario still works."""

    gemini_latency: float
    step_seconds: float
    baseline_rates: tuple[float, ...]
    ours_rates: tuple[float, ...]
    photos: int
    photo_size: tuple[int, int]
    cost_photo_size: tuple[int, int]
    p99_goal: float
    workers: int = 2
    refine: int = 2
    min_samples: int = 30

    @classmethod
    def for_run(cls, smoke: bool) -> Plan:
        if smoke:
            return cls(
                gemini_latency=0.05,
                step_seconds=1.0,
                baseline_rates=(5.0,),
                ours_rates=(10.0,),
                photos=2,
                photo_size=(640, 480),
                cost_photo_size=(1600, 1200),
                p99_goal=1.0,
                workers=1,
                refine=0,
                min_samples=5,
            )
        return cls(
            gemini_latency=2.0,
            step_seconds=8.0,
            baseline_rates=(1.0, 1.5, 2.0, 2.5, 3.0, 4.0),
            ours_rates=(20.0, 40.0, 50.0, 60.0, 70.0, 80.0, 100.0, 120.0),
            photos=4,
            photo_size=(1600, 1200),
            cost_photo_size=PHONE_SIZE,
            p99_goal=P99_GOAL_SECONDS,
            # One bisection step: the whole of `make bench` must fit in 20 minutes.
            refine=1,
        )


@dataclass
class Step:
    """One offered rate: what came back, and how fast."""

    rate: float
    seconds: float
    sent: int
    ok: int
    statuses: dict[str, int]
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None
    achieved_per_second: float
    passed: bool


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, math.ceil(fraction * len(sorted_values)) - 1))
    return sorted_values[index]


def rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def payloads(upload_ids: list[str]) -> Iterator[dict[str, Any]]:
    """Every request a different (photo, preset): 1,500 combinations before any repeats."""
    combinations = itertools.product(upload_ids, TEMPLATES, TONES, LANGUAGES, range(1, 6))
    for upload_id, template, tone, language, count in itertools.cycle(list(combinations)):
        yield {
            "upload_id": upload_id,
            "template": template,
            "tone": tone,
            "language": language,
            "count": count,
        }


def offer(
    url: str, bodies: Iterator[dict[str, Any]], rate: float, seconds: float, goal: float
) -> Step:
    """Send ``rate`` requests per second for ``seconds`` on a fixed schedule."""
    total = max(1, round(rate * seconds))
    local = threading.local()

    def send(scheduled: float, body: dict[str, Any]) -> tuple[float, str]:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        try:
            status = str(session.post(url, json=body, timeout=60).status_code)
        except requests.RequestException as error:
            status = type(error).__name__
        return time.perf_counter() - scheduled, status

    workers = min(1024, int(rate * (goal * 3 + 2)) + 16)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
        start = time.perf_counter() + 0.1
        futures = []
        for number in range(total):
            scheduled = start + number / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, scheduled, next(bodies)))
        results = [future.result() for future in futures]
        elapsed = time.perf_counter() - start
    latencies = sorted(latency for latency, status in results if status == "200")
    statuses = Counter(status for _, status in results)
    ok = statuses.get("200", 0)
    p99 = percentile(latencies, 0.99)
    return Step(
        rate=rate,
        seconds=round(elapsed, 2),
        sent=total,
        ok=ok,
        statuses=dict(statuses),
        p50=rounded(percentile(latencies, 0.50)),
        p95=rounded(percentile(latencies, 0.95)),
        p99=rounded(p99),
        max=rounded(latencies[-1] if latencies else None),
        achieved_per_second=round(min(ok / seconds, rate), 2),
        passed=ok == total and p99 is not None and p99 < goal,
    )


def capacity(
    url: str, bodies: Iterator[dict[str, Any]], rates: tuple[float, ...], plan: Plan
) -> dict[str, Any]:
    """The highest rate sustained: climb the ladder to the first failure, then bisect."""
    steps: list[Step] = []

    def attempt(rate: float) -> Step:
        # Low rates run longer: a p99 over a dozen requests would just be their maximum.
        seconds = max(plan.step_seconds, plan.min_samples / rate)
        step = offer(url, bodies, rate, seconds, plan.p99_goal)
        steps.append(step)
        print(
            f"  {rate:6.2f}/s: ok {step.ok}/{step.sent}, p50 {fmt(step.p50)}, "
            f"p99 {fmt(step.p99)} -> {'sustained' if step.passed else 'not sustained'}",
            file=sys.stderr,
            flush=True,
        )
        time.sleep(0.5)  # let the last step's stragglers drain
        return step

    passed, failed = 0.0, None
    for rate in rates:
        if not attempt(rate).passed:
            failed = rate
            break
        passed = rate
    for _ in range(plan.refine if failed is not None and passed else 0):
        middle = round((passed + failed) / 2, 2)
        if attempt(middle).passed:
            passed = middle
        else:
            failed = middle
    sustained = [step for step in steps if step.passed]
    best = max(sustained, key=lambda step: step.rate) if sustained else None
    return {
        "sustained_per_second": best.achieved_per_second if best else 0.0,
        "offered_per_second": best.rate if best else 0.0,
        "p50_s": best.p50 if best else None,
        "p99_s": best.p99 if best else None,
        "first_failed_per_second": failed,
        "steps": [asdict(step) for step in steps],
    }


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


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


def last_gemini_request(gemini: FakeGeminiProcess) -> dict[str, Any]:
    return gemini.stats()["requests"][-1]


def cost_per_snap(
    ours: Service, uploads: Service, gemini: FakeGeminiProcess, photo: bytes
) -> dict[str, Any]:
    """One snap of a 12 MP photo through ai-svc, and the same call with the original."""
    from ai_svc.presets import load_catalogue
    from ai_svc.providers.base import PreviewImage
    from ai_svc.providers.gemini import GeminiProvider
    from ai_svc.resilience import Deadline
    from ai_svc.settings import AiSettings

    record = upload(uploads, photo, "phone-12mp")
    answer = requests.post(
        f"{ours.url}/v1/ideas", json={"upload_id": record["id"], "count": 3}, timeout=60
    )
    answer.raise_for_status()
    sent_preview = last_gemini_request(gemini)

    original = requests.get(f"{uploads.url}/v1/uploads/{record['id']}", timeout=60).content
    settings = AiSettings(
        gemini_api_key="bench-key",
        gemini_base_url=gemini.url,
        gemini_fallback_model="",
        otel_sdk_disabled=True,
        metrics_enabled=False,
    )
    provider = GeminiProvider(settings)
    try:
        catalogue = load_catalogue()
        preset = catalogue.resolve(None, None, None, 3)
        inline = provider.generate(PreviewImage.of(original), preset, catalogue, Deadline(60))
    finally:
        provider.close()
    sent_original = last_gemini_request(gemini)
    preview_image, original_image = sent_preview["images"][0], sent_original["images"][0]
    return {
        "photo_megapixels": round(record["width"] * record["height"] / 1e6, 1),
        "photo_bytes": record["size"],
        "original_dimensions": [original_image["width"], original_image["height"]],
        "preview_dimensions": [preview_image["width"], preview_image["height"]],
        "original_upstream_bytes": sent_original["bytes"],
        "preview_upstream_bytes": sent_preview["bytes"],
        "bytes_ratio": round(sent_preview["bytes"] / sent_original["bytes"], 4),
        "original_input_tokens": inline.usage.input_tokens,
        "preview_input_tokens": answer.json()["usage"]["input_tokens"],
        "original_image_tokens": original_image["tokens"],
        "preview_image_tokens": preview_image["tokens"],
        "tokens_ratio": round(
            answer.json()["usage"]["input_tokens"] / inline.usage.input_tokens, 4
        ),
    }


def ai_service(name: str, work: Path, env: dict[str, str], workers: int, threads: int) -> Service:
    service = gunicorn_service("ai-svc", work, env, workers=workers, threads=threads)
    service.managed.log_path = work / f"{name}.log"
    return service


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
    }
    common |= {"GEMINI_BASE_URL": gemini.url, "UPLOAD_SVC_URL": uploads.url}
    baseline = ai_service("ai-baseline", work, common, workers=plan.workers, threads=4)
    ours = ai_service("ai-ours", work, common, workers=plan.workers, threads=64)
    services: list[Any] = [gemini, uploads, baseline, ours]
    try:
        for service in (uploads, baseline, ours):  # all boot at once: a third of the wait
            service.managed.start()
        gemini.start()
        for service in (uploads, baseline, ours):
            wait_http(f"{service.url}/healthz", 90, service.managed.process)
        upload_ids = [
            upload(uploads, make_photo(*plan.photo_size, seed=100 + index), f"p{index}")["id"]
            for index in range(plan.photos)
        ]
        warm_previews(uploads, upload_ids)
        bodies = payloads(upload_ids)
        for service in (baseline, ours):  # one untimed call each: connections, imports
            requests.post(f"{service.url}/v1/ideas", json=next(bodies), timeout=60)

        print("ai_capacity: baseline (2 workers x 4 threads, inline)", file=sys.stderr)
        baseline_result = capacity(f"{baseline.url}/v1/ideas", bodies, plan.baseline_rates, plan)
        print("ai_capacity: ours (2 workers x 64 threads, 128 upstream slots)", file=sys.stderr)
        ours_result = capacity(f"{ours.url}/v1/ideas", bodies, plan.ours_rates, plan)
        cost = cost_per_snap(ours, uploads, gemini, make_photo(*plan.cost_photo_size, seed=7))
        gemini_stats = gemini.stats()
    finally:
        with ThreadPoolExecutor(len(services)) as pool:  # stop them all at once, too
            list(pool.map(lambda service: service.stop(), services))
    return report(
        plan,
        baseline=baseline_result,
        ours=ours_result,
        cost=cost,
        gemini_stats=gemini_stats,
        load_before=load_before,
        started=started,
    )


def report(
    plan: Plan,
    *,
    baseline: dict[str, Any],
    ours: dict[str, Any],
    cost: dict[str, Any],
    gemini_stats: dict[str, Any],
    load_before: tuple[float, float, float],
    started: float,
) -> dict[str, Any]:
    base_rate = baseline["sustained_per_second"]
    our_rate = ours["sustained_per_second"]
    ratio = round(our_rate / base_rate, 2) if base_rate else None
    goal = plan.p99_goal
    figures = {
        "gemini_latency_s": plan.gemini_latency,
        "p99_goal_s": goal,
        "baseline_snaps_per_s": base_rate,
        "baseline_p99_s": baseline["p99_s"],
        "ours_snaps_per_s": our_rate,
        "ours_p99_s": ours["p99_s"],
        "capacity_ratio": ratio,
        **cost,
        "gemini_calls": gemini_stats["calls"],
        "gemini_max_in_flight": gemini_stats["max_in_flight"],
    }
    table = [
        {
            "metric": f"snaps/s at p99 < {goal:g} s, baseline "
            f"({plan.workers} workers x 4 threads, inline)",
            "value": base_rate,
            "goal": "reference",
            "met": None,
        },
        {
            "metric": f"snaps/s at p99 < {goal:g} s, one ai-svc pod "
            f"({plan.workers} workers x 64 threads)",
            "value": our_rate,
            "goal": f">= {CAPACITY_GOAL_RATIO:g}x baseline",
            "met": ratio is not None and ratio >= CAPACITY_GOAL_RATIO,
        },
        {
            "metric": "capacity, ours / baseline",
            "value": f"{ratio}x" if ratio is not None else "n/a",
            "goal": f">= {CAPACITY_GOAL_RATIO:g}x",
            "met": ratio is not None and ratio >= CAPACITY_GOAL_RATIO,
        },
        {
            "metric": f"upstream bytes per snap, {cost['photo_megapixels']} MP photo: "
            "preview / original",
            "value": f"{cost['preview_upstream_bytes']:,} / {cost['original_upstream_bytes']:,} "
            f"B = {cost['bytes_ratio']:.1%}",
            "goal": f"< {BYTES_GOAL_RATIO:.0%}",
            "met": cost["bytes_ratio"] < BYTES_GOAL_RATIO,
        },
        {
            "metric": "input tokens per snap: preview / original",
            "value": f"{cost['preview_input_tokens']} / {cost['original_input_tokens']} = "
            f"{cost['tokens_ratio']:.1%}",
            "goal": "reported",
            "met": None,
        },
    ]
    return {
        "scenario": "ai_capacity",
        "smoke": plan.gemini_latency < 1,
        "command": "python -m bench.ai_capacity" + (" --smoke" if plan.gemini_latency < 1 else ""),
        "inputs": {
            **asdict(plan),
            "baseline": "ai-svc, WEB_CONCURRENCY=2 GUNICORN_THREADS=4, AI_CACHE_SIZE=0",
            "ours": "ai-svc defaults: WEB_CONCURRENCY=2 GUNICORN_THREADS=64 "
            "GEMINI_MAX_IN_FLIGHT=128, AI_CACHE_SIZE=0",
            "load": "open loop, fixed arrival rate, latency from the scheduled send time",
        },
        "machine": {**describe_machine(), "load_average_before": load_before},
        "figures": figures,
        "table": table,
        "baseline": baseline,
        "ours": ours,
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
