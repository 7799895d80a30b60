"""The fake Gemini API is only useful if it behaves like the real one where it matters.

These tests drive it with the real google-genai client (and with raw HTTP where the SDK
hides the wire format), so a change in either shows up here first.
"""

from __future__ import annotations

import base64
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx2
import pytest
import requests
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from PIL import Image

from testbed.fakes.gemini import FakeGemini, FakeGeminiProcess, image_tokens

AnyFake = FakeGemini | FakeGeminiProcess
SCHEMA = {
    "type": "OBJECT",
    "properties": {
        "ideas": {
            "type": "ARRAY",
            "minItems": 4,
            "maxItems": 4,
            "items": {
                "type": "OBJECT",
                "properties": {
                    "title": {"type": "STRING"},
                    "body": {"type": "STRING"},
                    "hashtags": {"type": "ARRAY", "items": {"type": "STRING"}},
                },
                "required": ["title", "body", "hashtags"],
            },
        }
    },
    "required": ["ideas"],
}


def jpeg(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (120, 80, 200)).save(out, "JPEG")
    return out.getvalue()


def client(fake: AnyFake, version: str = "v1beta", timeout_ms: int = 5000) -> genai.Client:
    return genai.Client(
        api_key="key",
        http_options=types.HttpOptions(
            base_url=fake.url,
            api_version=version,
            timeout=timeout_ms,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )


def ask(
    fake: AnyFake,
    text: str = "ideas please",
    *,
    image: bytes | None = None,
    version: str = "v1beta",
    **config: object,
) -> types.GenerateContentResponse:
    contents: list = [types.Part.from_bytes(data=image or jpeg(768, 576), mime_type="image/jpeg")]
    contents.append(text)
    sdk = client(fake, version)  # held: a dropped genai.Client closes its HTTP client
    return sdk.models.generate_content(
        model="gemini-2.5-flash",
        contents=contents,
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=SCHEMA, **config
        ),
    )


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_generate_content_answers_json_matching_the_schema(
    fake_gemini: FakeGemini, version: str
) -> None:
    response = ask(fake_gemini, version=version)

    answer = json.loads(response.text)
    assert len(answer["ideas"]) == 4
    assert all(idea["title"] and idea["body"] for idea in answer["ideas"])
    assert all(tag.startswith("#") for idea in answer["ideas"] for tag in idea["hashtags"])
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert fake_gemini.stats()["by_api_version"] == {version: 1}


def test_the_answer_is_deterministic_and_in_the_requested_language(
    fake_gemini: FakeGemini,
) -> None:
    first = ask(fake_gemini, "Write in Korean (한국어)").text
    again = ask(fake_gemini, "Write in Korean (한국어)").text
    japanese = ask(fake_gemini, "Write in Japanese (日本語)").text

    assert first == again
    assert any("\uac00" <= char <= "\ud7a3" for char in first)  # Hangul syllables
    assert any("\u3040" <= char <= "\u30ff" for char in japanese)  # kana


def test_usage_metadata_counts_text_and_image_tokens_by_the_tile_rule(
    fake_gemini: FakeGemini,
) -> None:
    text = "x" * 400  # about 100 tokens at four characters per token
    small = ask(fake_gemini, text, image=jpeg(384, 300)).usage_metadata
    preview = ask(fake_gemini, text, image=jpeg(768, 576)).usage_metadata
    large = ask(fake_gemini, text, image=jpeg(4000, 3000)).usage_metadata

    assert small.prompt_token_count == 100 + 258
    assert preview.prompt_token_count == 100 + 258
    assert large.prompt_token_count == 100 + 6 * 4 * 258
    assert large.candidates_token_count > 0
    assert large.total_token_count == large.prompt_token_count + large.candidates_token_count
    assert image_tokens(385, 100) == 258  # one tile, not the small-image rule


def test_standard_and_url_safe_base64_are_both_accepted(fake_gemini: FakeGemini) -> None:
    # Bytes chosen so the two alphabets differ (+/ against -_).
    image = jpeg(100, 100) + b"\xfb\xff\xbf" * 10
    standard = base64.b64encode(image).decode()
    url_safe = base64.urlsafe_b64encode(image).decode().rstrip("=")
    assert standard != url_safe

    for data in (standard, url_safe):
        response = requests.post(
            f"{fake_gemini.url}/v1beta/models/gemini-2.5-flash:generateContent",
            params={"key": "key"},
            json={
                "contents": [
                    {
                        "role": "user",
                        "parts": [{"inline_data": {"mime_type": "image/jpeg", "data": data}}],
                    }
                ]
            },
            timeout=5,
        )
        assert response.status_code == 200, response.text
        assert response.json()["usageMetadata"]["promptTokenCount"] == 258

    broken = requests.post(
        f"{fake_gemini.url}/v1beta/models/gemini-2.5-flash:generateContent",
        headers={"x-goog-api-key": "key"},
        json={"contents": [{"parts": [{"inlineData": {"mimeType": "image/jpeg", "data": "%%"}}]}]},
        timeout=5,
    )
    assert broken.status_code == 400
    assert broken.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_server_sent_events_stream_the_answer_in_chunks(fake_gemini: FakeGemini) -> None:
    sdk = client(fake_gemini)
    chunks = list(
        sdk.models.generate_content_stream(
            model="gemini-2.5-flash",
            contents=["stream please"],
            config=types.GenerateContentConfig(
                response_mime_type="application/json", response_schema=SCHEMA
            ),
        )
    )

    assert len(chunks) > 1
    assert json.loads("".join(chunk.text or "" for chunk in chunks))["ideas"]
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.total_token_count > 0
    assert fake_gemini.stats()["requests"][-1]["sse"] is True


def test_stream_without_sse_is_a_json_array(fake_gemini: FakeGemini) -> None:
    response = requests.post(
        f"{fake_gemini.url}/v1/models/gemini-2.5-flash:streamGenerateContent",
        headers={"x-goog-api-key": "key"},
        json={"contents": [{"parts": [{"text": "hello"}]}]},
        timeout=5,
    )
    assert response.status_code == 200
    assert isinstance(response.json(), list)


def test_api_key_is_required_and_checked(fake_gemini: FakeGemini) -> None:
    url = f"{fake_gemini.url}/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"parts": [{"text": "hi"}]}]}

    missing = requests.post(url, json=body, timeout=5)
    assert missing.status_code == 403
    assert missing.json()["error"]["status"] == "PERMISSION_DENIED"

    fake_gemini.control(api_key="right")
    wrong = requests.post(url, json=body, headers={"x-goog-api-key": "wrong"}, timeout=5)
    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    right = requests.post(url, json=body, params={"key": "right"}, timeout=5)
    assert right.status_code == 200


def test_unknown_models_are_not_found(fake_gemini: FakeGemini) -> None:
    sdk = client(fake_gemini)
    with pytest.raises(genai_errors.ClientError) as caught:
        sdk.models.generate_content(model="no-such-model", contents=["hi"])
    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"


def test_a_429_carries_retry_info_like_google(fake_gemini: FakeGemini) -> None:
    fake_gemini.control(faults=[{"kind": "429", "retry_delay": "7s"}])

    with pytest.raises(genai_errors.ClientError) as caught:
        ask(fake_gemini)

    error = caught.value.details["error"]
    assert error["code"] == 429
    assert error["status"] == "RESOURCE_EXHAUSTED"
    retry_info = [d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert retry_info == [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]


def test_faults_are_served_in_order_then_normal_answers_resume(fake_gemini: FakeGemini) -> None:
    fake_gemini.control(faults=["503", "500", "blocked"])

    with pytest.raises(genai_errors.ServerError) as first:
        ask(fake_gemini)
    with pytest.raises(genai_errors.ServerError) as second:
        ask(fake_gemini)
    blocked = ask(fake_gemini)
    normal = ask(fake_gemini)

    assert (first.value.code, first.value.status) == (503, "UNAVAILABLE")
    assert (second.value.code, second.value.status) == (500, "INTERNAL")
    assert blocked.prompt_feedback.block_reason == types.BlockedReason.SAFETY
    assert not blocked.candidates
    assert json.loads(normal.text)["ideas"]
    assert fake_gemini.stats()["faults"] == []


def test_a_hold_keeps_calls_in_flight_until_it_is_released(fake_gemini: FakeGemini) -> None:
    fake_gemini.control(latency=60, hold=True)
    sdk = client(fake_gemini, timeout_ms=90_000)
    pool = ThreadPoolExecutor(max_workers=2)
    calls = [
        pool.submit(sdk.models.generate_content, model="gemini-2.5-flash", contents="ideas")
        for _ in range(2)
    ]
    deadline = time.monotonic() + 10
    while fake_gemini.stats()["in_flight"] < 2:
        assert time.monotonic() < deadline, "the calls never reached the fake"
        time.sleep(0.05)
    assert not any(call.done() for call in calls)
    assert fake_gemini.stats()["hold"] is True

    fake_gemini.control(hold=False)

    answers = [call.result(timeout=10) for call in calls]
    assert all(answer.text for answer in answers)
    assert fake_gemini.stats()["hold"] is False
    pool.shutdown()


def test_faults_can_target_one_model(fake_gemini: FakeGemini) -> None:
    fake_gemini.control(faults=["503@gemini-2.5-pro"])

    assert ask(fake_gemini).text  # another model is not affected
    sdk = client(fake_gemini)
    with pytest.raises(genai_errors.ServerError):
        sdk.models.generate_content(model="gemini-2.5-pro", contents=["hi"])


@pytest.mark.parametrize(
    ("fault", "finish"),
    [
        ("safety", types.FinishReason.SAFETY),
        ("recitation", types.FinishReason.RECITATION),
        ("prohibited", types.FinishReason.PROHIBITED_CONTENT),
        ("max_tokens", types.FinishReason.MAX_TOKENS),
    ],
)
def test_content_faults_end_with_their_finish_reason(
    fake_gemini: FakeGemini, fault: str, finish: types.FinishReason
) -> None:
    fake_gemini.control(faults=[fault])
    response = ask(fake_gemini)
    assert response.candidates[0].finish_reason == finish
    if fault == "max_tokens":
        with pytest.raises(ValueError, match=r"Unterminated|Expecting"):
            json.loads(response.text)


def test_invalid_json_is_not_json(fake_gemini: FakeGemini) -> None:
    fake_gemini.control(faults=["invalid_json"])
    response = ask(fake_gemini)
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    with pytest.raises(ValueError, match="Expecting"):
        json.loads(response.text)


def test_thinking_tokens_come_out_of_the_output_budget(fake_gemini: FakeGemini) -> None:
    fake_gemini.control(thinking_tokens=3000)

    starved = ask(fake_gemini, max_output_tokens=1000)
    bounded = ask(
        fake_gemini,
        max_output_tokens=1000,
        thinking_config=types.ThinkingConfig(thinking_budget=200),
    )
    off = ask(
        fake_gemini,
        max_output_tokens=1000,
        thinking_config=types.ThinkingConfig(thinking_budget=0),
    )

    assert starved.candidates[0].finish_reason == types.FinishReason.MAX_TOKENS
    assert starved.usage_metadata.thoughts_token_count == 1000
    assert not starved.text
    assert bounded.candidates[0].finish_reason == types.FinishReason.STOP
    assert bounded.usage_metadata.thoughts_token_count == 200
    assert off.usage_metadata.thoughts_token_count is None
    assert json.loads(off.text)["ideas"]


def test_timeouts_and_resets_fail_the_client_like_a_network_would(
    fake_gemini: FakeGemini,
) -> None:
    fake_gemini.control(faults=[{"kind": "timeout", "seconds": 3}, "reset"])
    short = client(fake_gemini, timeout_ms=300)
    with pytest.raises(httpx2.TimeoutException):
        short.models.generate_content(model="gemini-2.5-flash", contents=["hi"])
    with pytest.raises(httpx2.TransportError):
        short.models.generate_content(model="gemini-2.5-flash", contents=["hi"])


def test_stats_and_control_work_over_http(fake_gemini: FakeGemini) -> None:
    settings = requests.post(
        f"{fake_gemini.url}/_control", json={"latency": 0.01, "faults": ["503"]}, timeout=5
    ).json()
    assert settings["latency"] == 0.01
    assert settings["faults"] == ["503"]
    bad = requests.post(f"{fake_gemini.url}/_control", json={"faults": ["nope"]}, timeout=5)
    assert bad.status_code == 400

    image = jpeg(768, 576)
    with pytest.raises(genai_errors.ServerError):
        ask(fake_gemini, image=image)
    stats = requests.get(f"{fake_gemini.url}/_stats", timeout=5).json()
    assert stats["calls"] == 1
    assert stats["bytes_received"] > len(image)  # base64 and JSON around the image
    assert stats["requests"][0]["fault"] == "503"
    assert stats["requests"][0]["images"][0]["width"] == 768


@pytest.mark.integration
def test_runs_as_its_own_process_with_the_documented_cli(tmp_path: Path) -> None:
    with FakeGeminiProcess(latency=0.0, log_path=tmp_path / "fake.log") as fake:
        fake.control(faults=["429"])
        answers = []
        for _ in range(2):
            try:
                assert ask(fake).text
                answers.append("ok")
            except genai_errors.ClientError as error:
                answers.append(str(error.code))
        assert answers == ["429", "ok"]
        assert fake.stats()["calls"] == 2
