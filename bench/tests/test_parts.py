"""The benchmark's own parts that need no running stack: photos, CSV reading, sizing, paths."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from bench.ai_capacity import documented_image_tokens
from bench.chart import PodShape, pod_shapes
from bench.intake import UploadService, turned_losslessly
from bench.loadgen import LoadRun, read_summary
from bench.photos import luma_table_offsets, make_photo, variant
from bench.run import ORDER, output_paths, parse_args
from bench.sizing import recommend
from testbed import corpus

ROOT = Path(__file__).resolve().parents[2]


def test_photo_variants_are_distinct_images_of_the_same_size() -> None:
    base = make_photo(640, 480, seed=3)
    offsets = luma_table_offsets(base)
    variants = [variant(base, number, offsets) for number in range(40)]

    assert len({hashlib.sha256(item).digest() for item in variants}) == 40
    assert {len(item) for item in variants} == {len(base)}
    decoded = [Image.open(io.BytesIO(item)) for item in variants[:2]]
    assert all(image.size == (640, 480) for image in decoded)
    assert decoded[0].tobytes() != decoded[1].tobytes()
    assert decoded[0].getexif()[0x010F] == "IdeaSnap Bench"


def test_a_variant_number_out_of_range_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        variant(make_photo(64, 48, seed=1), 4**16)


def test_a_run_is_measured_over_its_steady_window(tmp_path: Path) -> None:
    # Snaps every 0.5 s taking 1 s; the first 2 s are the ramp, the run stops at 10 s.
    snaps = [[0.5 * index, 1000.0, index != 9] for index in range(18)]
    snaps[4][1] = 3000.0  # started at 2.0 s: inside the window, the slowest
    presets = [[0.5 * index, 20.0, True] for index in range(18)]
    path = tmp_path / "run_summary.json"
    path.write_text(
        json.dumps(
            {
                "test_start": 1000.0,
                "test_stop": 1010.0,
                "samples": {"POST /v1/snaps": snaps, "GET /v1/presets": presets},
                "errors": [
                    {
                        "name": "POST /v1/snaps",
                        "error": "HTTP 503 upstream_unavailable",
                        "count": 1,
                    },
                    {"name": "POST /v1/snaps", "error": "HTTP 504 upstream_timeout", "count": 2},
                ],
            }
        )
    )

    found = read_summary(path)
    run = LoadRun(
        label="t",
        users=2,
        seconds=10,
        trim=2.0,
        end=found.stopped_after or 10.0,
        user_rate=None,
        command=[],
        samples=found.samples,
        failures=found.errors,
        wall_seconds=10.0,
        loadgen_cpu_seconds=1.0,
    )
    summary = run.summary()

    assert found.stopped_after == 10.0
    assert [error["count"] for error in found.errors] == ["2", "1"]
    assert summary["window_seconds"] == 8.0
    # started in [2, 10]: indexes 4..17 = 14 snaps, one failed (index 9)
    assert (summary["snaps"], summary["snaps_failed"]) == (14, 1)
    assert summary["snap_p50_ms"] == 1000.0
    assert summary["snap_max_ms"] == 3000.0
    # completed OK in [2, 10]: starts 1.0..8.5 s plus the slow one, minus the failure
    completed = [s for s in snaps if s[2] and 2.0 <= s[0] + s[1] / 1000 <= 10.0]
    assert summary["snaps_per_second"] == round(len(completed) / 8.0, 3)
    assert summary["requests"] == 28
    assert summary["errors"] == 1
    assert run.ok_in_run("POST /v1/snaps") == 17


def test_sizing_follows_the_documented_rules() -> None:
    results = {
        "knee": {"figures": {"knee_snaps_per_second": 4.0, "knee_cpu_seconds_per_snap": {}}},
        "soak": {
            "figures": {
                "cpu_seconds_per_snap": {"gateway": 0.03, "upload-svc": 0.2, "ai-svc": 0.05},
                "memory": {
                    "gateway": {"end_mib": 200.0},
                    "upload-svc": {"end_mib": 300.0},
                    "ai-svc": {"end_mib": 250.0},
                },
                "in_flight_by_route": {"ai-svc": {"/v1/ideas": 2.2, "*": 2.5}},
            }
        },
        "ai_capacity": {"figures": {"in_flight_per_pod": 18, "gemini_latency_s": 2.0}},
    }
    pods = {
        "gateway": PodShape(2, 8, "test"),
        "upload-svc": PodShape(2, 4, "test"),
        "ai-svc": PodShape(2, 8, "test"),
    }

    sizing = recommend(results, pods)

    assert sizing is not None
    upload = sizing["services"]["upload-svc"]["values"]
    assert upload["resources"]["requests"] == {"cpu": "800m", "memory": "384Mi"}  # 0.2 x 4, 375
    assert upload["resources"]["limits"]["cpu"] == "1600m"
    # at least RSS + 2 workers x 2 decodes x 50 MP x 3 B (572.2 MiB) = 872.2 -> 896
    assert upload["resources"]["limits"]["memory"] == "896Mi"
    gateway_memory = sizing["services"]["gateway"]["values"]["resources"]
    assert gateway_memory["requests"]["memory"] == "256Mi"  # 200 x 1.25 = 250 -> 256
    assert gateway_memory["limits"]["memory"] == "512Mi"
    assert upload["autoscaling"] == {"targetCPUUtilizationPercentage": 50}
    gateway = sizing["services"]["gateway"]["values"]
    assert gateway["resources"]["requests"]["cpu"] == "150m"  # 0.12 cores -> 150m
    ai = sizing["chart_values"]["aiSvc"]
    # 18 in flight at its own knee; half is 9 requests of 16 threads = 0.5625
    assert ai["autoscaling"]["inFlight"]["targetUtilization"] == 0.5625
    ai_inputs = sizing["services"]["ai-svc"]["inputs"]
    assert ai_inputs["threads_per_pod"] == 16
    assert ai_inputs["in_flight_target_per_pod"] == 9
    odd = recommend(
        results | {"ai_capacity": {"figures": {"in_flight_per_pod": 17, "gemini_latency_s": 2}}},
        pods,
    )
    assert odd is not None
    assert odd["services"]["ai-svc"]["inputs"]["in_flight_target_per_pod"] == 9  # 8.5 -> 9
    no_capacity = recommend({k: v for k, v in results.items() if k != "ai_capacity"}, pods)
    assert no_capacity is not None
    assert "inFlight" not in no_capacity["chart_values"]["aiSvc"]["autoscaling"]
    assert sizing["hpa_target_snaps_per_second_per_pod"] == 2.0


def test_no_knee_means_no_sizing() -> None:
    assert recommend({}, {}) is None


def test_only_a_full_run_rewrites_results_md() -> None:
    full = output_paths(parse_args([]), "20250101T000000Z")
    assert full.markdown == ROOT / "bench" / "RESULTS.md"
    assert full.json == ROOT / "bench" / "results" / "20250101T000000Z.json"

    smoke = output_paths(parse_args(["--smoke"]), "20250101T000000Z")
    assert smoke.markdown.parent == ROOT / "bench" / "out"
    partial = output_paths(parse_args(["--only", "knee"]), "20250101T000000Z")
    assert partial.markdown != full.markdown
    assert partial.json.parent == ROOT / "bench" / "out"


def test_scenarios_are_chosen_by_name_in_run_order() -> None:
    assert parse_args(["--only", "soak,knee"]).selected == ["knee", "soak"]
    assert parse_args(["--only", "intake", "--only", "overhead"]).selected == [
        "overhead",
        "intake",
    ]
    assert parse_args([]).selected == list(ORDER)
    with pytest.raises(SystemExit):
        parse_args(["--only", "everything"])


def test_pods_have_the_charts_gunicorn_shape() -> None:
    shapes = pod_shapes(
        {"gateway": {"gunicorn": {"workers": 3, "threads": 5}}, "uploadSvc": {"gunicorn": {}}}
    )
    assert (shapes["gateway"].workers, shapes["gateway"].threads) == (3, 5)
    assert shapes["gateway"].capacity == 15
    assert (shapes["upload-svc"].workers, shapes["upload-svc"].threads) == (2, 8)
    assert shapes["upload-svc"].source == "chassis defaults"
    assert set(shapes) == {"gateway", "upload-svc", "ai-svc"}


@pytest.mark.parametrize(
    ("size", "tokens"),
    [
        ((384, 384), 258),  # both sides <= 384 px: one small image
        ((385, 100), 258),  # larger: one 768x768 tile
        ((768, 576), 258),  # ai-svc's preview of a 4:3 photo
        ((1600, 1200), 3 * 2 * 258),
        ((4032, 3024), 6 * 4 * 258),  # a 12 MP phone photo
    ],
)
def test_image_tokens_follow_googles_documented_rule(size: tuple[int, int], tokens: int) -> None:
    assert documented_image_tokens(*size) == tokens


def test_intake_tells_a_lossless_turn_from_a_reencode(tmp_path: Path) -> None:
    service = UploadService(tmp_path / "upload-svc")
    exif = corpus.private_exif(orientation=6).tobytes()
    turned = tmp_path / "turned.jpg"  # 4 MCUs high: intake turns it in the DCT domain
    turned.write_bytes(corpus.phone_photo(640, 480, seed=3, quality=90, exif=exif))
    reencoded = tmp_path / "reencoded.jpg"  # 90x60 would lose a visible strip: re-encoded
    reencoded.write_bytes(corpus.oriented(6))

    try:
        kept = turned_losslessly(service, turned)
        redone = turned_losslessly(service, reencoded)
    finally:
        service.stop()

    assert kept["lossless"] is True
    assert kept["tables_kept"] is True
    assert kept["mean_abs_difference"] < 1.0
    assert redone["lossless"] is False
