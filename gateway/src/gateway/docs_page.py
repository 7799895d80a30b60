"""``/openapi.json`` and the interactive docs page at ``/docs``.

The page is Swagger UI from the files packaged with ``flask-swagger-ui`` (no CDN: the
docs work offline and load nothing a third party could change), started by a small
script of ours rather than an inline one, so the page runs under a strict
Content-Security-Policy.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, abort, send_from_directory

from gateway.openapi import build_document
from gateway.settings import GatewaySettings
from gateway.tiers import Tiers

SWAGGER_FILES = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "index.css",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)
ASSET_MAX_AGE = 3600
DOCS_ENDPOINTS = frozenset({"docs.page", "docs.script", "docs.asset"})
CONTRACT_ENDPOINT = "docs.contract"


def swagger_dist() -> Path:
    return Path(str(resources.files("flask_swagger_ui").joinpath("dist")))


def own_asset(name: str) -> bytes:
    return resources.files("gateway").joinpath("docs_assets", name).read_bytes()


def install_docs(app: Flask, settings: GatewaySettings, tiers: Tiers) -> dict[str, Any]:
    document = build_document(settings, tiers)
    encoded = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
    page, script, dist = own_asset("index.html"), own_asset("init.js"), swagger_dist()
    blueprint = Blueprint("docs", __name__)

    @blueprint.get("/openapi.json", endpoint="contract")
    def contract() -> Response:
        response = Response(encoded, mimetype="application/json")
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    @blueprint.get("/docs", endpoint="page")
    def page_view() -> Response:
        return Response(page, mimetype="text/html")

    @blueprint.get("/docs/init.js", endpoint="script")
    def script_view() -> Response:
        return Response(script, mimetype="text/javascript")

    @blueprint.get("/docs/assets/<name>")
    def asset(name: str) -> Response:
        if name not in SWAGGER_FILES:
            abort(404)
        return send_from_directory(dist, name, max_age=ASSET_MAX_AGE)

    app.register_blueprint(blueprint)
    return document
