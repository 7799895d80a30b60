"""The master's /metrics sums every worker's values, even while a worker is starting.

A worker creates its metrics file on first use and sizes it a moment later. A scrape
in that moment must still answer with every other worker's values: otherwise
Prometheus records a failed scrape, and a gap in every series, whenever a worker starts
or is recycled.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from chassis.metrics import exposition_registry, serve_master_endpoints
from testbed.processes import free_port

WORKER = """
import sys
from prometheus_client import Counter, Gauge
snaps = Counter("snaps", "Snaps served.")
busy = Gauge("busy", "Requests in flight.", multiprocess_mode="livesum")
snaps.inc(int(sys.argv[1]))
busy.set(1)
"""


def run_worker(multiproc_dir: Path, snaps: int) -> None:
    """A real process writing its values the way a gunicorn worker does."""
    subprocess.run(
        [sys.executable, "-c", WORKER, str(snaps)],
        env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc_dir)},
        check=True,
        timeout=30,
    )


def scrape(multiproc_dir: Path, monkeypatch: pytest.MonkeyPatch) -> requests.Response:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(multiproc_dir))
    port = free_port()
    server = serve_master_endpoints(
        "127.0.0.1", port, exposition_registry(), lambda: (True, {"status": "ok"})
    )
    try:
        return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        server.shutdown()
        server.server_close()


def values(text: str) -> dict[str, float]:
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_the_scrape_sums_every_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_worker(tmp_path, 2)
    run_worker(tmp_path, 3)
    response = scrape(tmp_path, monkeypatch)
    assert response.status_code == 200
    assert values(response.text) == {"snaps_total": 5.0, "busy": 2.0}


def test_a_worker_still_creating_its_files_does_not_fail_the_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_worker(tmp_path, 2)
    run_worker(tmp_path, 3)
    # What a starting worker leaves between creating its files and sizing them.
    (tmp_path / "counter_424242.db").touch()
    (tmp_path / "gauge_livesum_424242.db").touch()
    response = scrape(tmp_path, monkeypatch)
    assert response.status_code == 200, response.text
    assert values(response.text) == {"snaps_total": 5.0, "busy": 2.0}
