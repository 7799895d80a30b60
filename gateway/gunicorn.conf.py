"""gunicorn settings for the gateway (see chassis.gunicorn_config).

The gateway streams request bodies through in 64 KiB pieces. gunicorn reads a body of
known length ahead in recv() calls of up to 1 MiB and keeps what the application has not
asked for yet, which costs a few MiB per upload in flight (each piece is copied a few
times on its way); reading at most 64 KiB ahead keeps an upload's footprint in the
gateway at a few hundred KiB (measured in tests/gateway/test_proxy.py).
"""

from gunicorn.http.unreader import SocketUnreader

from chassis.gunicorn_config import gunicorn_settings
from gateway.settings import GatewaySettings

# The size gateway.proxy streams in. Not imported from there: the master must not import
# prometheus_client before gunicorn_settings has set up its multiprocess directory.
SocketUnreader.max_body_chunk = 64 * 1024

globals().update(
    gunicorn_settings(GatewaySettings, app="gateway.app:create_app()", port=8080, metrics_port=9080)
)
