"""A local OTLP/HTTP endpoint that accepts spans and throws them away.

With tracing on but no exporter endpoint, the services would record spans and never
serialise or send them, which understates what tracing costs in a cluster. Pointing
``OTEL_EXPORTER_OTLP_ENDPOINT`` here makes every service pay the real export cost
(protobuf encoding, one HTTP POST per batch) while the sink itself does the least work
a collector could: read the body and answer 200. It counts requests and bytes so a
run can show that export really happened.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class OtlpSink:
    def __init__(self) -> None:
        self.requests = 0
        self.bytes_received = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # no delayed-ACK stall per export, as a collector

            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(size)
                with sink._lock:
                    sink.requests += 1
                    sink.bytes_received += size
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="otlp-sink")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"export_requests": self.requests, "bytes_received": self.bytes_received}

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
