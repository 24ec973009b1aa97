"""
The documentation reads wherever it is opened: on the site, and raw on
GitHub, in an editor's preview or in C{less}, where Sphinx fills nothing in.
A link without text shows nothing there, and a directive that includes a
file shows no code, so each names the file it includes in a link beside it.
"""

import re
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PROJECT = Path(__file__).resolve().parents[2]
#: Every Markdown page a reader may open raw.
PAGES = [
    *sorted(path for path in (PROJECT / "docs").rglob("*.md") if "_build" not in path.parts),
    PROJECT / "README.md",
]
#: A Markdown link whose text is empty or blank: C{[](page.md)}.
EMPTY_LINK = re.compile(r"(?<!!)\[\s*\]\(([^)]*)\)")
#: A Markdown link or image, its target captured without any C{#anchor}.
LINK_TARGET = re.compile(r"\]\(([^)\s#]*)(?:#[^)\s]*)?\)")
#: The opening line of a code fence; a directive's fence names it in braces.
FENCE = re.compile(r"^(`{3,}|~{3,})(\{([\w-]+)\}\s*(\S*))?")
#: The directives whose content is another file, shown only on the site.
INCLUDES = {"include", "literalinclude"}


def fences(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """
    The numbered lines of C{text} that are prose, not inside a code fence,
    and each fence's opening line with its info string (a language, or a
    directive in braces).
    """
    prose: list[tuple[int, str]] = []
    openings: list[tuple[int, str]] = []
    closing: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        line = line.lstrip(" ")  # a fence may be indented, in a list
        if closing is not None:
            if line.startswith(closing) and not line.strip(closing[0]).strip():
                closing = None
            continue
        match = FENCE.match(line)
        if match:
            closing = match.group(1)
            openings.append((number, line[len(closing) :].strip()))
            continue
        prose.append((number, line))
    return prose, openings


def outside_fences(text: str) -> list[tuple[int, str]]:
    """The numbered lines of C{text} that are prose, not inside a code fence."""
    return fences(text)[0]


def unnamed_fences(text: str) -> list[int]:
    """
    The lines of C{text} that open a code block without naming its language:
    Sphinx would colour it as Python, which a session or an output is not.
    """
    return [number for number, info in fences(text)[1] if not info]


def empty_links(text: str) -> list[str]:
    """Each link of C{text}'s prose that has no text, as C{[](target)}."""
    prose = "\n".join(line for _, line in outside_fences(text))
    return [f"[]({target})" for target in EMPTY_LINK.findall(prose)]


def directives(text: str) -> list[tuple[int, str, str, list[str]]]:
    """
    Each directive fence of C{text}: its line, name, argument, and the lines
    of the paragraph just before it (where a raw reader looks for the file).
    """
    found: list[tuple[int, str, str, list[str]]] = []
    lines = text.splitlines()
    prose_numbers = {number for number, _ in outside_fences(text)}
    for number, line in enumerate(lines, 1):
        match = FENCE.match(line.lstrip(" "))
        if number in prose_numbers or not match or not match.group(2):
            continue
        before: list[str] = []
        for previous in reversed(lines[: number - 1]):
            if not previous.strip() and before:
                break
            before.insert(0, previous)
        found.append((number, match.group(3), match.group(4), before))
    return found


def unlinked_includes(text: str) -> list[str]:
    """
    Each C{include} or C{literalinclude} of C{text} whose file the paragraph
    before it does not name, as C{line N: {name} argument}. An example is
    named by a link to it; a Markdown file outside C{docs/}, which Sphinx
    cannot link to, may be named by its file name in code instead.
    """
    unnamed: list[str] = []
    for number, name, argument, before in directives(text):
        paragraph = "\n".join(before)
        named = argument in LINK_TARGET.findall(paragraph) or (
            argument.endswith(".md") and f"`{Path(argument).name}`" in paragraph
        )
        if name in INCLUDES and not named:
            unnamed.append(f"line {number}: {{{name}}} {argument}")
    return unnamed


def unlinked_toctree_entries(text: str) -> list[str]:
    """Each page a C{toctree} of C{text} lists that no link of the page names."""
    prose_links = set(LINK_TARGET.findall("\n".join(line for _, line in outside_fences(text))))
    missing: list[str] = []
    lines = text.splitlines()
    for number, name, _, _ in directives(text):
        if name != "toctree":
            continue
        for entry in lines[number:]:
            if FENCE.match(entry):
                break
            entry = entry.strip()
            # "Title <page>" names the page in angle brackets.
            entry = entry[entry.rfind("<") + 1 : -1] if entry.endswith(">") else entry
            if (
                entry
                and not entry.startswith(":")
                and "*" not in entry
                and f"{entry}.md" not in prose_links
            ):
                missing.append(entry)
    return missing


class CheckTests(SynchronousTestCase):
    """The checks below would see each fault they look for."""

    def test_an_empty_link_is_seen_and_a_link_in_a_code_block_is_not(self) -> None:
        text = (
            "See [](limits.md) and [ ](udp.md#sizes), [limits](limits.md).\n\n"
            "```md\n[](x.md)\n```\n"
        )
        self.assertEqual(empty_links(text), ["[](limits.md)", "[](udp.md#sizes)"])

    def test_an_include_without_a_link_beside_it_is_seen(self) -> None:
        text = (
            "The client, `examples/a.py`:\n\n```{literalinclude} ../examples/a.py\n```\n\n"
            "[`examples/b.py`](../examples/b.py):\n\n```{literalinclude} ../examples/b.py\n```\n"
        )
        self.assertEqual(unlinked_includes(text), ["line 3: {literalinclude} ../examples/a.py"])

    def test_a_link_further_up_the_page_does_not_count(self) -> None:
        text = "[a.py](../a.py)\n\nAnother paragraph.\n\n```{include} ../a.py\n```\n"
        self.assertEqual(unlinked_includes(text), ["line 5: {include} ../a.py"])

    def test_a_markdown_file_may_be_named_in_code_and_an_example_may_not(self) -> None:
        text = (
            "As `NEWS.md` says:\n\n```{include} ../NEWS.md\n```\n\n"
            "`a.py`:\n\n```{include} ../a.py\n```\n"
        )
        self.assertEqual(unlinked_includes(text), ["line 8: {include} ../a.py"])

    def test_a_toctree_entry_the_page_does_not_link_is_seen(self) -> None:
        text = (
            "[UDP](udp.md), [API](api/index.md)\n\n```{toctree}\n:maxdepth: 2\n\n"
            "udp\nlimits\nAPI reference <api/index>\nThe rest <more/index>\n```\n"
        )
        self.assertEqual(unlinked_toctree_entries(text), ["limits", "more/index"])

    def test_a_code_block_without_a_language_is_seen(self) -> None:
        text = "```\ncaps-check --port 1200\n```\n\n```text\ntcp-reply PASS\n```\n"
        self.assertEqual(unnamed_fences(text), [1])


class PageTests(SynchronousTestCase):
    """Every page of C{docs/} and the README read raw."""

    def test_every_page_is_checked(self) -> None:
        self.assertGreater(len(PAGES), 15)
        self.assertIn(PROJECT / "docs" / "testing.md", PAGES)

    def test_no_link_without_text(self) -> None:
        for page in PAGES:
            self.assertEqual(empty_links(page.read_text()), [], page)

    def test_every_included_file_is_linked_beside_its_directive(self) -> None:
        for page in PAGES:
            self.assertEqual(unlinked_includes(page.read_text()), [], page)
        self.assertEqual(len(directives((PROJECT / "docs" / "testing.md").read_text())), 5)

    def test_every_page_of_the_contents_is_linked_from_the_index(self) -> None:
        """The index read raw lists its pages as links, not as bare names."""
        self.assertEqual(unlinked_toctree_entries((PROJECT / "docs" / "index.md").read_text()), [])

    def test_every_relative_link_names_a_file_that_exists(self) -> None:
        """A link a raw reader follows (to a page, an example, a deploy file) leads somewhere."""
        for page in PAGES:
            prose = "\n".join(line for _, line in outside_fences(page.read_text()))
            for target in LINK_TARGET.findall(prose):
                if target and not re.match(r"[a-z]+:", target):
                    self.assertTrue((page.parent / target).exists(), f"{page}: {target}")

    def test_every_code_block_names_its_language(self) -> None:
        """Sessions are C{console}, scripts C{sh}, output C{text}: none is coloured as Python."""
        for page in PAGES:
            self.assertEqual(unnamed_fences(page.read_text()), [], page)
