"""Outgoing calls: a keep-alive connection closed by the upstream in flight."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from chassis.errors import ApiError
from chassis.outgoing import ServiceClient

OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\n{}"
)


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


@pytest.fixture
def closing_upstream() -> Iterator[tuple[str, list[int]]]:
    """Answers the first request and keeps the connection; closes it unanswered on the
    second, as a server whose keep-alive timer ran out; answers on new connections."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    served: list[int] = []

    def serve() -> None:
        first = True
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                if not read_request(conn):
                    continue
                served.append(1)
                conn.sendall(OK)
                if first:
                    first = False
                    read_request(conn)  # the reused connection: closed, unanswered

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", served
    server.close()


def test_idempotent_call_survives_a_dropped_keepalive_connection(closing_upstream) -> None:
    url, served = closing_upstream
    client = ServiceClient("test", url, connect_timeout=1, read_timeout=2)
    assert client.request("GET", "/a").status_code == 200
    assert client.request("GET", "/b").status_code == 200
    assert len(served) == 2


def test_post_is_not_repeated_on_a_dropped_connection(closing_upstream) -> None:
    url, served = closing_upstream
    client = ServiceClient("test", url, connect_timeout=1, read_timeout=2)
    assert client.request("GET", "/a").status_code == 200
    with pytest.raises(ApiError) as caught:
        client.request("POST", "/b", json={"x": 1})
    assert caught.value.status == 503
    assert caught.value.code == "upstream_unavailable"
    assert len(served) == 1


def test_refused_connection_is_503() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = ServiceClient("test", f"http://127.0.0.1:{port}", connect_timeout=1)
    with pytest.raises(ApiError) as caught:
        client.request("GET", "/")
    assert (caught.value.status, caught.value.code) == (503, "upstream_unavailable")
