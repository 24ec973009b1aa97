"""Tests for L{twisted_caps.operating.parent_pipe}: a child's lines with its parent."""

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from twisted_caps.operating.parent_pipe import MAX_REQUEST, READY

#: A child that prints each request it hears, then that it stopped.
CHILD = f"""
from twisted.internet import reactor
from twisted_caps.operating.parent_pipe import ParentPipe
ParentPipe(reactor, lambda line: print(repr(line), flush=True)).startReading()
print({READY!r}, flush=True)
reactor.run()
print("stopped", flush=True)
"""


class ParentPipeTests(SynchronousTestCase):
    def run_child(self, *writes: bytes) -> list[str]:
        """Start the child, send C{writes} one by one after READY, close its input."""
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.addCleanup(child.kill)
        assert child.stdin is not None and child.stdout is not None
        self.assertEqual(child.stdout.readline().decode().strip(), READY)
        for chunk in writes:
            child.stdin.write(chunk)
            child.stdin.flush()
        output, _ = child.communicate(timeout=30)
        self.assertEqual(child.returncode, 0)
        return output.decode().splitlines()

    def test_each_line_is_a_request_however_it_arrives(self) -> None:
        """Lines split across writes, or several in one, arrive whole and in order."""
        lines = self.run_child(b"retire\nrep", b"ort\n\n", b"unfinished")
        self.assertEqual(lines, ["b'retire'", "b'report'", "b''", "stopped"])

    def test_the_end_of_input_stops_the_child(self) -> None:
        self.assertEqual(self.run_child(), ["stopped"])

    def test_an_overlong_line_is_dropped_and_the_next_one_heard(self) -> None:
        overlong = b"x" * (MAX_REQUEST * 5) + b"\n"
        lines = self.run_child(overlong, b"y" * (MAX_REQUEST + 1) + b"\nreport\n")
        self.assertEqual(lines, ["b'report'", "stopped"])
