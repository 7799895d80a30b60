"""The offline provider: ideas from what can be measured in the image itself.

It lets the whole stack run with no API key and no network. Its ideas are
deterministic for an image and preset (the same photo gives the same ideas), built
from the dominant colours, brightness and orientation of the preview, and phrased in
the requested language. Every result says ``provider: "local"``.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageStat

from ai_svc.presets import Catalogue, Preset
from ai_svc.providers.base import Generation, Idea, Usage

MODEL = "local-v1"

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

WORDS: dict[str, dict[str, str]] = {
    "en": {
        "red": "red",
        "orange": "orange",
        "yellow": "yellow",
        "green": "green",
        "teal": "teal",
        "blue": "blue",
        "purple": "purple",
        "pink": "pink",
        "brown": "brown",
        "white": "white",
        "grey": "grey",
        "black": "black",
        "bright": "bright",
        "dim": "low-light",
        "balanced": "softly lit",
        "portrait": "portrait",
        "landscape": "landscape",
        "square": "square",
    },
    "ko": {
        "red": "빨간",
        "orange": "주황빛",
        "yellow": "노란",
        "green": "초록빛",
        "teal": "청록빛",
        "blue": "파란",
        "purple": "보랏빛",
        "pink": "분홍빛",
        "brown": "갈색",
        "white": "하얀",
        "grey": "회색",
        "black": "검은",
        "bright": "밝은",
        "dim": "어스름한",
        "balanced": "은은한",
        "portrait": "세로",
        "landscape": "가로",
        "square": "정사각",
    },
    "ja": {
        "red": "赤い",
        "orange": "オレンジ色の",
        "yellow": "黄色い",
        "green": "緑の",
        "teal": "青緑の",
        "blue": "青い",
        "purple": "紫の",
        "pink": "ピンクの",
        "brown": "茶色の",
        "white": "白い",
        "grey": "灰色の",
        "black": "黒い",
        "bright": "明るい",
        "dim": "薄暗い",
        "balanced": "やわらかな光の",
        "portrait": "縦長",
        "landscape": "横長",
        "square": "正方形",
    },
}

PHRASES: dict[str, list[tuple[str, str]]] = {
    "en": [
        (
            "A {light} moment in {colour}",
            "A {light} {shape} frame where {colour} and {second} "
            "set the mood. Share what made you stop and take it.",
        ),
        (
            "{colour_cap} story",
            "The {colour} tones carry this {shape} shot; {second} adds "
            "contrast. Try telling the story behind it in one line.",
        ),
        (
            "Notes on {colour} and {second}",
            "A {light} scene, mostly {colour} with touches of "
            "{second}. What would you name this place?",
        ),
        (
            "{light_cap} {shape}",
            "Keep it simple: a {light} {shape} photo, {colour} first, "
            "{second} second. Ask your followers what they see.",
        ),
        (
            "Colour of the day: {colour}",
            "{colour_cap} leads, {second} follows, all in a {light} "
            "light. A small reminder to look around.",
        ),
    ],
    "ko": [
        (
            "{colour}{light_sep}순간",
            "{colour} 색과 {second} 색이 분위기를 만드는 {light} {shape} "
            "사진이에요. 이 장면에서 멈춘 이유를 나눠 보세요.",
        ),
        (
            "{colour} 이야기",
            "{colour} 톤이 이끄는 {shape} 사진, {second} 색이 대비를 더해요. "
            "사진 뒤의 이야기를 한 줄로 남겨 보세요.",
        ),
        (
            "{colour} 그리고 {second}",
            "대부분 {colour} 색에 {second} 색이 살짝 더해진 {light} "
            "장면이에요. 이곳에 이름을 붙인다면?",
        ),
        (
            "{light} {shape} 사진",
            "단순하게: {colour} 색이 먼저, {second} 색이 다음인 {light} "
            "사진이에요. 무엇이 보이는지 물어보세요.",
        ),
        (
            "오늘의 색: {colour}",
            "{light} 빛 속에서 {colour} 색이 앞서고 {second} 색이 뒤따라요. "
            "주위를 둘러보라는 작은 신호예요.",
        ),
    ],
    "ja": [
        (
            "{colour}{light}ひととき",
            "{colour}色と{second}色が雰囲気をつくる{light}{shape}の写真。"
            "思わず撮った理由をシェアしてみよう。",
        ),
        (
            "{colour}物語",
            "{colour}トーンが主役の{shape}の一枚、{second}がコントラストを添える。"
            "写真の裏にある物語を一行で。",
        ),
        (
            "{colour}と{second}のメモ",
            "ほとんどが{colour}、ところどころ{second}の{light}景色。この場所に名前をつけるなら？",
        ),
        (
            "{light}{shape}",
            "シンプルに：まず{colour}、次に{second}の{light}写真。"
            "何が見えるかフォロワーに聞いてみよう。",
        ),
        (
            "今日の色：{colour}",
            "{light}光の中、{colour}が先に立ち、{second}が続く。まわりを見渡す小さなきっかけに。",
        ),
    ],
}


@dataclass(frozen=True)
class Measurements:
    colours: tuple[str, str]
    brightness: float
    orientation: str

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


def measure(image_bytes: bytes) -> Measurements:
    with Image.open(io.BytesIO(image_bytes)) as image:
        image.draft("RGB", (128, 128))
        small = image.convert("RGB")
        small.thumbnail((64, 64))
        width, height = image.size
    brightness = ImageStat.Stat(small.convert("L")).mean[0]
    palette = small.quantize(colors=6, method=Image.Quantize.MEDIANCUT)
    counts = sorted(palette.getcolors() or [], reverse=True)
    raw_palette = palette.getpalette() or []
    names: list[str] = []
    for _, index in counts:
        name = nearest_colour(tuple(raw_palette[index * 3 : index * 3 + 3]))
        if name not in names:
            names.append(name)
    names += ["grey", "white"]
    if width > height * 1.1:
        orientation = "landscape"
    elif height > width * 1.1:
        orientation = "portrait"
    else:
        orientation = "square"
    return Measurements(
        colours=(names[0], names[1]), brightness=brightness, orientation=orientation
    )


class LocalProvider:
    name = "local"
    model = MODEL

    def generate(self, image: bytes, preset: Preset, catalogue: Catalogue) -> Generation:
        found = measure(image)
        words = WORDS.get(preset.language, WORDS["en"])
        phrases = PHRASES.get(preset.language, PHRASES["en"])
        values = {
            "colour": words[found.colours[0]],
            "second": words[found.colours[1]],
            "light": words[found.light],
            "shape": words[found.orientation],
            "light_sep": " ",
        }
        values["colour_cap"] = values["colour"][:1].upper() + values["colour"][1:]
        values["light_cap"] = values["light"][:1].upper() + values["light"][1:]
        template = catalogue.template_ids[preset.template]
        start = sum(image[:64]) % len(phrases)
        ideas = []
        for number in range(preset.count):
            title, body = phrases[(start + number) % len(phrases)]
            ideas.append(
                Idea(
                    title=title.format(**values),
                    body=body.format(**values),
                    hashtags=[
                        f"#{found.colours[0]}",
                        f"#{found.orientation}",
                        f"#{template.id.replace('_', '')}",
                        f"#{preset.tone}",
                    ],
                )
            )
        return Generation(ideas=ideas, provider=self.name, model=self.model, usage=Usage())
