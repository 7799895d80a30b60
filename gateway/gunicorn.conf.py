"""gunicorn settings for the gateway (see chassis.gunicorn_config).

The gateway streams request bodies through in 64 KiB pieces. gunicorn reads a body of
known length ahead in recv() calls of up to 1 MiB and keeps what the application has not
asked for yet, which costs a few MiB per upload in flight (each piece is copied a few
times on its way); reading at most 64 KiB ahead keeps an upload's footprint in the
gateway at a few hundred KiB (measured in tests/gateway/test_proxy.py).
"""

import os
import shutil
import tempfile

from gunicorn.http.unreader import SocketUnreader

from chassis.gunicorn_config import gunicorn_settings
from gateway.settings import GatewaySettings

# The size gateway.proxy streams in. Not imported from there: the master must not import
# prometheus_client before gunicorn_settings has set up its multiprocess directory.
SocketUnreader.max_body_chunk = 64 * 1024

# Without Redis every worker counts limits and keeps idempotency keys in one SQLite file
# (gateway.local_store): made fresh here, in the master, so all workers open the same one.
_state_dir: str | None = None
if not os.environ.get("REDIS_URL") and not os.environ.get("LOCAL_STATE_PATH"):
    _state_dir = tempfile.mkdtemp(prefix="gateway-state-")
    os.environ["LOCAL_STATE_PATH"] = os.path.join(_state_dir, "state.sqlite3")

_settings = gunicorn_settings(
    GatewaySettings, app="gateway.app:create_app()", port=8080, metrics_port=9080
)
_chassis_on_exit = _settings["on_exit"]


def _on_exit(server: object) -> None:
    _chassis_on_exit(server)
    if _state_dir is not None:
        shutil.rmtree(_state_dir, ignore_errors=True)


_settings["on_exit"] = _on_exit
globals().update(_settings)
