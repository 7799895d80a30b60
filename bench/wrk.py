"""wrk, the load tool of every closed-loop HTTP measurement (the gateway hop, ai-svc).

wrk keeps exactly ``connections`` requests in flight (each connection sends its next
request when the answer to the last one arrives), costs a small fraction of the CPU a
Python client would, and reports latency percentiles from its own histogram. The
snap mix, which needs users with think times and multipart uploads, is locust's
(bench/loadgen.py). The Lua below prints wrk's summary as one JSON line; an optional
list of request bodies is sent in turn, so every request can ask something different.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""
BODIES = """
local bodies = {%s}
local sent = 0
request = function()
  sent = sent + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
                    bodies[(sent %% #bodies) + 1])
end
"""
# wrk starts every connection at the same instant, and against a server whose latency is
# fixed they stay in phase: every request of a wave arrives together, which measures the
# burst, not the load. With a stagger, each connection's first request is a cheap GET of
# ``opening_path``; the answers to those are followed by delays spread evenly over
# ``stagger_ms``, so the measured requests arrive spread out and stay so. The openings
# are in wrk's histogram too: they are the fastest ``connections`` samples, so the
# percentiles of the measured requests alone are read at shifted ranks.
STAGGER = """
local openings, stagger_ms, opened, delayed = %d, %d, 0, 0
local measured_request = request
request = function()
  if opened < openings then
    opened = opened + 1
    return wrk.format("GET", "%s")
  end
  return measured_request()
end
delay = function()
  if delayed < openings then
    delayed = delayed + 1
    return math.floor(delayed * stagger_ms / openings)
  end
  return 0
end
"""
STAGGERED_REPORT = """
done = function(summary, latency, requests)
  local e = summary.errors
  local n = summary.requests - openings
  local function rank(p) return 100 * (openings + p / 100 * n) / summary.requests end
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d}\\n',
    n, summary.duration, latency:percentile(rank(50)), latency:percentile(rank(99)),
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


@dataclass
class Measurement:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def executable() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is missing: `make system-deps` installs it")
    return found


@dataclass(frozen=True)
class Stagger:
    """Spread the measured requests of ``connections`` over ``seconds`` (see STAGGER)."""

    connections: int
    seconds: float
    opening_path: str = "/healthz"


def script(
    path: Path, json_bodies: list[str] | None = None, stagger: Stagger | None = None
) -> Path:
    """Write the Lua script: the JSON summary, the bodies to POST if any, the stagger."""
    text = ""
    if json_bodies:
        quoted = ", ".join(f"[==[{body}]==]" for body in json_bodies)
        text += BODIES % quoted
    if stagger is None:
        text += REPORT
    else:
        if not json_bodies:
            text += "request = function() return wrk.format(nil, nil) end\n"
        opening = STAGGER % (
            stagger.connections,
            round(stagger.seconds * 1000),
            stagger.opening_path,
        )
        text += opening + STAGGERED_REPORT
    path.write_text(text)
    return path


def wrk(
    url: str,
    connections: int,
    seconds: float,
    lua: Path,
    *,
    timeout: float = 10.0,
    headers: dict[str, str] | None = None,
) -> Measurement:
    """``connections`` requests in flight for ``seconds``, from one wrk thread."""
    command = [
        executable(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        f"{max(1, round(timeout))}s",
        "-s",
        str(lua),
    ]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = [text for text in run.stdout.splitlines() if text.startswith("{")][-1]
    data = json.loads(line)
    return Measurement(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=data["errors"],
    )


def version() -> str:
    run = subprocess.run([executable(), "--version"], capture_output=True, text=True, check=False)
    text = (run.stdout + run.stderr).strip()
    return text.splitlines()[0] if text else "wrk"
