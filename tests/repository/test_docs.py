"""The docs stand on their own: every relative link resolves, and the architecture's folder
table is the tree."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def tracked(*patterns: str) -> list[str]:
    result = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", *patterns],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return sorted(set(result.stdout.split()))


def documents() -> list[str]:
    """README.md, docs/, the services', the chart's and bench's READMEs."""
    return [
        path
        for path in tracked("README.md", "docs/*.md", "*/README.md", "helm/ideasnap/README.md")
        if not path.startswith("tests/")
    ]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", path.read_text()), re.M):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return frozenset(found)


def relative_links(path: str) -> list[str]:
    text = FENCE.sub("", (ROOT / path).read_text())
    return [t for t in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def test_the_documents_are_found() -> None:
    docs = documents()
    assert {"README.md", "docs/architecture.md", "helm/ideasnap/README.md"} <= set(docs)
    assert {"ai-svc/README.md", "upload-svc/README.md"} <= set(docs)


@pytest.mark.parametrize("document", documents())
def test_every_relative_link_resolves_to_a_file_and_anchor(document: str) -> None:
    broken = []
    for target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        destination = (ROOT / document).parent / file_part if file_part else ROOT / document
        destination = destination.resolve()
        if not destination.exists() or not destination.is_relative_to(ROOT):
            broken.append(f"{target}: no such file")
            continue
        if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor}")
    assert broken == []


def test_the_readme_links_the_architecture_in_the_tree_not_outside_it() -> None:
    for document in documents():
        assert "shared/ARCHITECTURE.md" not in (ROOT / document).read_text(), document
    assert "docs/architecture.md" in relative_links("README.md")


def test_the_link_check_catches_a_missing_file_and_a_wrong_anchor() -> None:
    assert slug("What `make test` checks") == "what-make-test-checks"
    assert slug("1. Build and push the images") == "1-build-and-push-the-images"
    assert "ideasnappublicendpointdown" in anchors(ROOT / "docs" / "runbooks.md")
    assert "no-such-section" not in anchors(ROOT / "docs" / "deploy.md")


def folder_table() -> list[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## The tree", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)/` \|", section, flags=re.MULTILINE)


def test_the_architecture_folder_table_lists_every_top_level_folder() -> None:
    folders = {path.split("/", 1)[0] for path in tracked() if "/" in path}
    listed = folder_table()
    assert len(listed) == len(set(listed))
    assert set(listed) == folders
    for folder in listed:
        assert (ROOT / folder).is_dir(), folder
