"""Write the values table of helm/ideasnap/README.md from the comments in values.yaml.

`make chart-docs` runs this. A key is documented by a comment that starts with ``# --``
on the lines right above it (helm-docs' convention; a comment may go on over several
``#`` lines). The table lists each documented key by its full dotted path, with its
default as values.yaml sets it, and replaces whatever stands between the README's
``<!-- values:start -->`` and ``<!-- values:end -->`` markers. With ``--check``
nothing is written: the exit status is 1 when the README's table is stale (a deploy
test runs the same comparison).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "ideasnap"
START = "<!-- values:start -->"
END = "<!-- values:end -->"
KEY = re.compile(r"^(?P<indent>\s*)(?P<key>[A-Za-z0-9_.-]+):(?:\s|$)")
COMMENT = re.compile(r"^\s*#\s?(?P<text>.*)$")


def documented_keys(values_text: str) -> list[tuple[str, str]]:
    """(dotted key, description) for every key with a ``# --`` comment, in file order."""
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    found: list[tuple[str, str]] = []
    for line in values_text.splitlines():
        comment = COMMENT.match(line)
        if comment:
            text = comment.group("text")
            if text.startswith("-- "):
                pending = [text[3:].strip()]
            elif pending is not None:
                pending.append(text.strip())
            continue
        key = KEY.match(line)
        if not key:
            pending = None
            continue
        indent = len(key.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group("key")))
        if pending is not None:
            found.append((".".join(name for _, name in stack), " ".join(pending)))
            pending = None
    return found


def default_of(values: dict[str, Any], dotted: str) -> Any:
    node: Any = values
    for part in dotted.split("."):
        node = node[part]
    return node


def cell(text: str) -> str:
    return text.replace("|", "\\|")


def values_table(values_text: str) -> str:
    values = yaml.safe_load(values_text)
    rows = ["| key | default | description |", "|---|---|---|"]
    for dotted, description in documented_keys(values_text):
        default = json.dumps(default_of(values, dotted), separators=(",", ":"))
        rows.append(f"| `{dotted}` | `{cell(default)}` | {cell(description)} |")
    return "\n".join(rows) + "\n"


def with_table(readme: str, table: str) -> str:
    before, start, rest = readme.partition(START)
    _, end, after = rest.partition(END)
    if not start or not end:
        raise SystemExit(f"README.md needs the markers {START} and {END}")
    return f"{before}{START}\n{table}{END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report whether it is stale")
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args(argv)
    readme_path = args.chart / "README.md"
    readme = readme_path.read_text()
    expected = with_table(readme, values_table((args.chart / "values.yaml").read_text()))
    if args.check:
        if expected != readme:
            print(f"{readme_path} is out of date: run `make chart-docs`", file=sys.stderr)
            return 1
        print(f"{readme_path} matches values.yaml")
        return 0
    readme_path.write_text(expected)
    print(f"wrote the values table of {readme_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
