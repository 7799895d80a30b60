"""ai-svc acts for its caller: it reads only their uploads' previews, and no cached answer
crosses from one person to another (the capture time is part of what is cached).

ai-svc runs in this process on the local provider; upload-svc is the real service under
gunicorn. Requests carry ``X-IdeaSnap-User`` / ``X-IdeaSnap-Tier`` as the gateway sends them.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from PIL import Image

from ai_svc.app import create_app
from ai_svc.settings import AiSettings
from testbed.images import photo
from tests.ai_svc.conftest import Uploads

pytestmark = pytest.mark.integration

DATE_TIME_ORIGINAL = 0x9003
EXIF_IFD = 0x8769


def person(uid: str) -> dict[str, str]:
    return {"X-IdeaSnap-User": uid, "X-IdeaSnap-Tier": "free"}


def taken_at(pixels: bytes, when: str) -> bytes:
    """The same JPEG data with an EXIF capture time (``YYYY:MM:DD HH:MM:SS``)."""
    image = Image.open(io.BytesIO(pixels))
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[DATE_TIME_ORIGINAL] = when
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, exif=exif.tobytes())
    return out.getvalue()


def store(uploads: Uploads, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
    answer = requests.post(
        f"{uploads.url}/v1/uploads",
        files={"image": ("p.jpg", data, "image/jpeg")},
        headers=headers,
        timeout=30,
    )
    assert answer.status_code == 201, answer.text
    return answer.json()


@pytest.fixture
def ai(uploads: Uploads) -> FlaskClient:
    settings = AiSettings(
        upload_svc_url=uploads.url,
        gemini_api_key=None,
        otel_sdk_disabled=True,
        metrics_enabled=False,
        ai_cache_size=64,
    )
    return create_app(settings).test_client()


def ideas(ai: FlaskClient, upload_id: str, headers: dict[str, str]) -> Any:
    return ai.post(
        "/v1/ideas",
        json={"upload_id": upload_id, "template": "social_post", "language": "en", "count": 5},
        headers=headers,
    )


def text_of(answer: dict[str, Any]) -> str:
    return " ".join(
        f"{idea['title']} {idea['body']} {' '.join(idea['hashtags'])}" for idea in answer["ideas"]
    ).lower()


@pytest.fixture(scope="module")
def pixels() -> bytes:
    base = Image.open(io.BytesIO(photo(900, 600, colour=(200, 120, 40))))
    out = io.BytesIO()
    base.save(out, "JPEG", quality=90)
    return out.getvalue()


def test_same_pixels_two_capture_times_two_people_each_get_their_own_time(
    ai: FlaskClient, uploads: Uploads, pixels: bytes
) -> None:
    alice = store(uploads, taken_at(pixels, "2024:01:15 08:30:00"), person("alice"))
    bob = store(uploads, taken_at(pixels, "2024:07:15 19:30:00"), person("bob"))
    assert alice["sha256"] == bob["sha256"]  # the stored files are the same bytes
    assert (alice["captured_at"], bob["captured_at"]) == (
        "2024-01-15T08:30:00",
        "2024-07-15T19:30:00",
    )

    first = ideas(ai, alice["id"], person("alice"))
    second = ideas(ai, bob["id"], person("bob"))
    assert first.status_code == second.status_code == 200
    assert "winter morning" in text_of(first.get_json())
    assert "summer evening" in text_of(second.get_json())
    assert "winter" not in text_of(second.get_json())
    assert second.get_json()["cached"] is False  # never another person's answer

    again = ideas(ai, alice["id"], person("alice"))
    assert again.get_json()["cached"] is True
    assert again.get_json()["ideas"] == first.get_json()["ideas"]


def test_one_person_two_capture_times_are_two_answers(
    ai: FlaskClient, uploads: Uploads, pixels: bytes
) -> None:
    morning = store(uploads, taken_at(pixels, "2023:04:02 07:00:00"), person("carol"))
    night = store(uploads, taken_at(pixels, "2023:10:20 23:00:00"), person("carol"))
    assert "spring morning" in text_of(ideas(ai, morning["id"], person("carol")).get_json())
    later = ideas(ai, night["id"], person("carol")).get_json()
    assert later["cached"] is False
    assert "autumn night" in text_of(later)


def test_ideas_for_someone_elses_upload_are_404(
    ai: FlaskClient, uploads: Uploads, pixels: bytes
) -> None:
    alice = store(uploads, pixels, person("alice"))
    assert ideas(ai, alice["id"], person("alice")).status_code == 200
    for other in (person("mallory"), {}):
        answer = ideas(ai, alice["id"], other)
        assert answer.status_code == 404
        assert answer.get_json()["error"]["code"] == "upload_not_found"
    # The same pixels sent anonymously are anyone's, but not served from Alice's answer.
    anonymous = store(uploads, pixels, {})
    answer = ideas(ai, anonymous["id"], person("mallory"))
    assert answer.status_code == 200
    assert answer.get_json()["cached"] is False
