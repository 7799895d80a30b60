"""What every provider takes and returns."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel, Field

from ai_svc.presets import Catalogue, Preset


class Idea(BaseModel):
    title: str = Field(min_length=1, max_length=200)
    body: str = Field(min_length=1, max_length=4000)
    hashtags: list[str] = Field(default_factory=list, max_length=12)


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    thinking_tokens: int = 0
    total_tokens: int = 0


class Generation(BaseModel):
    ideas: list[Idea]
    provider: str
    model: str
    usage: Usage = Field(default_factory=Usage)
    cached: bool = False


class Provider(Protocol):
    name: str
    model: str

    def generate(self, image: bytes, preset: Preset, catalogue: Catalogue) -> Generation: ...
