"""Tests for L{twisted_caps.core.option_values}: the numbers of the command lines."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.option_values import (
    MAX_SECONDS,
    one_line,
    port_number,
    quoted,
    seconds,
    whole_number,
)

#: What int(), float() or str.isdigit() accept and a command line must not.
LENIENT = ("²", "¹⁰", "١٢", "\uff11\uff12", " 12", "12 ", "+12", "-0", "1_2", "0x10", "", "\n")


class WholeNumberTests(SynchronousTestCase):
    def test_ascii_digits_in_range(self) -> None:
        self.assertEqual(whole_number("0042", "--n", 0, 100, "n"), 42)
        self.assertEqual(port_number("65535", "--port"), 65535)

    def test_what_python_accepts_and_a_person_does_not_type_is_refused(self) -> None:
        for text in (*LENIENT, "1e3", "12.0"):
            error = self.assertRaises(usage.UsageError, whole_number, text, "--n", 0, 100, "n")
            self.assertEqual(str(error), f"--n: {text!r} is not n")

    def test_out_of_range_is_refused(self) -> None:
        for text in ("65536", "99999", "9" * 20):
            self.assertRaises(usage.UsageError, port_number, text, "--port")
        self.assertRaises(usage.UsageError, port_number, "0", "--port", 1)

    def test_beyond_python_digit_limit_is_one_short_line(self) -> None:
        """A 5,000-digit number is refused in one line quoting 40 characters."""
        error = self.assertRaises(usage.UsageError, port_number, "9" * 5000, "--port")
        self.assertEqual(
            str(error), f"--port: {'9' * 40!r}... (5000 characters) is not a port number (0-65535)"
        )


class SecondsTests(SynchronousTestCase):
    def test_decimals(self) -> None:
        for text, value in (("0", 0.0), ("1.5", 1.5), (".5", 0.5), ("2.", 2.0)):
            self.assertEqual(seconds(text, "--t", "s"), value)
        self.assertEqual(seconds(str(MAX_SECONDS), "--t", "s"), MAX_SECONDS)

    def test_float_spellings_are_refused(self) -> None:
        for text in (*LENIENT, "nan", "inf", "-inf", "1e400", "1e3", "-1", "1.2.3", "."):
            self.assertRaises(usage.UsageError, seconds, text, "--t", 0, "s")

    def test_above_a_year_or_zero_when_positive_is_refused(self) -> None:
        self.assertRaises(usage.UsageError, seconds, str(MAX_SECONDS + 1), "--t", "s")
        for zero in ("0", "0.0", "000.000"):
            self.assertRaises(usage.UsageError, seconds, zero, "--t", "s", positive=True)
        self.assertEqual(seconds("0.001", "--t", "s", positive=True), 0.001)


class OneLineTests(SynchronousTestCase):
    def test_control_characters_are_escaped(self) -> None:
        self.assertEqual(one_line("a\nb\x1b[2Jc\udcff"), "a\\nb\\x1b[2Jc\\udcff")

    def test_quoted_is_repr_cut_short(self) -> None:
        self.assertEqual(quoted("x\n"), "'x\\n'")
        self.assertTrue(quoted("y" * 1000).endswith("... (1000 characters)"))

    def test_a_short_text_with_a_long_repr_is_cut_too(self) -> None:
        """Forty characters that take ten each to escape make a short line."""
        shown = quoted("\U0010ffff" * 40)
        self.assertTrue(shown.startswith("'\\U0010ffff\\U0010ffff"), shown)
        self.assertTrue(shown.endswith("... (40 characters)"), shown)
        self.assertLessEqual(len(shown), 42 + len("... (40 characters)"))

    @given(st.text())
    def test_any_text_is_a_number_or_one_usage_line(self, text: str) -> None:
        """No text makes the number parsers raise anything but a one-line usage error."""
        for parse in (
            lambda: whole_number(text, "--n", 0, 10**9, "n"),
            lambda: seconds(text, "--s", "s"),
        ):
            try:
                parse()
            except usage.UsageError as error:
                self.assertNotIn("\n", str(error))
                self.assertLess(len(str(error)), 200)
