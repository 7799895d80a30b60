"""A local Sentry ingestion endpoint that records the envelopes the real SDK sends."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class SentryReceiver:
    """Accepts ``POST /api/<project>/envelope/`` and keeps every item it was sent."""

    def __init__(self) -> None:
        self.envelopes: list[list[tuple[dict[str, Any], bytes]]] = []
        self.raw: list[bytes] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                encoding = self.headers.get("Content-Encoding")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "br":
                    import brotli

                    body = brotli.decompress(body)
                receiver.raw.append(body)
                receiver.envelopes.append(parse_envelope(body))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def dsn(self) -> str:
        return f"http://publickey@127.0.0.1:{self.server.server_address[1]}/42"

    def __enter__(self) -> SentryReceiver:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict[str, Any]]:
        found = []
        for envelope in self.envelopes:
            for header, payload in envelope:
                if header.get("type") == "event":
                    found.append(json.loads(payload))
        return found


def parse_envelope(body: bytes) -> list[tuple[dict[str, Any], bytes]]:
    lines = body.split(b"\n")
    items = []
    index = 1
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        header = json.loads(lines[index])
        length = header.get("length")
        if length is not None:
            rest = b"\n".join(lines[index + 1 :])
            payload = rest[:length]
            consumed = payload.count(b"\n") + 1
            index += 1 + consumed
        else:
            payload = lines[index + 1] if index + 1 < len(lines) else b""
            index += 2
        items.append((header, payload))
    return items
