# -*- test-case-name: tests.unit.test_transform -*-
"""
Capitalization of bytes, whole or streamed; pure Python, no Twisted.

Text is UTF-8 and is upper-cased with Unicode's full case mapping (as
C{str.upper} does: "straße" -> "STRASSE"). Bytes that are not UTF-8 are
decoded with C{surrogateescape} and so come back unchanged: nothing is lost.
"""

import codecs

ENCODING = "utf-8"
ERRORS = "surrogateescape"

_IncrementalDecoder = codecs.getincrementaldecoder(ENCODING)


def capitalize(data: bytes) -> bytes:
    """
    Return C{data} capitalized: the reference transform every reply obeys.

    ASCII input (the common case) takes C{bytes.upper}, which gives the same
    answer as the Unicode path for ASCII and never leaves C.
    """
    if data.isascii():
        return data.upper()
    return data.decode(ENCODING, ERRORS).upper().encode(ENCODING, ERRORS)


class StreamCapitalizer:
    """
    Capitalize a byte stream chunk by chunk.

    For any split of a byte string into chunks, the concatenation of
    C{feed} over the chunks followed by C{flush} equals C{capitalize} of the
    whole: a multi-byte character split across chunks is held back until its
    last byte arrives. The decoder is created on the first non-ASCII byte, so
    an ASCII stream costs one C{isascii} and one C{upper} per chunk.
    """

    __slots__ = ("_decoder", "_pending")

    def __init__(self) -> None:
        self._decoder: codecs.IncrementalDecoder | None = None
        self._pending = False

    def feed(self, data: bytes) -> bytes:
        """Capitalize the next chunk; bytes of an unfinished character wait."""
        if not self._pending and data.isascii():
            return data.upper()
        return self._decode(data, final=False)

    def flush(self) -> bytes:
        """End the stream: an unfinished character is returned unchanged."""
        if not self._pending:
            return b""
        return self._decode(b"", final=True)

    def _decode(self, data: bytes, final: bool) -> bytes:
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _IncrementalDecoder(ERRORS)
        text = decoder.decode(data, final)
        self._pending = bool(decoder.getstate()[0])
        return text.upper().encode(ENCODING, ERRORS)
