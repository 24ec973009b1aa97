# -*- test-case-name: tests.unit.test_help_text,tests.test_tap -*-
"""
The C{--help} of C{twistd caps} and C{caps-client}: paragraphs wrapped to
the terminal, examples kept line by line, and an output closed early (as
by C{| head}) ending the program quietly.

C{usage.Options} wraps its C{longdesc} as one paragraph, keeping the
docstring's indentation as runs of spaces; L{HelpfulOptions} prints the
description itself.
"""

import inspect
import os
import sys
import textwrap

from twisted.python import usage

#: The width of the help when C{COLUMNS} does not give a usable one.
DEFAULT_WIDTH = 80


def terminal_width() -> int:
    """C{COLUMNS} when it is a number (as shells set it), at least 20; else 80."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isascii() and columns.isdigit() and len(columns) <= 4:
        return max(20, int(columns))
    return DEFAULT_WIDTH


def paragraphs(text: str, width: int) -> str:
    """
    Format a docstring for a terminal of C{width} columns: each paragraph
    (lines separated by a blank line) wrapped, indented lines (examples)
    kept as they are, and epytext's C{::} before them shown as C{:}.
    """
    formatted: list[str] = []
    paragraph: list[str] = []

    def end_paragraph() -> None:
        if paragraph:
            text = " ".join(paragraph)
            # "Examples::" introduces the literal lines of epytext (the API
            # reference); a terminal reader wants one colon.
            if text.endswith("::"):
                text = text[:-1]
            formatted.extend(textwrap.wrap(text, width))
            paragraph.clear()

    for line in inspect.cleandoc(text).splitlines():
        if not line.strip():
            end_paragraph()
            formatted.append("")
        elif line.startswith(" "):
            end_paragraph()
            formatted.append(line.rstrip())
        else:
            paragraph.append(line.strip())
    end_paragraph()
    return "\n".join(formatted)


def print_to_stdout(text: str) -> None:
    """
    Print C{text}; if the reader has gone (C{--help | head -2}), stop
    quietly rather than with a C{BrokenPipeError} at exit.
    """
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it somewhere that takes it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


class HelpfulOptions(usage.Options):
    """
    Options whose help is the option table, then C{description} formatted
    by L{paragraphs}; C{--help} and C{--version} survive a closed output.
    """

    #: The text after the option table (a docstring, dedented and wrapped here).
    description = ""
    #: Twisted's own wrapping of it is switched off.
    longdesc = ""
    #: What C{--version} prints.
    version = ""

    def __init__(self) -> None:
        super().__init__()
        # The help of an opt_ method is its docstring: one paragraph, unindented.
        self.docs = {name: " ".join(doc.split()) for name, doc in self.docs.items()}

    def getUsage(self, width: int | None = None) -> str:
        width = width or terminal_width()
        return super().getUsage(width) + "\n" + paragraphs(self.description, width) + "\n"

    def opt_help(self) -> None:
        """Display this help and exit."""
        print_to_stdout(str(self) + "\n")
        raise SystemExit(0)

    def opt_version(self) -> None:
        """Display the version and exit."""
        print_to_stdout(self.version + "\n")
        raise SystemExit(0)
