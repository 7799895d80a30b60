"""One `python -m bench.run --smoke` for the whole session, shared by every smoke test.

Each scenario starts its own stack, so the run is the costliest thing these tests do;
running it once and asserting on its result file keeps `make test` short while every
scenario, the report and the sizing are still exercised through the real command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The run's own budget: every scenario's smoke plan, on a busy 2-core machine.
SMOKE_TIMEOUT_SECONDS = 280


@pytest.fixture(scope="session")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:/usr/sbin:{os.environ.get('PATH', '')}",
    }
    completed = subprocess.run(
        [sys.executable, "-m", "bench.run", "--smoke", "--out-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_SECONDS,
        check=False,
    )
    results = sorted(out.glob("smoke-*.json"))
    assert results, f"no result file; exit {completed.returncode}\n{completed.stderr[-3000:]}"
    document = json.loads(results[-1].read_text())
    markdown = sorted(out.glob("smoke-*.md"))
    work = sorted(path for path in out.glob("smoke-*") if path.is_dir())
    return {
        "document": document,
        "markdown": markdown[-1].read_text() if markdown else "",
        "returncode": completed.returncode,
        "stderr": completed.stderr,
        "out": out,
        "work": work[-1] if work else out,
    }
