"""The README and the manual in docs/: every relative link resolves (the file, and the #anchor
in it, as GitHub makes heading anchors), every page of docs/ is reachable from the manual's
index, nothing points outside the repository or at a tracker's numbers, and the README keeps
the two commands a new machine starts with (the test command being the one CI runs)."""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_MAX_LINES = 150


def _tokens(path: Path) -> list[Token]:
    return MarkdownIt("commonmark").enable("table").parse(path.read_text())


def _inline_text(token: Token) -> str:
    return "".join(child.content for child in token.children or [] if child.type in
                   ("text", "code_inline", "softbreak", "html_inline"))  # fmt: skip


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (letters, digits, `-`,
    `_` and spaces kept), spaces made hyphens."""
    kept = "".join(
        char for char in heading.lower() if char in " -_" or unicodedata.category(char)[0] in "LN"
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a page; a repeated heading gets `-1`, `-2`... as on GitHub."""
    found: set[str] = set()
    tokens = _tokens(path)
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        base = slug(_inline_text(tokens[index + 1]))
        name, count = base, 0
        while name in found:
            count += 1
            name = f"{base}-{count}"
        found.add(name)
    return found


def links(path: Path) -> list[str]:
    """Every link target of a page (not those shown in code)."""
    targets = []
    for token in _tokens(path):
        for child in token.children or []:
            if child.type == "link_open":
                targets.append(str(child.attrs["href"]))
    return targets


def relative_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, the file it names, its anchor) for links inside the repository."""
    found = []
    for target in links(path):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc:
            continue
        file = (path.parent / unquote(parts.path)).resolve() if parts.path else path
        found.append((target, file, unquote(parts.fragment)))
    return found


def test_the_slugs_are_githubs() -> None:
    assert slug("Approving a plan: `--expect-hash` and signed plans") == (
        "approving-a-plan---expect-hash-and-signed-plans"
    )
    assert slug("1. Where the fleet stands: audit") == "1-where-the-fleet-stands-audit"
    assert slug("What `scripts/setup.sh` does") == "what-scriptssetupsh-does"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target, file, anchor in relative_links(page):
        if not file.is_relative_to(ROOT):
            broken.append(f"{target}: outside the repository")
        elif not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (file.suffix != ".md" or anchor not in anchors(file)):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_a_broken_link_and_a_missing_anchor_are_found(tmp_path: Path) -> None:
    """The check above fails on what it is for."""
    page = tmp_path / "page.md"
    page.write_text("# Title\n\n## A part\n\n[ok](#a-part) [gone](nowhere.md) [no](#b-part)\n")
    resolved = {target: (file.exists(), anchor in anchors(file) if file.exists() else None)
                for target, file, anchor in relative_links(page)}  # fmt: skip
    assert resolved == {
        "#a-part": (True, True),
        "nowhere.md": (False, None),
        "#b-part": (True, False),
    }


def test_every_docs_page_is_reachable_from_the_index() -> None:
    index = DOCS / "README.md"
    seen, todo = {index}, [index]
    while todo:
        page = todo.pop()
        for _, file, _ in relative_links(page):
            if file.parent == DOCS and file.suffix == ".md" and file.exists() and file not in seen:
                seen.add(file)
                todo.append(file)
    unreachable = sorted(p.name for p in set(DOCS.glob("*.md")) - seen)
    assert not unreachable, f"not reachable from docs/README.md: {unreachable}"
    assert any(file == index for _, file, _ in relative_links(README))  # the README links it


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_nothing_points_outside_the_repository_or_at_tracker_numbers(page: Path) -> None:
    text = page.read_text()
    assert "../shared" not in text and "BRIEF" not in text
    assert not re.findall(r"\bissues? #?\d+\b", text, re.IGNORECASE)


def test_the_readme_is_a_front_door() -> None:
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    fence = lines.index("```sh")
    first_block = lines[fence + 1 : lines.index("```", fence + 1)]
    commands = [line.split("#")[0].strip() for line in first_block if line.strip()[:1] != "#"]
    assert [c for c in commands if c] == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    # CI runs the README's test command
    assert "bash scripts/test.sh" in (ROOT / ".ci" / "run").read_text().splitlines()
    headings = {slug(line.lstrip("# ")) for line in lines if line.startswith("## ")}
    assert {"runbook", "exit-codes", "install", "quick-start", "why"} <= headings


REPO_PATH = re.compile(r"^(orchestrator|tests|bench|playbooks|scripts|docs)/[\w./-]*$")


def code_paths(path: Path) -> list[str]:
    """Repository paths a page names in code spans (`orchestrator/run/engine.py`, a test's
    file before its `::name`)."""
    found = []
    for token in _tokens(path):
        for child in token.children or []:
            if child.type == "code_inline":
                word = child.content.split("::")[0].split()[0] if child.content.split() else ""
                if REPO_PATH.match(word):
                    found.append(word)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_repository_path_a_page_names_exists(page: Path) -> None:
    """What the layout and the other pages say is where, is there."""
    missing = sorted({word for word in code_paths(page) if not (ROOT / word).exists()})
    assert not missing, f"{page.relative_to(ROOT)} names {missing}"


def test_the_layout_names_files_that_are_where_it_says() -> None:
    """Each bullet of the development guide's Layout names a package (`run/`) and its files
    (`engine.py`): each file is in that package (or in a folder of it)."""
    text = (DOCS / "development.md").read_text()
    layout = text[text.index("## Layout") : text.index("\n## ", text.index("## Layout") + 1)]
    checked, missing = 0, []
    for bullet in re.split(r"\n- ", layout)[1:]:
        names = re.findall(r"`([\w/.-]+)`", bullet)
        package = ROOT / "orchestrator" / names[0] if names[0].endswith("/") else None
        if package is None or not package.is_dir():
            continue
        for name in names[1:]:
            if re.fullmatch(r"[\w-]+\.(py|sh)", name):
                checked += 1
                if not any(package.rglob(name)):
                    missing.append(f"{names[0]}{name}")
    assert checked > 40 and not missing, missing
