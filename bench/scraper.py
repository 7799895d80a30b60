"""Scrape the services' /metrics on an interval, as Prometheus would in a cluster.

Serving a scrape costs the service CPU (the multiprocess collector reads every worker's
files), so the "observability on" figures include it. The samples kept are the ones
sizing needs: in-flight requests per service, to size an HPA on saturation.
"""

from __future__ import annotations

import threading
from typing import Any

from bench.stack import BenchStack

IN_FLIGHT = ("http_server_active_requests", "ai_upstream_in_flight")


class Scraper:
    def __init__(self, stack: BenchStack, interval: float) -> None:
        self.stack = stack
        self.interval = interval
        self.scrapes = 0
        self.in_flight: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scraper", daemon=True)
        self._lock = threading.Lock()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.scrape_once()

    def scrape_once(self) -> dict[str, list[tuple[str, dict[str, str], float]]]:
        found = self.stack.scrape()
        with self._lock:
            self.scrapes += 1
            for service, samples in found.items():
                for name, _labels, value in samples:
                    if name in IN_FLIGHT:
                        self.in_flight.setdefault(f"{service}:{name}", []).append(value)
        return found

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "scrapes": self.scrapes,
                "interval_seconds": self.interval,
                "in_flight_mean": {
                    key: round(sum(values) / len(values), 2)
                    for key, values in self.in_flight.items()
                    if values
                },
                "in_flight_max": {
                    key: max(values) for key, values in self.in_flight.items() if values
                },
            }

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(self.interval + 10)


def histogram_totals(
    samples: list[tuple[str, dict[str, str], float]], name: str
) -> dict[str, tuple[float, float]]:
    """(sum, count) of a histogram per route label, from one scrape."""
    totals: dict[str, list[float]] = {}
    for sample_name, labels, value in samples:
        route = labels.get("route", "")
        if sample_name == f"{name}_sum":
            totals.setdefault(route, [0.0, 0.0])[0] += value
        elif sample_name == f"{name}_count":
            totals.setdefault(route, [0.0, 0.0])[1] += value
    return {route: (pair[0], pair[1]) for route, pair in totals.items()}


def busy_between(
    before: list[tuple[str, dict[str, str], float]],
    after: list[tuple[str, dict[str, str], float]],
    seconds: float,
    name: str = "http_server_request_duration_seconds",
) -> dict[str, float]:
    """Mean requests in flight per route over a window (Little's law: busy time / time).

    The histogram's ``_sum`` grows by the seconds requests spent being served, so its
    growth over a window divided by the window is the average number in flight, an
    exact average where sampling a gauge would only catch moments.
    """
    start = histogram_totals(before, name)
    end = histogram_totals(after, name)
    busy = {
        route: (end[route][0] - start.get(route, (0.0, 0.0))[0]) / seconds
        for route in end
        if seconds > 0
    }
    busy["*"] = sum(busy.values())
    return {route: round(value, 3) for route, value in busy.items()}
