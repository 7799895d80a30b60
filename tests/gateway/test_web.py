"""The web app's serving: revalidated HTML, immutable hashed assets, CSP, no limits, own metric."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable

from flask import Flask
from prometheus_client import REGISTRY

IMPORT_MAP = re.compile(r'<script type="importmap">(.*?)</script>', re.S)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_page_is_revalidated_and_its_csp_allows_only_its_own_import_map(
    bare_app: Callable[..., Flask],
) -> None:
    client = bare_app().test_client()
    page = client.get("/")

    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-cache"
    policy = page.headers["Content-Security-Policy"]
    import_map = IMPORT_MAP.search(page.get_data(as_text=True)).group(1)  # type: ignore[union-attr]
    digest = base64.b64encode(hashlib.sha256(import_map.encode()).digest()).decode()
    assert f"script-src 'self' 'sha256-{digest}';" in policy
    assert "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    again = client.get("/", headers={"If-None-Match": page.headers["ETag"]})
    assert again.status_code == 304


def test_assets_are_named_by_their_content_and_cached_for_good(
    bare_app: Callable[..., Flask],
) -> None:
    client = bare_app().test_client()
    html = client.get("/").get_data(as_text=True)
    script = re.search(r'src="(/assets/app\.[0-9a-f]{12}\.js)"', html).group(1)  # type: ignore[union-attr]

    answer = client.get(script)
    assert answer.status_code == 200
    assert answer.mimetype == "text/javascript"
    assert answer.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert hashlib.sha256(answer.get_data()).hexdigest()[:12] in script
    assert client.get("/assets/app.js").status_code == 404
    assert client.get("/assets/app.000000000000.js").status_code == 404
    assert client.get("/assets/../web.py").status_code == 404


def test_pages_are_never_rate_limited_and_counted_apart_from_the_api(
    bare_app: Callable[..., Flask],
) -> None:
    app = bare_app(rate_limit_default="2/minute")
    client = app.test_client()
    api_before = sample(
        "http_server_request_duration_seconds_count", method="GET", route="/terms", status="200"
    )
    web_before = sample("gateway_web_request_duration_seconds_count", route="/terms", status="200")

    for _ in range(5):
        assert client.get("/terms").status_code == 200
        assert client.get("/").status_code == 200
    refused = [client.get("/v1/uploads/not.an.id").status_code for _ in range(3)]

    assert 429 in refused
    assert (
        sample(
            "http_server_request_duration_seconds_count", method="GET", route="/terms", status="200"
        )
        == api_before
    )
    assert (
        sample("gateway_web_request_duration_seconds_count", route="/terms", status="200")
        == web_before + 5
    )


def test_without_word_from_ai_svc_the_privacy_page_names_gemini(
    bare_app: Callable[..., Flask],
) -> None:
    client = bare_app(ai_svc_url="http://127.0.0.1:9", anonymous_retention_days=30).test_client()
    page = client.get("/privacy?lang=en").get_data(as_text=True)

    assert '<strong id="provider">Google Gemini</strong>' in page
    assert '<strong id="retention">30 days</strong>' in page


def test_the_contract_and_the_app_link_every_public_page(bare_app: Callable[..., Flask]) -> None:
    client = bare_app().test_client()
    description = client.get("/openapi.json").get_json()["info"]["description"]
    home = client.get("/").get_data(as_text=True)

    for path in ("/privacy", "/terms", "/ai-disclaimer", "/account/delete"):
        assert f"]({path})" in description
        assert f'href="{path}"' in home
