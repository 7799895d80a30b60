"""What the model is asked, and in which shape it must answer.

The words come from the preset catalogue (data); this module only assembles them and
the response schema. The output budget is explicit: ``maxOutputTokens`` covers the
ideas *and* the thinking budget, because on Gemini 2.5 thinking tokens are taken from
the same ``maxOutputTokens``; leaving them out is how answers end in MAX_TOKENS. The
strict variant, used once after a truncated or malformed answer, turns thinking off
and asks for shorter ideas, so the whole budget goes to the answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ai_svc.presets import Catalogue, Preset

SYSTEM = (
    "You are IdeaSnap. People send you one photo and you suggest ideas inspired by it. "
    "Look closely at the photo: subject, setting, light, colours, mood. Be specific to "
    "this photo, never generic. Do not identify real people or guess private details. "
    "Answer with JSON only, matching the response schema exactly."
)
STRICT_BODY_CHARS = 280
JSON_OVERHEAD_TOKENS = 64


@dataclass(frozen=True)
class Budget:
    max_output_tokens: int
    thinking_budget: int | None


@dataclass(frozen=True)
class PromptRequest:
    system: str
    text: str
    schema: dict[str, Any]
    budget: Budget


def response_schema(count: int, hashtags_max: int = 6) -> dict[str, Any]:
    """OpenAPI-subset schema (Gemini's ``responseSchema``) for exactly ``count`` ideas."""
    return {
        "type": "OBJECT",
        "properties": {
            "ideas": {
                "type": "ARRAY",
                "minItems": count,
                "maxItems": count,
                "items": {
                    "type": "OBJECT",
                    "properties": {
                        "title": {"type": "STRING", "description": "a short title"},
                        "body": {"type": "STRING", "description": "the idea itself"},
                        "hashtags": {
                            "type": "ARRAY",
                            "items": {"type": "STRING"},
                            "maxItems": hashtags_max,
                        },
                    },
                    "required": ["title", "body", "hashtags"],
                    "propertyOrdering": ["title", "body", "hashtags"],
                },
            }
        },
        "required": ["ideas"],
    }


def budget_for(
    count: int, *, tokens_per_idea: int, thinking_budget: int | None, strict: bool
) -> Budget:
    answer = count * tokens_per_idea + JSON_OVERHEAD_TOKENS
    if strict:
        return Budget(max_output_tokens=answer, thinking_budget=0)
    if thinking_budget is None or thinking_budget < 0:
        # Dynamic thinking has no fixed size: leave it a generous allowance.
        return Budget(max_output_tokens=answer + 2048, thinking_budget=thinking_budget)
    return Budget(max_output_tokens=answer + thinking_budget, thinking_budget=thinking_budget)


def build_prompt(
    preset: Preset,
    catalogue: Catalogue,
    *,
    tokens_per_idea: int,
    thinking_budget: int | None,
    strict: bool = False,
) -> PromptRequest:
    template = catalogue.template_ids[preset.template]
    tone = catalogue.tone_ids[preset.tone]
    language = catalogue.language_codes[preset.language]
    lines = [
        f"Task: {template.instruction}",
        f"Give exactly {preset.count} different ideas.",
        f"Tone: {tone.instruction}.",
        f"Language: write every title, body and hashtag in {language.english} "
        f"({language.name}, {language.code}).",
        "Hashtags: three to six, each one word starting with #.",
    ]
    if strict:
        lines.append(
            f"Keep each body under {STRICT_BODY_CHARS} characters and each title under "
            "60 characters. Output the JSON object only."
        )
    return PromptRequest(
        system=SYSTEM,
        text="\n".join(lines),
        schema=response_schema(preset.count),
        budget=budget_for(
            preset.count,
            tokens_per_idea=tokens_per_idea,
            thinking_budget=thinking_budget,
            strict=strict,
        ),
    )
