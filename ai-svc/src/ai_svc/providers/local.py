"""The offline provider: ideas from what can be measured in the image itself.

It lets the whole stack run with no API key and no network. It measures the preview's
dominant colours, brightness and orientation, reads the capture time upload-svc knows
(season and time of day), and fills the preset's sentence patterns, in the requested
language, from ``local_phrases.yaml``. The same photo and preset always give the same
ideas. Every result says ``provider: "local"``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from typing import Any

import yaml
from PIL import Image, ImageStat
from pydantic import BaseModel, ConfigDict, Field

from ai_svc.presets import Catalogue, Preset
from ai_svc.providers.base import Generation, Idea, PreviewImage, Usage
from ai_svc.resilience import Deadline

MODEL = "local-v2"

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 40, 40),
    "orange": (230, 130, 30),
    "yellow": (230, 210, 50),
    "green": (60, 160, 70),
    "teal": (40, 150, 150),
    "blue": (40, 90, 200),
    "purple": (130, 60, 170),
    "pink": (230, 130, 180),
    "brown": (120, 80, 40),
    "white": (240, 240, 240),
    "grey": (128, 128, 128),
    "black": (20, 20, 20),
}
LIGHTS = ("bright", "dim", "balanced")
ORIENTATIONS = ("portrait", "landscape", "square")
TIMES = ("morning", "afternoon", "evening", "night")
SEASONS = ("spring", "summer", "autumn", "winter")


class Pattern(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str = Field(min_length=1)
    body: str = Field(min_length=1)


class TemplatePhrases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    with_tone: bool
    hashtags: list[str]
    ideas: list[Pattern] = Field(min_length=1)


class LanguagePhrases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    colours: dict[str, str]
    light: dict[str, str]
    orientation: dict[str, str]
    time: dict[str, str]
    season: dict[str, str]
    when: str
    when_unknown: str
    sentence_gap: str = " "
    tones: dict[str, str]
    templates: dict[str, TemplatePhrases]

    def missing_words(self) -> list[str]:
        wanted = {
            "colours": COLOURS,
            "light": LIGHTS,
            "orientation": ORIENTATIONS,
            "time": TIMES,
            "season": SEASONS,
        }
        return [
            f"{group}.{word}"
            for group, words in wanted.items()
            for word in words
            if word not in getattr(self, group)
        ]


class PhrasesError(ValueError):
    """The phrase book does not cover the catalogue: the service must not start."""


def load_phrases(catalogue: Catalogue, text: str | None = None) -> dict[str, LanguagePhrases]:
    """The phrase book, checked to cover every offered language and template.

    A tone without a line here is still served: its ideas just carry no closing line.
    """
    if text is None:
        text = resources.files("ai_svc").joinpath("local_phrases.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise PhrasesError("local_phrases.yaml must map language codes to phrases")
    phrases = {code: LanguagePhrases.model_validate(value) for code, value in raw.items()}
    problems = []
    for language in catalogue.languages:
        book = phrases.get(language.code)
        if book is None:
            problems.append(f"language {language.code}")
            continue
        problems += [f"{language.code}: {word}" for word in book.missing_words()]
        problems += [
            f"{language.code}: template {template}"
            for template in catalogue.template_ids
            if template not in book.templates
        ]
    if problems:
        raise PhrasesError("local_phrases.yaml is missing " + ", ".join(problems))
    return phrases


@dataclass(frozen=True)
class Measurements:
    colours: tuple[str, ...]
    brightness: float
    orientation: str
    time_of_day: str | None = None
    season: str | None = None

    @property
    def light(self) -> str:
        if self.brightness > 170:
            return "bright"
        if self.brightness < 70:
            return "dim"
        return "balanced"


def nearest_colour(rgb: tuple[int, ...]) -> str:
    return min(
        COLOURS,
        key=lambda name: sum((a - b) ** 2 for a, b in zip(COLOURS[name], rgb[:3], strict=True)),
    )


def time_of_day(moment: datetime) -> str:
    hour = moment.hour
    if 5 <= hour < 11:
        return "morning"
    if 11 <= hour < 17:
        return "afternoon"
    if 17 <= hour < 21:
        return "evening"
    return "night"


def season(moment: datetime) -> str:
    """Meteorological seasons of the northern hemisphere, where most users live."""
    return SEASONS[((moment.month % 12) // 3 + 3) % 4]


def measure(image_bytes: bytes, captured_at: datetime | None = None) -> Measurements:
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.draft("RGB", (128, 128))
        width, height = image.size
        small = image.convert("RGB")
    small.thumbnail((64, 64))
    brightness = ImageStat.Stat(small.convert("L")).mean[0]
    palette = small.quantize(colors=6, method=Image.Quantize.MEDIANCUT)
    counts = sorted(palette.getcolors() or [], reverse=True)
    raw_palette = palette.getpalette() or []
    names: list[str] = []
    for _, index in counts:
        name = nearest_colour(tuple(raw_palette[index * 3 : index * 3 + 3]))
        if name not in names:
            names.append(name)
    for filler in ("grey", "white", "black"):
        if len(names) >= 3:
            break
        if filler not in names:
            names.append(filler)
    if width > height * 1.1:
        orientation = "landscape"
    elif height > width * 1.1:
        orientation = "portrait"
    else:
        orientation = "square"
    return Measurements(
        colours=tuple(names[:3]),
        brightness=brightness,
        orientation=orientation,
        time_of_day=time_of_day(captured_at) if captured_at else None,
        season=season(captured_at) if captured_at else None,
    )


def capitalised(text: str) -> str:
    return text[:1].upper() + text[1:]


def tag(word: str) -> str:
    return "#" + "".join(character for character in word if character.isalnum())


class LocalProvider:
    name = "local"
    model = MODEL

    def __init__(self, catalogue: Catalogue) -> None:
        self.phrases = load_phrases(catalogue)

    def generate(
        self, image: PreviewImage, preset: Preset, catalogue: Catalogue, deadline: Deadline
    ) -> Generation:
        """Milliseconds of local work: the deadline cannot be at risk here."""
        found = measure(image.data, image.captured_at)
        book = self.phrases[preset.language]
        template = book.templates[preset.template]
        when = (
            book.when.format(season=book.season[found.season], time=book.time[found.time_of_day])
            if found.time_of_day and found.season
            else book.when_unknown
        )
        start = int(image.sha256[:8], 16) if image.sha256 else 0
        ideas = []
        for number in range(preset.count):
            pattern = template.ideas[(start + number) % len(template.ideas)]
            # Past the patterns' count, rotate the colours so every idea differs.
            shift = number // len(template.ideas)
            first = found.colours[shift % len(found.colours)]
            second = found.colours[(shift + 1) % len(found.colours)]
            values: dict[str, Any] = {
                "colour": book.colours[first],
                "second": book.colours[second],
                "light": book.light[found.light],
                "shape": book.orientation[found.orientation],
                "when": when,
            }
            values |= {f"{key}_cap": capitalised(str(values[key])) for key in list(values)}
            body = pattern.body.format(**values)
            tone_line = book.tones.get(preset.tone)
            if template.with_tone and tone_line:
                body = f"{body}{book.sentence_gap}{tone_line}"
            hashtags = [tag(book.colours[first]), *template.hashtags]
            if found.season:
                hashtags.append(tag(book.season[found.season]))
            ideas.append(Idea(title=pattern.title.format(**values), body=body, hashtags=hashtags))
        return Generation(ideas=ideas, provider=self.name, model=self.model, usage=Usage())
