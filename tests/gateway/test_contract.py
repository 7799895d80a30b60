"""The public contract: generated from the code, served with its docs, kept by the stack."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask

from gateway.contract import OPERATIONS
from testbed.processes import BIN, Service
from tests.gateway.conftest import CONTRACT_PROJECT, Upstreams

UNLIMITED = {
    "RATE_LIMIT_DEFAULT": "1000000/minute",
    "RATE_LIMIT_AI": "1000000/minute",
    "AI_DAILY_QUOTA": "100000000/day",
}


LEFT_OUT = ("delete_me",)
"""After deleting the account every answer for the person would be 410."""
WARNINGS = (
    "missing_auth",
    "base_url_mismatch",
    "missing_deserializer",
    "unused_openapi_auth",
    "unsupported_regex",
    "method_not_allowed",
    "constants_extraction",
    "unmatched_filter",
    "unresolvable_reference",
    "rate_limited",
    "dictionary_mismatch",
    "timeout_units",
)


def test_the_document_is_openapi_3_1_and_matches_the_routes(
    bare_app: Callable[..., Flask],
) -> None:
    app = bare_app()
    document = app.test_client().get("/openapi.json").json
    assert document["openapi"] == "3.1.0"

    served: set[tuple[str, str]] = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/") or rule.rule in ("/healthz", "/readyz"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            served.update((path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"})
    documented = {
        (path, method) for path, operations in document["paths"].items() for method in operations
    }
    assert served == documented

    schemas = document["components"]["schemas"]
    for name in ("SnapResponse", "Upload", "IdeasResponse", "IdeasRequest", "ErrorResponse"):
        assert name in schemas
    assert set(schemas["ErrorInfo"]["required"]) == {"code", "message", "request_id"}
    snap = document["paths"]["/v1/snaps"]["post"]
    form = snap["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form == {"$ref": "#/components/schemas/SnapForm"}
    assert schemas["SnapForm"]["properties"]["image"]["format"] == "binary"
    for status in ("201", "413", "415", "422", "429", "502", "503", "504"):
        assert status in snap["responses"], status
    assert snap["responses"]["429"]["headers"]["Retry-After"]["required"] is True
    assert "Idempotency-Key" in [parameter["name"] for parameter in snap["parameters"]]
    # Every operation in the table is served, and nothing else under /v1.
    assert {(op.path, op.method.lower()) for op in OPERATIONS} == documented


def test_the_docs_page_loads_nothing_from_elsewhere(bare_app: Callable[..., Flask]) -> None:
    client = bare_app().test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-eval" not in csp
    html = page.get_data(as_text=True)
    assert "http://" not in html
    assert "https://" not in html
    referenced = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/docs/assets/swagger-ui-bundle.js" in referenced
    for url in referenced:
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert len(asset.data) > 0
    script = client.get("/docs/init.js").get_data(as_text=True)
    assert "/openapi.json" in html or "/openapi.json" in script
    assert client.get("/docs/assets/../../settings.py").status_code == 404
    assert client.get("/docs/assets/oauth2-redirect.html").status_code == 404


@pytest.mark.integration
def test_schemathesis_finds_no_5xx_and_no_contract_break(
    start_gateways: Callable[..., list[Service]], upstreams: Upstreams, tmp_path: Path
) -> None:
    """Property-based requests from the document itself, against the running stack.

    Checks everything schemathesis knows except ``positive_data_acceptance``: a
    schema-valid body of random bytes is still not a photo, and 415 is right for it.
    Requests are sent signed in (emulator mode), so the library's routes answer for real;
    ``DELETE /v1/me`` is left out, since after it every answer for the person is 410.
    """
    unlimited = tmp_path / "tiers.yaml"
    unlimited.write_text(
        "tiers:\n"
        + "".join(
            f"  {name}: {{rate_limit: 1000000/minute, ai_rate_limit: 1000000/minute, "
            "ai_daily_quota: 100000000/day, history_size: 100000, "
            "storage_quota_bytes: 1000000000000}\n"
            for name in ("anonymous", "free", "pro")
        )
    )
    (gateway,) = start_gateways(
        workers=2,
        FIREBASE_PROJECT_ID=CONTRACT_PROJECT,
        FIREBASE_AUTH_EMULATOR_HOST="127.0.0.1:9",
        TIERS_FILE=str(unlimited),
        **UNLIMITED,
    )
    report = tmp_path / "schemathesis.xml"
    command = [
        str(BIN / "schemathesis"),
        "run",
        f"{gateway.url}/openapi.json",
        "--header",
        f"Authorization: Bearer {upstreams.token}",
        *(part for endpoint in LEFT_OUT for part in ("--exclude-operation-id", endpoint)),
        # Every warning but three that describe real behaviour: a random draft id is a 404
        # (missing_test_data), a change without If-Match a 428 (validation_mismatch), and
        # random bytes are not a photo (low_valid_rate, as positive_data_acceptance).
        "--warnings",
        ",".join(WARNINGS),
        "--checks",
        "all",
        "--exclude-checks",
        "positive_data_acceptance",
        "--max-examples",
        "10",
        # One worker: CPython 3.11.7's ast.parse is not thread-safe ("AST constructor
        # recursion depth mismatch", fixed in 3.11.8), and hypothesis calls it.
        "--workers",
        "1",
        "--request-timeout",
        "30",
        "--generation-database",
        "none",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=240, check=False
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "No issues found" in output, output[-3000:]
    tested = re.search(r"Tested:\s+(\d+)", output)
    assert tested is not None
    assert int(tested.group(1)) == len(OPERATIONS) - len(LEFT_OUT)
