"""Removal of secrets from anything that leaves the process: log lines and Sentry events.

Both logs and Sentry go through the same two rules, so a value hidden in one is hidden
in the other: keys that name a secret lose their value, and values that look like a
credential (bearer tokens, Google API keys, DSNs with a key) are masked wherever they
appear, even inside free text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

REDACTED = "[redacted]"

SECRET_KEY = re.compile(
    r"(?:^|[_-])(?:authorization|api[_-]?key|apikey|secret|password|passwd|token|"
    r"cookie|credentials?|private[_-]?key|dsn|session[_-]?id)(?:$|[_-])",
    re.IGNORECASE,
)

SECRET_VALUE = re.compile(
    r"(?i:bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|AIza[0-9A-Za-z_-]{30,}"
    r"|\b(?:sk|pk|rk)[-_](?:live|test)?[-_]?[A-Za-z0-9]{16,}"
    r"|(?<=://)[^/@\s:]+(?::[^/@\s]+)?(?=@)"
    r"|(?i:(?:api[_-]?key|key|token|secret|password)=)[^&\s\"']+"
)


@lru_cache(maxsize=1024)
def is_secret_key(key: str) -> bool:
    """Whether a field's name says it holds a secret; cached: a service logs few names."""
    return SECRET_KEY.search(key) is not None


# Every alternative of SECRET_VALUE needs one of these to match, so a string without any
# of them cannot hold a credential; most logged values (paths, ids, timestamps, levels)
# have none, and this test costs a fifth of running SECRET_VALUE over them.
MAY_HOLD_SECRET = re.compile(r"\s|AIza|[spr]k[-_]|://|=")


def redact_text(text: str) -> str:
    if MAY_HOLD_SECRET.search(text) is None:
        return text
    return SECRET_VALUE.sub(REDACTED, text)


def redact(value: Any, depth: int = 0) -> Any:
    """Return a copy of ``value`` with secret keys and secret-looking strings masked."""
    if depth > 12:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and is_secret_key(key) and item not in (None, "")
            else redact(item, depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(redact(item, depth + 1) for item in value)
    return value
