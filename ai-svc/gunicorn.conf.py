"""gunicorn settings for ai-svc (see chassis.gunicorn_config).

ai-svc spends almost all of a request waiting on Gemini (seconds per call), so threads,
not processes, carry its concurrency: 2 workers x 64 threads by default, i.e. 128
requests in flight per pod, matching the default GEMINI_MAX_IN_FLIGHT of 128 upstream
calls per pod. GUNICORN_THREADS and WEB_CONCURRENCY still override both.
"""

import os

from ai_svc.settings import AiSettings
from chassis.gunicorn_config import gunicorn_settings

AI_DEFAULT_THREADS = "64"

os.environ.setdefault("GUNICORN_THREADS", AI_DEFAULT_THREADS)
globals().update(
    gunicorn_settings(AiSettings, app="ai_svc.app:create_app()", port=8082, metrics_port=9082)
)
