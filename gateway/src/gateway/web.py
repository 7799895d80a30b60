"""The web app at ``/``, its assets, and the public pages the app stores ask for.

Everything is served from files packaged with the gateway (``web_assets/`` and
``templates/``): no CDN, nothing a third party could change, and the page runs under a
strict Content-Security-Policy. Assets are addressed by a hash of their content
(``app.3f2a9c1d0b.js``) and cached for a year as immutable; the HTML names them through
an import map (allowed by its own hash in the CSP, no inline script otherwise), and is
revalidated with its ETag, so a new release is picked up on the next load and an
unchanged one costs a 304.

These are not API calls: they are never rate limited, never need an API key, and are
counted in ``gateway_web_request_duration_seconds`` instead of the API's RED metrics.
"""

from __future__ import annotations

import base64
import hashlib
import json
import mimetypes
import threading
import time
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any

import structlog
from flask import Blueprint, Flask, Response, abort, g, render_template, request
from limits import parse_many
from markupsafe import Markup

from chassis.caller import ANONYMOUS_TIER
from chassis.disclaimer import disclaimer_for
from chassis.errors import ApiError
from chassis.metrics import exclude_from_red_metrics
from chassis.outgoing import ServiceClient
from gateway.metrics import WEB_REQUESTS
from gateway.settings import GatewaySettings
from gateway.tiers import Tier, Tiers

log = structlog.get_logger(__name__)

ASSET_ROOT = "web_assets"
ASSET_PREFIX = "/assets/"
SERVED_SUFFIXES = frozenset({".js", ".css", ".svg", ".png", ".ico", ".webmanifest"})
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
LANGUAGES = ("en", "ko", "ja")
PAGES = {
    "privacy": "/privacy",
    "terms": "/terms",
    "ai_disclaimer": "/ai-disclaimer",
    "account_delete": "/account/delete",
}
FIREBASE_CONNECT = "https://identitytoolkit.googleapis.com https://securetoken.googleapis.com"


@dataclass(frozen=True)
class Asset:
    path: str
    """Its name in the package, ``app.js`` or ``vendor/firebase-auth.js``."""
    url: str
    body: bytes
    mimetype: str


def hashed_name(path: str, body: bytes) -> str:
    digest = hashlib.sha256(body).hexdigest()[:12]
    stem, dot, suffix = path.rpartition(".")
    return f"{stem}.{digest}.{suffix}" if dot else f"{path}.{digest}"


def walk(folder: Traversable, prefix: str = "") -> list[tuple[str, bytes]]:
    found: list[tuple[str, bytes]] = []
    for entry in sorted(folder.iterdir(), key=lambda item: item.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            found.extend(walk(entry, f"{name}/"))
        elif any(name.endswith(suffix) for suffix in SERVED_SUFFIXES):
            found.append((name, entry.read_bytes()))
    return found


class AssetTable:
    """The packaged assets by content-hashed URL, and the import map naming them."""

    def __init__(self) -> None:
        self.by_path: dict[str, Asset] = {}
        self.by_hashed: dict[str, Asset] = {}
        for path, body in walk(resources.files("gateway").joinpath(ASSET_ROOT)):
            hashed = hashed_name(path, body)
            mimetype = mimetypes.guess_type(path)[0] or "application/octet-stream"
            if path.endswith(".js"):
                mimetype = "text/javascript"
            asset = Asset(path, f"{ASSET_PREFIX}{hashed}", body, mimetype)
            self.by_path[path] = asset
            self.by_hashed[hashed] = asset
        # Modules import each other by their plain names ("./api.js"); the map sends
        # every such import to the hashed file, so one changed module never leaves a
        # stale one cached behind it.
        self.import_map = json.dumps(
            {
                "imports": {
                    f"{ASSET_PREFIX}{asset.path}": asset.url
                    for asset in self.by_path.values()
                    if asset.path.endswith(".js")
                }
            },
            separators=(",", ":"),
            sort_keys=True,
        )
        digest = hashlib.sha256(self.import_map.encode()).digest()
        self.import_map_source = f"'sha256-{base64.b64encode(digest).decode()}'"

    def url(self, path: str) -> str:
        return self.by_path[path].url


def content_security_policy(settings: GatewaySettings, assets: AssetTable) -> str:
    connect = ["'self'"]
    if settings.firebase_auth_emulator_host:
        connect.append(f"http://{settings.firebase_auth_emulator_host}")
    elif settings.sign_in_enabled:
        connect.append(FIREBASE_CONNECT)
    return (
        f"default-src 'none'; script-src 'self' {assets.import_map_source}; "
        "style-src 'self'; img-src 'self' blob: data:; "
        f"connect-src {' '.join(connect)}; manifest-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )


class ProviderFacts:
    """Which model provider answers, asked of ai-svc (the one that calls it) and kept a while.

    When ai-svc cannot say, the pages name Google Gemini: a privacy page that names a
    third party that is not used misleads nobody; one that leaves out a third party
    that is used would.
    """

    def __init__(self, client: ServiceClient, ttl: float) -> None:
        self.client = client
        self.ttl = ttl
        self.lock = threading.Lock()
        self.known: tuple[float, dict[str, str]] | None = None

    def current(self) -> dict[str, str]:
        now = time.monotonic()
        with self.lock:
            if self.known is not None and now - self.known[0] < self.ttl:
                return self.known[1]
        try:
            response = self.client.request("GET", "/internal/provider", timeout=(1.0, 2.0))
            payload = response.json() if response.status_code == 200 else None
        except (ApiError, ValueError):
            payload = None
        if not isinstance(payload, dict) or payload.get("provider") not in ("gemini", "local"):
            log.warning("provider_fact_unknown", detail="ai-svc did not say; pages name Gemini")
            return {"provider": "gemini", "model": ""}
        facts = {"provider": str(payload["provider"]), "model": str(payload.get("model", ""))}
        with self.lock:
            self.known = (now, facts)
        return facts


def page_language() -> str:
    asked = request.args.get("lang", "").lower()
    if asked in LANGUAGES:
        return asked
    return request.accept_languages.best_match(LANGUAGES, default="en") or "en"


@dataclass(frozen=True)
class Rate:
    amount: int
    per: str
    """``second``, ``minute``, ``hour``, ``day``, ``month`` or ``year``."""
    multiples: int


def rates(value: str) -> list[Rate]:
    return [Rate(item.amount, item.GRANULARITY.name, item.multiples) for item in parse_many(value)]


def facts(settings: GatewaySettings, anonymous: Tier, provider: dict[str, str]) -> dict[str, Any]:
    """What the pages state about the running service, all from its configuration.

    The limits stated are the anonymous tier's: the least anyone gets.
    """
    return {
        "retention_days": settings.anonymous_retention_days,
        "provider": provider["provider"],
        "model": provider["model"],
        "max_upload_mb": round(settings.max_upload_bytes / (1024 * 1024), 1),
        "rate_default": rates(anonymous.rate_limit),
        "rate_ai": rates(anonymous.ai_rate_limit),
        "ai_quota": rates(anonymous.ai_daily_quota),
        "sign_in": settings.sign_in_enabled,
    }


def client_config(settings: GatewaySettings) -> dict[str, Any]:
    firebase: dict[str, Any] | None = None
    if settings.sign_in_enabled:
        firebase = {
            "apiKey": settings.firebase_web_api_key,
            "projectId": settings.firebase_project_id,
            "authDomain": f"{settings.firebase_project_id}.firebaseapp.com",
            "emulator": (
                f"http://{settings.firebase_auth_emulator_host}"
                if settings.firebase_auth_emulator_host
                else None
            ),
        }
    return {"maxUploadBytes": settings.max_upload_bytes, "firebase": firebase, "pages": PAGES}


def with_etag(body: str, mimetype: str = "text/html") -> Response:
    response = Response(body, mimetype=mimetype)
    response.set_etag(hashlib.sha256(response.get_data()).hexdigest()[:32])
    response.headers["Cache-Control"] = REVALIDATE
    return response.make_conditional(request)


def install_web(
    app: Flask, settings: GatewaySettings, tiers: Tiers, ai: ServiceClient
) -> frozenset[str]:
    """Register the app, its assets and the pages; the endpoints they use, for the CSP."""
    assets = AssetTable()
    policy = content_security_policy(settings, assets)
    provider = ProviderFacts(ai, settings.provider_fact_ttl_seconds)
    config = client_config(settings)
    blueprint = Blueprint("web", __name__, template_folder="templates")

    @blueprint.before_request
    def _not_an_api_call() -> None:
        exclude_from_red_metrics()
        g.content_security_policy = policy

    @blueprint.after_request
    def _count(response: Response) -> Response:
        started = g.get("chassis_started")
        if started is not None:
            rule = request.url_rule.rule if request.url_rule else "unmatched"
            WEB_REQUESTS.labels(rule, str(response.status_code)).observe(
                time.perf_counter() - started
            )
        return response

    def shared(language: str) -> dict[str, Any]:
        return {
            "asset": assets.url,
            "import_map": Markup(assets.import_map),  # noqa: S704 - our own JSON of URLs
            "config": config,
            "pages": PAGES,
            "languages": LANGUAGES,
            "language": language,
        }

    rendered: dict[str, str] = {}

    @blueprint.get("/", endpoint="home")
    def home_view() -> Response:
        return with_etag(rendered["home"])

    @blueprint.get(f"{ASSET_PREFIX}<path:name>", endpoint="asset")
    def asset_view(name: str) -> Response:
        found = assets.by_hashed.get(name)
        if found is None:
            abort(404)
        response = Response(found.body, mimetype=found.mimetype)
        response.headers["Cache-Control"] = IMMUTABLE
        response.set_etag(name)
        return response.make_conditional(request)

    def page(name: str) -> Response:
        language = page_language()
        body = render_template(
            f"pages/{language}/{name}.html",
            **shared(language),
            page=name,
            facts=facts(settings, tiers.tiers[ANONYMOUS_TIER], provider.current()),
            disclaimer=disclaimer_for(language),
        )
        response = with_etag(body)
        response.vary.add("Accept-Language")
        response.headers["Content-Language"] = language
        return response

    for name, rule in PAGES.items():
        blueprint.add_url_rule(rule, name, lambda name=name: page(name))

    app.register_blueprint(blueprint)
    # The app's page depends on configuration only: rendered once per worker.
    with app.app_context():
        rendered["home"] = render_template("web/index.html", **shared("en"))
    return frozenset(f"web.{endpoint}" for endpoint in ("home", "asset", *PAGES))
