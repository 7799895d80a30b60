"""ai-svc application factory.

The provider is chosen once, at start: Gemini when ``GEMINI_API_KEY`` is set, the
offline local provider otherwise. The presets and the local phrase book are validated
here too, so a broken data file stops the service at start, not mid-request.
"""

from __future__ import annotations

import atexit
import logging

import structlog
from flask import Flask

from ai_svc import telemetry
from ai_svc.api import blueprint
from ai_svc.cache import MemoryCache, NoCache, RedisCache, ResultCache
from ai_svc.ideas import IdeaService
from ai_svc.presets import load_catalogue
from ai_svc.providers.base import Provider
from ai_svc.providers.local import LocalProvider
from ai_svc.settings import AiSettings
from ai_svc.streaming import IdeaStreams, StreamOptions
from chassis.app import create_service_app
from chassis.outgoing import ServiceClient
from chassis.settings import load_settings

log = structlog.get_logger(__name__)


def make_cache(settings: AiSettings) -> ResultCache:
    if settings.redis_url:
        cache = RedisCache(
            settings.redis_url, settings.ai_cache_ttl_seconds, settings.redis_timeout_seconds
        )
        try:
            cache.ping()
        except Exception as error:
            log.warning("cache_unreachable_at_start", kind="redis", error=str(error))
        return cache
    if settings.ai_cache_size > 0:
        return MemoryCache(settings.ai_cache_size, settings.ai_cache_ttl_seconds)
    return NoCache()


def make_provider(settings: AiSettings, local: LocalProvider) -> Provider:
    if settings.gemini_enabled:
        # Imported only when used: the SDK is most of ai-svc's start-up time.
        from ai_svc.providers.gemini import GeminiProvider

        provider = GeminiProvider(settings)
        atexit.register(provider.close)
        log.info(
            "provider_selected",
            provider="gemini",
            model=settings.gemini_model,
            fallback_model=settings.gemini_fallback_model,
            api_version=settings.gemini_api_version,
            custom_base_url=settings.gemini_base_url is not None,
            upstream_slots=settings.upstream_slots_per_worker,
        )
        return provider
    log.info("provider_selected", provider="local", reason="GEMINI_API_KEY is not set")
    return local


def quiet_sdk_logs() -> None:
    """The SDK and its HTTP client log every call at INFO; our span and metrics cover it."""
    for name in ("google_genai", "httpx2", "httpcore2"):
        logging.getLogger(name).setLevel(logging.WARNING)


def create_app(settings: AiSettings | None = None, *, provider: Provider | None = None) -> Flask:
    settings = settings or load_settings(AiSettings)
    app = create_service_app(settings, __name__)
    quiet_sdk_logs()
    catalogue = load_catalogue(settings.presets_file)
    local = LocalProvider(catalogue)
    chosen = provider or make_provider(settings, local)
    uploads = ServiceClient(
        "upload",
        settings.upload_svc_url,
        connect_timeout=settings.upload_connect_timeout_seconds,
        read_timeout=settings.upload_read_timeout_seconds,
        pool_size=max(32, settings.upstream_slots_per_worker),
    )
    cache = make_cache(settings)
    log.info("cache_selected", kind=cache.kind)
    telemetry.UPSTREAM_IN_FLIGHT.set(0)
    app.extensions["catalogue"] = catalogue
    app.extensions["provider"] = chosen
    service = IdeaService(
        uploads,
        chosen,
        catalogue,
        cache,
        preview_long_side=settings.preview_long_side,
        deadline_seconds=settings.ai_deadline_seconds,
    )
    app.extensions["ideas"] = service
    app.extensions["idea_streams"] = IdeaStreams(
        service,
        StreamOptions(
            heartbeat_seconds=settings.ai_stream_heartbeat_seconds,
            local_pace_seconds=settings.local_stream_pace_seconds,
        ),
        drivers=max(8, settings.upstream_slots_per_worker),
    )
    app.register_blueprint(blueprint)
    return app
