"""A small Dockerfile reader: stages and their instructions, continuation lines joined."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Instruction:
    keyword: str
    arguments: str

    @property
    def words(self) -> list[str]:
        """Exec-form (JSON) or shell-form arguments as a list."""
        text = self.arguments.strip()
        if text.startswith("["):
            return json.loads(text)
        return shlex.split(text)

    def flags(self) -> dict[str, str]:
        """Leading --name=value flags (COPY --from=..., RUN --mount=...)."""
        found = {}
        for word in self.words:
            if not word.startswith("--"):
                break
            name, _, value = word[2:].partition("=")
            found[name] = value
        return found

    def operands(self) -> list[str]:
        return [word for word in self.words if not word.startswith("--")]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ENV"):
            for word in shlex.split(instruction.arguments.replace("\\\n", " ")):
                name, _, value = word.partition("=")
                values[name] = value
        return values

    def args(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for instruction in self.all("ARG"):
            name, _, value = instruction.arguments.strip().partition("=")
            values[name] = value
        return values


def logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            current += raw.rstrip()[:-1] + " "
            continue
        lines.append(current + raw)
        current = ""
    return lines


def parse(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.match(r"^(\S+)(?:\s+AS\s+(\S+))?$", arguments.strip(), re.IGNORECASE)
            assert match, f"unreadable FROM in {path}: {arguments}"
            stages.append(Stage(base=match.group(1), name=match.group(2)))
        else:
            assert stages, f"{keyword} before FROM in {path}"
            stages[-1].instructions.append(Instruction(keyword, arguments.strip()))
    return stages
