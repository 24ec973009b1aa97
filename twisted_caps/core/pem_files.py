# -*- test-case-name: tests.unit.test_pem_files -*-
"""
Read a certificate, key or CA file named on a command line, bounded: the
server's C{ssl:} endpoint strings and C{caps-client --ca} share it.
"""

import os
import stat

#: The largest certificate, key or chain file read: far more than any chain.
MAX_PEM_BYTES = 1024 * 1024


def read_pem_file(path: str, what: str) -> bytes:
    """
    Read the PEM file C{path} (named C{what} in errors) if it is a regular
    file of at most L{MAX_PEM_BYTES}: C{/dev/zero} or a FIFO would otherwise
    fill the memory or block start-up.

    @raise ValueError: with one line naming C{what} and C{path}.
    """
    try:
        with open(path, "rb", opener=_open_without_blocking) as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                raise ValueError(f"{what}: not a regular file: {path}")
            content = file.read(MAX_PEM_BYTES + 1)
    except OSError as error:
        raise ValueError(f"{what}: {error.strerror or error}: {path}") from None
    if len(content) > MAX_PEM_BYTES:
        raise ValueError(f"{what}: larger than {MAX_PEM_BYTES // 1024} KiB, not PEM: {path}")
    return content


def _open_without_blocking(path: str, flags: int) -> int:
    """Open for reading without waiting for a writer, as opening a FIFO would."""
    return os.open(path, flags | os.O_NONBLOCK)
