"""What every provider takes and returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ai_svc.presets import Catalogue, Preset
from ai_svc.resilience import AnsweredUnusable, Deadline

MAX_HASHTAGS = 8


@dataclass(frozen=True)
class PreviewImage:
    """The image a provider sees: upload-svc's preview, never the original upload."""

    data: bytes
    sha256: str
    """Of the original upload (``X-Upload-Sha256``): the result cache's key."""
    mime_type: str = "image/jpeg"
    captured_at: datetime | None = None

    @classmethod
    def of(cls, data: bytes, captured_at: datetime | None = None) -> PreviewImage:
        """A preview keyed by its own digest, for callers that have no upload record."""
        return cls(data=data, sha256=hashlib.sha256(data).hexdigest(), captured_at=captured_at)


class Idea(BaseModel):
    model_config = ConfigDict(extra="ignore")
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=4000)
    hashtags: list[str] = Field(default_factory=list)

    @field_validator("title", "body", mode="before")
    @classmethod
    def _stripped(cls, value: object) -> object:
        return value.strip() if isinstance(value, str) else value

    @field_validator("hashtags", mode="before")
    @classmethod
    def _tidy_hashtags(cls, value: object) -> object:
        """``#word`` each, no spaces, no repeats, at most eight: models vary on all four."""
        if not isinstance(value, list):
            return value
        tidy: list[str] = []
        for item in value:
            if not isinstance(item, str):
                continue
            word = "".join(item.split()).lstrip("#")
            tag = f"#{word}"
            if word and tag.lower() not in {seen.lower() for seen in tidy}:
                tidy.append(tag)
        return tidy[:MAX_HASHTAGS]


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            thinking_tokens=self.thinking_tokens + other.thinking_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class Generation(BaseModel):
    ideas: list[Idea]
    provider: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    cached: bool = False


class ContentBlocked(AnsweredUnusable):
    """The model's safety filters refused the prompt or its own answer."""

    def __init__(self, reason: str, stage: str) -> None:
        super().__init__(f"blocked ({stage}): {reason}")
        self.reason = reason
        self.stage = stage


class InvalidOutput(AnsweredUnusable):
    """The model answered, but not with ideas we can use (cut short, not JSON, wrong shape)."""

    def __init__(self, reason: str, detail: str = "", model: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.model = model


class Provider(Protocol):
    name: str
    model: str

    def generate(
        self, image: PreviewImage, preset: Preset, catalogue: Catalogue, deadline: Deadline
    ) -> Generation:
        """Ideas for ``image``; nothing here may wait past ``deadline``."""
        ...
