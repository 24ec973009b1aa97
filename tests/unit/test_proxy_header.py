"""Tests for L{twisted_caps.core.proxy_header}: every form a receiver must accept, and refusals."""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tests.proxy_headers import ACCEPTED, REFUSED
from twisted_caps.core.proxy_header import (
    V2_SIGNATURE,
    HeaderReader,
    MalformedHeaderError,
    ProxyHeader,
)


def read_whole(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    return HeaderReader().feed(data)


class AcceptedFormTests(SynchronousTestCase):
    def test_every_form_is_accepted_whole_and_byte_by_byte(self) -> None:
        for header, expected in ACCEPTED.items():
            self.assertEqual(read_whole(header + b"hello"), (expected, b"hello"), header)
            reader = HeaderReader()
            for byte in header[:-1]:
                self.assertIsNone(reader.feed(bytes([byte])), header)
            self.assertEqual(reader.feed(header[-1:]), (expected, b""), header)

    def test_incomplete_header_waits(self) -> None:
        for header in ACCEPTED:
            self.assertIsNone(read_whole(header[:-1]))


class RefusedFormTests(SynchronousTestCase):
    def test_each_malformation_is_refused_with_its_reason(self) -> None:
        for header, reason in REFUSED.items():
            with self.assertRaises(MalformedHeaderError, msg=repr(header)) as raised:
                read_whole(header)
            self.assertEqual(str(raised.exception), reason, header)

    def test_refusal_comes_as_soon_as_the_bytes_cannot_start_a_header(self) -> None:
        reader = HeaderReader()
        self.assertIsNone(reader.feed(b"PRO"))
        with self.assertRaises(MalformedHeaderError):
            reader.feed(b"Z")


class FuzzTests(SynchronousTestCase):
    @settings(max_examples=500, deadline=None)
    @given(
        st.one_of(
            st.binary(max_size=300),
            st.sampled_from(sorted(ACCEPTED) + sorted(REFUSED)).flatmap(
                lambda header: st.tuples(st.integers(0, len(header)), st.binary(max_size=8)).map(
                    lambda cut: header[: cut[0]] + cut[1] + header[cut[0] :]
                )
            ),
            st.builds(
                lambda prefix, body: prefix + body,
                st.sampled_from([b"PROXY ", b"PROXY TCP4 ", b"PROXY TCP6 ", V2_SIGNATURE]),
                st.binary(max_size=300),
            ),
        ),
        st.lists(st.integers(1, 40), max_size=10),
    )
    def test_any_bytes_in_any_pieces_give_a_header_or_one_error(
        self, data: bytes, cuts: list[int]
    ) -> None:
        """No exception but L{MalformedHeaderError} escapes, and pieces read as the whole."""
        try:
            whole = read_whole(data)
        except MalformedHeaderError:
            whole = None
            refused = True
        else:
            refused = False
        reader = HeaderReader()
        result: tuple[ProxyHeader, bytes] | None = None
        rest, position = data, 0
        try:
            for cut in [*cuts, len(data)]:
                piece, rest = rest[:cut], rest[cut:]
                position += len(piece)
                result = reader.feed(piece)
                if result is not None:
                    result = (result[0], result[1] + rest)
                    break
        except MalformedHeaderError:
            self.assertTrue(refused or whole is None)
            return
        if result is not None:
            self.assertEqual(result, whole)
