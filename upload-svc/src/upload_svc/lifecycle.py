"""The bucket lifecycle rule that expires anonymous uploads in S3.

``python -m upload_svc.lifecycle`` (``make s3-lifecycle``) reads the same settings as
the service (``S3_BUCKET``, ``S3_PREFIX``, ``S3_ENDPOINT_URL``, ``S3_REGION``,
``ANONYMOUS_RETENTION_DAYS``, the standard AWS credentials) and sets one rule on the
bucket: objects under ``<S3_PREFIX>/anonymous/`` expire ``ANONYMOUS_RETENTION_DAYS``
after they were written. The store deletes them itself, so no process of ours has to
run for it. Owned uploads (``owners/...``) are outside the rule's prefix.

``PutBucketLifecycleConfiguration`` replaces the bucket's whole configuration, so the
rules already there are read first and kept; only the rule with this one's id is
replaced. Running it again is harmless.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chassis.settings import load_settings
from upload_svc.settings import UploadSettings
from upload_svc.uploads import ANONYMOUS_SPACE

RULE_ID = "ideasnap-anonymous-uploads-expire"
NO_CONFIGURATION = "NoSuchLifecycleConfiguration"


def anonymous_prefix(settings: UploadSettings) -> str:
    prefix = settings.s3_prefix.strip("/")
    return f"{prefix}/{ANONYMOUS_SPACE}/" if prefix else f"{ANONYMOUS_SPACE}/"


def expiry_rule(settings: UploadSettings) -> dict[str, Any]:
    return {
        "ID": RULE_ID,
        "Filter": {"Prefix": anonymous_prefix(settings)},
        "Status": "Enabled",
        "Expiration": {"Days": settings.anonymous_retention_days},
    }


def current_rules(client: Any, bucket: str) -> list[dict[str, Any]]:
    try:
        answer = client.get_bucket_lifecycle_configuration(Bucket=bucket)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == NO_CONFIGURATION:
            return []
        raise
    return list(answer.get("Rules", []))


def apply_rule(client: Any, settings: UploadSettings) -> list[dict[str, Any]]:
    """Set the expiry rule, keeping every other rule; the bucket's rules afterwards."""
    bucket = settings.s3_bucket or ""
    rules = [rule for rule in current_rules(client, bucket) if rule.get("ID") != RULE_ID]
    rules.append(expiry_rule(settings))
    client.put_bucket_lifecycle_configuration(
        Bucket=bucket, LifecycleConfiguration={"Rules": rules}
    )
    return current_rules(client, bucket)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m upload_svc.lifecycle",
        description="Expire anonymous uploads in the S3 bucket after ANONYMOUS_RETENTION_DAYS.",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the rule, change nothing on the bucket"
    )
    args = parser.parse_args(argv)
    settings = load_settings(UploadSettings)
    if settings.storage_backend != "s3":
        print("STORAGE_BACKEND is not s3: local storage expires uploads by its own sweep.")
        return 2
    if args.dry_run:
        print(json.dumps({"Rules": [expiry_rule(settings)]}, indent=2))
        return 0
    from upload_svc.storage.s3 import S3Storage

    client = S3Storage(settings, pool_size=1).client
    try:
        rules = apply_rule(client, settings)
    except (BotoCoreError, ClientError) as error:
        print(f"could not set the lifecycle rule on {settings.s3_bucket}: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"Bucket": settings.s3_bucket, "Rules": rules}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
