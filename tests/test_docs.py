"""The README and docs/ stay true to the repository: every relative link (and ``#anchor``)
resolves, and the README's command table names exactly the commands ``pocketsam`` has,
each of which answers ``--help``.

Anchors are checked against GitHub's heading slugs, since GitHub is where these pages are
read: the heading's text, lower-cased, with everything but letters, marks, numbers,
connector punctuation, spaces and hyphens removed, spaces turned into hyphens, and
``-1``, ``-2``… appended to repeats.
"""

from __future__ import annotations

import argparse
import re
import unicodedata
from pathlib import Path

import pytest

from pocketsam.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
# [text](target) and ![alt](target); the target ends at whitespace (an optional title follows)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def prose_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the lines outside fenced code blocks."""
    out, fenced = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append((number, line))
    return out


def slugify(heading: str) -> str:
    """GitHub's anchor for a heading's markdown source."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = CODE_SPAN.sub(lambda m: m.group(2), text).replace("*", "")
    text = text.strip().lower()
    kept = "".join(
        ch for ch in text
        if ch in " -" or unicodedata.category(ch)[0] in "LMN" or unicodedata.category(ch) == "Pc"
    )
    return kept.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in prose_lines(path):
        m = HEADING.match(line)
        if not m:
            continue
        slug = slugify(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def relative_links(path: Path) -> list[tuple[int, str]]:
    links = []
    for number, line in prose_lines(path):
        for m in LINK.finditer(CODE_SPAN.sub("", line)):
            target = m.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                links.append((number, target))
    return links


def test_slugify_follows_github():
    assert slugify("`pocketsam serve`: click to segment in the browser") == "pocketsam-serve-click-to-segment-in-the-browser"
    assert slugify("int8 (`pocketsam quantize`)") == "int8-pocketsam-quantize"
    assert slugify("What a 256² model can reach at all") == "what-a-256²-model-can-reach-at-all"
    assert slugify("Set-up: two commands") == "set-up-two-commands"
    assert slugify("**Bold** and [a link](x.md)") == "bold-and-a-link"


def link_problems(page: Path, root: Path = ROOT) -> list[str]:
    """What is wrong with the relative links of one page (empty when all resolve)."""
    problems = []
    for number, target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        where = f"{page.relative_to(root)}:{number}: {target}"
        if not dest.is_relative_to(root):
            problems.append(f"{where} leaves the repository")
        elif not dest.exists():
            problems.append(f"{where} does not exist")
        elif anchor:
            if dest.suffix != ".md":
                problems.append(f"{where} has an anchor but is not a markdown page")
            elif anchor not in anchors(dest):
                problems.append(f"{where}: no heading with this anchor in {dest.relative_to(root)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    problems = link_problems(page)
    assert not problems, "\n".join(problems)


def test_link_check_finds_broken_links(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Two words\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "# Top\n\n[ok](docs/a.md#two-words) [ok](#top) ![ok](docs/a.md) [web](https://example.com/x)\n"
        "`[in code](missing.md)`\n```\n[in a fence](missing.md)\n```\n"
        "[gone](docs/b.md) [bad anchor](docs/a.md#three) [outside](../elsewhere/c.md) [here](#nowhere)\n",
        encoding="utf-8",
    )
    problems = link_problems(page, root=tmp_path)
    assert [p.split(": ", 1)[1].split(" ")[0].rstrip(":") for p in problems] == [
        "docs/b.md", "docs/a.md#three", "../elsewhere/c.md", "#nowhere"]


def test_docs_pages_are_linked_from_the_readme():
    linked = {(ROOT / t.partition("#")[0]).resolve() for _, t in relative_links(ROOT / "README.md")}
    missing = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not missing, f"docs pages the README does not link: {missing}"


def readme_commands() -> list[tuple[str, ...]]:
    """The command words (``("eval", "prompts")``) of the first cell of every row of the
    README's command table: the words after ``pocketsam`` up to the first argument."""
    lines = [line for _, line in prose_lines(ROOT / "README.md")]
    if "## Commands" not in lines:
        return []  # test_command_table_matches_the_cli says so
    start = lines.index("## Commands")
    commands = []
    for line in lines[start + 1:]:
        if line.startswith("#"):
            break
        m = re.match(r"^\|\s*`pocketsam ([^`]*)`", line)
        if m:
            words = []
            for word in m.group(1).split():
                if not re.fullmatch(r"[a-z][a-z0-9-]*", word):
                    break
                words.append(word)
            commands.append(tuple(words))
    return commands


def cli_commands() -> set[tuple[str, ...]]:
    """Every command path of ``pocketsam``'s parser: leaves of the sub-command tree."""
    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return {prefix}
        return {path for a in subs for name, p in a.choices.items() for path in walk(p, prefix + (name,))}

    return walk(build_parser(), ())


def test_command_table_matches_the_cli():
    table = set(readme_commands())
    assert table, "no `pocketsam …` rows found under '## Commands' in README.md"
    cli = cli_commands()
    assert not table - cli, f"README rows naming commands pocketsam does not have: {sorted(table - cli)}"
    assert not cli - table, f"commands missing from the README's command table: {sorted(cli - table)}"


@pytest.mark.parametrize("command", sorted(set(readme_commands())), ids=" ".join)
def test_command_help_exits_0(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command, "--help"])
    assert exit_.value.code == 0
    assert "usage: pocketsam " + " ".join(command) in capsys.readouterr().out
