"""The gunicorn worker every service runs: gthread that accepts only with a free thread.

gunicorn's gthread worker accepts every connection it can (up to
``worker_connections``, 1000) and queues the requests behind its own busy threads.
All workers of a pod wait on one listening socket and Linux wakes them in the same
order, so under a burst of slow requests (model calls, event streams) one worker
queues dozens while another has idle threads, and those requests wait for a thread
that is seconds away. This worker stops accepting while every request thread holds a
request: the connection stays in the kernel's queue, where the next worker with a
free thread takes it, and a pod whose threads are all busy queues there, as a sync
worker would. Kept-alive connections it already holds are still served in turn.

Both counters change on the worker's main thread only (``accept``, the poller's
callbacks and ``finish_request`` all run there), so they need no lock.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers import gthread


class ThreadWorker(gthread.ThreadWorker):
    """gthread whose listener is off the poller while all threads are busy."""

    busy_threads = 0

    def enqueue_req(self, conn: Any) -> None:
        self.busy_threads += 1
        super().enqueue_req(conn)
        if self.busy_threads >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn: Any, fs: Any) -> None:
        self.busy_threads -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # run() turns accepting back on at the top of its loop whenever it is off; the
        # check belongs here so that a saturated worker makes no poller change a loop.
        super().set_accept_enabled(enabled and self.busy_threads < self.cfg.threads)
