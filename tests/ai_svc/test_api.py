"""POST /v1/ideas and GET /v1/presets: the request contract and its errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from PIL import ExifTags, Image

from ai_svc.app import create_app
from ai_svc.presets import PresetsError
from ai_svc.providers.local import PhrasesError
from ai_svc.settings import AiSettings
from chassis.disclaimer import disclaimer_for
from testbed.images import photo
from testbed.processes import free_port
from tests.ai_svc.conftest import Uploads

PACKAGED = Path(__file__).resolve().parents[2] / "ai-svc" / "src" / "ai_svc" / "presets.yaml"


def local_app(upload_url: str = "http://127.0.0.1:9", **overrides: Any) -> Flask:
    return create_app(
        AiSettings(
            upload_svc_url=upload_url,
            otel_sdk_disabled=True,
            metrics_enabled=False,
            upload_connect_timeout_seconds=0.5,
            **overrides,
        )
    )


def test_presets_are_served_as_data() -> None:
    response = local_app().test_client().get("/v1/presets")

    assert response.status_code == 200
    assert "max-age" in response.headers["Cache-Control"]
    body = response.get_json()
    assert {t["id"] for t in body["templates"]} == {
        "social_post",
        "product_idea",
        "blog_outline",
        "story",
        "study_notes",
    }
    assert {lang["code"] for lang in body["languages"]} == {"en", "ko", "ja"}
    assert {lang["name"] for lang in body["languages"]} >= {"한국어", "日本語"}
    assert len(body["tones"]) >= 3
    assert body["defaults"]["template"] == "social_post"
    assert body["count"] == {"min": 1, "max": 5}
    assert all("instruction" not in t for t in body["templates"])  # prompts stay inside


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ("not json", 400, "invalid_json"),
        ({"upload_id": "nope"}, 422, "invalid_request"),
        ({"upload_id": "a" * 32, "colour": "red"}, 422, "invalid_request"),
        ({"upload_id": "a" * 32, "template": "sonnet"}, 422, "invalid_preset"),
        ({"upload_id": "a" * 32, "language": "fr"}, 422, "invalid_preset"),
        ({"upload_id": "a" * 32, "count": 9}, 422, "invalid_preset"),
    ],
)
def test_bad_requests_are_refused_before_any_work(payload: Any, status: int, code: str) -> None:
    client = local_app().test_client()
    if isinstance(payload, str):
        response = client.post("/v1/ideas", data=payload, content_type="application/json")
    else:
        response = client.post("/v1/ideas", json=payload)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


def test_invalid_preset_lists_what_is_allowed() -> None:
    response = (
        local_app()
        .test_client()
        .post("/v1/ideas", json={"upload_id": "a" * 32, "tone": "grumpy", "count": 0})
    )
    details = response.get_json()["error"]["details"]
    assert "friendly" in details["allowed"]["tone"]
    assert details["allowed"]["count"] == [1, 5]


def test_upload_service_down_is_503_not_500() -> None:
    app = local_app(f"http://127.0.0.1:{free_port()}")
    response = app.test_client().post("/v1/ideas", json={"upload_id": "a" * 32})
    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "upstream_unavailable"


@pytest.mark.integration
def test_unknown_upload_is_404(uploads: Uploads) -> None:
    response = local_app(uploads.url).test_client().post("/v1/ideas", json={"upload_id": "b" * 32})
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "upload_not_found"


@pytest.mark.integration
def test_local_ideas_carry_the_full_answer_shape(uploads: Uploads) -> None:
    client = local_app(uploads.url).test_client()
    response = client.post(
        "/v1/ideas",
        json={"upload_id": uploads.ids["photo"], "template": "product_idea", "language": "ko"},
    )

    assert response.status_code == 200
    body = response.get_json()
    assert list(body) == [
        "upload_id",
        "preset",
        "ideas",
        "provider",
        "model",
        "usage",
        "cached",
        "disclaimer",
    ]
    assert body["provider"] == "local"
    assert body["preset"]["template"] == "product_idea"
    assert len(body["ideas"]) == 3
    assert set(body["usage"]) == {
        "input_tokens",
        "output_tokens",
        "thinking_tokens",
        "total_tokens",
    }
    assert body["disclaimer"] == disclaimer_for("ko").statement
    assert body["disclaimer"].startswith("이 아이디어는 AI가")
    repeat = client.post(
        "/v1/ideas",
        json={"upload_id": uploads.ids["photo"], "template": "product_idea", "language": "ko"},
    ).get_json()
    assert repeat["cached"] is True
    assert repeat["ideas"] == body["ideas"]


def test_a_broken_presets_file_stops_the_start(tmp_path: Path) -> None:
    broken = tmp_path / "presets.yaml"
    data = yaml.safe_load(PACKAGED.read_text(encoding="utf-8"))
    data["defaults"]["template"] = "missing"
    broken.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PresetsError, match="defaults must name"):
        local_app(presets_file=broken)

    with pytest.raises(PresetsError, match="invalid presets file"):
        local_app(presets_file=tmp_path / "absent.yaml")


def test_a_presets_file_with_an_unphrased_language_stops_the_start(tmp_path: Path) -> None:
    extended = tmp_path / "presets.yaml"
    data = yaml.safe_load(PACKAGED.read_text(encoding="utf-8"))
    data["languages"].append({"code": "de", "name": "Deutsch", "english": "German"})
    extended.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PhrasesError, match="language de"):
        local_app(presets_file=extended)


@pytest.mark.integration
def test_a_custom_presets_file_is_served(tmp_path: Path, uploads: Uploads) -> None:
    custom = tmp_path / "presets.yaml"
    data = yaml.safe_load(PACKAGED.read_text(encoding="utf-8"))
    data["tones"].append({"id": "bold", "name": "Bold", "instruction": "bold and direct"})
    custom.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    client = local_app(uploads.url, presets_file=custom).test_client()

    tones = {tone["id"] for tone in client.get("/v1/presets").get_json()["tones"]}
    response = client.post("/v1/ideas", json={"upload_id": uploads.ids["photo"], "tone": "bold"})

    assert "bold" in tones
    assert response.status_code == 200
    assert response.get_json()["preset"]["tone"] == "bold"


@pytest.mark.integration
def test_the_capture_time_from_upload_svc_reaches_the_local_ideas(uploads: Uploads) -> None:
    image = Image.open(io.BytesIO(photo(900, 600)))
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "2025:07:14 19:30:00"
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes())
    upload_id = uploads.store("summer-evening", out.getvalue())

    response = (
        local_app(uploads.url)
        .test_client()
        .post("/v1/ideas", json={"upload_id": upload_id, "template": "story", "language": "en"})
    )

    ideas = response.get_json()["ideas"]
    assert any(
        "summer evening" in idea["body"] or "summer evening" in idea["title"] for idea in ideas
    )
    assert all("#summer" in idea["hashtags"] for idea in ideas)
