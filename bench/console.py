"""Progress lines on stderr, so a 20-minute run shows where it is."""

from __future__ import annotations

import sys
from datetime import UTC, datetime


def say(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)
