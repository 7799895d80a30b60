"""The AI disclaimer, in every language the product speaks, from one file.

ai-svc puts it in every ideas answer (JSON or streamed, fresh or cached) and the
gateway shows the same statement on its public ``/ai-disclaimer`` page. Services may not
import each other, so the texts live here as data (``texts/ai_disclaimer.json``): one
edit changes both, and a test checks that every language on offer has a text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources

DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Disclaimer:
    language: str
    statement: str
    """Shown with every set of ideas, and first on the public page."""
    title: str


@cache
def disclaimers() -> dict[str, Disclaimer]:
    raw = json.loads(
        resources.files("chassis").joinpath("texts", "ai_disclaimer.json").read_text("utf-8")
    )
    return {
        language: Disclaimer(language=language, statement=entry["statement"], title=entry["title"])
        for language, entry in raw.items()
    }


def disclaimer_for(language: str | None) -> Disclaimer:
    """The text in ``language`` (``ko``, ``ja-JP``…), else English."""
    known = disclaimers()
    if language:
        code = language.split("-")[0].lower()
        if code in known:
            return known[code]
    return known[DEFAULT_LANGUAGE]
