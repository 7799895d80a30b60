"""A TCP proxy on loopback that can hold requests: an upstream that has become slow.

While ``hold()`` is in force, bytes from clients are kept back (the upstream sees
nothing, the client waits for an answer); ``release()`` lets them through. Used to stop
a service in the middle of a multi-step operation that calls the upstream.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from testbed.processes import free_port


class SlowProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.released = threading.Event()
        self.released.set()
        self.held_chunks = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hold(self) -> None:
        self.held_chunks = 0
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self._closing = True
        self.release()
        with contextlib.suppress(OSError):
            self._server.close()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_client and not self.released.is_set():
                    self.held_chunks += 1
                    self.released.wait()
                target.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, target):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
