"""Every knob a benchmark run has, with the defaults that fit `make bench` in 20 minutes.

The values are recorded in each result file, so a figure can always be traced back to
the durations, concurrency levels and pod shape that produced it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from bench.chart import PodShape, pod_shapes
from bench.photos import PHONE_SIZE, SMOKE_SIZE


@dataclass(frozen=True)
class BenchSettings:
    smoke: bool = False
    # The stack: one gunicorn tree per service ("a pod") with the chart's defaults;
    # workers/threads, when set, override every service's.
    workers: int | None = None
    threads: int | None = None
    pods: dict[str, PodShape] = field(default_factory=dict)
    gemini_latency: float = 1.0
    photo_size: tuple[int, int] = PHONE_SIZE
    photo_pool: int = 8
    # Scenario 1: closed-loop users, raised step by step until snap p99 > 2x unloaded.
    knee_trim_seconds: float = 3.0  # each step runs trim + step; only the step is measured
    knee_baseline_seconds: float = 15.0
    knee_step_seconds: float = 12.0
    knee_levels: tuple[int, ...] = (4, 8, 16, 24, 32, 40, 48, 64)
    knee_p99_factor: float = 2.0
    knee_max_error_ratio: float = 0.01
    knee_budget_seconds: float = 150.0
    # Scenario 2: observability on and off, alternated at one saturating concurrency.
    overhead_trim_seconds: float = 4.0
    overhead_round_seconds: float = 12.0
    overhead_rounds: int = 2
    overhead_concurrency: int | None = None  # default: just past the knee
    # Scenario 3: the soak at half the knee.
    soak_seconds: float = 360.0
    soak_warmup_seconds: float = 10.0
    soak_rate: float | None = None  # snaps/s; default: half the knee
    soak_sample_seconds: float = 30.0
    scrape_interval_seconds: float = 15.0

    @classmethod
    def for_run(cls, smoke: bool, **overrides: Any) -> BenchSettings:
        """Full-size defaults, or a few seconds per scenario when ``smoke``."""
        base = cls()
        if smoke:
            base = replace(
                base,
                smoke=True,
                workers=1,
                threads=4,
                photo_size=SMOKE_SIZE,
                photo_pool=2,
                gemini_latency=0.2,
                knee_trim_seconds=0.5,
                knee_baseline_seconds=3.0,
                knee_step_seconds=3.0,
                knee_levels=(2,),
                knee_budget_seconds=20.0,
                overhead_trim_seconds=0.5,
                overhead_round_seconds=3.0,
                overhead_rounds=1,
                overhead_concurrency=2,
                soak_seconds=3.0,
                soak_warmup_seconds=0.0,
                soak_sample_seconds=2.0,
                scrape_interval_seconds=2.0,
            )
        clean = {key: value for key, value in overrides.items() if value is not None}
        chosen = replace(base, **clean)
        pods = {
            name: PodShape(
                chosen.workers or shape.workers,
                chosen.threads or shape.threads,
                shape.source if not (chosen.workers or chosen.threads) else "command line",
            )
            for name, shape in pod_shapes().items()
        }
        return replace(chosen, pods=pods)

    def pod(self, service: str) -> PodShape:
        return self.pods.get(service) or pod_shapes()[service]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
