"""Tests for L{twisted_caps.core.pem_files}: certificate files read, bounded."""

import os

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.core.pem_files import read_pem_file


class ReadTests(SynchronousTestCase):
    def test_devices_and_fifos_are_not_read(self) -> None:
        """/dev/zero would fill the memory and a FIFO would block start-up."""
        fifo = os.path.abspath(self.mktemp())
        os.mkfifo(fifo)
        for path in ("/dev/zero", fifo):
            error = self.assertRaises(ValueError, read_pem_file, path, "certKey")
            self.assertEqual(str(error), f"certKey: not a regular file: {path}")

    def test_a_huge_file_is_not_pem(self) -> None:
        path = self.mktemp()
        with open(path, "wb") as huge:
            huge.truncate(2 * 1024 * 1024)
        error = self.assertRaises(ValueError, read_pem_file, path, "certKey")
        self.assertIn("larger than 1024 KiB", str(error))
