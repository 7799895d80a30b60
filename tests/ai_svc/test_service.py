"""ai-svc as it runs in a pod: gunicorn workers, /metrics, Redis, the local provider."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from testbed.fakes.gemini import FakeGemini
from testbed.metrics import samples, total
from testbed.processes import BIN, ROOT, ManagedProcess, Service, base_env, free_port
from tests.ai_svc.conftest import TEST_KEY, RedisServer, Uploads, ai_gunicorn

pytestmark = pytest.mark.integration

PRIMARY, FALLBACK = "gemini-2.5-flash", "gemini-2.5-flash-lite"


def ideas(service: Service, upload_id: str, **fields: object) -> requests.Response:
    return requests.post(
        f"{service.url}/v1/ideas", json={"upload_id": upload_id, **fields}, timeout=30
    )


@pytest.fixture
def gemini_env(uploads: Uploads, fake_gemini: FakeGemini) -> dict[str, str]:
    return {
        "UPLOAD_SVC_URL": uploads.url,
        "GEMINI_API_KEY": TEST_KEY,
        "GEMINI_BASE_URL": fake_gemini.url,
        "GEMINI_BACKOFF_BASE_SECONDS": "0.01",
        "GEMINI_BACKOFF_MAX_SECONDS": "0.05",
        "GEMINI_BREAKER_FAILURES": "3",
    }


@pytest.fixture
def ai_service(tmp_path: Path, gemini_env: dict[str, str]) -> Iterator[Service]:
    service = ai_gunicorn(tmp_path, gemini_env, workers=1).start()
    try:
        yield service
    finally:
        service.stop()


def test_metrics_follow_the_contract(
    ai_service: Service, uploads: Uploads, fake_gemini: FakeGemini
) -> None:
    photo_id = uploads.ids["photo"]
    assert ideas(ai_service, photo_id).status_code == 200
    assert ideas(ai_service, photo_id).json()["cached"] is True
    fake_gemini.control(faults=[f"503@{PRIMARY}"])
    assert ideas(ai_service, photo_id, language="ja").json()["model"] == FALLBACK
    fake_gemini.control(faults=["blocked"])
    assert ideas(ai_service, photo_id, language="ko").status_code == 422

    url = ai_service.metrics_url
    duration = "gen_ai_client_operation_duration_seconds_count"
    assert total(url, duration, operation="generate_content", model=PRIMARY, outcome="ok") == 1
    assert total(url, duration, model=PRIMARY, outcome="server_error") == 1
    assert total(url, duration, model=FALLBACK, outcome="ok") == 1
    assert total(url, duration, model=PRIMARY, outcome="blocked") == 1
    for kind in ("input", "output"):
        assert total(url, "gen_ai_client_token_usage_total", model=PRIMARY, type=kind) > 0
    assert total(url, "ai_upstream_retries_total", model=PRIMARY, reason="server_error") == 1
    assert total(url, "ai_circuit_state", model=PRIMARY) == 0
    assert total(url, "ai_circuit_state", model=FALLBACK) == 0
    assert total(url, "ai_cache_requests_total", result="hit") == 1
    assert total(url, "ai_cache_requests_total", result="miss") == 3
    assert total(url, "ai_ideas_total", provider="gemini", outcome="ok") == 3
    assert total(url, "ai_ideas_total", provider="gemini", outcome="blocked") == 1
    assert total(url, "ai_content_blocked_total", reason="safety") == 1
    names = {name for name, _, _ in samples(url)}
    assert "ai_upstream_in_flight" in names
    assert total(url, "ai_upstream_in_flight") == 0

    # Three failures in a row open the primary's circuit; the fallback carries on.
    fake_gemini.control(faults=[{"kind": "500", "model": PRIMARY, "times": 3}])
    assert ideas(ai_service, photo_id, language="en", count=1).status_code == 503
    assert total(url, "ai_circuit_state", model=PRIMARY) == 2
    during = ideas(ai_service, photo_id, language="en", count=2)
    assert during.status_code == 200
    assert during.json()["model"] == FALLBACK
    assert total(url, duration, model=PRIMARY, outcome="circuit_open") == 1


def test_redis_shares_the_cache_between_workers_and_fails_open(
    tmp_path: Path,
    gemini_env: dict[str, str],
    uploads: Uploads,
    fake_gemini: FakeGemini,
    redis_server: RedisServer,
) -> None:
    env = {**gemini_env, "REDIS_URL": redis_server.url}
    service = ai_gunicorn(tmp_path, env, workers=2).start()
    try:
        answers = [ideas(service, uploads.ids["photo"], template="blog_outline") for _ in range(8)]
        assert [answer.status_code for answer in answers] == [200] * 8
        assert [answer.json()["cached"] for answer in answers] == [False] + [True] * 7
        assert fake_gemini.stats()["calls"] == 1  # whichever worker answered

        redis_server.stop()
        down = ideas(service, uploads.ids["photo"], template="study_notes")
        assert down.status_code == 200
        assert down.json()["cached"] is False
        assert fake_gemini.stats()["calls"] == 2
    finally:
        service.stop()
    assert "cache_unavailable" in service.managed.log_text()


def test_without_a_key_the_local_provider_answers_with_the_pod_defaults(
    tmp_path: Path, uploads: Uploads
) -> None:
    """No GEMINI_API_KEY: offline ideas; and the documented 64 threads per worker."""
    port, metrics_port = free_port(), free_port()
    env = base_env(
        PORT=str(port),
        METRICS_PORT=str(metrics_port),
        HOST="127.0.0.1",
        WEB_CONCURRENCY="1",
        UPLOAD_SVC_URL=uploads.url,
    )
    env.pop("GUNICORN_THREADS", None)
    managed = ManagedProcess(
        name="ai-svc",
        args=[str(BIN / "gunicorn"), "-c", str(ROOT / "ai-svc" / "gunicorn.conf.py")],
        env=env,
        log_path=tmp_path / "ai-svc.log",
    )
    service = Service("ai-svc", port, metrics_port, managed).start()
    try:
        answer = ideas(service, uploads.ids["portrait"], language="ja", count=4)
        assert answer.status_code == 200
        body = answer.json()
        assert body["provider"] == "local"
        assert body["model"] == "local-v2"
        assert len(body["ideas"]) == 4
        assert body["usage"] == {
            "input_tokens": 0,
            "output_tokens": 0,
            "thinking_tokens": 0,
            "total_tokens": 0,
        }
        assert "縦長" in " ".join(idea["body"] + idea["title"] for idea in body["ideas"])
        presets = requests.get(f"{service.url}/v1/presets", timeout=5).json()
        assert {lang["code"] for lang in presets["languages"]} >= {"ko", "en", "ja"}
        for _ in range(20):  # the gauge is set just after each worker boots
            if total(service.metrics_url, "http_server_worker_threads") == 64:
                break
            time.sleep(0.1)
        assert total(service.metrics_url, "http_server_worker_threads") == 64
    finally:
        service.stop()
    events = [record.get("event") for record in managed.log_records()]
    assert "provider_selected" in events
