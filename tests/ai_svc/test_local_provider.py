"""The offline provider: ideas from what it measures in the photo, in the asked language."""

from __future__ import annotations

import io
import itertools
from datetime import datetime

import pytest
from PIL import Image

from ai_svc.presets import Catalogue, Preset, load_catalogue
from ai_svc.providers.base import Generation, PreviewImage
from ai_svc.providers.local import LocalProvider, PhrasesError, measure, season, time_of_day
from ai_svc.resilience import Deadline
from testbed.images import photo


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


@pytest.fixture(scope="module")
def local(catalogue: Catalogue) -> LocalProvider:
    return LocalProvider(catalogue)


def flat(colour: tuple[int, int, int], size: tuple[int, int] = (900, 600)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "JPEG")
    return out.getvalue()


def preset(**fields: object) -> Preset:
    values = {"template": "social_post", "tone": "friendly", "language": "en", "count": 3}
    return Preset(**{**values, **fields})  # type: ignore[arg-type]


def text_of(generation: Generation) -> str:
    return " ".join(
        f"{idea.title} {idea.body} {' '.join(idea.hashtags)}" for idea in generation.ideas
    )


def generate(
    local: LocalProvider, catalogue: Catalogue, image: PreviewImage, **fields: object
) -> Generation:
    return local.generate(image, preset(**fields), catalogue, Deadline(5))


def test_same_photo_and_preset_give_the_same_ideas(
    local: LocalProvider, catalogue: Catalogue
) -> None:
    image = PreviewImage.of(photo(768, 576))
    first = generate(local, catalogue, image)
    again = generate(local, catalogue, image)
    assert first == again
    assert first.provider == "local"
    assert first.model == "local-v2"
    assert first.usage.total_tokens == 0


@pytest.mark.parametrize(
    ("language", "script"),
    [("ko", ("\uac00", "\ud7a3")), ("ja", ("\u3040", "\u30ff")), ("en", ("a", "z"))],
)
def test_ideas_are_in_the_requested_language(
    local: LocalProvider, catalogue: Catalogue, language: str, script: tuple[str, str]
) -> None:
    generation = generate(local, catalogue, PreviewImage.of(photo()), language=language)
    low, high = script
    assert all(
        any(low <= char <= high for char in idea.title + idea.body) for idea in generation.ideas
    )


def test_the_dominant_colour_brightness_and_orientation_are_measured(
    local: LocalProvider, catalogue: Catalogue
) -> None:
    red = generate(local, catalogue, PreviewImage.of(flat((205, 35, 35))), count=3)
    assert "#red" in red.ideas[0].hashtags
    assert "red" in text_of(red)

    dark = measure(flat((15, 15, 20)))
    bright = measure(flat((250, 250, 245)))
    assert dark.light == "dim"
    assert bright.light == "bright"
    assert measure(flat((90, 90, 90), (600, 900))).orientation == "portrait"
    assert measure(flat((90, 90, 90), (900, 600))).orientation == "landscape"
    assert measure(flat((90, 90, 90), (700, 700))).orientation == "square"

    dim_story = generate(
        local, catalogue, PreviewImage.of(flat((15, 15, 20))), template="story", count=3
    )
    assert "low-light" in text_of(dim_story)


def test_the_capture_time_gives_season_and_time_of_day(
    local: LocalProvider, catalogue: Catalogue
) -> None:
    data = photo(768, 576)
    summer_evening = PreviewImage.of(data, captured_at=datetime.fromisoformat("2025-07-14T19:30"))
    unknown = PreviewImage.of(data)

    dated = generate(local, catalogue, summer_evening, template="story", count=3)
    undated = generate(local, catalogue, unknown, template="story", count=3)

    assert "summer evening" in text_of(dated)
    assert all("#summer" in idea.hashtags for idea in dated.ideas)
    assert "summer" not in text_of(undated)
    korean = generate(local, catalogue, summer_evening, language="ko", template="story", count=3)
    assert "여름 저녁" in text_of(korean)


def test_time_of_day_and_seasons() -> None:
    at = datetime.fromisoformat
    assert time_of_day(at("2025-01-01T06:00")) == "morning"
    assert time_of_day(at("2025-01-01T13:00")) == "afternoon"
    assert time_of_day(at("2025-01-01T18:00")) == "evening"
    assert time_of_day(at("2025-01-01T23:30")) == "night"
    assert [season(at(f"2025-{month:02d}-10")) for month in (12, 1, 3, 6, 9, 11)] == [
        "winter",
        "winter",
        "spring",
        "summer",
        "autumn",
        "autumn",
    ]


def test_the_template_and_tone_shape_the_ideas(local: LocalProvider, catalogue: Catalogue) -> None:
    image = PreviewImage.of(photo())
    social = generate(local, catalogue, image, template="social_post", tone="witty")
    notes = generate(local, catalogue, image, template="study_notes", tone="witty")

    assert all(idea.body.endswith("Filters? Never heard of them.") for idea in social.ideas)
    assert all("#studynotes" in idea.hashtags for idea in notes.ideas)
    assert all(idea.body.startswith("Key facts") for idea in notes.ideas)


def test_every_preset_in_the_catalogue_can_be_written(
    local: LocalProvider, catalogue: Catalogue
) -> None:
    image = PreviewImage.of(photo(640, 480), captured_at=datetime.fromisoformat("2025-03-01T08:00"))
    for template, tone, language in itertools.product(
        catalogue.template_ids, catalogue.tone_ids, catalogue.language_codes
    ):
        generation = generate(
            local,
            catalogue,
            image,
            template=template,
            tone=tone,
            language=language,
            count=catalogue.count.max,
        )
        ideas = [(idea.title, idea.body) for idea in generation.ideas]
        assert len(ideas) == catalogue.count.max
        assert len(set(ideas)) == len(ideas), (template, tone, language)
        assert all("{" not in title + body for title, body in ideas)


def test_a_catalogue_language_without_phrases_stops_the_start(catalogue: Catalogue) -> None:
    data = catalogue.model_dump()
    data["languages"].append({"code": "fr", "name": "Français", "english": "French"})
    with pytest.raises(PhrasesError, match="language fr"):
        LocalProvider(Catalogue.model_validate(data))
