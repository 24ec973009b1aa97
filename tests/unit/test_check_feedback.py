"""The one-line details of failed checks: shown bytes, windows, first differences, errors."""

import errno

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.check.feedback import describe_reply, error_words, first_difference, show


class ShowTests(SynchronousTestCase):
    def test_text_is_quoted_and_other_bytes_are_a_bytes_literal(self) -> None:
        """UTF-8 shows as text, anything else as Python writes bytes, each with its length."""
        self.assertEqual(show(b"HELLO"), "'HELLO' (5 bytes)")
        self.assertEqual(show("STRAßE".encode()), "'STRAßE' (7 bytes)")
        self.assertEqual(show(b"caf\xe9"), "b'caf\\xe9' (4 bytes)")
        self.assertEqual(show(b"\n"), "'\\n' (1 byte)")

    def test_long_data_shows_a_window_near_the_offset(self) -> None:
        """Past 48 bytes, 40 bytes near the given offset are shown, and where they start."""
        data = bytes(range(65, 91)) * 100
        shown = show(data, 1000)
        self.assertTrue(shown.startswith("...'"), shown)
        self.assertIn("(2,600 bytes, from byte 990)", shown)
        self.assertIn(repr(data[990:1030].decode()), shown)
        self.assertLess(len(shown), 100)

    def test_window_at_the_end_stays_inside(self) -> None:
        data = b"a" * 100
        self.assertEqual(show(data, 100), f"...{data[60:].decode()!r} (100 bytes, from byte 60)")

    def test_window_does_not_cut_a_character(self) -> None:
        """A window keeps whole UTF-8 characters, so text still shows as text."""
        data = "ß".encode() * 100
        shown = show(data, 101)
        self.assertTrue(shown.startswith("...'ßß"), shown)


class FirstDifferenceTests(SynchronousTestCase):
    def test_offsets(self) -> None:
        self.assertEqual(first_difference(b"HELLO", b"HELLO"), 5)
        self.assertEqual(first_difference(b"HELLo", b"HELLO"), 4)
        self.assertEqual(first_difference(b"HEL", b"HELLO"), 3)
        self.assertEqual(first_difference(b"HELLO!", b"HELLO"), 5)


class DescribeReplyTests(SynchronousTestCase):
    def test_right_reply_has_no_detail(self) -> None:
        self.assertIsNone(describe_reply(b"hi", b"HI", b"HI", None, 5))

    def test_wrong_reply_names_sent_got_expected_and_offset(self) -> None:
        """A wrong reply: what was sent, what came, what was expected, where it differs."""
        self.assertEqual(
            describe_reply(b"hello world", b"HELLO WORLD\n", b"HELLO WORLD", None, 5),
            "sent 'hello world' (11 bytes); got 'HELLO WORLD\\n' (12 bytes); "
            "expected 'HELLO WORLD' (11 bytes); first difference at byte 11",
        )

    def test_silence_closing_and_reset(self) -> None:
        """A reply cut short says how: no more within the timeout, closed, or reset."""
        self.assertEqual(
            describe_reply(b"hi", b"", b"HI", None, 2.5),
            "sent 'hi' (2 bytes); no reply within 2.5 s; expected 'HI' (2 bytes)",
        )
        self.assertEqual(
            describe_reply(b"hi", b"H", b"HI", "closed", 5),
            "sent 'hi' (2 bytes); got only 'H' (1 byte), then the server closed the "
            "connection; expected 'HI' (2 bytes)",
        )
        self.assertEqual(
            describe_reply(b"hi", b"", b"HI", "reset", 5),
            "sent 'hi' (2 bytes); the connection was reset; expected 'HI' (2 bytes)",
        )

    def test_short_datagram_is_a_wrong_reply(self) -> None:
        """A datagram comes whole: a short one differs, it is not waited on."""
        detail = describe_reply(b"abc", b"AB", b"ABC", None, 5, whole=True)
        self.assertEqual(
            detail,
            "sent 'abc' (3 bytes); got 'AB' (2 bytes); expected 'ABC' (3 bytes); "
            "first difference at byte 2",
        )


class ErrorWordsTests(SynchronousTestCase):
    def test_errors_are_words_never_numbers(self) -> None:
        """A connection error is said in words: C{104} reads C{connection reset}."""
        self.assertEqual(error_words(errno.ECONNRESET), "connection reset")
        self.assertEqual(error_words(errno.ETIMEDOUT), "timed out")
        self.assertEqual(error_words(errno.EHOSTUNREACH), "no route to host")
        self.assertEqual(error_words(errno.EACCES), "permission denied")
        self.assertEqual(
            error_words(FileNotFoundError(errno.ENOENT, "x")), "no such file or directory"
        )
        self.assertEqual(error_words("Connection was aborted."), "Connection was aborted")
