"""Tests for L{twisted_caps.core.help_text}: the help of both commands."""

import os

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.help_text import DEFAULT_WIDTH, paragraphs, terminal_width


class ParagraphsTests(SynchronousTestCase):
    def test_paragraphs_wrap_and_indented_lines_stay(self) -> None:
        text = """
        One two three
        four five.

        Examples:
          run --this        does this
          run --that        does that
        """
        self.assertEqual(
            paragraphs(text, 14),
            "One two three\nfour five.\n\nExamples:\n  run --this        does this\n"
            "  run --that        does that",
        )


class TerminalWidthTests(SynchronousTestCase):
    def test_columns_that_are_not_a_width_give_80(self) -> None:
        """COLUMNS=abc made Twisted's usage raise ValueError; here it is ignored."""
        for columns, width in (
            ("100", 100),
            ("5", 20),
            ("abc", 80),
            ("\u00b2", 80),
            ("9" * 99, 80),
        ):
            # A copy of the environment, restored by trial: nothing leaks to later tests.
            self.patch(os, "environ", {**os.environ, "COLUMNS": columns})
            self.assertEqual(terminal_width(), width)
        self.assertEqual(DEFAULT_WIDTH, 80)
