"""`make bench`: run every scenario, record the results as JSON and as bench/RESULTS.md.

    python -m bench.run                      # everything (about 17 minutes on 2 cores)
    python -m bench.run --smoke              # a few seconds per scenario, no figures
    python -m bench.run --only knee,overhead # some scenarios (results kept apart)
    python -m bench.run --soak-seconds 120   # a shorter soak

Scenarios run one after another (they would steal each other's CPU otherwise); each
starts what it needs on loopback and stops it. A scenario that fails is recorded with
its error and the others still run; the exit status says whether all of them ran.

A full run (not --smoke, not --only) rewrites bench/RESULTS.md and writes
bench/results/<UTC time>.json; other runs write both under bench/out/ (ignored by git)
unless --out-dir / --markdown say otherwise. Service logs and locust's CSVs of every run
go to bench/out/<UTC time>/.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import knee, overhead, soak, streaming
from bench.console import say
from bench.goals import audit
from bench.hot_path_goals import knee_baseline
from bench.machine import describe_command, describe_commit, describe_machine
from bench.report import render
from bench.settings import BenchSettings
from bench.sizing import recommend
from bench.stack import close_shared_stack

ROOT = Path(__file__).resolve().parents[1]
OWN = ("knee", "overhead", "streaming", "soak")
COMPARISONS = ("gateway_hop", "tokens", "intake", "ai_capacity", "library")
ORDER = (
    "knee",
    "overhead",
    "streaming",
    "gateway_hop",
    "tokens",
    "intake",
    "ai_capacity",
    "library",
    "soak",
)
REQUIRED_KEYS = ("figures", "table")
BUDGET_MINUTES = 20


class ScenarioMissing(Exception):
    """The scenario's module is not in this tree (yet)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few seconds per scenario")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SCENARIO[,SCENARIO]",
        help=f"run only these (of {', '.join(ORDER)})",
    )
    parser.add_argument("--soak-seconds", type=float, help="soak duration (default 360)")
    parser.add_argument("--soak-rate", type=float, help="soak snaps/s (default: half the knee)")
    parser.add_argument("--gemini-latency", type=float, help="fake Gemini latency, s (1.0)")
    parser.add_argument("--workers", type=int, help="workers for every service (chart's)")
    parser.add_argument("--threads", type=int, help="threads for every service (chart's)")
    parser.add_argument("--knee-step-seconds", type=float, help="seconds per knee step")
    parser.add_argument("--knee-levels", help="users per knee step, e.g. 2,4,6,8")
    parser.add_argument("--knee-budget-seconds", type=float, help="stop raising users after")
    parser.add_argument("--overhead-round-seconds", type=float, help="seconds per on/off round")
    parser.add_argument("--overhead-users", type=int, help="users for the overhead rounds")
    parser.add_argument("--out-dir", type=Path, help="where the JSON result goes")
    parser.add_argument("--markdown", type=Path, help="where the Markdown goes")
    args = parser.parse_args(argv)
    selected = [name.strip() for item in args.only for name in item.split(",") if name.strip()]
    unknown = sorted(set(selected) - set(ORDER))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(ORDER)}")
    args.selected = [name for name in ORDER if name in selected] if selected else list(ORDER)
    return args


@dataclass(frozen=True)
class OutputPaths:
    json: Path
    markdown: Path
    work: Path


def output_paths(args: argparse.Namespace, stamp: str) -> OutputPaths:
    """Only a full run replaces bench/RESULTS.md; smoke and partial runs go to bench/out/."""
    full_run = not args.smoke and args.selected == list(ORDER)
    kind = "smoke-" if args.smoke else ("" if full_run else "partial-")
    out_dir: Path = (args.out_dir or ROOT / "bench" / ("results" if full_run else "out")).resolve()
    markdown = args.markdown or (
        ROOT / "bench" / "RESULTS.md" if full_run else out_dir / f"{kind}{stamp}.md"
    )
    work = out_dir / f"{kind}{stamp}" if args.out_dir else ROOT / "bench" / "out" / f"{kind}{stamp}"
    return OutputPaths(out_dir / f"{kind}{stamp}.json", markdown.resolve(), work)


def settings_from(args: argparse.Namespace) -> BenchSettings:
    levels = (
        tuple(int(level) for level in args.knee_levels.split(",") if level.strip())
        if args.knee_levels
        else None
    )
    return BenchSettings.for_run(
        args.smoke,
        soak_seconds=args.soak_seconds,
        soak_rate=args.soak_rate,
        gemini_latency=args.gemini_latency,
        workers=args.workers,
        threads=args.threads,
        knee_step_seconds=args.knee_step_seconds,
        knee_levels=levels,
        knee_budget_seconds=args.knee_budget_seconds,
        overhead_round_seconds=args.overhead_round_seconds,
        overhead_concurrency=args.overhead_users,
    )


def comparison(name: str) -> Callable[[Path, bool], dict[str, Any]]:
    """A service helper's ``bench.<name>.run``; its absence is reported, not fatal."""
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as error:
        if error.name == f"bench.{name}":
            raise ScenarioMissing(f"bench/{name}.py is not in this tree") from None
        raise
    return module.run


def run_scenario(
    name: str, work_dir: Path, settings: BenchSettings, done: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    knee_result = done.get("knee")
    work_dir.mkdir(parents=True, exist_ok=True)
    if name == "knee":
        return knee.run(work_dir, settings.smoke, settings)
    if name == "overhead":
        return overhead.run(work_dir, settings.smoke, settings, knee=knee_result)
    if name == "soak":
        return soak.run(work_dir, settings.smoke, settings, knee=knee_result)
    if name == "streaming":
        return streaming.run(work_dir, settings.smoke, settings, knee=knee_result)
    return comparison(name)(work_dir, settings.smoke)


def check_shape(name: str, result: Any) -> None:
    if not isinstance(result, dict) or any(key not in result for key in REQUIRED_KEYS):
        raise TypeError(f"bench.{name}.run returned no {' and '.join(REQUIRED_KEYS)}")
    json.dumps(result)  # must be JSON-able: it goes into the result file as is


def run_all(
    selected: list[str], settings: BenchSettings, work_root: Path, results: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each scenario in turn; one that fails is recorded and the others still run."""
    entries: dict[str, dict[str, Any]] = {}
    for name in selected:
        say(f"{name}: starting")
        began = time.monotonic()
        entry: dict[str, Any] = {"status": "ok"}
        try:
            result = run_scenario(name, work_root / name, settings, results)
            check_shape(name, result)
            audit(result["table"])
            results[name] = result
            entry["result"] = result
        except ScenarioMissing as missing:
            entry.update(status="missing", error=str(missing))
        except Exception as error:
            entry.update(
                status="error",
                error=f"{type(error).__name__}: {error}"[:2000],
                traceback=traceback.format_exc()[-6000:],
            )
        entry["duration_seconds"] = round(time.monotonic() - began, 1)
        entries[name] = entry
        say(f"{name}: {entry['status']} in {entry['duration_seconds']} s")
    return entries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    now = datetime.now(UTC)
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    paths = output_paths(args, stamp)
    json_path, markdown, work_root = paths.json, paths.markdown, paths.work
    started = time.monotonic()
    say(f"scenarios: {', '.join(args.selected)}; logs in {work_root}")
    results: dict[str, dict[str, Any]] = {}
    try:
        entries = run_all(args.selected, settings, work_root, results)
    finally:
        close_shared_stack()
    finished = datetime.now(UTC)
    document: dict[str, Any] = {
        "started_at": now.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "duration_seconds": round(time.monotonic() - started, 1),
        "smoke": args.smoke,
        "command": describe_command(argv),
        "scenarios_selected": args.selected,
        "machine": describe_machine(),
        "commit": describe_commit(),
        "settings": settings.as_dict(),
        "json_path": relative(json_path),
        "markdown_path": relative(markdown),
        "work_dir": relative(work_root),
        "scenarios": entries,
        "sizing": recommend(results, settings.pods),
    }
    # Recorded with the run, so its Markdown compares with the same run when re-rendered.
    document["knee_baseline"] = knee_baseline(document)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    markdown.parent.mkdir(parents=True, exist_ok=True)
    markdown.write_text(render(document))
    say(f"wrote {relative(json_path)} and {relative(markdown)}")
    minutes = document["duration_seconds"] / 60
    say(f"took {minutes:.1f} min")
    if minutes > BUDGET_MINUTES and not args.smoke and args.selected == list(ORDER):
        say(f"over the {BUDGET_MINUTES}-minute budget of a full run: shorten a scenario")
    failed = [name for name, entry in entries.items() if entry["status"] != "ok"]
    if failed:
        say(f"not measured: {', '.join(failed)}")
    return 1 if failed else 0


def relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


if __name__ == "__main__":
    sys.exit(main())
