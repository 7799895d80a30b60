"""Render one run's results as the Markdown of bench/RESULTS.md.

One table per scenario with goal, measured and met columns, the knee's steps, the
memory of the soak, the service comparisons as their own modules reported them, and
the sizing the chart's defaults are derived from. Everything shown is read from the
run's JSON, so the Markdown can always be regenerated from it.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from bench.goals import INVALID
from bench.hot_path_goals import TITLE as HOT_PATHS_TITLE
from bench.hot_path_goals import hot_path_rows

SECTION_TITLES = {
    "knee": "1. Snap mix: the knee",
    "overhead": "2. Observability overhead",
    "soak": "3. Soak at half the knee",
}
COMPARISONS = ("gateway_hop", "tokens", "intake", "ai_capacity", "library")
COMPARISON_TITLES = {
    "gateway_hop": "Gateway hop vs direct vs nginx",
    "tokens": "Sign-in: token verification, signed-in vs anonymous CPU",
    "intake": "Upload processing vs a full decode",
    "ai_capacity": "ai-svc vs the inline setup; upstream bytes and tokens per snap",
    "library": "library-svc on PostgreSQL: history list and draft PATCH",
}


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "**no**"
    if value == INVALID:
        return "**invalid**"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.0f}"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).replace("|", "\\|")
    return str(value).replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return [*lines, ""]


def goal_table(rows: list[dict[str, Any]]) -> list[str]:
    return table(
        ["metric", "goal", "measured", "met"],
        [[row.get("metric"), row.get("goal"), row.get("value"), row.get("met")] for row in rows],
    )


def header(document: dict[str, Any]) -> list[str]:
    machine = document["machine"]
    commit = document["commit"]
    settings = document["settings"]
    dirty = {True: " (working tree had uncommitted changes)", False: "", None: ""}[
        commit.get("dirty")
    ]
    pods = ", ".join(
        f"{name} {shape['workers']}x{shape['threads']}"
        for name, shape in (settings.get("pods") or {}).items()
    )
    smoke = " — SMOKE RUN: durations too short for figures" if document["smoke"] else ""
    return [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python -m bench.run`); how each scenario works and how",
        "the chart's defaults follow from these figures: [bench/README.md](README.md).",
        f"Raw figures: `{document['json_path']}`.",
        "",
        f"- **Run**: {document['started_at']} to {document['finished_at']} "
        f"({document['duration_seconds'] / 60:.1f} min){smoke}",
        f"- **Commit**: `{commit.get('commit')}`{dirty}",
        f"- **Command**: `{document['command']}`",
        f"- **Machine**: {machine['cores']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gib']} GiB, Python {machine['python']}, {machine['os']}, "
        f"kernel {machine['kernel']}",
        f"- **Pod**: one gunicorn tree (gthread) per service: {pods}; Gemini is the local "
        f"fake at a fixed {settings['gemini_latency']:g} s latency, reached by the real "
        "google-genai client",
        "- **Load generator**: locust (headless) on the same machine: it shares the cores "
        "with the services, so every figure is for services that had less than the whole "
        "machine (its CPU share is in the knee's steps)",
        "",
    ]


def hot_paths_section(document: dict[str, Any]) -> list[str]:
    """Issue 15's goals, worded as the issue words them, first: they decide the work."""
    rows = []
    for entry in hot_path_rows(document):
        measured = entry["measured"]
        if entry.get("invalid_because"):
            measured += f" ({entry['invalid_because']}: impossible, not judged)"
        rows.append([entry["measure"], entry["goal"], measured, entry["met"], entry["scenario"]])
    return [
        f"## {HOT_PATHS_TITLE}",
        "",
        "The goals of issue 15, from this run's figures (how each is measured: the "
        "scenario's section below). A row this run did not measure says not run.",
        "",
        *table(["measure", "goal", "measured", "met", "scenario"], rows),
    ]


def goals_summary(document: dict[str, Any]) -> list[str]:
    rows = []
    for name, entry in document["scenarios"].items():
        if entry["status"] != "ok":
            rows.append([name, "scenario runs", f"{entry['status']}: {entry.get('error')}", False])
            continue
        for row in entry["result"].get("table") or []:
            if isinstance(row.get("met"), bool) or row.get("met") == INVALID:
                measured = f"{row.get('metric')}: {cell(row.get('value'))}"
                if row.get("invalid_because"):
                    measured += f" ({row['invalid_because']}: impossible, not judged)"
                rows.append([name, row.get("goal"), measured, row["met"]])
    if not rows:
        return []
    return ["## Goals", "", *table(["scenario", "goal", "measured", "met"], rows)]


def knee_details(result: dict[str, Any]) -> list[str]:
    rows = [
        [
            step["users"],
            step["snaps_per_second"],
            step["snap_p50_ms"],
            step["snap_p95_ms"],
            step["snap_p99_ms"],
            step["p99_ms"],
            f"{step['errors']}/{step['requests']}",
            step["services_cpu_cores"],
            step["loadgen_cpu_cores"],
            step.get("helpers_cpu_cores"),
            step.get("gemini_calls_per_snap"),
        ]
        for step in result.get("steps") or []
    ]
    return [
        "Steps (snap latencies in ms; CPU in cores busy during the step, out of "
        f"{result.get('inputs', {}).get('cores', '?')}):",
        "",
        *table(
            [
                "users",
                "snaps/s",
                "snap p50",
                "snap p95",
                "snap p99",
                "all p99",
                "errors",
                "services CPU",
                "locust CPU",
                "fake Gemini + Redis CPU",
                "Gemini calls/snap",
            ],
            rows,
        ),
    ]


def overhead_details(result: dict[str, Any]) -> list[str]:
    figures = result["figures"]
    rows = []
    for mode in ("on", "off"):
        side = figures[mode]
        rows.append(
            [
                mode,
                side["snaps_per_second"],
                side["snap_p50_ms"],
                side["snap_p99_ms"],
                side["errors"],
                side["cpu_seconds_per_snap"],
            ]
        )
    return [
        f"At {figures['users']} users; spans exported: {cell(figures.get('spans_exported'))}; "
        f"metrics scrapes: {figures.get('metrics_scrapes')}.",
        "",
        *table(
            ["observability", "snaps/s", "snap p50 ms", "snap p99 ms", "errors", "CPU s/snap"],
            rows,
        ),
    ]


def soak_details(result: dict[str, Any]) -> list[str]:
    figures = result["figures"]
    samples = figures.get("memory_samples_mib") or []
    if len(samples) > 12:
        stride = len(samples) / 12
        samples = [samples[int(index * stride)] for index in range(12)] + [samples[-1]]
    names = [key for key in (samples[0] if samples else {}) if key != "t"]
    lines = [
        f"Offered {figures['target_snaps_per_second']} snaps/s ({figures['rate_source']}) "
        f"with {figures['users']} paced users for {figures['seconds']:g} s.",
        "",
    ]
    if samples:
        lines += [
            "RSS over the soak (MiB, master + workers):",
            "",
            *table(
                ["t (s)", *names], [[point["t"], *(point[n] for n in names)] for point in samples]
            ),
        ]
    halves = {
        name: item.get("second_half_growth_percent")
        for name, item in (figures.get("memory") or {}).items()
    }
    lines += [
        f"RSS growth over the second half of the soak (%): {cell(halves)}.",
        "",
        f"Mean requests in flight per service: {cell(figures.get('in_flight_mean'))}; "
        f"CPU s per snap: {cell(figures.get('cpu_seconds_per_snap'))}.",
        "",
    ]
    return lines


def comparison_section(name: str, entry: dict[str, Any]) -> list[str]:
    result = entry.get("result") or {}
    title = result.get("title") or COMPARISON_TITLES.get(name, name)
    lines = [f"### {title} (`{name}`)", ""]
    if entry["status"] != "ok":
        return [*lines, f"Not measured: {entry['status']} — {entry.get('error')}", ""]
    if result.get("command"):
        lines += [f"Command: `{cell(result['command'])}`", ""]
    lines += goal_table(result.get("table") or [])
    return lines


def ai_in_flight_sentence(sizing: dict[str, Any]) -> list[str]:
    inputs = (sizing["services"].get("ai-svc") or {}).get("inputs") or {}
    if inputs.get("in_flight_target_per_pod") is None:
        return []
    return [
        "",
        f"ai-svc's in-flight target: {inputs['in_flight_target_per_pod']:g} requests in flight "
        f"per pod (one pod held {inputs['in_flight_at_own_knee']:g} at its own knee in "
        f"`ai_capacity`; half of that, rounded up to a whole request, over "
        f"{inputs['threads_per_pod']} threads).",
    ]


def sizing_section(sizing: dict[str, Any] | None) -> list[str]:
    if not sizing:
        return ["## Sizing", "", "No knee in this run, so no sizing.", ""]
    rows = []
    for name, entry in sizing["services"].items():
        values = entry["values"]
        now = entry["chart_now"]
        in_flight = (values["autoscaling"].get("inFlight") or {}).get("targetUtilization")
        rows.append(
            [
                name,
                resources_text(values["resources"]),
                resources_text(now.get("resources") or {}),
                f"CPU {values['autoscaling']['targetCPUUtilizationPercentage']}%"
                + ("" if in_flight is None else f", in-flight {in_flight}"),
                f"CPU {now.get('targetCPUUtilizationPercentage')}%"
                + (
                    ""
                    if now.get("inFlightTargetUtilization") is None
                    else f", in-flight {now['inFlightTargetUtilization']}"
                ),
                entry["inputs"]["cpu_seconds_per_snap"],
                entry["inputs"]["rss_mib"],
                entry["inputs"]["in_flight_at_half_knee"],
                entry["inputs"]["threads_per_pod"],
            ]
        )
    snippet = yaml.safe_dump(sizing["chart_values"], sort_keys=False).rstrip()
    return [
        "## Sizing (recommended chart defaults)",
        "",
        f"From a knee of {sizing['knee_snaps_per_second_per_pod']} snaps/s per pod (HPA "
        f"target: {sizing['hpa_target_snaps_per_second_per_pod']} snaps/s per pod); CPU and "
        f"memory from the {sizing['source']}. Requests/limits as `cpu, memory / cpu, memory`.",
        *ai_in_flight_sentence(sizing),
        "",
        *table(
            [
                "service",
                "recommended requests / limits",
                "chart now",
                "recommended HPA",
                "chart HPA now",
                "CPU s/snap",
                "RSS MiB",
                "in flight at K/2",
                "threads/pod",
            ],
            rows,
        ),
        "Rules:",
        "",
        *[f"- {rule}" for rule in sizing["rules"]],
        "",
        "As chart values (`helm/ideasnap/values.yaml`):",
        "",
        "```yaml",
        snippet,
        "```",
        "",
    ]


def resources_text(resources: dict[str, Any]) -> str:
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    return (
        f"{requests.get('cpu', '?')}, {requests.get('memory', '?')} / "
        f"{limits.get('cpu', '?')}, {limits.get('memory', '?')}"
    )


def render(document: dict[str, Any]) -> str:
    lines = header(document) + hot_paths_section(document) + goals_summary(document)
    scenarios = document["scenarios"]
    for name, title in SECTION_TITLES.items():
        if name not in scenarios:
            continue
        entry = scenarios[name]
        lines += [f"## {title}", ""]
        if entry["status"] != "ok":
            lines += [f"Not measured: {entry['status']} — {entry.get('error')}", ""]
            continue
        result = entry["result"]
        lines += goal_table(result.get("table") or [])
        if name == "knee":
            lines += knee_details(result)
        elif name == "overhead":
            lines += overhead_details(result)
        else:
            lines += soak_details(result)
    present = [name for name in COMPARISONS if name in scenarios]
    present += [name for name in scenarios if name not in SECTION_TITLES and name not in present]
    if present:
        lines += ["## 4. Service comparisons", ""]
        for name in present:
            lines += comparison_section(name, scenarios[name])
    lines += sizing_section(document.get("sizing"))
    durations = [[name, entry.get("duration_seconds")] for name, entry in scenarios.items()]
    lines += ["## Time per scenario", "", *table(["scenario", "seconds"], durations)]
    return "\n".join(lines).rstrip() + "\n"
