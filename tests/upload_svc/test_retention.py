"""Retention: anonymous uploads expire after ANONYMOUS_RETENTION_DAYS, owned ones never
by this; local disk by a sweep with one sweeper per storage directory, S3 by a bucket
lifecycle rule (read back from moto's server)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from flask.testing import FlaskClient

from testbed import corpus
from testbed.processes import gunicorn_service
from tests.upload_svc.conftest import AWS_TEST_ENV, Service, SettingsFactory, s3_client
from tests.upload_svc.test_privacy import ANONYMOUS, person, upload
from upload_svc.app import create_app
from upload_svc.lifecycle import RULE_ID, apply_rule
from upload_svc.retention import RetentionSweeper
from upload_svc.storage import build_storage
from upload_svc.uploads import Uploads


def readable(client: FlaskClient, record: dict, headers: dict[str, str]) -> bool:
    answer = client.get(record["urls"]["image"], headers=headers)
    assert answer.status_code in (200, 404)
    return answer.status_code == 200


def test_an_anonymous_upload_is_gone_after_its_retention(service: Service) -> None:
    """Both backends, time injected; the service's own expiry, as the local sweep runs it."""
    anonymous = upload(service.client, ANONYMOUS)
    owned = upload(service.client, person("alice"))
    service.client.get(f"/internal/uploads/{anonymous['id']}/preview?long_side=100")
    uploads: Uploads = service.app.extensions["uploads"]
    now = datetime.now(UTC)

    assert uploads.expire_anonymous(now + timedelta(days=6, hours=23)) == 0
    assert readable(service.client, anonymous, ANONYMOUS)

    assert uploads.expire_anonymous(now + timedelta(days=7, minutes=1)) == 1
    assert not readable(service.client, anonymous, ANONYMOUS)
    assert not [key for key in service.stored_keys() if key.startswith("anonymous/")]

    assert uploads.expire_anonymous(now + timedelta(days=3650)) == 0
    assert readable(service.client, owned, person("alice"))


def test_the_retention_is_a_setting(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings(anonymous_retention_days=2))
    record = upload(app.test_client(), ANONYMOUS)
    uploads: Uploads = app.extensions["uploads"]
    now = datetime.now(UTC)
    assert uploads.expire_anonymous(now + timedelta(days=1, hours=23)) == 0
    assert uploads.expire_anonymous(now + timedelta(days=2, minutes=1)) == 1
    assert not readable(app.test_client(), record, ANONYMOUS)


def test_the_services_sweeper_expires_with_its_clock(make_settings: SettingsFactory) -> None:
    app = create_app(make_settings())
    record = upload(app.test_client(), ANONYMOUS)
    sweeper: RetentionSweeper = app.extensions["retention"]
    sweeper.clock = lambda: datetime.now(UTC) + timedelta(days=8)
    assert sweeper.sweep() == 1
    assert not readable(app.test_client(), record, ANONYMOUS)


def test_one_sweeper_per_storage_directory(make_settings: SettingsFactory) -> None:
    settings = make_settings()
    storage = build_storage(settings)
    future = datetime.now(UTC) + timedelta(days=30)
    first = RetentionSweeper(Uploads(storage, settings), settings.storage_dir, 3600, lambda: future)
    second = RetentionSweeper(
        Uploads(storage, settings), settings.storage_dir, 3600, lambda: future
    )
    try:
        assert first.sweep() == 0
        assert second.sweep() is None  # another holds the directory
        first.close()  # as when its process ends
        assert second.sweep() == 0
        assert second.holds_lock()
    finally:
        first.close()
        second.close()


def test_a_sweep_leaves_a_write_in_progress_and_fresh_uploads(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings()
    app = create_app(settings)
    record = upload(app.test_client(), ANONYMOUS, corpus.small_jpeg())
    in_flight = settings.storage_dir / "anonymous" / ("f" * 32)
    in_flight.mkdir(parents=True)
    (in_flight / ".tmp-writing").write_bytes(b"partial")
    uploads: Uploads = app.extensions["uploads"]
    assert uploads.expire_anonymous(datetime.now(UTC) + timedelta(hours=1)) == 0
    assert (in_flight / ".tmp-writing").exists()
    assert readable(app.test_client(), record, ANONYMOUS)


# --- S3: the lifecycle rule -------------------------------------------------------------


def lifecycle_rules(endpoint: str, bucket: str) -> list[dict]:
    try:
        answer = s3_client(endpoint).get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as error:
        if error.response["Error"]["Code"] == "NoSuchLifecycleConfiguration":
            return []
        raise
    return answer["Rules"]


def test_lifecycle_rule_expires_the_anonymous_prefix_only(
    make_s3_settings: SettingsFactory, moto_endpoint: str, s3_bucket: str
) -> None:
    client = s3_client(moto_endpoint)
    logs_rule = {
        "ID": "keep-logs-30-days",
        "Filter": {"Prefix": "logs/"},
        "Status": "Enabled",
        "Expiration": {"Days": 30},
    }
    client.put_bucket_lifecycle_configuration(
        Bucket=s3_bucket, LifecycleConfiguration={"Rules": [logs_rule]}
    )
    settings = make_s3_settings(s3_prefix="media", anonymous_retention_days=7)
    apply_rule(client, settings)
    apply_rule(client, make_s3_settings(s3_prefix="media", anonymous_retention_days=5))
    rules = {rule["ID"]: rule for rule in lifecycle_rules(moto_endpoint, s3_bucket)}
    assert set(rules) == {RULE_ID, "keep-logs-30-days"}  # applied twice, still one rule
    ours = rules[RULE_ID]
    assert ours["Status"] == "Enabled"
    assert ours["Filter"] == {"Prefix": "media/anonymous/"}
    assert ours["Expiration"] == {"Days": 5}
    assert rules["keep-logs-30-days"]["Expiration"] == {"Days": 30}

    # The prefix is where the service puts anonymous uploads, and only those.
    app_client = create_app(settings).test_client()
    anonymous = upload(app_client, ANONYMOUS)
    owned = upload(app_client, person("alice"))
    keys = [item["Key"] for item in client.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert {key for key in keys if key.startswith("media/anonymous/")} == {
        f"media/anonymous/{anonymous['id']}/{name}"
        for name in ("original", "preview-768.jpg", "thumbnail-320.jpg")
    }
    assert all(owned["id"] not in key for key in keys if key.startswith("media/anonymous/"))


def test_make_target_command_sets_the_rule(
    make_s3_settings: SettingsFactory, moto_endpoint: str, s3_bucket: str
) -> None:
    settings = make_s3_settings()
    env = {
        **os.environ,
        **AWS_TEST_ENV,
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": s3_bucket,
        "S3_ENDPOINT_URL": moto_endpoint,
        "S3_REGION": settings.s3_region or "",
        "S3_ADDRESSING_STYLE": "path",
        "ANONYMOUS_RETENTION_DAYS": "9",
        "OTEL_SDK_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "upload_svc.lifecycle"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert RULE_ID in done.stdout
    [rule] = lifecycle_rules(moto_endpoint, s3_bucket)
    assert (rule["Filter"], rule["Expiration"]) == ({"Prefix": "anonymous/"}, {"Days": 9})


def test_lifecycle_command_refuses_local_storage() -> None:
    env = {**os.environ, "STORAGE_BACKEND": "local", "OTEL_SDK_DISABLED": "true"}
    done = subprocess.run(
        [sys.executable, "-m", "upload_svc.lifecycle"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "not s3" in done.stdout


def sweeper_pids(log_path: Path) -> list[int]:
    pids = []
    for line in log_path.read_text().splitlines():
        if '"retention_sweeper_active"' in line:
            pids.append(json.loads(line)["pid"])
    return pids


@pytest.mark.integration
def test_under_gunicorn_one_worker_sweeps_and_another_takes_over(tmp_path: Path) -> None:
    service = gunicorn_service(
        "upload-svc",
        tmp_path,
        {"STORAGE_DIR": str(tmp_path / "storage"), "RETENTION_SWEEP_INTERVAL_SECONDS": "1"},
        workers=2,
        threads=2,
    ).start()
    log_path = tmp_path / "upload-svc.log"
    try:
        deadline = time.monotonic() + 20
        while not sweeper_pids(log_path) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2.5)  # both workers have tried at least twice by now
        [holder] = sweeper_pids(log_path)
        os.kill(holder, signal.SIGKILL)  # gunicorn starts a new worker in its place
        deadline = time.monotonic() + 20
        while len(sweeper_pids(log_path)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        pids = sweeper_pids(log_path)
        assert len(pids) == 2, pids
        assert pids[1] != holder
    finally:
        service.stop()
