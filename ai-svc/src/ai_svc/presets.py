"""Presets as data: templates, tones and languages, validated when the service starts.

The catalogue lives in ``presets.yaml`` (or ``PRESETS_FILE``) so product changes to
the offer are data changes. A broken file stops the service at start, not mid-request.
"""

from __future__ import annotations

from functools import cached_property
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from chassis.errors import ApiError


class Language(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    code: str = Field(pattern=r"^[a-z]{2}(-[A-Z]{2})?$")
    name: str = Field(min_length=1, description="the language's own name, shown to people")
    english: str = Field(min_length=1, description="its English name, used in prompts")


class Tone(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z_]+$")
    name: str = Field(min_length=1)
    instruction: str = Field(min_length=1)


class Template(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=r"^[a-z_]+$")
    name: str = Field(min_length=1)
    description: str = Field(min_length=1)
    instruction: str = Field(min_length=1)


class CountRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    min: int = Field(ge=1)
    max: int = Field(le=10)

    @model_validator(mode="after")
    def _ordered(self) -> CountRange:
        if self.min > self.max:
            raise ValueError("count.min must not exceed count.max")
        return self


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    template: str
    tone: str
    language: str
    count: int


class Preset(BaseModel):
    """One request's choice: which template, in which tone and language, how many ideas."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    template: str
    tone: str
    language: str
    count: int

    @property
    def key(self) -> str:
        return f"{self.template}:{self.tone}:{self.language}:{self.count}"


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    defaults: Defaults
    count: CountRange
    languages: list[Language] = Field(min_length=1)
    tones: list[Tone] = Field(min_length=1)
    templates: list[Template] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        for kind, items in (
            ("language", [item.code for item in self.languages]),
            ("tone", [item.id for item in self.tones]),
            ("template", [item.id for item in self.templates]),
        ):
            if len(set(items)) != len(items):
                raise ValueError(f"duplicate {kind} ids")
        default_ok = (
            self.defaults.template in self.template_ids
            and self.defaults.tone in self.tone_ids
            and self.defaults.language in self.language_codes
            and self.count.min <= self.defaults.count <= self.count.max
        )
        if not default_ok:
            raise ValueError("defaults must name an offered template, tone, language and count")
        return self

    @cached_property
    def template_ids(self) -> dict[str, Template]:
        return {item.id: item for item in self.templates}

    @cached_property
    def tone_ids(self) -> dict[str, Tone]:
        return {item.id: item for item in self.tones}

    @cached_property
    def language_codes(self) -> dict[str, Language]:
        return {item.code: item for item in self.languages}

    def resolve(
        self,
        template: str | None,
        tone: str | None,
        language: str | None,
        count: int | None,
    ) -> Preset:
        """A preset from a request's fields, defaults filled in, or 422 ``invalid_preset``."""
        preset = Preset(
            template=template or self.defaults.template,
            tone=tone or self.defaults.tone,
            language=language or self.defaults.language,
            count=self.defaults.count if count is None else count,
        )
        problems = {}
        if preset.template not in self.template_ids:
            problems["template"] = sorted(self.template_ids)
        if preset.tone not in self.tone_ids:
            problems["tone"] = sorted(self.tone_ids)
        if preset.language not in self.language_codes:
            problems["language"] = sorted(self.language_codes)
        if not self.count.min <= preset.count <= self.count.max:
            problems["count"] = [self.count.min, self.count.max]
        if problems:
            raise ApiError(
                422,
                "invalid_preset",
                "Choose a template, tone and language from GET /v1/presets.",
                details={"allowed": problems},
            )
        return preset

    def public(self) -> dict:
        return {
            "templates": [
                {"id": t.id, "name": t.name, "description": t.description} for t in self.templates
            ],
            "tones": [{"id": t.id, "name": t.name} for t in self.tones],
            "languages": [{"code": lang.code, "name": lang.name} for lang in self.languages],
            "count": {"min": self.count.min, "max": self.count.max},
            "defaults": self.defaults.model_dump(),
        }


class PresetsError(ValueError):
    """The presets file is missing or invalid: the service must not start with it."""


def load_catalogue(path: Path | None = None) -> Catalogue:
    """The catalogue from ``path`` (``PRESETS_FILE``) or the packaged default, validated."""
    source = str(path) if path is not None else "the packaged presets.yaml"
    try:
        if path is None:
            text = resources.files("ai_svc").joinpath("presets.yaml").read_text(encoding="utf-8")
        else:
            text = path.read_text(encoding="utf-8")
        return Catalogue.model_validate(yaml.safe_load(text))
    except (OSError, yaml.YAMLError, ValidationError) as error:
        raise PresetsError(f"invalid presets file {source}: {error}") from None
