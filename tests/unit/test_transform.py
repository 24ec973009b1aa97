"""Tests for L{twisted_caps.core.transform}."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.transform import StreamCapitalizer, capitalize


def reference(data: bytes) -> bytes:
    """The specification, written out in full."""
    return data.decode("utf-8", "surrogateescape").upper().encode("utf-8", "surrogateescape")


def stream(chunks: list[bytes]) -> bytes:
    """Feed C{chunks} through one capitalizer and flush it."""
    capitalizer = StreamCapitalizer()
    return b"".join([capitalizer.feed(chunk) for chunk in chunks] + [capitalizer.flush()])


def split_at(data: bytes, cuts: list[int]) -> list[bytes]:
    """Split C{data} at the given offsets (clamped and sorted)."""
    offsets = sorted({min(cut, len(data)) for cut in cuts})
    return [data[i:j] for i, j in zip([0, *offsets], [*offsets, len(data)], strict=True)]


class CapitalizeTests(SynchronousTestCase):
    def test_ascii_letters_are_upper_cased(self) -> None:
        self.assertEqual(capitalize(b"hello world\n"), b"HELLO WORLD\n")

    def test_full_case_mapping_expands_characters(self) -> None:
        self.assertEqual(capitalize("straße".encode()), b"STRASSE")
        self.assertEqual(capitalize("ﬁ".encode()), b"FI")

    def test_cyrillic_is_upper_cased(self) -> None:
        self.assertEqual(capitalize("привет".encode()), "ПРИВЕТ".encode())

    def test_bytes_that_are_not_utf8_come_back_unchanged(self) -> None:
        self.assertEqual(capitalize(b"a\xff\xfeb\xc3"), b"A\xff\xfeB\xc3")

    def test_nul_bytes_pass_through(self) -> None:
        self.assertEqual(capitalize(b"a\x00b"), b"A\x00B")

    def test_empty_input_gives_empty_output(self) -> None:
        self.assertEqual(capitalize(b""), b"")

    @given(st.binary())
    def test_matches_the_reference_for_any_bytes(self, data: bytes) -> None:
        self.assertEqual(capitalize(data), reference(data))


class StreamCapitalizerTests(SynchronousTestCase):
    def test_split_multibyte_character_is_reassembled(self) -> None:
        capitalizer = StreamCapitalizer()
        self.assertEqual(capitalizer.feed(b"stra\xc3"), b"STRA")
        self.assertEqual(capitalizer.feed(b"\x9fe"), b"SSE")

    def test_character_sent_one_byte_at_a_time(self) -> None:
        encoded = "ﬁ".encode()
        self.assertEqual(stream([encoded[i : i + 1] for i in range(len(encoded))]), b"FI")

    def test_incomplete_character_is_flushed_unchanged(self) -> None:
        capitalizer = StreamCapitalizer()
        self.assertEqual(capitalizer.feed(b"a\xe2\x82"), b"A")
        self.assertEqual(capitalizer.flush(), b"\xe2\x82")

    def test_flush_of_a_finished_stream_is_empty(self) -> None:
        capitalizer = StreamCapitalizer()
        capitalizer.feed("é".encode())
        self.assertEqual(capitalizer.flush(), b"")

    def test_ascii_after_a_completed_character_takes_the_fast_path(self) -> None:
        capitalizer = StreamCapitalizer()
        capitalizer.feed(b"\xc3")
        self.assertEqual(capitalizer.feed(b"\xa9x"), "ÉX".encode())
        self.assertEqual(capitalizer.feed(b"abc"), b"ABC")

    @given(st.binary(), st.lists(st.integers(min_value=0, max_value=64)))
    def test_any_split_of_any_bytes_gives_the_whole_answer(
        self, data: bytes, cuts: list[int]
    ) -> None:
        self.assertEqual(stream(split_at(data, cuts)), reference(data))

    @given(st.text(), st.lists(st.integers(min_value=0, max_value=64)))
    def test_any_split_of_any_text_gives_the_whole_answer(self, text: str, cuts: list[int]) -> None:
        data = text.encode("utf-8", "surrogatepass")
        self.assertEqual(stream(split_at(data, cuts)), reference(data))
